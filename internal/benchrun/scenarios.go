package main

import (
	"fmt"
	"strconv"

	"github.com/replproxy/replproxy/internal/redistest"
)

// scenario is one row of the results table: the same load run against the
// master directly and through a proxy started with proxyArgs, alternately,
// for -rounds rounds. New measurements (reads split over replicas, an 80/20
// mix per consistency mode) are new entries in scenarios(), not new code
// paths.
type scenario struct {
	name string // unique; -run matches it
	load loadKind
	test string // redis-benchmark -t (loadRedisBenchmark)
	// readPercent is the share of GETs of a loadMix run; the rest are SETs.
	readPercent int
	pipeline    int // -P
	valueBytes  int // -d
	// requests is -n for one run, chosen so a direct run takes about 2 s
	// here; -n rescales it (see requestsFor).
	requests int
	// proxyArgs are replproxy flags beyond the fixed --master, --listen,
	// --metrics-listen "" and --discover-replicas=false. Scenarios with equal
	// args share one proxy process. Nil means none.
	proxyArgs func(topo *redistest.Topology) []string
	// consistency is the --consistency the proxy runs with when it has
	// replicas (replicaArgs), "" when it has none. Runs with replicas report
	// the share of GETs the replicas served.
	consistency string
	benchArgs   []string // more redis-benchmark arguments, after the standard ones

	// tls: the proxy run goes over TLS, and the direct run to the same
	// proxy's plaintext listener (tls.go).
	tls bool

	// readsExisting: the run reads keys and must find values of valueBytes,
	// or it would measure nil replies. The keyspace is filled first.
	readsExisting bool

	// twemproxy: also run through nutcracker, when installed, after each
	// round's proxy run (peers.go).
	twemproxy bool

	// batch: the proxy runs with --cpu-policy batch, and twemproxy, for
	// the same footing, under chrt -b 0 (SCHED_BATCH as well).
	batch bool

	// DESIGN.md "Performance targets"; 0 means none for this row.
	minRatio      float64 // proxy rps / direct rps
	maxCPUPerReqU float64 // proxy CPU µs per request
}

// loadKind is the client that makes a scenario's load.
type loadKind int

const (
	// loadRedisBenchmark is `redis-benchmark -t test`: one command per run.
	loadRedisBenchmark loadKind = iota
	// loadMix is benchrun's own generator (loadgen.go): readPercent GETs,
	// the rest SETs, over the same keys, connections and pipeline.
	loadMix
)

// keyspace is redis-benchmark's -r: every run draws keys from this many.
const keyspace = 100000

// benchClients is redis-benchmark's -c, and the mix generator's.
const benchClients = 50

// mixModes are the --consistency modes the 80/20 mix is measured in:
// DESIGN.md's target compares causal with eventual; linearizable shows the
// price of its ROLE round trip per batch of reads.
var mixModes = []string{"causal", "linearizable", "eventual"}

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
		// DESIGN.md: causal ≥ 0.85× eventual on an 80/20 read/write mix; see
		// printModes. Writes cost the master the replication stream, so the
		// counts sit between the SET and GET rows'.
		mixRow("causal", 1, 200_000),
		mixRow("linearizable", 1, 200_000),
		mixRow("eventual", 1, 200_000),
		mixRow("causal", 16, 1_000_000),
		mixRow("linearizable", 16, 1_000_000),
		mixRow("eventual", 16, 1_000_000),
		// The write witness (on in every row above) against off: its
		// cost must stay within 5% (compare with set-p1-3B, set-p16-3B).
		witnessOffRow(1, 250_000),
		witnessOffRow(16, 600_000),
		// Both proxies under SCHED_BATCH (--cpu-policy batch; chrt -b 0 for
		// twemproxy): this layout shares the proxy's CPU with the client.
		batchRow("set", 1, 250_000),
		batchRow("get", 1, 200_000),
		batchRow("set", 16, 600_000),
		batchRow("get", 16, 1_500_000),
		// Client TLS through the proxy against its plaintext listener.
		tlsRow("set", 1, 150_000, 0),
		tlsRow("get", 1, 150_000, 0),
		tlsRow("set", 16, 600_000, 0.8),
		tlsRow("get", 16, 1_000_000, 0.8),
	}
}

// witnessOffRow is a SET row through a proxy with --witness off.
func witnessOffRow(pipeline, requests int) scenario {
	s := matrixRow("set", pipeline, 3, requests, 0, 0)
	s.name += "-witness-off"
	s.proxyArgs = func(*redistest.Topology) []string { return []string{"--witness", "off"} }
	return s
}

// batchRow is a 3-byte row with both proxies under SCHED_BATCH.
func batchRow(test string, pipeline, requests int) scenario {
	s := matrixRow(test, pipeline, 3, requests, 0, 0)
	s.name += "-batch"
	s.batch = true
	s.proxyArgs = func(*redistest.Topology) []string { return []string{"--cpu-policy", "batch"} }
	return s
}

// replicaRow is a GET run through a proxy that sends reads to both
// replicas (--consistency eventual).
func replicaRow(pipeline, requests int) scenario {
	s := matrixRow("get", pipeline, 3, requests, 0, 0)
	s.name += "-replicas"
	s.consistency = "eventual"
	s.proxyArgs = replicaArgs(s.consistency)
	return s
}

// mixRow is the 80/20 GET/SET mix of 3-byte values through a proxy with
// both replicas in consistency mode. The keyspace is filled first, so a GET
// that finds nothing means a read went where the key's write was not.
func mixRow(mode string, pipeline, requests int) scenario {
	name := "mix80-" + mode
	if pipeline > 1 {
		name = fmt.Sprintf("mix80-p%d-%s", pipeline, mode)
	}
	return scenario{
		name:          name,
		load:          loadMix,
		readPercent:   80,
		pipeline:      pipeline,
		valueBytes:    3,
		requests:      requests,
		proxyArgs:     replicaArgs(mode),
		consistency:   mode,
		readsExisting: true,
	}
}

// replicaArgs gives the proxy both replicas, with no discovery, in mode.
func replicaArgs(mode string) func(topo *redistest.Topology) []string {
	return func(topo *redistest.Topology) []string {
		_, replicas := topo.Addrs()
		args := []string{"--consistency", mode}
		for _, r := range replicas {
			args = append(args, "--replica", r)
		}
		return args
	}
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
		twemproxy:     valueBytes == 3,
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

// run makes the scenario's load against addr once. seed is the mix
// generator's (redis-benchmark has none to set).
func (s scenario) run(wrapper []string, addr string, requests int, seed uint64) (benchResult, error) {
	if s.load != loadMix {
		return redisBenchmark(wrapper, addr, s.benchArgv(requests))
	}
	res, err := runLoadgen(wrapper, s.loadConfig(addr, requests, seed))
	if err != nil {
		return benchResult{}, err
	}
	return benchResult{rps: res.rps, p50Ms: res.p50Ms, p99Ms: res.p99Ms, gets: res.gets, nils: res.nils}, nil
}

func (s scenario) loadConfig(addr string, requests int, seed uint64) loadConfig {
	return loadConfig{
		addr:        addr,
		clients:     benchClients,
		requests:    requests,
		readPercent: s.readPercent,
		pipeline:    s.pipeline,
		keyspace:    keyspace,
		valueBytes:  s.valueBytes,
		seed:        seed,
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
