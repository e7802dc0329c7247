package resp

import "bytes"

// Command is one parsed client request. Args alias the buffer passed to
// Parse and the parser's own storage: they are valid only until the next
// Parse or Reset call on the parser that returned them.
type Command struct {
	Args [][]byte
	// Inline is set when the request came as an inline line; the proxy
	// re-encodes it as multibulk to forward it, because the argument bytes
	// (after unquoting) are not the wire bytes.
	Inline bool
}

// span locates one argument of the current frame. Offsets rather than
// slices, because the caller may hand us a re-allocated buffer on the next
// call; slices are built only once the frame is complete.
type span struct {
	start, end int
	scratch    bool // in p.scratch (an inline argument that had quotes) instead of buf
}

const (
	reqIdle      = iota // no byte of the current frame examined yet
	reqInline           // looking for the end of an inline line
	reqMultibulk        // "*n" read; reading "$len" lines and bulk data
)

// Storage kept across frames is dropped when a frame made it grow past
// these, so one huge command does not pin memory for the connection's life.
const (
	maxRetainedArgs    = 1024
	maxRetainedScratch = 16 << 10
)

// RequestParser parses client requests incrementally, like redis-server's
// processMultibulkBuffer: it remembers how far into the current frame it got
// (as offsets, because the caller's buffer may be re-allocated between calls
// but always starts at the beginning of the current frame and only grows),
// so a 64 MB value is not re-scanned on every read.
//
// A RequestParser is owned by one client connection (in the proxy, by that
// connection's event loop); it is not safe for concurrent use.
type RequestParser struct {
	lim Limits

	state     int
	pos       int   // offset of the first byte not yet consumed in the frame
	scanned   int   // inline: bytes of the frame already searched for '\n'
	remaining int64 // multibulk: arguments still to come
	bulkLen   int64 // multibulk: length of the bulk at pos, -1 before its "$len" line
	need      int

	spans   []span
	args    [][]byte
	scratch []byte // inline arguments that had quotes, unescaped
}

// NewRequestParser returns a parser enforcing lim (zero fields: defaults).
func NewRequestParser(lim Limits) *RequestParser {
	p := &RequestParser{}
	p.SetLimits(lim)
	p.Reset()
	return p
}

// SetLimits changes the limits, e.g. to DefaultLimits after AUTH succeeds.
// Call it between frames; mid-frame it applies to whatever is checked next.
func (p *RequestParser) SetLimits(lim Limits) {
	p.lim = lim.normalized()
}

// Reset forgets the current partial frame, e.g. when the caller discards its
// buffer. Args returned earlier become invalid.
func (p *RequestParser) Reset() {
	p.state = reqIdle
	p.pos = 0
	p.scanned = 0
	p.remaining = 0
	p.bulkLen = -1
	p.need = 0
}

// Need returns, after Parse reported an incomplete frame, a lower bound of
// the frame's total length, always greater than the length of the buffer
// Parse saw. Calling Parse again with fewer bytes is allowed but pointless.
// After a complete frame or an error it returns 0.
func (p *RequestParser) Need() int { return p.need }

// Parse looks at buf, which starts at the first byte of the current request.
//   - complete: n > 0 is the frame length and cmd.Args holds the arguments;
//     len(cmd.Args) == 0 for an empty inline line or "*0"/"*-1", which the
//     caller skips, as redis does.
//   - incomplete: n == 0 and err == nil; Need() then is a lower bound
//     (> len(buf)) of the bytes the frame needs.
//   - malformed: err is one of the package's request errors; the caller
//     replies "-ERR "+err.Error() and closes the connection.
//
// After a complete frame the parser is ready for the next one (the caller
// then passes buf[n:]). Between incomplete calls buf must keep its prefix:
// it may be a different (re-allocated, longer) slice with the same bytes.
func (p *RequestParser) Parse(buf []byte) (cmd Command, n int, err error) {
	if p.pos > len(buf) || p.scanned > len(buf) {
		// The caller broke the "only grows" contract; our offsets are
		// meaningless, but starting the frame over is always correct.
		p.Reset()
	}
	if p.state == reqIdle {
		if len(buf) == 0 {
			p.need = 1
			return Command{}, 0, nil
		}
		p.startFrame()
		if buf[0] == '*' {
			p.state = reqMultibulk
		} else {
			p.state = reqInline
		}
	}
	if p.state == reqInline {
		cmd, n, err = p.parseInline(buf)
	} else {
		cmd, n, err = p.parseMultibulk(buf)
	}
	if n > 0 || err != nil {
		p.Reset()
	}
	return cmd, n, err
}

