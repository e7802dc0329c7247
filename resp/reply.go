package resp

import "bytes"

// ReplyScanner finds the end of one complete reply of any RESP2/RESP3 type
// (+ - : $ * _ # , ( ! = % ~ | >), nested to any depth, without building
// values: the proxy passes reply bytes through untouched and only needs to
// know where each reply ends. An attribute (|) and the reply it annotates
// are one reply here. RESP2 nulls ("$-1", "*-1") are accepted.
//
// Replies come from Redis, which nests as deep as a script's table goes (a
// recursive Lua table is sent until Lua's own stack limit, thousands of
// levels), so depth is not limited: to find where a reply ends only the
// number of values still to come matters, not which aggregate each belongs
// to. An aggregate of n elements replaces the one value it is with n more
// (a map or an attribute: 2n; an attribute fills no slot of its own, since
// the value it annotates follows). One counter, no stack, no recursion:
// any depth costs the same. The limits that remain (MaxBulkBytes,
// MaxArrayLen, and a cap on the values owed) only catch garbage; hitting
// one means the connection is out of sync.
//
// It is incremental like RequestParser: buf always starts at the reply's
// first byte and only grows between calls; progress is kept as an offset
// plus that counter, so scanning never allocates and a large bulk is not
// re-scanned on every read.
//
// RESP3 streamed strings and aggregates ("$?", "*?" ...) are rejected with
// ErrReplyStreamed: redis-server never sends them, and supporting them would
// make the reply length unbounded by any header.
//
// A ReplyScanner is owned by one backend connection (in the proxy, by its
// event loop); it is not safe for concurrent use.
type ReplyScanner struct {
	lim Limits

	pos     int   // offset of the first byte not yet consumed in the reply
	scanned int   // simple-string line: bytes already searched for '\r'
	bulkLen int64 // length of the string whose data starts at pos, -1 if none
	bulkTyp byte  // '$', '!' or '='
	need    int

	// owed is the number of values still to come before the reply is
	// complete: 1 at the start (the reply itself).
	owed int64
}

// maxOwedValues bounds the values a reply may still owe: 2^40 values take
// at least 3 TiB, beyond any reply a server sends, so only garbage (or a
// peer that is not Redis) reaches it; it also keeps the counter far from
// overflowing.
const maxOwedValues = 1 << 40

// NewReplyScanner returns a scanner enforcing lim (zero fields: defaults).
func NewReplyScanner(lim Limits) *ReplyScanner {
	s := &ReplyScanner{}
	s.SetLimits(lim)
	s.Reset()
	return s
}

// SetLimits changes the limits; call it between replies.
func (s *ReplyScanner) SetLimits(lim Limits) {
	s.lim = lim.normalized()
}

// Reset forgets the current partial reply.
func (s *ReplyScanner) Reset() {
	s.pos = 0
	s.scanned = 0
	s.bulkLen = -1
	s.need = 0
	s.owed = 1
}

// Need returns, after Scan reported an incomplete reply, a lower bound of
// the reply's total length, always greater than the length of the buffer
// Scan saw. After a complete reply or an error it returns 0.
func (s *ReplyScanner) Need() int { return s.need }

// Scan looks at buf, which starts at the first byte of the current reply.
// It returns n > 0, the reply's length, once the reply is complete; n == 0
// and a nil error while it is incomplete (see Need); or one of the reply
// errors, after which the connection is out of sync. After a complete reply
// the scanner is ready for the next one (the caller then passes buf[n:]).
func (s *ReplyScanner) Scan(buf []byte) (n int, err error) {
	if s.pos > len(buf) || s.scanned > len(buf) {
		// The caller broke the "only grows" contract; start over.
		s.Reset()
	}
	n, err = s.scan(buf)
	if n > 0 || err != nil {
		s.Reset()
	}
	return n, err
}

