package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
)

// TestMain lets the test binary be the load generator too, as benchrun's
// main does, so runLoadgen's re-exec of os.Executable is tested for real.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == loadgenArg {
		os.Exit(loadgenMain(os.Args[2:]))
	}
	os.Exit(m.Run())
}

func TestLoadLine(t *testing.T) {
	good := []loadResult{
		{requests: 2000, gets: 1611, sets: 389, nils: 0, seconds: 0.25, rps: 8000, p50Ms: 0.101, p99Ms: 1.5, seed: 1},
		{requests: 1, gets: 1, nils: 1, seconds: 1e-6, rps: 1e6, p50Ms: 0.000128, p99Ms: 0.000128, seed: math.MaxUint64},
		{requests: 5, sets: 5, seconds: 3, rps: 5.0 / 3, p50Ms: math.NaN(), p99Ms: math.NaN()},
	}
	for i, want := range good {
		t.Run(fmt.Sprintf("roundtrip %d", i), func(t *testing.T) {
			// Stray output around the line (a log line on stdout) is tolerated.
			out := "some noise\n" + want.line() + "\n"
			got, err := parseLoadLine([]byte(out))
			if err != nil {
				t.Fatalf("parseLoadLine(%q): %v", out, err)
			}
			same := func(a, b float64) bool { return a == b || math.IsNaN(a) && math.IsNaN(b) }
			if got.requests != want.requests || got.gets != want.gets || got.sets != want.sets || got.nils != want.nils ||
				got.seed != want.seed || !same(got.seconds, want.seconds) || !same(got.rps, want.rps) ||
				!same(got.p50Ms, want.p50Ms) || !same(got.p99Ms, want.p99Ms) {
				t.Errorf("parseLoadLine(%q) = %+v, want %+v", out, got, want)
			}
		})
	}

	const ok = "requests=10 gets=8 sets=2 nils=0 seconds=1 rps=10 p50_ms=0.1 p99_ms=0.2 seed=3"
	if _, err := parseLoadLine([]byte("loadgen " + ok)); err != nil {
		t.Fatalf("the base line of the bad cases does not parse: %v", err)
	}
	bad := []struct{ name, out string }{
		{"empty", ""},
		{"no line", "loadgen: 127.0.0.1:1: 50 clients\n"},
		{"two lines", "loadgen " + ok + "\nloadgen " + ok + "\n"},
		{"missing field", "loadgen " + strings.Replace(ok, " nils=0", "", 1)},
		{"not key=value", "loadgen " + ok + " junk"},
		{"not a number", "loadgen " + strings.Replace(ok, "rps=10", "rps=fast", 1)},
		{"negative seed", "loadgen " + strings.Replace(ok, "seed=3", "seed=-3", 1)},
		{"counts disagree", "loadgen " + strings.Replace(ok, "gets=8", "gets=7", 1)},
		{"more nils than gets", "loadgen " + strings.Replace(ok, "nils=0", "nils=9", 1)},
		{"no requests", "loadgen requests=0 gets=0 sets=0 nils=0 seconds=1 rps=0 p50_ms=0 p99_ms=0 seed=1"},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := parseLoadLine([]byte(tt.out)); !errors.Is(err, errBenchrunLoadLine) {
				t.Errorf("parseLoadLine(%q) = %+v, %v; want errBenchrunLoadLine", tt.out, got, err)
			}
		})
	}
}

func TestLoadArgs(t *testing.T) {
	want := loadConfig{addr: "127.0.0.1:6379", clients: 50, requests: 200000, readPercent: 80, pipeline: 16, keyspace: keyspace, valueBytes: 3, seed: 7}
	got, err := parseLoadArgs(want.argv()[1:])
	if err != nil || got != want {
		t.Fatalf("parseLoadArgs(argv()) = %+v, %v; want %+v", got, err, want)
	}
	bad := []struct {
		name string
		args []string
	}{
		{"no addr", []string{"-n", "10"}},
		{"zero clients", []string{"-addr", "x:1", "-c", "0"}},
		{"read percent above 100", []string{"-addr", "x:1", "-read-percent", "101"}},
		{"zero pipeline", []string{"-addr", "x:1", "-P", "0"}},
		{"keyspace beyond 12 digits", []string{"-addr", "x:1", "-r", "1000000000001"}},
		{"negative value size", []string{"-addr", "x:1", "-d", "-1"}},
		{"stray argument", []string{"-addr", "x:1", "extra"}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := parseLoadArgs(tt.args); !errors.Is(err, errBenchrunLoadConfig) {
				t.Errorf("parseLoadArgs(%q) = %+v, %v; want errBenchrunLoadConfig", tt.args, got, err)
			}
		})
	}
}

