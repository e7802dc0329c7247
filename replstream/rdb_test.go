package replstream

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// testMark is a 40-byte end mark; markLike is one that overlaps itself
// ("aaa...ab"), the case a naive matcher that restarts after a mismatch gets
// wrong.
var (
	testMark = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4"
	markLike = strings.Repeat("a", 39) + "b"
)

func disk(payload string) string { return "$" + itoa(len(payload)) + "\r\n" + payload }

func diskless(mark, payload string) string { return "$EOF:" + mark + "\r\n" + payload + mark }

func itoa(n int) string { return string(appendInt(nil, int64(n))) }

func appendInt(b []byte, n int64) []byte {
	if n == 0 {
		return append(b, '0')
	}
	var tmp [20]byte
	i := len(tmp)
	for n > 0 {
		i--
		tmp[i] = byte('0' + n%10)
		n /= 10
	}
	return append(b, tmp[i:]...)
}

type rdbCase struct {
	name       string
	in         string
	n          int   // bytes consumed
	done       bool  // transfer complete
	err        error // errors.Is target, nil for none
	payload    int64 // payloadBytes once done
	diskless   bool
	keepalives int64
}

var rdbCases = []rdbCase{
	{name: "disk", in: disk("REDIS0009xyz") + "*1\r\n$4\r\nPING\r\n", n: 17, done: true, payload: 12},
	{name: "disk empty", in: "$0\r\n*1\r\n", n: 4, done: true},
	{name: "disk payload with CRLF and $", in: disk("a\r\n$3\r\nb\n\n") + "rest", n: 15, done: true, payload: 10},
	{name: "disk incomplete body", in: "$10\r\nabc", n: 8},
	{name: "disk incomplete header", in: "$12", n: 3},
	{name: "header only", in: "$12\r\n", n: 5},
	{name: "keepalives", in: "\n\n\n" + disk("xy") + "Z", n: 9, done: true, payload: 2, keepalives: 3},
	{name: "crlf keepalive", in: "\r\n\n" + disk("xy"), n: 9, done: true, payload: 2, keepalives: 2},
	{name: "only keepalives", in: "\n\n", n: 2, keepalives: 2},
	{name: "diskless", in: diskless(testMark, "REDIS0009payload") + "*1\r\n", n: 5 + 40 + 2 + 16 + 40, done: true, payload: 16, diskless: true},
	{name: "diskless empty payload", in: diskless(testMark, ""), n: 87, done: true, diskless: true},
	{name: "diskless payload with partial marks", in: diskless(testMark, testMark[:39]+"x"+testMark[1:]+testMark[:20]), n: 47 + 39 + 1 + 39 + 20 + 40, done: true, payload: 99, diskless: true},
	{name: "diskless self-overlapping mark", in: diskless(markLike, strings.Repeat("a", 100)) + "tail", n: 47 + 100 + 40, done: true, payload: 100, diskless: true},
	{name: "diskless mark not yet complete", in: "$EOF:" + testMark + "\r\npayload" + testMark[:39], n: 47 + 7 + 39, diskless: true},
	{name: "diskless longer mark uses 40 bytes", in: "$EOF:" + testMark + "zz\r\nP" + testMark + "R", n: 49 + 1 + 40, done: true, payload: 1, diskless: true},
	{name: "diskless after keepalives", in: "\n" + diskless(testMark, "p"), n: 1 + 47 + 1 + 40, done: true, payload: 1, diskless: true, keepalives: 1},
	{name: "error reply", in: "-ERR BGSAVE failed\r\n", n: 20, err: ErrMasterError},
	{name: "not a bulk", in: "+OK\r\n", n: 5, err: ErrProtocol},
	{name: "negative length", in: "$-1\r\n", n: 5, err: ErrProtocol},
	{name: "bad length", in: "$1x\r\n", n: 5, err: ErrProtocol},
	{name: "leading zero length", in: "$01\r\nx", n: 5, err: ErrProtocol},
	{name: "empty length", in: "$\r\n", n: 3, err: ErrProtocol},
	{name: "short mark", in: "$EOF:abc\r\n", n: 10, err: ErrProtocol},
	{name: "header too long", in: "$" + strings.Repeat("1", maxRDBHeaderBytes+5), n: maxRDBHeaderBytes, err: ErrProtocol},
	{name: "empty", in: "", n: 0},
}

func TestRDBSkipper(t *testing.T) {
	for _, tc := range rdbCases {
		t.Run(tc.name, func(t *testing.T) {
			var s rdbSkipper
			n, done, err := s.feed([]byte(tc.in))
			checkRDB(t, tc, &s, n, done, err)
		})
	}
}

func checkRDB(t *testing.T, tc rdbCase, s *rdbSkipper, n int, done bool, err error) {
	t.Helper()
	if tc.err != nil {
		if !errors.Is(err, tc.err) {
			t.Fatalf("err = %v, want %v", err, tc.err)
		}
		return
	}
	if err != nil {
		t.Fatalf("err = %v", err)
	}
	if n != tc.n || done != tc.done {
		t.Fatalf("feed = (%d, %v), want (%d, %v)", n, done, tc.n, tc.done)
	}
	if done != s.done() {
		t.Fatalf("done() = %v after feed returned %v", s.done(), done)
	}
	if done && (s.payloadBytes != tc.payload || s.diskless != tc.diskless) {
		t.Fatalf("payload %d diskless %v, want %d %v", s.payloadBytes, s.diskless, tc.payload, tc.diskless)
	}
	if s.keepalives != tc.keepalives {
		t.Fatalf("keepalives = %d, want %d", s.keepalives, tc.keepalives)
	}
}

