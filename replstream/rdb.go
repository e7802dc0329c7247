package replstream

import (
	"bytes"
	"fmt"

	"github.com/replproxy/replproxy/resp"
)

// eofMarkLen is CONFIG_RUN_ID_SIZE: the diskless transfer's end mark is 40
// random bytes.
const eofMarkLen = 40

// maxRDBHeaderBytes bounds the line before the payload ("$<len>\r\n",
// "$EOF:<mark>\r\n" or an error reply). The real ones are at most 47 bytes;
// error texts are longer, and nothing legitimate comes close to this.
const maxRDBHeaderBytes = 1024

type rdbState uint8

const (
	rdbHeader  rdbState = iota // keep-alive newlines, then the "$..." line
	rdbSized                   // disk-based: counting down the declared length
	rdbEOFMark                 // diskless: looking for the end mark
	rdbDone
)

// rdbSkipper consumes the RDB transfer that follows +FULLRESYNC without
// keeping it: replproxy never loads data, it only needs to know where the
// command stream starts. It is a pure incremental state machine over the
// bytes the master sends, so any split of the input into reads gives the same
// result (the split tests feed it one byte at a time).
//
// The two framings (replication.c readSyncBulkPayload):
//   - disk-based: "$<len>\r\n" and exactly len bytes, no trailing CRLF;
//   - diskless ("capa eof"): "$EOF:<40 bytes>\r\n", the payload, the same 40
//     bytes. The payload's length is not known: its end is where the mark is
//     found. redis-server compares the mark with the last 40 bytes of each
//     read, which only works because the mark is random; here it is searched
//     at every byte position (the first occurrence wins), which is the same
//     answer for a real transfer and does not depend on how reads were cut.
//
// Before the header the master may send bare "\n" keep-alives (while it
// forks, during repl-diskless-sync-delay): they are skipped and are not part
// of the stream. An error line ("-ERR ...") instead of the header means the
// master gave up on this transfer.
//
// An rdbSkipper is owned by the link goroutine; not safe for concurrent use.
type rdbSkipper struct {
	state rdbState

	hdr    [maxRDBHeaderBytes]byte // header line so far
	hdrLen int

	remaining int64 // rdbSized: payload bytes still to skip

	mark    [eofMarkLen]byte     // rdbEOFMark: the end mark
	tail    [eofMarkLen - 1]byte // last bytes seen, for a mark cut by a read
	tailLen int

	keepalives   int64 // newlines skipped before the header
	payloadBytes int64 // RDB bytes skipped (without header and end mark)
	diskless     bool
}

// reset prepares the skipper for a new transfer.
func (s *rdbSkipper) reset() { *s = rdbSkipper{} }

// done reports whether the whole RDB has been consumed.
func (s *rdbSkipper) done() bool { return s.state == rdbDone }

// feed consumes bytes of the transfer from p. It returns how many bytes
// belonged to it; when done is true, p[n:] is the start of the command
// stream. After an error the transfer cannot be resumed (drop the link).
// Feeding a finished skipper consumes nothing.
func (s *rdbSkipper) feed(p []byte) (n int, done bool, err error) {
	for n < len(p) {
		switch s.state {
		case rdbHeader:
			k, err := s.feedHeader(p[n:])
			n += k
			if err != nil {
				return n, false, err
			}
		case rdbSized:
			k := int64(len(p) - n)
			if k > s.remaining {
				k = s.remaining
			}
			n += int(k)
			s.remaining -= k
			s.payloadBytes += k
			if s.remaining == 0 {
				s.state = rdbDone
			}
		case rdbEOFMark:
			k, found := s.scanMark(p[n:])
			n += k
			if found {
				s.payloadBytes += int64(k - eofMarkLen)
				s.state = rdbDone
			} else {
				s.payloadBytes += int64(k)
			}
		case rdbDone:
			return n, true, nil
		}
	}
	return n, s.state == rdbDone, nil
}

// feedHeader consumes keep-alives and the header line; it returns at the end
// of the header line or of p.
func (s *rdbSkipper) feedHeader(p []byte) (int, error) {
	for i, b := range p {
		if b == '\n' && s.hdrLen == 0 {
			s.keepalives++
			continue
		}
		if b != '\n' {
			if s.hdrLen == len(s.hdr) {
				return i, fmt.Errorf("%w: RDB header longer than %d bytes", ErrProtocol, maxRDBHeaderBytes)
			}
			s.hdr[s.hdrLen] = b
			s.hdrLen++
			continue
		}
		line := bytes.TrimSuffix(s.hdr[:s.hdrLen], []byte("\r"))
		s.hdrLen = 0
		if len(line) == 0 {
			// "\r\n": redis-server reads lines with the CR stripped, so
			// an empty line is a keep-alive for it too.
			s.keepalives++
			continue
		}
		return i + 1, s.parseHeader(line)
	}
	return len(p), nil
}

// parseHeader interprets the line announcing the payload.
func (s *rdbSkipper) parseHeader(line []byte) error {
	switch {
	case line[0] == '-':
		return fmt.Errorf("%w: RDB transfer aborted: %q", ErrMasterError, line[1:])
	case line[0] != '$':
		return fmt.Errorf("%w: RDB header %q does not start with '$'", ErrProtocol, line)
	case bytes.HasPrefix(line, []byte("$EOF:")):
		// redis-server accepts a longer mark and uses its first 40 bytes.
		mark := line[len("$EOF:"):]
		if len(mark) < eofMarkLen {
			return fmt.Errorf("%w: RDB end mark %q shorter than %d bytes", ErrProtocol, mark, eofMarkLen)
		}
		copy(s.mark[:], mark)
		s.diskless = true
		s.state = rdbEOFMark
		return nil
	}
	size, ok := resp.ParseInt(line[1:])
	if !ok || size < 0 {
		return fmt.Errorf("%w: invalid RDB length in %q", ErrProtocol, line)
	}
	s.remaining = size
	s.state = rdbSized
	if size == 0 {
		s.state = rdbDone
	}
	return nil
}

// scanMark looks for the first occurrence of the end mark in the bytes seen
// so far that ends inside p. It returns how many bytes of p it consumed: up
// to and including the mark when found, else all of p.
func (s *rdbSkipper) scanMark(p []byte) (n int, found bool) {
	mark := s.mark[:]
	if s.tailLen > 0 {
		// A mark that starts in the previous reads: it ends in p's first
		// eofMarkLen-1 bytes, and it comes before any mark wholly in p.
		var w [2*eofMarkLen - 2]byte
		k := copy(w[:], s.tail[:s.tailLen])
		k += copy(w[k:], p[:min(len(p), eofMarkLen-1)])
		if i := bytes.Index(w[:k], mark); i >= 0 {
			return i + eofMarkLen - s.tailLen, true
		}
	}
	if i := bytes.Index(p, mark); i >= 0 {
		return i + eofMarkLen, true
	}
	// Keep the last eofMarkLen-1 bytes of everything seen so far.
	if len(p) >= len(s.tail) {
		s.tailLen = copy(s.tail[:], p[len(p)-len(s.tail):])
	} else {
		keep := min(s.tailLen, len(s.tail)-len(p))
		copy(s.tail[:], s.tail[s.tailLen-keep:s.tailLen])
		s.tailLen = keep + copy(s.tail[keep:], p)
	}
	return len(p), false
}