func TestAppendKey(t *testing.T) {
	tests := []struct {
		n    int
		want string
	}{
		{0, "key:000000000000"},
		{12345, "key:000000012345"},
		{keyspace - 1, "key:000000099999"},
		{maxKeyspace - 1, "key:999999999999"},
	}
	for _, tt := range tests {
		if got := string(appendKey([]byte("prefix "), tt.n)); got != "prefix "+tt.want {
			t.Errorf("appendKey(%d) = %q, want %q", tt.n, got, "prefix "+tt.want)
		}
	}
}

// TestKeysMatchRedisBenchmark: the generator must read the keys that
// `redis-benchmark -t set -r N` fills the keyspace with, or every mix GET
// would be a nil and the rows would measure misses.
func TestKeysMatchRedisBenchmark(t *testing.T) {
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		t.Fatalf("redis-benchmark not found in PATH: install it with `apt-get install -y redis-tools` (make deps)")
	}
	srv := redistest.StartServer(t)
	const keys = 50
	host, port, _ := strings.Cut(srv.Addr(), ":")
	out, err := exec.Command("redis-benchmark", "-h", host, "-p", port, "-q", "-c", "2", "-r", strconv.Itoa(keys),
		"-t", "set", "-d", "3", "-n", strconv.Itoa(20*keys)).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-benchmark: %v\n%s", err, out)
	}
	written, err := srv.Client().Keys(context.Background(), "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	ours := map[string]bool{}
	for i := range keys {
		ours[string(appendKey(nil, i))] = true
	}
	for _, k := range written {
		if !ours[k] {
			t.Errorf("redis-benchmark wrote %q, which appendKey never names for -r %d", k, keys)
		}
	}
	// 20 draws per key leave about e^-20 of them unwritten.
	if len(written) != keys {
		t.Errorf("redis-benchmark wrote %d keys, want all %d", len(written), keys)
	}
}

func TestHistogramBuckets(t *testing.T) {
	values := []uint64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 12345, 1 << 20, 1<<20 + 1, 999_999_999, 1<<62 + 12345, math.MaxInt64, math.MaxUint64}
	for v := uint64(1); v < 1<<40; v = v*3 + 1 {
		values = append(values, v-1, v, v+1)
	}
	for _, v := range values {
		i := histBucket(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histBucket(%d) = %d, outside [0, %d)", v, i, histBuckets)
		}
		lo, width := histBucketRange(i)
		if v < lo || v-lo >= width {
			t.Errorf("histBucket(%d) = %d, whose range [%d, %d+%d) does not hold it", v, i, lo, lo, width)
		}
		if width > 1 && width > lo>>histSubBits {
			t.Errorf("bucket %d of %d is %d wide: above 1/%d of its value", i, v, width, 1<<histSubBits)
		}
	}
	// Neighbouring buckets tile the line with no gap and no overlap.
	for i := 1; i < histBuckets; i++ {
		prevLo, prevWidth := histBucketRange(i - 1)
		lo, _ := histBucketRange(i)
		if prevLo+prevWidth != lo {
			t.Fatalf("bucket %d ends at %d, bucket %d starts at %d", i-1, prevLo+prevWidth, i, lo)
		}
	}
}

func TestHistogramPercentile(t *testing.T) {
	us := func(n int) time.Duration { return time.Duration(n) * time.Microsecond }
	var oneToThousand []time.Duration
	for i := 1; i <= 1000; i++ {
		oneToThousand = append(oneToThousand, us(i))
	}
	tests := []struct {
		name   string
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{"p50 of 1..1000 µs", oneToThousand, 50, us(500)},
		{"p99 of 1..1000 µs", oneToThousand, 99, us(990)},
		{"p100 is the largest", oneToThousand, 100, us(1000)},
		{"tiny p is the smallest", oneToThousand, 0.0001, us(1)},
		{"one value", []time.Duration{us(250)}, 99, us(250)},
		{"exact below 128 ns", []time.Duration{5, 7, 100}, 50, 7},
		{"p99 sees a 1% tail", append(repeat(us(100), 98), us(100), us(5000)), 99, us(100)},
		{"p99 sees a 2% tail", append(repeat(us(100), 98), us(5000), us(5000)), 99, us(5000)},
		{"a negative duration counts as 0", []time.Duration{-5}, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h latencyHist
			for _, v := range tt.values {
				h.record(v)
			}
			got := h.percentile(tt.p)
			// Within half a bucket: 1/256 of the value.
			if diff := math.Abs(float64(got - tt.want)); diff > float64(tt.want)/256+0.5 {
				t.Errorf("percentile(%v) = %v, want %v ± 1/256", tt.p, got, tt.want)
			}
		})
	}

	var empty latencyHist
	if got := empty.percentileMs(50); !math.IsNaN(got) {
		t.Errorf("percentileMs of nothing = %v, want NaN", got)
	}

	// Merging is the same as recording everything in one.
	var a, b, all latencyHist
	for i, v := range oneToThousand {
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
		all.record(v)
	}
	a.merge(&b)
	if a != all {
		t.Errorf("merge of two halves differs from recording all in one")
	}
}

