package resp

import (
	"bytes"
	"strconv"
	"strings"
	"testing"
)

// fuzzLimits are small enough for the fuzzer to reach every limit.
var fuzzLimits = []Limits{
	{},
	{MaxInlineBytes: 16, MaxBulkBytes: 8, MaxArrayLen: 3},
	UnauthenticatedLimits(),
}

// addRequestSeeds seeds a request fuzz target with the table's cases.
func addRequestSeeds(f *testing.F) {
	for _, tc := range requestCases {
		if len(tc.in) <= 4096 {
			f.Add([]byte(tc.in))
		}
	}
}

func FuzzRequestParser(f *testing.F) {
	addRequestSeeds(f)
	f.Add([]byte("*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n*0\r\n"))
	f.Add([]byte("SET k \"a\\x00b\" 'c\\'d' e\"f g\"\n*1\r\n$1\r\nx\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range fuzzLimits {
			checkRequestInvariants(t, lim, data)
		}
	})
}

func checkRequestInvariants(t *testing.T, lim Limits, data []byte) {
	p := NewRequestParser(lim)
	whole := parseOnce(p, data)
	switch {
	case whole.err != nil:
		if whole.n != 0 {
			t.Fatalf("error %v with n=%d", whole.err, whole.n)
		}
	case whole.incomplete:
		if p.Need() <= len(data) {
			t.Fatalf("incomplete with Need()=%d <= %d", p.Need(), len(data))
		}
	default:
		if whole.n <= 0 || whole.n > len(data) {
			t.Fatalf("n=%d for %d bytes", whole.n, len(data))
		}
	}
	if inc := parsePrefixes(t, lim, data); !sameResult(inc, whole) {
		t.Fatalf("byte by byte: %v, whole buffer: %v", inc, whole)
	}
	if whole.incomplete || whole.err != nil {
		return
	}
	// The frame alone parses the same; one byte less is incomplete.
	if alone := parseOnce(NewRequestParser(lim), data[:whole.n]); !sameResult(alone, whole) {
		t.Fatalf("frame alone: %v, in context: %v", alone, whole)
	}
	if short := parseOnce(NewRequestParser(lim), data[:whole.n-1]); !short.incomplete {
		t.Fatalf("frame minus one byte: %v", short)
	}
	// What the proxy forwards (inline re-encoded as multibulk) must mean
	// the same arguments.
	if len(whole.args) > 0 {
		enc := AppendCommand(nil, whole.args...)
		again := parseOnce(NewRequestParser(Limits{MaxInlineBytes: lim.MaxInlineBytes}), enc)
		if again.err != nil || again.n != len(enc) || again.inline || !sameArgs(again.args, whole.args) {
			t.Fatalf("re-encoded %q: %v, want args %q", enc, again, whole.args)
		}
	}
	// The parser is ready for the next frame.
	rest := data[whole.n:]
	if next, fresh := parseOnce(p, rest), parseOnce(NewRequestParser(lim), rest); !sameResult(next, fresh) {
		t.Fatalf("next frame: %v, fresh parser: %v", next, fresh)
	}
}

func FuzzReplyScanner(f *testing.F) {
	for _, tc := range replyCases {
		if len(tc.in) <= 4096 {
			f.Add([]byte(tc.in))
		}
	}
	f.Add([]byte("*2\r\n$3\r\nfoo\r\n%1\r\n+a\r\n|1\r\n+b\r\n+c\r\n:1\r\n+OK\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range fuzzLimits {
			checkReplyInvariants(t, lim, data)
		}
	})
}

func checkReplyInvariants(t *testing.T, lim Limits, data []byte) {
	s := NewReplyScanner(lim)
	whole := scanOnce(s, data)
	checkReplyAgainstReference(t, lim, data, whole)
	switch {
	case whole.err != nil:
		if whole.n != 0 {
			t.Fatalf("error %v with n=%d", whole.err, whole.n)
		}
	case whole.incomplete:
		if s.Need() <= len(data) {
			t.Fatalf("incomplete with Need()=%d <= %d", s.Need(), len(data))
		}
	default:
		if whole.n <= 0 || whole.n > len(data) {
			t.Fatalf("n=%d for %d bytes", whole.n, len(data))
		}
	}
	if inc := scanPrefixes(t, lim, data); !sameResult(inc, whole) {
		t.Fatalf("byte by byte: %v, whole buffer: %v", inc, whole)
	}
	if whole.incomplete || whole.err != nil {
		return
	}
	if alone := scanOnce(NewReplyScanner(lim), data[:whole.n]); !sameResult(alone, whole) {
		t.Fatalf("reply alone: %v, in context: %v", alone, whole)
	}
	if short := scanOnce(NewReplyScanner(lim), data[:whole.n-1]); !short.incomplete {
		t.Fatalf("reply minus one byte: %v", short)
	}
	rest := data[whole.n:]
	if next, fresh := scanOnce(s, rest), scanOnce(NewReplyScanner(lim), rest); !sameResult(next, fresh) {
		t.Fatalf("next reply: %v, fresh scanner: %v", next, fresh)
	}
}

