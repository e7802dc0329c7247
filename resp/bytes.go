package resp

import "math"

// EqualFold reports whether b equals s ignoring ASCII case. Command names
// are ASCII; unlike bytes.EqualFold it does no Unicode folding, which is
// both faster and what redis does (strcasecmp).
func EqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if 'A' <= d && d <= 'Z' {
			d += 'a' - 'A'
		}
		if c != d {
			return false
		}
	}
	return true
}

// ParseInt parses b as redis's string2ll does: an optional '-', then
// digits with no leading zero (except "0" itself), nothing else, and no
// overflow. Being exactly as strict as redis matters: a length we accept
// and redis would reject (or the reverse) desynchronises the two.
func ParseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	if len(b) == 1 && b[0] == '0' {
		return 0, true
	}
	neg := false
	i := 0
	if b[0] == '-' {
		neg = true
		i = 1
		if len(b) == 1 {
			return 0, false
		}
	}
	if b[i] < '1' || b[i] > '9' {
		return 0, false
	}
	var v uint64
	if len(b)-i <= 18 {
		// Up to 18 digits cannot overflow a uint64: skip the checks, this
		// is every length and count on the hot path.
		for ; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			v = v*10 + uint64(c-'0')
		}
	} else {
		for ; i < len(b); i++ {
			c := b[i]
			if c < '0' || c > '9' {
				return 0, false
			}
			d := uint64(c - '0')
			if v > math.MaxUint64/10 || (v == math.MaxUint64/10 && d > math.MaxUint64%10) {
				return 0, false
			}
			v = v*10 + d
		}
	}
	if neg {
		if v > 1<<63 {
			return 0, false
		}
		return -int64(v), true // -(1<<63) wraps to math.MinInt64, as wanted
	}
	if v > math.MaxInt64 {
		return 0, false
	}
	return int64(v), true
}