// startFrame recycles the argument storage of the previous frame, whose
// Args the caller has now given up.
func (p *RequestParser) startFrame() {
	if cap(p.args) > maxRetainedArgs {
		p.args, p.spans = nil, nil
	}
	if cap(p.scratch) > maxRetainedScratch {
		p.scratch = nil
	}
	p.args = p.args[:0]
	p.spans = p.spans[:0]
	p.scratch = p.scratch[:0]
}

func (p *RequestParser) parseMultibulk(buf []byte) (Command, int, error) {
	if p.pos == 0 { // the "*n" line is not in yet
		count, end, err := p.countLine(buf, 0, ErrTooBigMultibulkCount, ErrInvalidMultibulkLength)
		if end == 0 || err != nil {
			return Command{}, 0, err
		}
		switch {
		case count > p.lim.MaxArrayLen:
			if p.lim.Unauthenticated {
				return Command{}, 0, ErrUnauthenticatedMultibulkLength
			}
			return Command{}, 0, ErrInvalidMultibulkLength
		case count <= 0:
			// Redis skips any count <= 0 (processMultibulkBuffer: "if
			// (ll <= 0) return C_OK"), "*-10" as "*0": the frame is consumed
			// and nothing runs. Issue 13: refusing it was a difference.
			return Command{}, end, nil
		}
		p.remaining = count
		p.pos = end
		p.bulkLen = -1
	}
	for p.remaining > 0 {
		if p.bulkLen < 0 {
			if p.pos >= len(buf) {
				p.need = p.pos + 1
				return Command{}, 0, nil
			}
			if buf[p.pos] != '$' {
				return Command{}, 0, expectedBulk(buf[p.pos])
			}
			blen, end, err := p.countLine(buf, p.pos, ErrTooBigBulkCount, ErrInvalidBulkLength)
			if end == 0 || err != nil {
				return Command{}, 0, err
			}
			if blen < 0 {
				return Command{}, 0, ErrInvalidBulkLength
			}
			if blen > p.lim.MaxBulkBytes {
				if p.lim.Unauthenticated {
					return Command{}, 0, ErrUnauthenticatedBulkLength
				}
				return Command{}, 0, ErrInvalidBulkLength
			}
			p.pos = end
			p.bulkLen = blen
		}
		// No overflow: pos < len(buf) and bulkLen <= maxBulkCeiling.
		end := p.pos + int(p.bulkLen) + 2
		if end > len(buf) {
			p.need = end
			return Command{}, 0, nil
		}
		if buf[end-2] != '\r' || buf[end-1] != '\n' {
			return Command{}, 0, ErrBulkNotTerminated
		}
		p.spans = append(p.spans, span{start: p.pos, end: end - 2})
		p.pos = end
		p.bulkLen = -1
		p.remaining--
	}
	return Command{Args: p.materialize(buf)}, p.pos, nil
}

// countLine reads the "<type><int>\r\n" line starting at buf[start]. It
// returns end == 0 with a nil error while the line is incomplete (and sets
// p.need). A line whose number runs past maxCountBytes is tooBig; anything
// but a strict integer followed by CRLF is invalid.
func (p *RequestParser) countLine(buf []byte, start int, tooBig, invalid error) (v int64, end int, err error) {
	v, end, st := countLine(buf, start)
	switch st {
	case lineOK:
		return v, end, nil
	case lineIncomplete:
		p.need = end
		return 0, 0, nil
	case lineTooBig:
		return 0, 0, tooBig
	default: // redis skips whatever byte follows the CR; we do not guess
		return 0, 0, invalid
	}
}

func (p *RequestParser) materialize(buf []byte) [][]byte {
	for _, s := range p.spans {
		if s.scratch {
			p.args = append(p.args, p.scratch[s.start:s.end:s.end])
		} else {
			p.args = append(p.args, buf[s.start:s.end:s.end])
		}
	}
	return p.args
}

