package main

import (
	"math"
	"strings"
	"testing"
)

// The parsers of benchrun read other processes' output (the load
// generator's result line, redis-benchmark's CSV, INFO commandstats): they
// must reject garbage with an error, never panic, and read back what the
// writing side printed.

func FuzzParseLoadLine(f *testing.F) {
	good := loadResult{requests: 10, gets: 8, sets: 2, nils: 1, seconds: 0.5, rps: 20, p50Ms: 0.25, p99Ms: 1.5, seed: 7}
	for _, seed := range []string{
		good.line(),
		"noise\n" + good.line() + "\r\nmore noise\n",
		good.line() + "\n" + good.line(),
		"loadgen requests=1",
		"loadgen requests=1 gets=1 sets=0 nils=2 seconds=1 rps=1 p50_ms=1 p99_ms=1 seed=1",
		"loadgen requests=-1 gets=0 sets=0 nils=0 seconds=NaN rps=Inf p50_ms=x p99_ms= seed=-3",
		"loadgen a b=c",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		r, err := parseLoadLine(out)
		if err != nil {
			return
		}
		if r.requests <= 0 || r.gets+r.sets != r.requests || r.nils > r.gets || r.nils < 0 {
			t.Fatalf("accepted inconsistent counts %+v from %q", r, out)
		}
		// What was accepted prints back to a line that parses the same.
		again, err := parseLoadLine([]byte(r.line()))
		if err != nil {
			t.Fatalf("re-parse of %q: %v", r.line(), err)
		}
		if !sameResult(r, again) {
			t.Fatalf("round trip %+v -> %q -> %+v", r, r.line(), again)
		}
	})
}

func sameResult(a, b loadResult) bool {
	eq := func(x, y float64) bool { return x == y || (math.IsNaN(x) && math.IsNaN(y)) }
	return a.requests == b.requests && a.gets == b.gets && a.sets == b.sets && a.nils == b.nils &&
		a.seed == b.seed && eq(a.seconds, b.seconds) && eq(a.rps, b.rps) && eq(a.p50Ms, b.p50Ms) && eq(a.p99Ms, b.p99Ms)
}

func FuzzParseCmdstatCalls(f *testing.F) {
	for _, seed := range []string{
		"calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0",
		"usec=1,calls=3",
		"",
		"calls=",
		"calls=-1",
		"calls=99999999999999999999",
		"rejected_calls=4",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		n, err := parseCmdstatCalls(v)
		if err == nil && v != "" && !strings.Contains(v, "calls=") {
			t.Fatalf("%q: %d calls without a calls= field", v, n)
		}
	})
}

func FuzzParseBenchCSV(f *testing.F) {
	for _, seed := range []string{
		"\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"GET\",\"80000.00\",\"0.3\",\"0.1\",\"0.3\",\"0.5\",\"0.6\",\"2.0\"\n",
		"\"test\",\"rps\"\n\"GET\",\"1\"\n",
		"\"rps\",\"p50_latency_ms\",\"p99_latency_ms\"\n\"x\",\"1\",\"2\"\n",
		"\"a\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, out []byte) {
		_, _ = parseBenchCSV(out) // must not panic; errors are the caller's
	})
}
