package resp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

type requestCase struct {
	name       string
	in         string
	lim        Limits // zero: defaults
	args       []string
	inline     bool
	n          int   // frame length when complete; 0 means len(in)
	err        error // matched with errors.Is
	errText    string
	incomplete bool
}

var big64K = strings.Repeat("a", 64<<10)

// requestCases is shared with the fuzz targets as seeds.
var requestCases = []requestCase{
	// Multibulk.
	{name: "ping", in: "*1\r\n$4\r\nPING\r\n", args: []string{"PING"}},
	{name: "set", in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nvalue\r\n", args: []string{"SET", "k", "value"}},
	{name: "crlf inside bulk", in: "*2\r\n$3\r\nGET\r\n$4\r\na\r\nb\r\n", args: []string{"GET", "a\r\nb"}},
	{name: "binary bulk", in: "*2\r\n$4\r\nECHO\r\n$4\r\n\x00\xff$*\r\n", args: []string{"ECHO", "\x00\xff$*"}},
	{name: "empty bulk", in: "*2\r\n$4\r\nECHO\r\n$0\r\n\r\n", args: []string{"ECHO", ""}},
	{name: "star zero", in: "*0\r\n", args: nil},
	{name: "star minus one", in: "*-1\r\n", args: nil},
	{name: "pipeline first frame", in: "*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nPING\r\n", args: []string{"PING"}, n: 14},
	{name: "star zero then more", in: "*0\r\n*1\r\n$4\r\nPING\r\n", args: nil, n: 4},
	{name: "max int32 count waits", in: "*2147483647\r\n", incomplete: true},
	{name: "max bulk waits", in: "*1\r\n$536870912\r\n", incomplete: true},

	// Inline.
	{name: "inline ping", in: "PING\r\n", args: []string{"PING"}, inline: true},
	{name: "inline bare LF", in: "PING\n", args: []string{"PING"}, inline: true},
	{name: "inline args", in: "SET k v\r\n", args: []string{"SET", "k", "v"}, inline: true},
	{name: "inline blanks and tabs", in: "  SET \t k\t\tv  \r\n", args: []string{"SET", "k", "v"}, inline: true},
	{name: "inline CRLF only", in: "\r\n", inline: true},
	{name: "inline LF only", in: "\n", inline: true},
	{name: "inline blanks only", in: " \t \r\n", inline: true},
	{name: "inline CR CR LF", in: "PING\r\r\n", args: []string{"PING"}, inline: true},
	{name: "inline CR separates", in: "GET k\rx\r\n", args: []string{"GET", "k", "x"}, inline: true},
	{name: "inline then pipeline", in: "PING\r\nPING\r\n", args: []string{"PING"}, inline: true, n: 6},
	{name: "inline double quotes", in: "SET k \"hello world\"\r\n", args: []string{"SET", "k", "hello world"}, inline: true},
	{name: "inline escapes", in: `ECHO "a\nb\r\t\b\a\x41\x7a\"\\\q"` + "\r\n", args: []string{"ECHO", "a\nb\r\t\b\aAz\"\\q"}, inline: true},
	{name: "inline bad hex is literal", in: `ECHO "\xZZ\x4"` + "\n", args: []string{"ECHO", "xZZx4"}, inline: true},
	{name: "inline hex high byte", in: `ECHO "\xff\x00"` + "\n", args: []string{"ECHO", "\xff\x00"}, inline: true},
	{name: "inline single quotes", in: `SET k 'it\'s a\nb'` + "\r\n", args: []string{"SET", "k", `it's a\nb`}, inline: true},
	{name: "inline empty quoted", in: `SET k ""` + "\r\n", args: []string{"SET", "k", ""}, inline: true},
	{name: "inline empty single quoted", in: "SET k ''\t\r\n", args: []string{"SET", "k", ""}, inline: true},
	{name: "inline quote mid argument", in: "SET k a\"b c\"\r\n", args: []string{"SET", "k", "ab c"}, inline: true},
	{name: "inline quote then vtab", in: "ECHO \"a\"\vb\r\n", args: []string{"ECHO", "a", "b"}, inline: true},
	{name: "inline vtab inside argument", in: "ECHO a\vb\r\n", args: []string{"ECHO", "a\vb"}, inline: true},
	{name: "inline leading vtab skipped", in: "\v\fECHO x\r\n", args: []string{"ECHO", "x"}, inline: true},
	{name: "inline NUL ends line", in: "ECHO a\x00b \"c\r\n", args: []string{"ECHO", "a"}, inline: true},
	{name: "inline 64KiB line", in: big64K + "\n", args: []string{big64K}, inline: true},
	{name: "inline limit honoured ok", in: "ECHO 12345\n", lim: Limits{MaxInlineBytes: 10}, args: []string{"ECHO", "12345"}, inline: true},
	{name: "inline waits", in: "PING", incomplete: true},
	{name: "inline waits after CR", in: "PING\r", incomplete: true},

	// Incomplete multibulk.
	{name: "empty buffer", in: "", incomplete: true},
	{name: "star only", in: "*", incomplete: true},
	{name: "count without CR", in: "*1", incomplete: true},
	{name: "count CR", in: "*1\r", incomplete: true},
	{name: "header only", in: "*1\r\n", incomplete: true},
	{name: "dollar only", in: "*1\r\n$", incomplete: true},
	{name: "partial data", in: "*1\r\n$3\r\nfo", incomplete: true},
	{name: "data without CRLF", in: "*1\r\n$3\r\nfoo", incomplete: true},
	{name: "data CR", in: "*1\r\n$3\r\nfoo\r", incomplete: true},
	{name: "second arg missing", in: "*2\r\n$3\r\nfoo\r\n", incomplete: true},

	// Malformed multibulk count.
	{name: "count not numeric", in: "*x\r\n", err: ErrInvalidMultibulkLength},
	{name: "count empty", in: "*\r\n", err: ErrInvalidMultibulkLength},
	{name: "count plus sign", in: "*+1\r\n", err: ErrInvalidMultibulkLength},
	{name: "count leading zero", in: "*01\r\n", err: ErrInvalidMultibulkLength},
	{name: "count space", in: "* 1\r\n", err: ErrInvalidMultibulkLength},
	{name: "count minus zero", in: "*-0\r\n", err: ErrInvalidMultibulkLength},
	{name: "count minus two is skipped", in: "*-2\r\n", args: nil},
	{name: "count minus ten then more", in: "*-10\r\n*1\r\n$4\r\nPING\r\n", args: nil, n: 6},
	{name: "count most negative is skipped", in: "*-9223372036854775808\r\n", args: nil},
	{name: "count above INT_MAX", in: "*2147483648\r\n", err: ErrInvalidMultibulkLength},
	{name: "count overflows int64", in: "*99999999999999999999\r\n", err: ErrInvalidMultibulkLength},
	{name: "count CR without LF", in: "*1\rX$4\r\nPING\r\n", err: ErrInvalidMultibulkLength},
	{name: "count 32 bytes", in: "*" + strings.Repeat("1", 32) + "\r\n", err: ErrInvalidMultibulkLength},
	{name: "count too long", in: "*" + strings.Repeat("1", 33), err: ErrTooBigMultibulkCount},
	{name: "count above limit", in: "*5\r\n", lim: Limits{MaxArrayLen: 4}, err: ErrInvalidMultibulkLength},
	{name: "count at limit", in: "*4\r\n", lim: Limits{MaxArrayLen: 4}, incomplete: true},

	// Malformed bulk header.
	{name: "bulk not numeric", in: "*1\r\n$x\r\n", err: ErrInvalidBulkLength},
	{name: "bulk empty", in: "*1\r\n$\r\n", err: ErrInvalidBulkLength},
	{name: "bulk negative", in: "*1\r\n$-1\r\n", err: ErrInvalidBulkLength},
	{name: "bulk very negative", in: "*1\r\n$-9223372036854775808\r\n", err: ErrInvalidBulkLength},
	{name: "bulk huge", in: "*1\r\n$9223372036854775807\r\n", err: ErrInvalidBulkLength},
	{name: "bulk above proto-max-bulk-len", in: "*1\r\n$536870913\r\n", err: ErrInvalidBulkLength},
	{name: "bulk CR without LF", in: "*1\r\n$3\rXfoo\r\n", err: ErrInvalidBulkLength},
	{name: "bulk count too long", in: "*1\r\n$" + strings.Repeat("1", 33), err: ErrTooBigBulkCount},
	{name: "bulk limit honoured", in: "*1\r\n$4\r\n", lim: Limits{MaxBulkBytes: 3}, err: ErrInvalidBulkLength},
	{name: "bulk at limit", in: "*1\r\n$3\r\nabc\r\n", lim: Limits{MaxBulkBytes: 3}, args: []string{"abc"}},
	{name: "expected dollar", in: "*1\r\nfoo\r\n", err: ErrExpectedBulk, errText: "Protocol error: expected '$', got 'f'"},
	{name: "expected dollar got CR", in: "*1\r\n\r\n", err: ErrExpectedBulk, errText: "Protocol error: expected '$', got ' '"},
	{name: "expected dollar got colon", in: "*2\r\n$1\r\na\r\n:1\r\n", err: ErrExpectedBulk, errText: "Protocol error: expected '$', got ':'"},

	// Bulk data not followed by CRLF.
	{name: "bulk data too long", in: "*1\r\n$3\r\nfooX\r\n", err: ErrBulkNotTerminated},
	{name: "bulk data CR then junk", in: "*1\r\n$3\r\nfoo\rX", err: ErrBulkNotTerminated},
	{name: "bulk data LF only", in: "*2\r\n$3\r\nfoo\n$1\r\nx\r\n", err: ErrBulkNotTerminated},
	{name: "empty bulk not terminated", in: "*1\r\n$0\r\nXY", err: ErrBulkNotTerminated},

	// Inline errors.
	{name: "unbalanced double", in: "SET k \"abc\r\n", err: ErrUnbalancedQuotes},
	{name: "unbalanced single", in: "SET k 'abc\r\n", err: ErrUnbalancedQuotes},
	{name: "closing double then char", in: "SET k \"abc\"d\r\n", err: ErrUnbalancedQuotes},
	{name: "closing single then char", in: "SET k 'abc'd\r\n", err: ErrUnbalancedQuotes},
	{name: "backslash at end of quote", in: "ECHO \"abc\\\r\n", err: ErrUnbalancedQuotes},
	{name: "escaped closing quote", in: "ECHO \"abc\\\"\r\n", err: ErrUnbalancedQuotes},
	{name: "NUL inside quotes", in: "ECHO \"a\x00\"\r\n", err: ErrUnbalancedQuotes},
	{name: "inline too long no newline", in: big64K + "a", err: ErrTooBigInline},
	{name: "inline too long with newline", in: big64K + "a\n", err: ErrTooBigInline},
	{name: "inline limit honoured", in: "ECHO 123456\n", lim: Limits{MaxInlineBytes: 10}, err: ErrTooBigInline},

	// Unauthenticated caps, with redis's texts.
	{name: "unauth count", in: "*11\r\n", lim: UnauthenticatedLimits(), err: ErrUnauthenticatedMultibulkLength},
	{name: "unauth count ok", in: "*10\r\n", lim: UnauthenticatedLimits(), incomplete: true},
	{name: "unauth bulk", in: "*1\r\n$16385\r\n", lim: UnauthenticatedLimits(), err: ErrUnauthenticatedBulkLength},
	{name: "unauth bulk ok", in: "*1\r\n$16384\r\n", lim: UnauthenticatedLimits(), incomplete: true},
	{name: "unauth negative bulk", in: "*1\r\n$-1\r\n", lim: UnauthenticatedLimits(), err: ErrInvalidBulkLength},
	{name: "unauth bad count", in: "*x\r\n", lim: UnauthenticatedLimits(), err: ErrInvalidMultibulkLength},
	{name: "unauth auth command", in: "*3\r\n$4\r\nAUTH\r\n$4\r\nuser\r\n$4\r\npass\r\n", lim: UnauthenticatedLimits(), args: []string{"AUTH", "user", "pass"}},
}

func TestRequestParser(t *testing.T) {
	for _, tc := range requestCases {
		t.Run(tc.name, func(t *testing.T) {
			p := NewRequestParser(tc.lim)
			got := parseOnce(p, []byte(tc.in))
			switch {
			case tc.err != nil:
				if !errors.Is(got.err, tc.err) || got.n != 0 {
					t.Fatalf("got %v, want error %q", got, tc.err)
				}
				if tc.errText != "" && got.err.Error() != tc.errText {
					t.Fatalf("error text %q, want %q", got.err.Error(), tc.errText)
				}
			case tc.incomplete:
				if !got.incomplete {
					t.Fatalf("got %v, want incomplete", got)
				}
				if p.Need() <= len(tc.in) {
					t.Fatalf("Need()=%d, want > %d", p.Need(), len(tc.in))
				}
			default:
				wantN := tc.n
				if wantN == 0 {
					wantN = len(tc.in)
				}
				if got.err != nil || got.n != wantN || got.inline != tc.inline {
					t.Fatalf("got %v, want n=%d inline=%v", got, wantN, tc.inline)
				}
				if !sameArgs(got.args, strArgs(tc.args)) {
					t.Fatalf("args %q, want %q", got.args, tc.args)
				}
			}
			// The same bytes arriving one at a time, in re-allocated
			// buffers, must give exactly the same answer.
			if inc := parsePrefixes(t, tc.lim, []byte(tc.in)); !sameResult(inc, got) {
				t.Fatalf("byte by byte: %v, whole buffer: %v", inc, got)
			}
		})
	}
}

func strArgs(ss []string) [][]byte {
	if len(ss) == 0 {
		return nil
	}
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

func TestRequestParserNeedForBulk(t *testing.T) {
	hdr := "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\n"
	p := NewRequestParser(Limits{})
	for _, k := range []int{len(hdr), len(hdr) + 3, len(hdr) + 10, len(hdr) + 11} {
		buf := []byte(hdr + strings.Repeat("v", k-len(hdr)))
		if _, n, err := p.Parse(buf); n != 0 || err != nil {
			t.Fatalf("len %d: n=%d err=%v", k, n, err)
		}
		if want := len(hdr) + 10 + 2; p.Need() != want {
			t.Fatalf("len %d: Need()=%d, want %d", k, p.Need(), want)
		}
	}
}

func TestRequestParserAliasing(t *testing.T) {
	t.Run("multibulk", func(t *testing.T) {
		buf := []byte("*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n")
		cmd, _, err := NewRequestParser(Limits{}).Parse(buf)
		if err != nil {
			t.Fatal(err)
		}
		if &cmd.Args[1][0] != &buf[17] {
			t.Fatal("multibulk argument does not alias the input")
		}
		if cap(cmd.Args[0]) != len(cmd.Args[0]) {
			t.Fatal("argument capacity reaches into the next bytes; an append would overwrite them")
		}
	})
	t.Run("plain inline", func(t *testing.T) {
		buf := []byte("GET key \"q\"\r\n")
		cmd, _, err := NewRequestParser(Limits{}).Parse(buf)
		if err != nil {
			t.Fatal(err)
		}
		if &cmd.Args[0][0] != &buf[0] || &cmd.Args[1][0] != &buf[4] {
			t.Fatal("plain inline arguments do not alias the input")
		}
		if string(cmd.Args[2]) != "q" {
			t.Fatalf("quoted argument %q", cmd.Args[2])
		}
	})
}

func TestRequestParserResetAndReuse(t *testing.T) {
	p := NewRequestParser(Limits{})
	if _, n, _ := p.Parse([]byte("*2\r\n$3\r\nGET\r\n")); n != 0 {
		t.Fatal("want incomplete")
	}
	p.Reset()
	cmd, n, err := p.Parse([]byte("PING\r\n"))
	if err != nil || n != 6 || !cmd.Inline || string(cmd.Args[0]) != "PING" {
		t.Fatalf("after Reset: %q n=%d err=%v", cmd.Args, n, err)
	}
	// A shorter buffer than before breaks the contract; the parser must
	// start over rather than index past the end.
	p.Parse([]byte("*2\r\n$3\r\nGET\r\n$3\r\nk"))
	cmd, n, err = p.Parse([]byte("*1\r\n$1\r\nx\r\n"))
	if err != nil || n != 11 || string(cmd.Args[0]) != "x" {
		t.Fatalf("after shrink: %q n=%d err=%v", cmd.Args, n, err)
	}
}

func TestRequestParserSetLimits(t *testing.T) {
	p := NewRequestParser(UnauthenticatedLimits())
	big := AppendCommandStrings(nil, "SET", "k", strings.Repeat("v", 20000))
	if _, _, err := p.Parse(big); !errors.Is(err, ErrUnauthenticatedBulkLength) {
		t.Fatalf("before AUTH: %v", err)
	}
	p.SetLimits(DefaultLimits())
	if _, n, err := p.Parse(big); err != nil || n != len(big) {
		t.Fatalf("after AUTH: n=%d err=%v", n, err)
	}
}

func TestRequestParserReleasesBigStorage(t *testing.T) {
	args := make([]string, 5000)
	for i := range args {
		args[i] = "a"
	}
	p := NewRequestParser(Limits{})
	cmd, _, err := p.Parse(AppendCommandStrings(nil, args...))
	if err != nil || len(cmd.Args) != 5000 {
		t.Fatalf("%d args, %v", len(cmd.Args), err)
	}
	p.Parse([]byte("*1\r\n$4\r\nPING\r\n"))
	if cap(p.args) > maxRetainedArgs {
		t.Fatalf("parser still holds %d argument slots", cap(p.args))
	}
}

// A 64 MB value arriving in 64 KiB reads must cost O(1) Parse calls: once
// the "$len" line is in, Need() is the whole frame, so the caller just
// keeps reading until then.
func TestRequestParserBigValueNotRescanned(t *testing.T) {
	if testing.Short() {
		t.Skip("64 MB")
	}
	const size = 64 << 20
	const chunk = 64 << 10
	hdr := "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$67108864\r\n"
	frame := make([]byte, 0, len(hdr)+size+2)
	frame = append(frame, hdr...)
	frame = append(frame, bytes.Repeat([]byte{'v'}, size)...)
	frame = append(frame, '\r', '\n')

	p := NewRequestParser(Limits{})
	var in []byte
	need, calls := 0, 0
	for off := 0; off < len(frame); off += chunk {
		in = append(in, frame[off:min(off+chunk, len(frame))]...)
		if len(in) < need {
			continue
		}
		calls++
		cmd, n, err := p.Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			need = p.Need()
			if want := len(hdr) + size + 2; need != want {
				t.Fatalf("Need()=%d after the header, want %d", need, want)
			}
			if cap(in) < need { // what the proxy does: size the buffer once
				in = append(make([]byte, 0, need), in...)
			}
			continue
		}
		if n != len(frame) || len(cmd.Args) != 3 || len(cmd.Args[2]) != size {
			t.Fatalf("n=%d args=%d", n, len(cmd.Args))
		}
		if calls > 2 {
			t.Fatalf("%d Parse calls for one 64 MB frame, want 2", calls)
		}
		return
	}
	t.Fatal("frame never completed")
}

func TestRequestParserAllocs(t *testing.T) {
	cases := map[string][]byte{
		"multibulk":       []byte("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n"),
		"inline":          []byte("SET key value\r\n"),
		"inline quoted":   []byte("SET key \"a b\\x41\"\r\n"),
		"empty multibulk": []byte("*0\r\n"),
	}
	for name, buf := range cases {
		t.Run(name, func(t *testing.T) {
			p := NewRequestParser(Limits{})
			p.Parse(buf) // warm-up: the parser sizes its argument storage
			allocs := testing.AllocsPerRun(100, func() {
				if _, n, err := p.Parse(buf); n != len(buf) || err != nil {
					t.Fatalf("n=%d err=%v", n, err)
				}
			})
			if allocs != 0 {
				t.Fatalf("%v allocations per Parse", allocs)
			}
		})
	}
	t.Run("incremental", func(t *testing.T) {
		buf := []byte("*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n")
		p := NewRequestParser(Limits{})
		p.Parse(buf)
		allocs := testing.AllocsPerRun(100, func() {
			for k := 1; k <= len(buf); k++ {
				p.Parse(buf[:k])
			}
		})
		if allocs != 0 {
			t.Fatalf("%v allocations per byte-by-byte frame", allocs)
		}
	})
}

func TestRequestParserSetLimitsMidLine(t *testing.T) {
	p := NewRequestParser(Limits{})
	line := []byte("ECHO " + strings.Repeat("x", 100))
	if _, n, err := p.Parse(line); n != 0 || err != nil {
		t.Fatalf("n=%d err=%v", n, err)
	}
	p.SetLimits(Limits{MaxInlineBytes: 10})
	if _, _, err := p.Parse(append(line, 'y')); !errors.Is(err, ErrTooBigInline) {
		t.Fatalf("err=%v, want %v", err, ErrTooBigInline)
	}
}
