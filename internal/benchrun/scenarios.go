package main

import (
	"fmt"
	"strconv"

	"github.com/replproxy/replproxy/internal/redistest"
)

// scenario is one row of the results table: the same redis-benchmark load
// run against the master directly and through a proxy started with
// proxyArgs, alternately, for -rounds rounds. New measurements (reads split
// over replicas, an 80/20 mix per consistency mode) are new entries in
// scenarios(), not new code paths.
type scenario struct {
	name       string // unique; -run matches it
	test       string // redis-benchmark -t
	pipeline   int    // -P
	valueBytes int    // -d
	// requests is -n for one run, chosen so a direct run takes about 2 s
	// here; -n rescales it (see requestsFor).
	requests int
	// proxyArgs are replproxy flags beyond the fixed --master, --listen,
	// --metrics-listen "" and --discover-replicas=false. Scenarios with equal
	// args share one proxy process. Nil means none.
	proxyArgs func(topo *redistest.Topology) []string
	benchArgs []string // more redis-benchmark arguments, after the standard ones

	// readsExisting: the run reads keys and must find values of valueBytes,
	// or it would measure nil replies. The keyspace is filled first.
	readsExisting bool

	// DESIGN.md "Performance targets"; 0 means none for this row.
	minRatio      float64 // proxy rps / direct rps
	maxCPUPerReqU float64 // proxy CPU µs per request
}

// keyspace is redis-benchmark's -r: every run draws keys from this many.
const keyspace = 100000

func scenarios() []scenario {
	return []scenario{
		// Request counts: about 2 s per direct run with Redis, its two
		// replicas and the client squeezed onto 2 CPUs. Writes cost the master
		// the replication stream too, hence fewer pipelined SETs than GETs.
		matrixRow("set", 1, 3, 250_000, 0.55, 7),
		matrixRow("set", 16, 3, 600_000, 0.85, 1.0),
		matrixRow("get", 1, 3, 200_000, 0.60, 7),
		matrixRow("get", 16, 3, 1_500_000, 0.70, 1.0),
		matrixRow("set", 1, 1024, 150_000, 0, 7),
		matrixRow("set", 16, 1024, 300_000, 0, 1.0),
		matrixRow("get", 1, 1024, 250_000, 0, 7),
		matrixRow("get", 16, 1024, 1_200_000, 0, 1.0),
		// Reads split over the two replicas (eventual mode): the ratio is
		// against the master alone, so above 1 means the replicas add capacity.
		replicaRow(1, 200_000),
		replicaRow(16, 1_500_000),
	}
}

// replicaRow is a GET run through a proxy that sends reads to both
// replicas (--consistency eventual).
func replicaRow(pipeline, requests int) scenario {
	s := matrixRow("get", pipeline, 3, requests, 0, 0)
	s.name += "-replicas"
	s.proxyArgs = func(topo *redistest.Topology) []string {
		_, replicas := topo.Addrs()
		args := []string{"--consistency", "eventual"}
		for _, r := range replicas {
			args = append(args, "--replica", r)
		}
		return args
	}
	return s
}

// matrixRow is one cell of {SET, GET} × {P1, P16} × {3 B, 1 KiB} through a
// proxy that sends everything to the master. DESIGN.md's ratio targets are
// for the 3-byte rows; the CPU targets are per pipeline depth.
func matrixRow(test string, pipeline, valueBytes, requests int, minRatio, maxCPUPerReqU float64) scenario {
	return scenario{
		name:          fmt.Sprintf("%s-p%d-%s", test, pipeline, sizeName(valueBytes)),
		test:          test,
		pipeline:      pipeline,
		valueBytes:    valueBytes,
		requests:      requests,
		readsExisting: test == "get",
		minRatio:      minRatio,
		maxCPUPerReqU: maxCPUPerReqU,
	}
}

// requestsFor is -n for one run: the row's default, or with -n N, N for
// unpipelined rows and 8N for pipelined ones (a pipelined run of N requests
// would be over in a fraction of a second).
func (s scenario) requestsFor(n int) int {
	switch {
	case n <= 0:
		return s.requests
	case s.pipeline > 1:
		return 8 * n
	default:
		return n
	}
}

func (s scenario) benchArgv(requests int) []string {
	args := []string{
		"-t", s.test,
		"-P", strconv.Itoa(s.pipeline),
		"-d", strconv.Itoa(s.valueBytes),
		"-n", strconv.Itoa(requests),
	}
	return append(args, s.benchArgs...)
}

func sizeName(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return strconv.Itoa(n/1024) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

// populateArgv fills the whole keyspace with values of valueBytes: 10× the
// keyspace in random draws leaves about e^-10 of the keys unwritten.
func populateArgv(valueBytes int) []string {
	return []string{"-t", "set", "-P", "64", "-d", strconv.Itoa(valueBytes), "-n", strconv.Itoa(10 * keyspace)}
}