// feedChunks feeds in to a fresh skipper in the given pieces, stopping at
// done or at an error, and reports the totals.
func feedChunks(s *rdbSkipper, in []byte, cuts []int) (n int, done bool, err error) {
	prev := 0
	for _, c := range append(cuts, len(in)) {
		if c < prev {
			continue
		}
		k, d, e := s.feed(in[prev:c])
		n += k
		if e != nil {
			return n, false, e
		}
		if d {
			return n, true, nil
		}
		if k != c-prev {
			panic("consumed less than given without finishing")
		}
		prev = c
	}
	return n, false, nil
}

// TestRDBSkipperSplits: every table case, cut in two at every byte and fed
// byte by byte, gives the same result as fed whole.
func TestRDBSkipperSplits(t *testing.T) {
	for _, tc := range rdbCases {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			for cut := 0; cut <= len(in); cut++ {
				var s rdbSkipper
				n, done, err := feedChunks(&s, in, []int{cut})
				checkRDB(t, tc, &s, n, done, err)
			}
			var s rdbSkipper
			var cuts []int
			for i := range in {
				cuts = append(cuts, i)
			}
			n, done, err := feedChunks(&s, in, cuts)
			checkRDB(t, tc, &s, n, done, err)
		})
	}
}

// TestRDBSkipperRandomSplits builds transfers whose payloads are full of
// near-copies of the mark and feeds them in random pieces.
func TestRDBSkipperRandomSplits(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	for iter := range 300 {
		mark := []byte(testMark)
		if iter%3 == 0 {
			mark = []byte(markLike)
		}
		var payload []byte
		for len(payload) < rng.IntN(3000) {
			switch rng.IntN(4) {
			case 0: // a prefix of the mark
				payload = append(payload, mark[:rng.IntN(len(mark))]...)
			case 1: // the mark with one byte changed
				m := bytes.Clone(mark)
				m[rng.IntN(len(m))] ^= 0x20
				payload = append(payload, m...)
			case 2: // a suffix of the mark
				payload = append(payload, mark[rng.IntN(len(mark))+1:]...)
			default:
				for range rng.IntN(50) {
					payload = append(payload, byte(rng.IntN(256)))
				}
			}
		}
		if bytes.Index(append(bytes.Clone(payload), mark...), mark) != len(payload) {
			continue // the payload's end and the mark make an earlier mark
		}
		var in string
		var want rdbCase
		if iter%2 == 0 {
			in = diskless(string(mark), string(payload))
			want = rdbCase{n: len(in), done: true, payload: int64(len(payload)), diskless: true}
		} else {
			in = disk(string(payload))
			want = rdbCase{n: len(in), done: true, payload: int64(len(payload))}
		}
		data := []byte(in + "*1\r\n$4\r\nPING\r\n")
		var cuts []int
		for c := 0; c < len(data); c += 1 + rng.IntN(80) {
			cuts = append(cuts, c)
		}
		var s rdbSkipper
		n, done, err := feedChunks(&s, data, cuts)
		checkRDB(t, want, &s, n, done, err)
	}
}

func TestRDBSkipperDoneConsumesNothing(t *testing.T) {
	var s rdbSkipper
	in := []byte(disk("ab") + "rest")
	if n, done, err := s.feed(in); n != 6 || !done || err != nil {
		t.Fatalf("feed = %d %v %v", n, done, err)
	}
	if n, done, err := s.feed([]byte("more")); n != 0 || !done || err != nil {
		t.Fatalf("feed after done = %d %v %v", n, done, err)
	}
	s.reset()
	if s.done() {
		t.Fatal("done after reset")
	}
}

func FuzzRDBSkipper(f *testing.F) {
	for _, tc := range rdbCases {
		f.Add([]byte(tc.in), uint16(len(tc.in)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, cut uint16) {
		var whole rdbSkipper
		n, done, err := whole.feed(data)
		if n < 0 || n > len(data) {
			t.Fatalf("n = %d for %d bytes", n, len(data))
		}
		if err == nil && !done && n != len(data) {
			t.Fatalf("not done, no error, but consumed %d of %d", n, len(data))
		}
		if done && whole.payloadBytes > int64(n) {
			t.Fatalf("payload %d > consumed %d", whole.payloadBytes, n)
		}
		if !(err != nil) && done {
			if k, d, e := whole.feed(data); k != 0 || !d || e != nil {
				t.Fatalf("feed after done = %d %v %v", k, d, e)
			}
		}
		// Two pieces and byte by byte agree with the whole.
		c := int(cut) % (len(data) + 1)
		var two rdbSkipper
		n2, done2, err2 := feedChunks(&two, data, []int{c})
		var one rdbSkipper
		cuts := make([]int, len(data))
		for i := range cuts {
			cuts[i] = i
		}
		n1, done1, err1 := feedChunks(&one, data, cuts)
		for _, got := range []struct {
			n    int
			done bool
			err  error
			s    *rdbSkipper
		}{{n2, done2, err2, &two}, {n1, done1, err1, &one}} {
			if (got.err != nil) != (err != nil) || got.done != done {
				t.Fatalf("split: done %v err %v; whole: done %v err %v", got.done, got.err, done, err)
			}
			if err == nil && (got.n != n || got.s.payloadBytes != whole.payloadBytes || got.s.keepalives != whole.keepalives) {
				t.Fatalf("split: n %d payload %d; whole: n %d payload %d", got.n, got.s.payloadBytes, n, whole.payloadBytes)
			}
		}
	})
}