func repeat(d time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func TestCheckReply(t *testing.T) {
	tests := []struct {
		op      loadOp
		reply   string
		wantNil bool
		wantErr error
	}{
		{opGet, "$3\r\nxxx\r\n", false, nil},
		{opGet, "$0\r\n\r\n", false, nil},
		{opGet, "$-1\r\n", true, nil},
		{opGet, "_\r\n", true, nil},
		{opGet, "-ERR no replica\r\n", false, errBenchrunErrorReply},
		{opGet, "!5\r\nERR x\r\n", false, errBenchrunErrorReply},
		{opGet, ":1\r\n", false, errBenchrunUnexpectedReply},
		{opGet, "+OK\r\n", false, errBenchrunUnexpectedReply},
		{opSet, "+OK\r\n", false, nil},
		{opSet, "-READONLY You can't write against a read only replica.\r\n", false, errBenchrunErrorReply},
		{opSet, "$-1\r\n", false, errBenchrunUnexpectedReply},
		{opSet, "+QUEUED\r\n", false, errBenchrunUnexpectedReply},
		{opSet, "", false, errBenchrunUnexpectedReply},
	}
	for _, tt := range tests {
		t.Run(tt.op.String()+" "+strconv.Quote(tt.reply), func(t *testing.T) {
			isNil, err := checkReply(tt.op, []byte(tt.reply))
			if isNil != tt.wantNil || !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Errorf("checkReply = %v, %v; want %v, %v", isNil, err, tt.wantNil, tt.wantErr)
			}
		})
	}
}

// TestNextReplySplit feeds a stream of replies cut into chunks of every
// size from 1 byte up, through a read buffer smaller than some replies, so
// the reader's compaction and growth paths both run.
func TestNextReplySplit(t *testing.T) {
	replies := []string{
		"+OK\r\n",
		"$3\r\nxxx\r\n",
		"$-1\r\n",
		"$40\r\n" + strings.Repeat("v", 40) + "\r\n",
		"-ERR x\r\n",
		"*2\r\n$1\r\na\r\n:7\r\n",
		"$5000\r\n" + strings.Repeat("w", 5000) + "\r\n",
		"+OK\r\n",
	}
	stream := strings.Join(replies, "")
	for _, chunk := range []int{1, 2, 3, 5, 8, 13, 64, 1000, len(stream)} {
		t.Run(fmt.Sprintf("chunks of %d", chunk), func(t *testing.T) {
			client, server := net.Pipe()
			t.Cleanup(func() { client.Close(); server.Close() })
			go func() {
				for s := stream; s != ""; {
					n := min(chunk, len(s))
					if _, err := server.Write([]byte(s[:n])); err != nil {
						return
					}
					s = s[n:]
				}
			}()
			cfg := loadConfig{pipeline: 1}
			c := newLoadClient(&cfg, 0, client, nil)
			c.in = make([]byte, 16)
			client.SetDeadline(time.Now().Add(10 * time.Second))
			for i, want := range replies {
				got, err := c.nextReply()
				if err != nil {
					t.Fatalf("reply %d: %v", i, err)
				}
				if string(got) != want {
					t.Fatalf("reply %d = %q, want %q", i, shorten(got), shorten([]byte(want)))
				}
			}
		})
	}
}

