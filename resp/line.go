package resp

const (
	lineOK         = iota
	lineIncomplete // end holds the minimum buffer length needed
	lineTooBig     // no CR within maxCountBytes
	lineNoLF       // CR not followed by LF
	lineNotInt     // not a string2ll integer
)

// countLine reads the "<type><integer>\r\n" line starting at buf[start]:
// request counts and lengths, reply headers and integers. It returns the
// integer and the offset just past the LF.
func countLine(buf []byte, start int) (v int64, end int, status int) {
	from := start + 1
	// Fast path, one pass: 1-18 digits without sign or leading zero, then
	// CRLF. That is every length a real client or server sends; anything
	// else takes the general path below, which gives the same answer.
	i := from
	for i < len(buf) && i-from < 18 && buf[i]-'0' <= 9 {
		v = v*10 + int64(buf[i]-'0')
		i++
	}
	if i > from && i+1 < len(buf) && buf[i] == '\r' && buf[i+1] == '\n' && (buf[from] != '0' || i == from+1) {
		return v, i + 2, lineOK
	}
	to := from + maxCountBytes + 1
	if to > len(buf) {
		to = len(buf)
	}
	// A loop beats bytes.IndexByte here: the number is 1-3 bytes long.
	cr := -1
	for i := from; i < to; i++ {
		if buf[i] == '\r' {
			cr = i
			break
		}
	}
	if cr < 0 {
		if len(buf)-from > maxCountBytes {
			return 0, 0, lineTooBig
		}
		return 0, len(buf) + 1, lineIncomplete
	}
	if cr+1 >= len(buf) {
		return 0, cr + 2, lineIncomplete
	}
	if buf[cr+1] != '\n' {
		return 0, 0, lineNoLF
	}
	v, ok := ParseInt(buf[from:cr])
	if !ok {
		return 0, 0, lineNotInt
	}
	return v, cr + 2, lineOK
}
