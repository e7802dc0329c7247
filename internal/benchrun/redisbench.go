package main

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// benchResult is one run: what redis-benchmark's --csv line or the mix
// generator's result line reports, and what benchrun measured around it.
type benchResult struct {
	rps         float64
	p50Ms       float64
	p99Ms       float64
	cpuUsPerReq float64 // proxy CPU per request; NaN for direct runs
	// sysPerReq and ctxPerReq are the proxy's read/write-family syscalls
	// and context switches per request (procSample); NaN for direct runs.
	sysPerReq, ctxPerReq float64
	// allSysPerReq is every syscall per request (perf stat), NaN without perf.
	allSysPerReq float64
	// clientCPU is the CPU time redis-benchmark used (its rusage), 0 for
	// other clients.
	clientCPU time.Duration

	// Mix runs only (redis-benchmark does not count them): GETs sent, and
	// those answered nil.
	gets, nils int64
	// replicaShare is the replicas' share of the GETs the servers served
	// during a proxy run with replicas (INFO commandstats); NaN otherwise.
	replicaShare float64
}

// benchLoad is the fixed part of every redis-benchmark command line in
// DESIGN.md "Performance targets": 50 clients over 100,000 random keys.
var benchLoad = []string{"-c", strconv.Itoa(benchClients), "-r", strconv.Itoa(keyspace)}

// redisBenchmark runs redis-benchmark against addr and parses its CSV.
func redisBenchmark(wrapper []string, addr string, args []string) (benchResult, error) {
	host, port, _ := strings.Cut(addr, ":")
	argv := append(slices.Clone(wrapper), "redis-benchmark", "-h", host, "-p", port, "--csv")
	argv = append(argv, benchLoad...)
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// No Setpgid: a terminal Ctrl-C should stop a run at once.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// redis-benchmark 7.0 exits non-zero at the first error reply, so a
	// proxy answering errors quickly cannot pass for a fast one.
	if err := cmd.Run(); err != nil {
		return benchResult{}, fmt.Errorf("%s: %v\n%s%s", strings.Join(argv, " "), err, stdout.String(), stderr.String())
	}
	res, err := parseBenchCSV(stdout.Bytes())
	if err != nil {
		return benchResult{}, fmt.Errorf("%s: %v; output:\n%s", strings.Join(argv, " "), err, stdout.String())
	}
	// taskset execs redis-benchmark: the child's rusage is the client's.
	res.clientCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return res, nil
}

// parseBenchCSV reads redis-benchmark 7.0's --csv output: a header
// "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",
// "p95_latency_ms","p99_latency_ms","max_latency_ms" then one row per test.
// Columns are found by name so a reordering in another version is caught
// rather than misread.
func parseBenchCSV(out []byte) (benchResult, error) {
	records, err := csv.NewReader(bytes.NewReader(out)).ReadAll()
	if err != nil {
		return benchResult{}, err
	}
	if len(records) != 2 {
		return benchResult{}, fmt.Errorf("want a header and one row, got %d CSV records", len(records))
	}
	col := map[string]int{}
	for i, name := range records[0] {
		col[name] = i
	}
	row := records[1]
	get := func(name string) (float64, error) {
		i, ok := col[name]
		if !ok || i >= len(row) {
			return 0, fmt.Errorf("no %q column in %q", name, records[0])
		}
		return strconv.ParseFloat(row[i], 64)
	}
	var r benchResult
	var errs [3]error
	r.rps, errs[0] = get("rps")
	r.p50Ms, errs[1] = get("p50_latency_ms")
	r.p99Ms, errs[2] = get("p99_latency_ms")
	return r, errors.Join(errs[:]...)
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