// parseInline handles a request not starting with '*': one line ended by
// "\n" or "\r\n", split like redis's sdssplitargs.
func (p *RequestParser) parseInline(buf []byte) (Command, int, error) {
	limit := p.lim.MaxInlineBytes
	window := len(buf)
	if window > limit+1 {
		window = limit + 1
	}
	if p.scanned > window { // SetLimits shrank the cap mid-line
		p.scanned = window
	}
	i := bytes.IndexByte(buf[p.scanned:window], '\n')
	if i < 0 {
		// redis: "sdslen(querybuf)-qb_pos > PROTO_INLINE_MAX_SIZE" with no
		// newline. Deciding on the first limit+1 bytes only makes the
		// outcome independent of how the bytes were split into reads.
		if len(buf) > limit {
			return Command{}, 0, ErrTooBigInline
		}
		p.scanned = window
		p.need = len(buf) + 1
		return Command{}, 0, nil
	}
	nl := p.scanned + i
	line := buf[:nl]
	if nl > 0 && line[nl-1] == '\r' {
		line = line[:nl-1]
	}
	if err := p.splitInline(line); err != nil {
		return Command{}, 0, err
	}
	return Command{Args: p.materialize(buf), Inline: true}, nl + 1, nil
}

// splitInline follows redis's sdssplitargs byte for byte, because the proxy
// re-encodes inline requests and must send redis exactly the arguments
// redis itself would have split: blanks separate arguments; "double quotes"
// understand \n \r \t \b \a \xHH and \<any>; 'single quotes' only \'; a
// closing quote must be followed by a blank or the end of the line; a quote
// may open in the middle of an argument (a"b c" is one argument "ab c").
// Two quirks are kept on purpose: \v and \f are blanks between arguments
// but part of an unquoted argument, and since sdssplitargs reads a C
// string, a NUL byte ends the line (redis itself would never see the
// newline after it and wait for more input; we execute what precedes it).
//
// Arguments without quotes alias line; the others are unescaped into
// p.scratch.
func (p *RequestParser) splitInline(line []byte) error {
	if z := bytes.IndexByte(line, 0); z >= 0 {
		line = line[:z]
	}
	// at mimics reading a NUL-terminated C string.
	at := func(i int) byte {
		if i < len(line) {
			return line[i]
		}
		return 0
	}
	i := 0
	for {
		for i < len(line) && isSpace(line[i]) {
			i++
		}
		if i >= len(line) {
			return nil
		}
		start := i
		quoted := false // the argument is being built in p.scratch
		scratchStart := 0
		inq, insq := false, false
		end := 0 // of an unquoted argument
		for done := false; !done; {
			c := at(i)
			switch {
			case inq:
				switch {
				case c == '\\' && at(i+1) == 'x' && isHex(at(i+2)) && isHex(at(i+3)):
					p.scratch = append(p.scratch, unhex(at(i+2))<<4|unhex(at(i+3)))
					i += 3
				case c == '\\' && at(i+1) != 0:
					i++
					e := at(i)
					switch e {
					case 'n':
						e = '\n'
					case 'r':
						e = '\r'
					case 't':
						e = '\t'
					case 'b':
						e = '\b'
					case 'a':
						e = '\a'
					}
					p.scratch = append(p.scratch, e)
				case c == '"':
					if n := at(i + 1); n != 0 && !isSpace(n) {
						return ErrUnbalancedQuotes
					}
					done = true
				case c == 0:
					return ErrUnbalancedQuotes
				default:
					p.scratch = append(p.scratch, c)
				}
			case insq:
				switch {
				case c == '\\' && at(i+1) == '\'':
					i++
					p.scratch = append(p.scratch, '\'')
				case c == '\'':
					if n := at(i + 1); n != 0 && !isSpace(n) {
						return ErrUnbalancedQuotes
					}
					done = true
				case c == 0:
					return ErrUnbalancedQuotes
				default:
					p.scratch = append(p.scratch, c)
				}
			default:
				switch c {
				case ' ', '\n', '\r', '\t', 0:
					done = true
					end = i
				case '"', '\'':
					inq, insq = c == '"', c == '\''
					if !quoted {
						quoted = true
						scratchStart = len(p.scratch)
						p.scratch = append(p.scratch, line[start:i]...)
					}
				default:
					if quoted {
						p.scratch = append(p.scratch, c)
					}
				}
			}
			if at(i) != 0 {
				i++
			}
		}
		if quoted {
			p.spans = append(p.spans, span{start: scratchStart, end: len(p.scratch), scratch: true})
		} else {
			p.spans = append(p.spans, span{start: start, end: end})
		}
	}
}

// isSpace is C's isspace in the "C" locale.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	default:
		return c - '0'
	}
}
