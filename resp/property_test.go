package resp

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
)

// genRequest returns the wire bytes of one random request and the
// arguments redis would execute for it (nil for an empty frame).
func genRequest(r *rand.Rand) (wire []byte, args [][]byte) {
	switch k := r.IntN(10); {
	case k < 5: // multibulk, binary arguments
		n := 1 + r.IntN(5)
		args = make([][]byte, n)
		for i := range args {
			args[i] = genBytes(r)
		}
		return AppendCommand(nil, args...), args
	case k < 9:
		return genInline(r)
	default:
		empties := []string{"\r\n", "\n", " \t\r\n", "*0\r\n", "*-1\r\n"}
		return []byte(empties[r.IntN(len(empties))]), nil
	}
}

func genBytes(r *rand.Rand) []byte {
	n := r.IntN(12)
	if r.IntN(10) == 0 {
		n = 100 + r.IntN(300)
	}
	b := make([]byte, n)
	for i := range b {
		switch r.IntN(6) {
		case 0:
			const special = "\r\n\x00\"' \t\\$*"
			b[i] = special[r.IntN(len(special))]
		default:
			b[i] = byte(r.IntN(256))
		}
	}
	return b
}

const plainChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:_-.{}*$+"

// genInline builds an inline request the way a person types one: blanks
// between arguments, arguments plain, "double quoted" with escapes, or
// 'single quoted'.
func genInline(r *rand.Rand) ([]byte, [][]byte) {
	var wire []byte
	blanks := func(min int) {
		for i := 0; i < min+r.IntN(3); i++ {
			wire = append(wire, " \t"[r.IntN(2)])
		}
	}
	blanks(0)
	name := []byte{"GSPEH"[r.IntN(5)]} // never '*', which would make it multibulk
	for i := r.IntN(6); i > 0; i-- {
		name = append(name, plainChars[r.IntN(52)])
	}
	wire = append(wire, name...)
	args := [][]byte{name}
	for i := r.IntN(5); i > 0; i-- {
		blanks(1)
		var arg []byte
		switch r.IntN(3) {
		case 0:
			for j := 1 + r.IntN(8); j > 0; j-- {
				arg = append(arg, plainChars[r.IntN(len(plainChars))])
			}
			wire = append(wire, arg...)
		case 1:
			arg = genBytes(r)
			wire = append(wire, '"')
			for _, c := range arg {
				switch {
				case c == '"' || c == '\\':
					wire = append(wire, '\\', c)
				case c == '\n' && r.IntN(2) == 0:
					wire = append(wire, '\\', 'n')
				case c == '\r' && r.IntN(2) == 0:
					wire = append(wire, '\\', 'r')
				case c == '\t' && r.IntN(2) == 0:
					wire = append(wire, '\\', 't')
				case c < ' ' || c >= 0x7f || r.IntN(8) == 0:
					wire = append(wire, fmt.Sprintf(`\x%02x`, c)...)
				default:
					wire = append(wire, c)
				}
			}
			wire = append(wire, '"')
		default:
			wire = append(wire, '\'')
			for j := r.IntN(8); j > 0; j-- {
				switch r.IntN(8) {
				case 0:
					arg = append(arg, '\'')
					wire = append(wire, '\\', '\'')
				case 1:
					arg = append(arg, ' ')
					wire = append(wire, ' ')
				case 2: // a backslash not before a quote is literal
					c := plainChars[r.IntN(len(plainChars))]
					arg = append(arg, '\\', c)
					wire = append(wire, '\\', c)
				default:
					c := plainChars[r.IntN(len(plainChars))]
					arg = append(arg, c)
					wire = append(wire, c)
				}
			}
			wire = append(wire, '\'')
		}
		args = append(args, arg)
	}
	blanks(0)
	if r.IntN(2) == 0 {
		wire = append(wire, '\r', '\n')
	} else {
		wire = append(wire, '\n')
	}
	return wire, args
}

