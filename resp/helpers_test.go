package resp

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"
)

// result is what one frame-level parse produced, deep-copied so it outlives
// the parser's storage.
type result struct {
	args       [][]byte
	inline     bool
	n          int
	err        error
	incomplete bool
}

func (r result) String() string {
	switch {
	case r.err != nil:
		return "error " + strconv.Quote(r.err.Error())
	case r.incomplete:
		return "incomplete"
	}
	return fmt.Sprintf("n=%d inline=%v args=%q", r.n, r.inline, r.args)
}

func sameResult(a, b result) bool {
	if a.incomplete != b.incomplete || a.n != b.n || a.inline != b.inline {
		return false
	}
	if (a.err == nil) != (b.err == nil) || (a.err != nil && a.err.Error() != b.err.Error()) {
		return false
	}
	return sameArgs(a.args, b.args)
}

func sameArgs(a, b [][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			return false
		}
	}
	return true
}

func copyArgs(args [][]byte) [][]byte {
	if len(args) == 0 {
		return nil
	}
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = append([]byte{}, a...)
	}
	return out
}

func parseOnce(p *RequestParser, buf []byte) result {
	cmd, n, err := p.Parse(buf)
	return result{args: copyArgs(cmd.Args), inline: cmd.Inline, n: n, err: err, incomplete: n == 0 && err == nil}
}

// parsePrefixes feeds growing prefixes of in, one byte more each call, each
// in a freshly allocated buffer whose predecessor is then scribbled over:
// this is the harshest form of "the caller's buffer may be re-allocated".
// It returns the first result that is not "incomplete", checking Need()
// along the way.
func parsePrefixes(t testing.TB, lim Limits, in []byte) result {
	t.Helper()
	p := NewRequestParser(lim)
	var prev []byte
	for k := 0; k <= len(in); k++ {
		buf := in[:k:k]
		if len(in) <= 4096 || k%4096 == 0 { // keep big inputs linear-ish
			buf = append([]byte(nil), in[:k]...)
			for i := range prev {
				prev[i] = '#'
			}
			prev = buf
		}
		r := parseOnce(p, buf)
		if r.n > k {
			t.Fatalf("prefix %d: n=%d > len(buf)", k, r.n)
		}
		if !r.incomplete {
			return r
		}
		if p.Need() <= k {
			t.Fatalf("prefix %d: incomplete but Need()=%d <= len(buf)", k, p.Need())
		}
	}
	return result{incomplete: true}
}

// testSeed returns the seed for random tests: REPLPROXY_SEED if set, else
// the clock. It is logged so a failure can be replayed.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("REPLPROXY_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("REPLPROXY_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with REPLPROXY_SEED=%d)", seed, seed)
	return seed
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) }

func isErr(got, want error) bool {
	if want == nil {
		return got == nil
	}
	return errors.Is(got, want)
}
