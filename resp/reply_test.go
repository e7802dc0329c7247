package resp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

type replyCase struct {
	name       string
	in         string
	lim        Limits
	n          int // when complete; 0 means len(in)
	err        error
	incomplete bool
}

func nested(open string, depth int, leaf string) string {
	return strings.Repeat(open, depth) + leaf
}

// replyCases is shared with the fuzz targets as seeds.
var replyCases = []replyCase{
	// RESP2.
	{name: "simple", in: "+OK\r\n"},
	{name: "simple empty", in: "+\r\n"},
	{name: "error", in: "-ERR unknown command 'FOO'\r\n"},
	{name: "integer", in: ":1000\r\n"},
	{name: "integer negative", in: ":-9223372036854775808\r\n"},
	{name: "bulk", in: "$5\r\nhello\r\n"},
	{name: "bulk with CRLF inside", in: "$4\r\na\r\nb\r\n"},
	{name: "bulk empty", in: "$0\r\n\r\n"},
	{name: "null bulk", in: "$-1\r\n"},
	{name: "null array", in: "*-1\r\n"},
	{name: "array", in: "*3\r\n:1\r\n$3\r\nfoo\r\n+bar\r\n"},
	{name: "array empty", in: "*0\r\n"},
	{name: "array with nulls", in: "*3\r\n$-1\r\n*-1\r\n_\r\n"},
	{name: "nested arrays", in: "*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n-ERR x\r\n"},
	{name: "exec result", in: "*2\r\n+OK\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"},
	{name: "pipeline first reply", in: "+OK\r\n+OK\r\n", n: 5},
	{name: "array then more", in: "*1\r\n:1\r\n:2\r\n", n: 8},

	// RESP3.
	{name: "null", in: "_\r\n"},
	{name: "bool true", in: "#t\r\n"},
	{name: "bool false", in: "#f\r\n"},
	{name: "double", in: ",3.14159\r\n"},
	{name: "double exponent", in: ",1.5e-300\r\n"},
	{name: "double inf", in: ",inf\r\n"},
	{name: "double minus inf", in: ",-inf\r\n"},
	{name: "double nan", in: ",nan\r\n"},
	{name: "big number", in: "(3492890328409238509324850943850943825024385\r\n"},
	{name: "big number negative", in: "(-3492890328409238509324850943850943825024385\r\n"},
	{name: "blob error", in: "!21\r\nSYNTAX invalid syntax\r\n"},
	{name: "verbatim", in: "=15\r\ntxt:Some string\r\n"},
	{name: "verbatim empty text", in: "=4\r\nmkd:\r\n"},
	{name: "map", in: "%2\r\n+first\r\n:1\r\n+second\r\n:2\r\n"},
	{name: "map empty", in: "%0\r\n"},
	{name: "set", in: "~3\r\n+a\r\n+b\r\n+c\r\n"},
	{name: "push", in: ">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n"},
	{name: "nested map set push", in: "%1\r\n~1\r\n>2\r\n*1\r\n:1\r\n%1\r\n#t\r\n_\r\n+v\r\n"},
	{name: "attribute then value", in: "|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n"},
	{name: "attribute inside array", in: "*2\r\n|1\r\n+ttl\r\n:3600\r\n:1\r\n:2\r\n"},
	{name: "attribute empty", in: "|0\r\n+OK\r\n"},
	{name: "attribute on attribute", in: "|1\r\n+a\r\n+b\r\n|1\r\n+c\r\n+d\r\n:1\r\n"},
	{name: "attribute then pipeline", in: "|1\r\n+a\r\n+b\r\n+OK\r\n+NEXT\r\n", n: 17},
	{name: "depth 64 ok", in: nested("*1\r\n", 64, ":1\r\n")},
	{name: "depth 64 empty ok", in: nested("*1\r\n", 63, "*0\r\n")},
	{name: "depth 64 mixed types", in: nested("%1\r\n+k\r\n", 32, nested(">1\r\n", 31, "~1\r\n+v\r\n"))},
	// Issue 13: a script returning a recursive table made Redis send a
	// reply deeper than the old 64-level cap; the proxy dropped its master
	// connection and the client's later replies came out of step.
	{name: "depth 65 mixed types", in: nested("%1\r\n+k\r\n", 32, nested(">1\r\n", 32, "~1\r\n+v\r\n"))},
	{name: "depth 65", in: nested("*1\r\n", 65, ":1\r\n")},
	{name: "depth 65 empty", in: nested("*1\r\n", 64, "*0\r\n")},
	{name: "depth 65 null", in: nested("*1\r\n", 64, "*-1\r\n")},
	{name: "depth 65 via attribute", in: nested("*1\r\n", 64, "|1\r\n+a\r\n+b\r\n:1\r\n")},
	{name: "depth 10000", in: nested("*1\r\n", 10000, ":1\r\n")},
	{name: "depth 10000 then pipeline", in: nested("*1\r\n", 10000, ":1\r\n") + "+OK\r\n", n: 10000*4 + 4},
	{name: "deep empty map ends early", in: nested("%1\r\n+k\r\n", 200, "%0\r\n") + "+next\r\n", n: 200*8 + 4},
	{name: "values owed beyond any reply", in: strings.Repeat("*2147483647\r\n", 40000), err: ErrReplyLength},
	{name: "big array header waits", in: "*2147483647\r\n", incomplete: true},

	// Incomplete.
	{name: "empty", in: "", incomplete: true},
	{name: "type only", in: "+", incomplete: true},
	{name: "simple no CRLF", in: "+OK", incomplete: true},
	{name: "simple CR", in: "+OK\r", incomplete: true},
	{name: "int CR", in: ":1\r", incomplete: true},
	{name: "bulk header only", in: "$5\r\n", incomplete: true},
	{name: "bulk partial", in: "$5\r\nhel", incomplete: true},
	{name: "bulk missing CRLF", in: "$5\r\nhello", incomplete: true},
	{name: "array missing element", in: "*2\r\n:1\r\n", incomplete: true},
	{name: "map missing value", in: "%1\r\n+k\r\n", incomplete: true},
	{name: "attribute without value", in: "|1\r\n+a\r\n+b\r\n", incomplete: true},
	{name: "nested partial", in: "*2\r\n*2\r\n:1\r\n", incomplete: true},

	// Malformed.
	{name: "bad type byte", in: "?x\r\n", err: ErrReplyType},
	{name: "bad type space", in: " OK\r\n", err: ErrReplyType},
	{name: "streamed chunk type", in: ";4\r\nabcd\r\n", err: ErrReplyType},
	{name: "bad type inside array", in: "*2\r\n:1\r\nX\r\n", err: ErrReplyType},
	{name: "bulk negative", in: "$-2\r\n", err: ErrReplyLength},
	{name: "bulk not numeric", in: "$abc\r\n", err: ErrReplyLength},
	{name: "bulk empty length", in: "$\r\n", err: ErrReplyLength},
	{name: "bulk leading zero", in: "$05\r\nhello\r\n", err: ErrReplyLength},
	{name: "bulk over limit", in: "$4\r\nabcd\r\n", lim: Limits{MaxBulkBytes: 3}, err: ErrReplyLength},
	{name: "bulk above proto-max-bulk-len", in: "$536870913\r\n", err: ErrReplyLength},
	{name: "bulk not terminated", in: "$3\r\nfooX\r\n", err: ErrReplyCRLF},
	{name: "blob error null", in: "!-1\r\n", err: ErrReplyLength},
	{name: "verbatim null", in: "=-1\r\n", err: ErrReplyLength},
	{name: "verbatim too short", in: "=3\r\ntxt\r\n", err: ErrReplyValue},
	{name: "verbatim no colon", in: "=8\r\ntxt-abcd\r\n", err: ErrReplyValue},
	{name: "array negative", in: "*-2\r\n", err: ErrReplyLength},
	{name: "array not numeric", in: "*x\r\n", err: ErrReplyLength},
	{name: "array above limit", in: "*5\r\n", lim: Limits{MaxArrayLen: 4}, err: ErrReplyLength},
	{name: "array above INT_MAX", in: "*2147483648\r\n", err: ErrReplyLength},
	{name: "map null", in: "%-1\r\n", err: ErrReplyLength},
	{name: "set null", in: "~-1\r\n", err: ErrReplyLength},
	{name: "push null", in: ">-1\r\n", err: ErrReplyLength},
	{name: "attribute null", in: "|-1\r\n", err: ErrReplyLength},
	{name: "streamed string", in: "$?\r\n;4\r\nHell\r\n;0\r\n", err: ErrReplyStreamed},
	{name: "streamed array", in: "*?\r\n:1\r\n.\r\n", err: ErrReplyStreamed},
	{name: "streamed map", in: "%?\r\n", err: ErrReplyStreamed},
	{name: "integer not numeric", in: ":abc\r\n", err: ErrReplyValue},
	{name: "integer empty", in: ":\r\n", err: ErrReplyValue},
	{name: "integer overflow", in: ":9223372036854775808\r\n", err: ErrReplyValue},
	{name: "bool bad", in: "#x\r\n", err: ErrReplyValue},
	{name: "bool long", in: "#tt\r\n", err: ErrReplyValue},
	{name: "null with body", in: "_x\r\n", err: ErrReplyValue},
	{name: "double empty", in: ",\r\n", err: ErrReplyValue},
	{name: "big number empty", in: "(\r\n", err: ErrReplyValue},
	{name: "CR without LF", in: "+OK\rX", err: ErrReplyCRLF},
	{name: "header CR without LF", in: "*1\rX", err: ErrReplyCRLF},
	{name: "header too long", in: "*" + strings.Repeat("1", 33), err: ErrReplyTooBig},
	{name: "integer too long", in: ":" + strings.Repeat("1", 33), err: ErrReplyTooBig},
	{name: "simple line over limit", in: "+" + strings.Repeat("x", 9), lim: Limits{MaxBulkBytes: 8}, err: ErrReplyTooBig},
	{name: "simple line at limit", in: "+" + strings.Repeat("x", 8) + "\r\n", lim: Limits{MaxBulkBytes: 8}},
}

