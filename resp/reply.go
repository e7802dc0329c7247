package resp

import "bytes"

// ReplyScanner finds the end of one complete reply of any RESP2/RESP3 type
// (+ - : $ * _ # , ( ! = % ~ | >), nested to Limits.MaxDepth, without
// building values: the proxy passes reply bytes through untouched and only
// needs to know where each reply ends. An attribute (|) and the reply it
// annotates are one reply here. Every aggregate header, attributes
// included, adds one level of nesting: MaxDepth nested arrays are accepted,
// one more is ErrReplyDepth. RESP2 nulls ("$-1", "*-1") are accepted.
//
// It is incremental like RequestParser: buf always starts at the reply's
// first byte and only grows between calls; progress is kept as an offset
// plus a fixed-size stack of remaining element counts, so scanning never
// allocates and a large bulk is not re-scanned on every read.
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

	// stack[0] is the reply itself (one value); stack[1..top] are the open
	// aggregates, each with the number of elements it still expects.
	top   int
	stack [maxReplyDepth + 1]int64
	attr  [maxReplyDepth + 1]bool // the aggregate is an attribute: it does not fill its parent's slot
}

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
	s.top = 0
	s.stack[0] = 1
	s.attr[0] = false
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
			if s.top >= s.lim.MaxDepth {
				return 0, ErrReplyDepth
			}
			if typ == '%' || typ == '|' {
				count *= 2 // no overflow: count <= math.MaxInt32
			}
			if count == 0 {
				if typ == '|' {
					continue // annotates nothing yet; the reply follows
				}
				if s.valueDone() {
					return s.pos, nil
				}
				continue
			}
			s.top++
			s.stack[s.top] = count
			s.attr[s.top] = typ == '|'
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

// valueDone records that one value finished at the current nesting level
// and reports whether that completed the whole reply.
func (s *ReplyScanner) valueDone() bool {
	for {
		s.stack[s.top]--
		if s.stack[s.top] > 0 {
			return false
		}
		if s.top == 0 {
			return true
		}
		wasAttr := s.attr[s.top]
		s.top--
		if wasAttr {
			// The attribute is complete; the value it annotates still has
			// to come and fills the slot, so the parent keeps its count.
			return false
		}
	}
}