// proxyFeed drives a RequestParser the way the proxy does: reads are
// appended to an inbound buffer that starts at the current frame, Parse is
// called only once Need() bytes are there (when respectNeed), and the
// buffer is sometimes moved to fresh memory with the old copy scribbled on.
func proxyFeed(t *testing.T, r *rand.Rand, chunks [][]byte, respectNeed bool) [][][]byte {
	t.Helper()
	p := NewRequestParser(Limits{})
	var in []byte
	var got [][][]byte
	need := 0
	for _, c := range chunks {
		in = append(in, c...)
		if r.IntN(3) == 0 {
			fresh := append(make([]byte, 0, len(in)+r.IntN(64)), in...)
			for i := range in {
				in[i] = '#'
			}
			in = fresh
		}
		for len(in) > 0 && (!respectNeed || len(in) >= need) {
			cmd, n, err := p.Parse(in)
			if err != nil {
				t.Fatalf("after %d commands: %v", len(got), err)
			}
			if n == 0 {
				need = p.Need()
				if need <= len(in) {
					t.Fatalf("Need()=%d <= len(buf)=%d", need, len(in))
				}
				break
			}
			got = append(got, copyArgs(cmd.Args))
			in = in[n:]
			need = 0
		}
	}
	if len(in) != 0 {
		t.Fatalf("%d bytes left over", len(in))
	}
	return got
}

func checkCommands(t *testing.T, how string, got, want [][][]byte) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d commands, want %d", how, len(got), len(want))
	}
	for i := range want {
		if !sameArgs(got[i], want[i]) {
			t.Fatalf("%s: command %d = %q, want %q", how, i, got[i], want[i])
		}
	}
}

func TestRequestParserSplitPipeline(t *testing.T) {
	r := newRand(testSeed(t))
	for round := 0; round < 4; round++ {
		var wire []byte
		var want [][][]byte
		for i := 0; i < 25; i++ {
			w, a := genRequest(r)
			wire = append(wire, w...)
			want = append(want, a)
		}
		for k := 0; k <= len(wire); k++ {
			chunks := [][]byte{wire[:k], wire[k:]}
			checkCommands(t, "split at "+strconv.Itoa(k), proxyFeed(t, r, chunks, true), want)
		}
		var bytewise [][]byte
		for i := range wire {
			bytewise = append(bytewise, wire[i:i+1])
		}
		checkCommands(t, "byte by byte, Need respected", proxyFeed(t, r, bytewise, true), want)
		checkCommands(t, "byte by byte, Parse every byte", proxyFeed(t, r, bytewise, false), want)
		for i := 0; i < 20; i++ {
			checkCommands(t, "random reads", proxyFeed(t, r, randomChunks(r, wire), true), want)
		}
	}
}

func randomChunks(r *rand.Rand, b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		n := min(1+r.IntN(40), len(b))
		out = append(out, b[:n])
		b = b[n:]
	}
	return out
}