// TestLoadgen runs the generator against a real redis-server, in process
// and as the child process benchrun starts, and checks with the server's
// own counters that it sent what it says it sent.
func TestLoadgen(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{})
	master := topo.Master
	ctx := context.Background()

	// Fill the whole (small) keyspace, so any nil is the generator's fault.
	const keys = 500
	pipe := master.Client().Pipeline()
	for i := range keys {
		pipe.Set(ctx, string(appendKey(nil, i)), "xxx", 0)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		pipeline int
		child    bool
	}{
		{"in process P1", 1, false},
		{"in process P16", 16, false},
		{"child process P1", 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := master.Client().ConfigResetStat(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			cfg := loadConfig{
				addr: master.Addr(), clients: 2, requests: 2000, readPercent: 80,
				pipeline: tt.pipeline, keyspace: keys, valueBytes: 3, seed: 42,
			}
			t.Logf("seed %d", cfg.seed)
			var res loadResult
			var err error
			if tt.child {
				res, err = runLoadgen(nil, cfg)
			} else {
				res, err = runLoad(cfg)
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.requests != 2000 || res.gets+res.sets != 2000 {
				t.Errorf("requests %d (%d GET + %d SET), want 2000", res.requests, res.gets, res.sets)
			}
			if share := float64(res.gets) / float64(res.requests); share < 0.70 || share > 0.90 {
				t.Errorf("GET share %.3f, want about 0.80", share)
			}
			if res.nils != 0 {
				t.Errorf("%d GETs answered nil in a full keyspace", res.nils)
			}
			if res.rps <= 0 || !(res.p50Ms > 0) || !(res.p99Ms >= res.p50Ms) {
				t.Errorf("rps %v, p50 %v ms, p99 %v ms", res.rps, res.p50Ms, res.p99Ms)
			}
			stats := master.Info(t, "commandstats")
			for _, c := range []struct {
				stat string
				want int64
			}{{"cmdstat_get", res.gets}, {"cmdstat_set", res.sets}} {
				calls, err := parseCmdstatCalls(stats[c.stat])
				if err != nil || calls != c.want {
					t.Errorf("%s calls = %d (%v), want %d as the generator reports", c.stat, calls, err, c.want)
				}
			}
		})
	}

	// Every SET wrote a 3-byte value of redis-benchmark's filler.
	for i := range keys {
		if v, err := master.Client().Get(ctx, string(appendKey(nil, i))).Result(); err != nil || v != "xxx" {
			t.Fatalf("%s = %q, %v", appendKey(nil, i), v, err)
		}
	}
}

// TestLoadgenErrorReply: a server answering errors fails the run, quickly,
// naming the reply, in process and through the child process.
func TestLoadgenErrorReply(t *testing.T) {
	// Any write is over a 1-byte maxmemory: SET answers -OOM.
	srv := redistest.StartServer(t, "--maxmemory", "1", "--maxmemory-policy", "noeviction")
	cfg := loadConfig{addr: srv.Addr(), clients: 3, requests: 300, readPercent: 50, pipeline: 4, keyspace: 10, valueBytes: 3, seed: 1}
	if res, err := runLoad(cfg); !errors.Is(err, errBenchrunErrorReply) || !strings.Contains(err.Error(), "OOM") {
		t.Errorf("runLoad = %+v, %v; want an OOM error reply", res, err)
	}
	if res, err := runLoadgen(nil, cfg); err == nil || !strings.Contains(err.Error(), "OOM") {
		t.Errorf("runLoadgen = %+v, %v; want the child's OOM error", res, err)
	}
}

func TestParseCmdstatCalls(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0", 12, false},
		{"usec=30,calls=7", 7, false},
		{"", 0, false}, // never called: redis does not list it
		{"usec=30", 0, true},
		{"calls=x,usec=30", 0, true},
	}
	for _, tt := range tests {
		got, err := parseCmdstatCalls(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("parseCmdstatCalls(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestReplicaShare(t *testing.T) {
	tests := []struct {
		before, after getCalls
		want          float64
	}{
		{getCalls{100, 50}, getCalls{120, 130}, 0.8},
		{getCalls{0, 0}, getCalls{0, 10}, 1},
		{getCalls{5, 5}, getCalls{15, 5}, 0},
		{getCalls{5, 5}, getCalls{5, 5}, math.NaN()},
	}
	for _, tt := range tests {
		got := tt.after.replicaShareSince(tt.before)
		if got != tt.want && !(math.IsNaN(got) && math.IsNaN(tt.want)) {
			t.Errorf("%+v.replicaShareSince(%+v) = %v, want %v", tt.after, tt.before, got, tt.want)
		}
	}
}

func TestFirstErrors(t *testing.T) {
	e := func(s string) error { return errors.New(s) }
	if err := firstErrors([]error{nil, nil}, 3); err != nil {
		t.Errorf("no errors: %v", err)
	}
	err := firstErrors([]error{e("a"), nil, e("b"), e("c"), e("d"), e("e")}, 3)
	if got, want := err.Error(), "a\nb\nc\nand 2 more clients failed"; got != want {
		t.Errorf("firstErrors = %q, want %q", got, want)
	}
}