func scanOnce(s *ReplyScanner, buf []byte) result {
	n, err := s.Scan(buf)
	return result{n: n, err: err, incomplete: n == 0 && err == nil}
}

func scanPrefixes(t testing.TB, lim Limits, in []byte) result {
	t.Helper()
	s := NewReplyScanner(lim)
	var prev []byte
	for k := 0; k <= len(in); k++ {
		buf := in[:k:k]
		if len(in) <= 4096 || k%4096 == 0 {
			buf = append([]byte(nil), in[:k]...)
			for i := range prev {
				prev[i] = '#'
			}
			prev = buf
		}
		r := scanOnce(s, buf)
		if r.n > k {
			t.Fatalf("prefix %d: n=%d > len(buf)", k, r.n)
		}
		if !r.incomplete {
			return r
		}
		if s.Need() <= k {
			t.Fatalf("prefix %d: incomplete but Need()=%d <= len(buf)", k, s.Need())
		}
	}
	return result{incomplete: true}
}

func TestReplyScanner(t *testing.T) {
	for _, tc := range replyCases {
		t.Run(tc.name, func(t *testing.T) {
			s := NewReplyScanner(tc.lim)
			got := scanOnce(s, []byte(tc.in))
			switch {
			case tc.err != nil:
				if !errors.Is(got.err, tc.err) || got.n != 0 {
					t.Fatalf("got %v, want error %q", got, tc.err)
				}
			case tc.incomplete:
				if !got.incomplete {
					t.Fatalf("got %v, want incomplete", got)
				}
				if s.Need() <= len(tc.in) {
					t.Fatalf("Need()=%d, want > %d", s.Need(), len(tc.in))
				}
			default:
				want := tc.n
				if want == 0 {
					want = len(tc.in)
				}
				if got.err != nil || got.n != want {
					t.Fatalf("got %v, want n=%d", got, want)
				}
			}
			if inc := scanPrefixes(t, tc.lim, []byte(tc.in)); !sameResult(inc, got) {
				t.Fatalf("byte by byte: %v, whole buffer: %v", inc, got)
			}
		})
	}
}

