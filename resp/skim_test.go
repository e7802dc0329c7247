package resp

import (
	"bytes"
	"testing"
)

func TestSkim(t *testing.T) {
	cases := []struct {
		in            string
		lim           Limits
		n, argc       int
		first, second string
		ok            bool
	}{
		{in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n", n: 27, argc: 3, first: "SET", second: "k", ok: true},
		{in: "*1\r\n$4\r\nPING\r\n*1\r\n", n: 14, argc: 1, first: "PING", ok: true},
		{in: "*2\r\n$0\r\n\r\n$0\r\n\r\n", n: 16, argc: 2, ok: true},
		{in: "*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n", n: 37, argc: 3, first: "REPLCONF", second: "GETACK", ok: true},
		// What Parse decides: incomplete, empty, inline, malformed, over a limit.
		{in: ""},
		{in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r"},
		{in: "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n"},
		{in: "*3\r"},
		{in: "*0\r\n"},
		{in: "*-1\r\n"},
		{in: "PING\r\n"},
		{in: "*1\r\n:4\r\nPING\r\n"},
		{in: "*1\r\n$-1\r\n"},
		{in: "*1\r\n$4\r\nPINGxx"},
		{in: "*1\r\n$04\r\nPING\r\n"},
		{in: "*+1\r\n$4\r\nPING\r\n"},
		{in: "*4\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n$1\r\nd\r\n", lim: Limits{MaxArrayLen: 3}},
		{in: "*1\r\n$9\r\n123456789\r\n", lim: Limits{MaxBulkBytes: 8}},
	}
	for _, c := range cases {
		p := NewRequestParser(c.lim)
		n, argc, first, second, ok := p.Skim([]byte(c.in))
		if ok != c.ok || n != c.n || argc != c.argc || string(first) != c.first || string(second) != c.second {
			t.Errorf("Skim(%q) = %d, %d, %q, %q, %v; want %d, %d, %q, %q, %v",
				c.in, n, argc, first, second, ok, c.n, c.argc, c.first, c.second, c.ok)
		}
		checkSkimAgrees(t, c.lim, []byte(c.in))
	}
}

// A parser in the middle of a frame is never skimmed past: its state would
// be lost.
func TestSkimMidFrame(t *testing.T) {
	p := NewRequestParser(Limits{})
	if _, n, err := p.Parse([]byte("*2\r\n$3\r\nGET\r\n")); n != 0 || err != nil {
		t.Fatalf("Parse of a partial frame: n=%d err=%v", n, err)
	}
	if _, _, _, _, ok := p.Skim([]byte("*1\r\n$4\r\nPING\r\n")); ok {
		t.Fatal("Skim on a parser mid-frame said ok")
	}
}

// checkSkimAgrees holds Skim to its contract: whenever it says ok, Parse
// on an idle parser with the same limits reads the same frame.
func checkSkimAgrees(t *testing.T, lim Limits, data []byte) {
	t.Helper()
	p := NewRequestParser(lim)
	n, argc, first, second, ok := p.Skim(data)
	if !ok {
		if n != 0 || argc != 0 || first != nil || second != nil {
			t.Fatalf("Skim(%q) not ok but returned %d, %d, %q, %q", data, n, argc, first, second)
		}
		return
	}
	cmd, pn, err := p.Parse(data)
	if err != nil || pn != n || len(cmd.Args) != argc {
		t.Fatalf("Skim(%q) = n %d, argc %d; Parse = n %d, %d args, err %v", data, n, argc, pn, len(cmd.Args), err)
	}
	if !bytes.Equal(cmd.Args[0], first) || (argc > 1 && !bytes.Equal(cmd.Args[1], second)) || (argc == 1 && second != nil) {
		t.Fatalf("Skim(%q) args %q, %q; Parse %q", data, first, second, cmd.Args)
	}
}

func FuzzSkimAgreesWithParse(f *testing.F) {
	addRequestSeeds(f)
	f.Add([]byte("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n"))
	f.Add([]byte("*3\r\n$8\r\nREPLCONF\r\n$6\r\nGETACK\r\n$1\r\n*\r\n"))
	f.Add([]byte("*1\r\n$004\r\nPING\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, lim := range fuzzLimits {
			checkSkimAgrees(t, lim, data)
		}
	})
}

func BenchmarkSkimVsParse(b *testing.B) {
	frame := []byte("*3\r\n$3\r\nSET\r\n$16\r\nkey:000000012345\r\n$3\r\nxxx\r\n")
	b.Run("skim", func(b *testing.B) {
		p := NewRequestParser(DefaultLimits())
		for i := 0; i < b.N; i++ {
			if _, _, _, _, ok := p.Skim(frame); !ok {
				b.Fatal("not ok")
			}
		}
	})
	b.Run("parse", func(b *testing.B) {
		p := NewRequestParser(DefaultLimits())
		for i := 0; i < b.N; i++ {
			if _, n, _ := p.Parse(frame); n == 0 {
				b.Fatal("incomplete")
			}
		}
	})
}
