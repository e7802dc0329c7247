package main

import (
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func TestParseBenchCSV(t *testing.T) {
	// Captured from redis-benchmark 7.0.15 --csv -t set.
	out := `"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
"SET","157480.31","0.184","0.056","0.167","0.279","0.391","5.439"
`
	got, err := parseBenchCSV([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if got.rps != 157480.31 || got.p50Ms != 0.167 || got.p99Ms != 0.391 {
		t.Errorf("parseBenchCSV = %+v", got)
	}

	for name, bad := range map[string]string{
		"empty":          "",
		"header only":    `"test","rps"` + "\n",
		"missing column": "\"test\",\"rps\"\n\"SET\",\"1\"\n",
		"not a number":   "\"test\",\"rps\",\"p50_latency_ms\",\"p99_latency_ms\"\n\"SET\",\"fast\",\"1\",\"2\"\n",
		"two tests":      "\"test\",\"rps\",\"p50_latency_ms\",\"p99_latency_ms\"\n\"SET\",\"1\",\"1\",\"2\"\n\"GET\",\"1\",\"1\",\"2\"\n",
	} {
		if _, err := parseBenchCSV([]byte(bad)); err == nil {
			t.Errorf("%s: parseBenchCSV(%q) succeeded", name, bad)
		}
	}
}

func TestParseProcStatCPU(t *testing.T) {
	tests := []struct {
		stat string
		want int64
	}{
		{"4242 (replproxy) S 1 4242 4242 0 -1 4194560 1000 0 0 0 150 25 0 0 20 0 8 0 100 0 0", 175},
		// A command name with spaces and ')' must not shift the fields.
		{"7 (a) b (c)) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 1 0 0", 7},
	}
	for _, tt := range tests {
		got, err := parseProcStatCPU([]byte(tt.stat))
		if err != nil || got != tt.want {
			t.Errorf("parseProcStatCPU(%q) = %d, %v; want %d", tt.stat, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "1 (x) S 1 2", "1 (x) S 1 2 3 4 5 6 7 8 9 10 u s"} {
		if _, err := parseProcStatCPU([]byte(bad)); err == nil {
			t.Errorf("parseProcStatCPU(%q) succeeded", bad)
		}
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	}
	for _, tt := range tests {
		if got := median(tt.in); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestScenarios(t *testing.T) {
	seen := map[string]bool{}
	for _, sc := range scenarios() {
		if seen[sc.name] {
			t.Errorf("duplicate scenario name %q", sc.name)
		}
		seen[sc.name] = true
		if sc.requests <= 0 || sc.pipeline <= 0 {
			t.Errorf("%s: requests %d, pipeline %d", sc.name, sc.requests, sc.pipeline)
		}
		if got := sc.requestsFor(1000); sc.pipeline > 1 && got != 8000 || sc.pipeline == 1 && got != 1000 {
			t.Errorf("%s: requestsFor(1000) = %d", sc.name, got)
		}
		if sc.requestsFor(0) != sc.requests {
			t.Errorf("%s: requestsFor(0) = %d, want the default %d", sc.name, sc.requestsFor(0), sc.requests)
		}
	}
	// -run mix selects the mix rows, every mode at each depth, and nothing
	// else; they read the filled keyspace with 3-byte values.
	mixRe := regexp.MustCompile("mix")
	modes := map[int][]string{}
	for _, sc := range scenarios() {
		if !mixRe.MatchString(sc.name) {
			if sc.load == loadMix {
				t.Errorf("%s: a mix row that -run mix does not select", sc.name)
			}
			continue
		}
		if sc.load != loadMix || sc.readPercent != 80 || sc.valueBytes != 3 || !sc.readsExisting || sc.proxyArgs == nil {
			t.Errorf("%s: %+v", sc.name, sc)
		}
		if !strings.HasSuffix(sc.name, "-"+sc.consistency) {
			t.Errorf("%s: named for another mode than %q", sc.name, sc.consistency)
		}
		modes[sc.pipeline] = append(modes[sc.pipeline], sc.consistency)
	}
	for _, p := range []int{1, 16} {
		if !slices.Equal(modes[p], mixModes) {
			t.Errorf("mix rows at P%d: modes %q, want %q", p, modes[p], mixModes)
		}
	}

	if got := target("≤", 1.0, math.NaN(), false); got != "≤1" {
		t.Errorf("target with no measurement = %q", got)
	}
}