func TestReplyScannerNeedForBulk(t *testing.T) {
	hdr := "*2\r\n:1\r\n$10\r\n"
	s := NewReplyScanner(Limits{})
	for _, extra := range []int{0, 4, 10, 11} {
		buf := []byte(hdr + strings.Repeat("v", extra))
		if n, err := s.Scan(buf); n != 0 || err != nil {
			t.Fatalf("extra %d: n=%d err=%v", extra, n, err)
		}
		if want := len(hdr) + 12; s.Need() != want {
			t.Fatalf("extra %d: Need()=%d, want %d", extra, s.Need(), want)
		}
	}
}

// Long simple lines are searched once, not once per read.
func TestReplyScannerLongLineIncremental(t *testing.T) {
	line := "-ERR " + strings.Repeat("x", 1<<20) + "\r\n"
	s := NewReplyScanner(Limits{})
	for k := 1; k < len(line); k += 4096 {
		if n, err := s.Scan([]byte(line[:k])); n != 0 || err != nil {
			t.Fatalf("prefix %d: n=%d err=%v", k, n, err)
		}
		if s.scanned < k-1 {
			t.Fatalf("prefix %d: only %d bytes remembered as searched", k, s.scanned)
		}
	}
	if n, err := s.Scan([]byte(line)); n != len(line) || err != nil {
		t.Fatalf("n=%d err=%v", n, err)
	}
}

