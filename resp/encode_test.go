package resp

import (
	"math"
	"testing"
)

func TestEncoders(t *testing.T) {
	cases := []struct {
		name string
		got  []byte
		want string
	}{
		{"simple", AppendSimple(nil, "OK"), "+OK\r\n"},
		{"simple empty", AppendSimple(nil, ""), "+\r\n"},
		{"simple CRLF sanitised", AppendSimple(nil, "a\r\nb"), "+a  b\r\n"},
		{"error", AppendError(nil, "ERR foo"), "-ERR foo\r\n"},
		{"error CRLF sanitised", AppendError(nil, "ERR bad\r\nkey\n"), "-ERR bad  key \r\n"},
		{"int", AppendInt(nil, 42), ":42\r\n"},
		{"int zero", AppendInt(nil, 0), ":0\r\n"},
		{"int negative", AppendInt(nil, -7), ":-7\r\n"},
		{"int min", AppendInt(nil, math.MinInt64), ":-9223372036854775808\r\n"},
		{"bulk", AppendBulk(nil, []byte("a\r\nb")), "$4\r\na\r\nb\r\n"},
		{"bulk empty", AppendBulk(nil, nil), "$0\r\n\r\n"},
		{"bulk string", AppendBulkString(nil, "hello world!"), "$12\r\nhello world!\r\n"},
		{"null 2", AppendNull(nil, 2), "$-1\r\n"},
		{"null 3", AppendNull(nil, 3), "_\r\n"},
		{"null array 2", AppendNullArray(nil, 2), "*-1\r\n"},
		{"null array 3", AppendNullArray(nil, 3), "_\r\n"},
		{"array header", AppendArrayHeader(nil, 3), "*3\r\n"},
		{"array header big", AppendArrayHeader(nil, 1234), "*1234\r\n"},
		{"map 3", AppendMapHeader(nil, 2, 3), "%2\r\n"},
		{"map 2", AppendMapHeader(nil, 2, 2), "*4\r\n"},
		{"map 2 large", AppendMapHeader(nil, 7, 2), "*14\r\n"},
		{"set 3", AppendSetHeader(nil, 5, 3), "~5\r\n"},
		{"set 2", AppendSetHeader(nil, 5, 2), "*5\r\n"},
		{"push 3", AppendPushHeader(nil, 3, 3), ">3\r\n"},
		{"push 2", AppendPushHeader(nil, 3, 2), "*3\r\n"},
		{"verbatim 3", AppendVerbatim(nil, "txt", "Some string", 3), "=15\r\ntxt:Some string\r\n"},
		{"verbatim bad format", AppendVerbatim(nil, "markdown", "x", 3), "=5\r\ntxt:x\r\n"},
		{"verbatim 2", AppendVerbatim(nil, "txt", "Some string", 2), "$11\r\nSome string\r\n"},
		{"command", AppendCommand(nil, []byte("SET"), []byte("k"), []byte("v\r\n")), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n"},
		{"command empty", AppendCommand(nil), "*0\r\n"},
		{"command strings", AppendCommandStrings(nil, "PING"), "*1\r\n$4\r\nPING\r\n"},
		{"appends", AppendInt([]byte("+OK\r\n"), 1), "+OK\r\n:1\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if string(tc.got) != tc.want {
				t.Fatalf("got %q, want %q", tc.got, tc.want)
			}
		})
	}
}

// Every encoder's output must be one reply (or request) our own scanners
// accept whole: the proxy's replies go to clients that parse like them.
func TestEncodersRoundTrip(t *testing.T) {
	for _, proto := range []int{2, 3} {
		out := AppendMapHeader(nil, 2, proto)
		out = AppendBulkString(out, "server")
		out = AppendVerbatim(out, "txt", "replproxy\r\n", proto)
		out = AppendSimple(out, "proto")
		out = AppendSetHeader(out, 3, proto)
		out = AppendInt(out, int64(proto))
		out = AppendNull(out, proto)
		out = AppendPushHeader(out, 2, proto)
		out = AppendNullArray(out, proto)
		out = AppendError(out, "ERR x")
		if n, err := NewReplyScanner(Limits{}).Scan(out); n != len(out) || err != nil {
			t.Fatalf("proto %d: n=%d of %d, err=%v: %q", proto, n, len(out), err, out)
		}
	}
	cmd := AppendCommandStrings(nil, "SET", "k\r\n", "")
	c, n, err := NewRequestParser(Limits{}).Parse(cmd)
	if n != len(cmd) || err != nil || len(c.Args) != 3 || string(c.Args[1]) != "k\r\n" {
		t.Fatalf("n=%d err=%v args=%q", n, err, c.Args)
	}
}

func TestEncodersAllocs(t *testing.T) {
	dst := make([]byte, 0, 1024)
	a, b, c := []byte("SET"), []byte("key"), []byte("value")
	encoders := map[string]func(){
		"simple":         func() { dst = AppendSimple(dst[:0], "OK") },
		"simple CRLF":    func() { dst = AppendSimple(dst[:0], "a\r\nb") },
		"error":          func() { dst = AppendError(dst[:0], "ERR something\nbad") },
		"int":            func() { dst = AppendInt(dst[:0], -123456789) },
		"bulk":           func() { dst = AppendBulk(dst[:0], c) },
		"bulk string":    func() { dst = AppendBulkString(dst[:0], "value") },
		"null":           func() { dst = AppendNull(dst[:0], 2); dst = AppendNull(dst, 3) },
		"null array":     func() { dst = AppendNullArray(dst[:0], 2); dst = AppendNullArray(dst, 3) },
		"array header":   func() { dst = AppendArrayHeader(dst[:0], 100) },
		"map header":     func() { dst = AppendMapHeader(dst[:0], 3, 2); dst = AppendMapHeader(dst, 3, 3) },
		"set header":     func() { dst = AppendSetHeader(dst[:0], 3, 2); dst = AppendSetHeader(dst, 3, 3) },
		"push header":    func() { dst = AppendPushHeader(dst[:0], 3, 2); dst = AppendPushHeader(dst, 3, 3) },
		"verbatim":       func() { dst = AppendVerbatim(dst[:0], "txt", "hello", 3); dst = AppendVerbatim(dst, "txt", "x", 2) },
		"command":        func() { dst = AppendCommand(dst[:0], a, b, c) },
		"command slice":  func() { args := [][]byte{a, b, c}; dst = AppendCommand(dst[:0], args...) },
		"command string": func() { dst = AppendCommandStrings(dst[:0], "SET", "key", "value") },
		"equal fold":     func() { _ = EqualFold(a, "set") },
		"parse int":      func() { _, _ = ParseInt(b) },
	}
	for name, f := range encoders {
		t.Run(name, func(t *testing.T) {
			if allocs := testing.AllocsPerRun(100, f); allocs != 0 {
				t.Fatalf("%v allocations", allocs)
			}
		})
	}
}