func (s *ReplyScanner) scan(buf []byte) (int, error) {
	for {
		if s.bulkLen >= 0 {
			// No overflow: pos <= len(buf) and bulkLen <= maxBulkCeiling.
			end := s.pos + int(s.bulkLen) + 2
			if end > len(buf) {
				s.need = end
				return 0, nil
			}
			if buf[end-2] != '\r' || buf[end-1] != '\n' {
				return 0, ErrReplyCRLF
			}
			if s.bulkTyp == '=' && (s.bulkLen < 4 || buf[s.pos+3] != ':') {
				// Verbatim strings are "fmt:text" with a 3-byte format.
				return 0, ErrReplyValue
			}
			s.pos = end
			s.bulkLen = -1
			if s.valueDone() {
				return s.pos, nil
			}
			continue
		}
		if s.pos >= len(buf) {
			s.need = s.pos + 1
			return 0, nil
		}
		typ := buf[s.pos]
		switch typ {
		case '+', '-', ',', '(':
			// Free-form lines, possibly long (a script's error message):
			// searched incrementally, capped like a bulk string.
			from := s.pos + 1
			if s.scanned > from {
				from = s.scanned
			}
			limit := s.pos + 1 + int(s.lim.MaxBulkBytes) + 1 // the CR may sit just past the cap
			to := len(buf)
			if to > limit {
				to = limit
			}
			if from > to { // SetLimits shrank the cap mid-line
				from = to
			}
			i := bytes.IndexByte(buf[from:to], '\r')
			if i < 0 {
				if len(buf) >= limit {
					return 0, ErrReplyTooBig
				}
				s.scanned = to
				s.need = len(buf) + 1
				return 0, nil
			}
			cr := from + i
			if cr+1 >= len(buf) {
				s.scanned = cr
				s.need = cr + 2
				return 0, nil
			}
			if buf[cr+1] != '\n' {
				return 0, ErrReplyCRLF
			}
			if (typ == ',' || typ == '(') && cr == s.pos+1 {
				return 0, ErrReplyValue
			}
			s.scanned = 0
			s.pos = cr + 2
			if s.valueDone() {
				return s.pos, nil
			}
		case ':':
			_, end, err := s.header(buf, ErrReplyValue)
			if end == 0 || err != nil {
				return 0, err
			}
			s.pos = end
			if s.valueDone() {
				return s.pos, nil
			}
		case '#', '_':
			end, err := s.shortLine(buf)
			if end == 0 || err != nil {
				return 0, err
			}
			body := buf[s.pos+1 : end-2]
			if typ == '#' && (len(body) != 1 || (body[0] != 't' && body[0] != 'f')) ||
				typ == '_' && len(body) != 0 {
				return 0, ErrReplyValue
			}
			s.pos = end
			if s.valueDone() {
				return s.pos, nil
			}
		case '$', '!', '=':
			blen, end, err := s.header(buf, ErrReplyLength)
			if end == 0 || err != nil {
				return 0, err
			}
			if blen < -1 || (blen == -1 && typ != '$') || blen > s.lim.MaxBulkBytes {
				return 0, ErrReplyLength
			}
			s.pos = end
			if blen == -1 { // RESP2 null bulk string
				if s.valueDone() {
					return s.pos, nil
				}
				continue
			}
			s.bulkLen = blen
			s.bulkTyp = typ
		case '*', '%', '~', '>', '|':
			count, end, err := s.header(buf, ErrReplyLength)
			if end == 0 || err != nil {
				return 0, err
			}
			if count < -1 || (count == -1 && typ != '*') || count > s.lim.MaxArrayLen {
				return 0, ErrReplyLength
			}
			s.pos = end
			if count == -1 { // RESP2 null array
				if s.valueDone() {
					return s.pos, nil
				}
				continue
			}
			if typ == '%' || typ == '|' {
				count *= 2 // no overflow: count <= math.MaxInt32
			}
			if typ != '|' {
				count-- // the aggregate itself was one of the values owed
			}
			if s.owed += count; s.owed > maxOwedValues {
				return 0, ErrReplyLength
			}
			if s.owed == 0 {
				return s.pos, nil // an empty aggregate ended the reply
			}
		default:
			return 0, ErrReplyType
		}
	}
}

// header reads an integer line at s.pos (a length, a count or an
// integer reply); end == 0 with a nil error while it is incomplete.
// notInt is the error for a line that is not an integer.
func (s *ReplyScanner) header(buf []byte, notInt error) (v int64, end int, err error) {
	v, end, st := countLine(buf, s.pos)
	switch st {
	case lineOK:
		return v, end, nil
	case lineIncomplete:
		s.need = end
		return 0, 0, nil
	case lineTooBig:
		return 0, 0, ErrReplyTooBig
	case lineNoLF:
		return 0, 0, ErrReplyCRLF
	}
	if buf[s.pos] != ':' && buf[s.pos+1] == '?' && buf[s.pos+2] == '\r' { // the line is complete: in bounds
		return 0, 0, ErrReplyStreamed
	}
	return 0, 0, notInt
}

// shortLine reads a small non-integer line ("#t", "_") at s.pos and
// returns the offset just past its CRLF; 0 with a nil error while
// incomplete.
func (s *ReplyScanner) shortLine(buf []byte) (end int, err error) {
	from := s.pos + 1
	to := min(from+maxCountBytes+1, len(buf))
	cr := bytes.IndexByte(buf[from:to], '\r')
	if cr < 0 {
		if len(buf)-from > maxCountBytes {
			return 0, ErrReplyTooBig
		}
		s.need = len(buf) + 1
		return 0, nil
	}
	cr += from
	if cr+1 >= len(buf) {
		s.need = cr + 2
		return 0, nil
	}
	if buf[cr+1] != '\n' {
		return 0, ErrReplyCRLF
	}
	return cr + 2, nil
}

// valueDone records that one value finished and reports whether that
// completed the whole reply.
func (s *ReplyScanner) valueDone() bool {
	s.owed--
	return s.owed == 0
}