func TestReplyScannerBigValueNotRescanned(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MB")
	}
	const size = 64 << 20
	const chunk = 64 << 10
	hdr := "$67108864\r\n"
	reply := make([]byte, 0, len(hdr)+size+2)
	reply = append(reply, hdr...)
	reply = append(reply, bytes.Repeat([]byte{'v'}, size)...)
	reply = append(reply, '\r', '\n')

	s := NewReplyScanner(Limits{})
	var in []byte
	need, calls := 0, 0
	for off := 0; off < len(reply); off += chunk {
		in = append(in, reply[off:min(off+chunk, len(reply))]...)
		if len(in) < need {
			continue
		}
		calls++
		n, err := s.Scan(in)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			need = s.Need()
			if want := len(hdr) + size + 2; need != want {
				t.Fatalf("Need()=%d after the header, want %d", need, want)
			}
			if cap(in) < need {
				in = append(make([]byte, 0, need), in...)
			}
			continue
		}
		if n != len(reply) || calls > 2 {
			t.Fatalf("n=%d after %d calls", n, calls)
		}
		return
	}
	t.Fatal("reply never completed")
}

func TestReplyScannerResetAndShrink(t *testing.T) {
	s := NewReplyScanner(Limits{})
	s.Scan([]byte("*3\r\n:1\r\n:2\r\n"))
	s.Reset()
	if n, err := s.Scan([]byte("+OK\r\n")); n != 5 || err != nil {
		t.Fatalf("after Reset: n=%d err=%v", n, err)
	}
	s.Scan([]byte("*3\r\n:1\r\n:2\r\n"))
	if n, err := s.Scan([]byte(":7\r\n")); n != 4 || err != nil {
		t.Fatalf("after a shorter buffer: n=%d err=%v", n, err)
	}
}

func TestReplyScannerAllocs(t *testing.T) {
	replies := map[string][]byte{
		"bulk":   []byte("$5\r\nhello\r\n"),
		"nested": []byte("*3\r\n%1\r\n+k\r\n~2\r\n:1\r\n,1.5\r\n|1\r\n+a\r\n#t\r\n$3\r\nfoo\r\n>1\r\n_\r\n"),
		"error":  []byte("-ERR nope\r\n"),
	}
	for name, buf := range replies {
		t.Run(name, func(t *testing.T) {
			s := NewReplyScanner(Limits{})
			allocs := testing.AllocsPerRun(100, func() {
				for k := 1; k <= len(buf); k++ {
					s.Scan(buf[:k])
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per reply", allocs)
			}
		})
	}
}

func TestReplyScannerMatchesReference(t *testing.T) {
	for _, tc := range replyCases {
		t.Run(tc.name, func(t *testing.T) {
			checkReplyAgainstReference(t, tc.lim, []byte(tc.in), scanOnce(NewReplyScanner(tc.lim), []byte(tc.in)))
		})
	}
	r := newRand(testSeed(t))
	for i := 0; i < 2000; i++ {
		rep := genReply(r, 5)
		checkReplyAgainstReference(t, Limits{}, rep, scanOnce(NewReplyScanner(Limits{}), rep))
	}
}

func TestReplyScannerSetLimitsMidLine(t *testing.T) {
	s := NewReplyScanner(Limits{})
	line := []byte("-ERR " + strings.Repeat("x", 100))
	if n, err := s.Scan(line); n != 0 || err != nil {
		t.Fatalf("n=%d err=%v", n, err)
	}
	s.SetLimits(Limits{MaxBulkBytes: 10})
	if _, err := s.Scan(append(line, 'y')); !errors.Is(err, ErrReplyTooBig) {
		t.Fatalf("err=%v, want %v", err, ErrReplyTooBig)
	}
}
