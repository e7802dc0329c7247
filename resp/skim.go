package resp

// Skim is the fast path for a stream whose frames are nearly always whole,
// well-formed multibulk commands (a master's replication stream): it finds
// where the frame at the start of buf ends and returns its argument count
// and first two arguments (second is nil for a single argument), without
// the per-argument bookkeeping Parse does for a client's request. The
// replication link skimmed each write at SET pipeline 16 for 7% of the
// proxy's CPU with Parse.
//
// ok is false for everything else: an incomplete frame, an inline command,
// "*0" and other counts Parse consumes without a command, any malformed
// line, a count or length over p's limits, and any call while p is in the
// middle of a frame. The caller then hands the same bytes to Parse, which
// decides them exactly as it always has; Skim changes no state of p.
//
// When ok, Parse(buf) on the idle p would return the same n, len(Args) ==
// argc, Args[0] == first and, for argc > 1, Args[1] == second
// (FuzzSkimAgreesWithParse).
func (p *RequestParser) Skim(buf []byte) (n, argc int, first, second []byte, ok bool) {
	if p.state != reqIdle || len(buf) == 0 || buf[0] != '*' {
		return 0, 0, nil, nil, false
	}
	count, pos, st := countLine(buf, 0)
	if st != lineOK || count <= 0 || count > p.lim.MaxArrayLen {
		return 0, 0, nil, nil, false
	}
	for k := int64(0); k < count; k++ {
		if pos >= len(buf) || buf[pos] != '$' {
			return 0, 0, nil, nil, false
		}
		blen, start, st := countLine(buf, pos)
		if st != lineOK || blen < 0 || blen > p.lim.MaxBulkBytes {
			return 0, 0, nil, nil, false
		}
		// No overflow: blen <= MaxBulkBytes, which a ceiling bounds.
		end := start + int(blen)
		if end+2 > len(buf) || buf[end] != '\r' || buf[end+1] != '\n' {
			return 0, 0, nil, nil, false
		}
		switch k {
		case 0:
			first = buf[start:end:end]
		case 1:
			second = buf[start:end:end]
		}
		pos = end + 2
	}
	return pos, int(count), first, second, true
}