// genReply returns one random reply of any RESP2/RESP3 type, nested at
// most depth deep.
func genReply(r *rand.Rand, depth int) []byte {
	k := r.IntN(20)
	if depth <= 0 && k >= 14 {
		k = r.IntN(14)
	}
	switch k {
	case 0:
		return []byte("+OK\r\n")
	case 1:
		return []byte("-ERR something went wrong\r\n")
	case 2:
		return AppendInt(nil, r.Int64()-r.Int64())
	case 3, 4:
		return AppendBulk(nil, genBytes(r))
	case 5:
		return []byte([]string{"$-1\r\n", "*-1\r\n", "_\r\n"}[r.IntN(3)])
	case 6:
		return []byte([]string{"#t\r\n", "#f\r\n"}[r.IntN(2)])
	case 7:
		return []byte([]string{",1.5\r\n", ",inf\r\n", ",-inf\r\n", ",nan\r\n", ",1e+300\r\n", ",-0\r\n"}[r.IntN(6)])
	case 8:
		return []byte("(3492890328409238509324850943850943825024385\r\n")
	case 9:
		b := genBytes(r)
		return append(append(strconv.AppendInt([]byte{'!'}, int64(len(b)), 10), "\r\n"...), append(b, "\r\n"...)...)
	case 10:
		return AppendVerbatim(nil, "txt", string(genBytes(r)), 3)
	case 11:
		return AppendSimple(nil, "")
	case 12:
		return []byte(":0\r\n")
	case 13:
		return []byte("*0\r\n")
	case 14, 15:
		n := r.IntN(4)
		out := AppendArrayHeader(nil, n)
		for i := 0; i < n; i++ {
			out = append(out, genReply(r, depth-1)...)
		}
		return out
	case 16:
		n := r.IntN(3)
		out := AppendMapHeader(nil, n, 3)
		for i := 0; i < 2*n; i++ {
			out = append(out, genReply(r, depth-1)...)
		}
		return out
	case 17:
		n := r.IntN(3)
		out := AppendSetHeader(nil, n, 3)
		for i := 0; i < n; i++ {
			out = append(out, genReply(r, depth-1)...)
		}
		return out
	case 18:
		n := 1 + r.IntN(3)
		out := AppendPushHeader(nil, n, 3)
		for i := 0; i < n; i++ {
			out = append(out, genReply(r, depth-1)...)
		}
		return out
	default: // an attribute, then the reply it annotates
		n := r.IntN(2)
		out := []byte("|" + strconv.Itoa(n) + "\r\n")
		for i := 0; i < 2*n; i++ {
			out = append(out, genReply(r, depth-1)...)
		}
		return append(out, genReply(r, depth-1)...)
	}
}

// scanFeed drives a ReplyScanner the way the proxy reads a backend.
func scanFeed(t *testing.T, r *rand.Rand, chunks [][]byte, respectNeed bool) []int {
	t.Helper()
	s := NewReplyScanner(Limits{})
	var in []byte
	var got []int
	need := 0
	for _, c := range chunks {
		in = append(in, c...)
		if r.IntN(3) == 0 {
			fresh := append(make([]byte, 0, len(in)+r.IntN(64)), in...)
			for i := range in {
				in[i] = '#'
			}
			in = fresh
		}
		for len(in) > 0 && (!respectNeed || len(in) >= need) {
			n, err := s.Scan(in)
			if err != nil {
				t.Fatalf("after %d replies: %v", len(got), err)
			}
			if n == 0 {
				need = s.Need()
				if need <= len(in) {
					t.Fatalf("Need()=%d <= len(buf)=%d", need, len(in))
				}
				break
			}
			got = append(got, n)
			in = in[n:]
			need = 0
		}
	}
	if len(in) != 0 {
		t.Fatalf("%d bytes left over", len(in))
	}
	return got
}

func checkLengths(t *testing.T, how string, got, want []int) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s: reply lengths %v, want %v", how, got, want)
	}
}

func TestReplyScannerSplitStream(t *testing.T) {
	r := newRand(testSeed(t))
	for round := 0; round < 4; round++ {
		var wire []byte
		var want []int
		for i := 0; i < 25; i++ {
			rep := genReply(r, 4)
			wire = append(wire, rep...)
			want = append(want, len(rep))
		}
		for k := 0; k <= len(wire); k++ {
			checkLengths(t, "split at "+strconv.Itoa(k), scanFeed(t, r, [][]byte{wire[:k], wire[k:]}, true), want)
		}
		var bytewise [][]byte
		for i := range wire {
			bytewise = append(bytewise, wire[i:i+1])
		}
		checkLengths(t, "byte by byte, Need respected", scanFeed(t, r, bytewise, true), want)
		checkLengths(t, "byte by byte, Scan every byte", scanFeed(t, r, bytewise, false), want)
		for i := 0; i < 20; i++ {
			checkLengths(t, "random reads", scanFeed(t, r, randomChunks(r, wire), true), want)
		}
	}
}