// refScan is a deliberately naive reading of one reply: whole buffer,
// recursive, no saved state. It returns the reply length, 0 when
// incomplete, -1 when malformed. The incremental scanner must agree with it.
func refScan(b []byte, lim Limits) int {
	lim = lim.normalized()
	// line returns the offset of the CR ending the line that starts at pos
	// (its type byte), 0 when incomplete, -1 when malformed.
	line := func(pos int, maxBody int) int {
		body := b[pos+1:]
		cr := bytes.IndexByte(body, '\r')
		if cr < 0 || cr > maxBody {
			if len(body) > maxBody {
				return -1
			}
			return 0
		}
		if cr+1 >= len(body) {
			return 0
		}
		if body[cr+1] != '\n' {
			return -1
		}
		return pos + 1 + cr
	}
	// owed mirrors the one limit that is not local to a value: how many
	// values the reply still owes (maxOwedValues). Recursion visits
	// headers in stream order, so the count is the scanner's.
	owed := int64(1)
	var value, one func(pos, depth int) int
	value = func(pos, depth int) int {
		end := one(pos, depth)
		if end > 0 && (strings.IndexByte("*%~>|", b[pos]) < 0 || b[pos+1] == '-') {
			owed-- // a value that is not an aggregate (or a null array)
		}
		return end
	}
	one = func(pos, depth int) int {
		if pos >= len(b) {
			return 0
		}
		typ := b[pos]
		maxBody := maxCountBytes
		if strings.IndexByte("+-,(", typ) >= 0 {
			maxBody = int(lim.MaxBulkBytes)
		} else if strings.IndexByte(":#_$!=*%~>|", typ) < 0 {
			return -1
		}
		cr := line(pos, maxBody)
		if cr <= 0 {
			return cr
		}
		body := string(b[pos+1 : cr])
		end := cr + 2
		switch typ {
		case '+', '-':
			return end
		case ',', '(':
			if body == "" {
				return -1
			}
			return end
		case '#':
			if body != "t" && body != "f" {
				return -1
			}
			return end
		case '_':
			if body != "" {
				return -1
			}
			return end
		}
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil || strconv.FormatInt(n, 10) != body {
			return -1 // also rejects "+1", "01", "-0"
		}
		switch typ {
		case ':':
			return end
		case '$', '!', '=':
			if n == -1 && typ == '$' {
				return end
			}
			if n < 0 || n > lim.MaxBulkBytes {
				return -1
			}
			if int64(len(b)-end) < n+2 {
				return 0
			}
			data := b[end : end+int(n)+2]
			if !bytes.HasSuffix(data, []byte("\r\n")) {
				return -1
			}
			if typ == '=' && (n < 4 || data[3] != ':') {
				return -1
			}
			return end + int(n) + 2
		}
		if n == -1 && typ == '*' {
			return end
		}
		if n < 0 || n > lim.MaxArrayLen {
			return -1
		}
		if typ == '%' || typ == '|' {
			n *= 2
		}
		if owed += n; typ != '|' {
			owed--
		}
		if owed > maxOwedValues {
			return -1
		}
		for ; n > 0; n-- {
			end = value(end, depth+1)
			if end <= 0 {
				return end
			}
		}
		if typ == '|' {
			return value(end, depth) // the annotated reply
		}
		return end
	}
	return value(0, 0)
}

func checkReplyAgainstReference(t *testing.T, lim Limits, data []byte, got result) {
	want := refScan(data, lim)
	switch {
	case want > 0 && (got.err != nil || got.n != want),
		want == 0 && !got.incomplete,
		want < 0 && got.err == nil:
		t.Fatalf("scanner: %v, reference: %d", got, want)
	}
}
