// Command benchrun is `make bench`: DESIGN.md "Performance targets" measured
// on this machine. It starts a master and two replicas (internal/redistest)
// and bin/replproxy, runs redis-benchmark against the master directly and
// through the proxy in alternation, and prints throughput ratios, latency
// and the proxy's CPU time per request, then the resp package's Go
// benchmarks. It only reports: nothing here passes or fails on timing.
//
//	go run ./internal/benchrun [-rounds 3] [-n N] [-run REGEXP] [-resp=false]
//
// The 80/20 read/write mix rows (mix80-*) are made by benchrun itself,
// re-executed as `benchrun -loadgen ...` (loadgen.go), since redis-benchmark
// runs one command at a time; for proxy runs with replicas it also reports
// the share of GETs the replicas served (INFO commandstats).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
)

// row is a scenario's results, one entry per round.
type row struct {
	sc            scenario
	requests      int
	direct, proxy []benchResult
	twem          []benchResult // through twemproxy, when it ran
	floor         []benchResult // through internal/nullproxy (peers.go)
	// redisPlain, redisTLS: a TLS row's load against the master itself, on
	// its plaintext and its TLS port: the client's own TLS ceiling here.
	redisPlain, redisTLS []benchResult
	proxyFailures        int
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == loadgenArg {
		os.Exit(loadgenMain(os.Args[2:]))
	}
	rounds := flag.Int("rounds", envInt("ROUNDS", 3), "rounds per scenario, each one direct run then one proxy run (env ROUNDS)")
	n := flag.Int("n", envInt("BENCH_N", 0), "requests per unpipelined run, 8× that for pipelined runs; 0 = per-row defaults of about 2 s each (env BENCH_N)")
	runRe := flag.String("run", "", "run only the scenarios whose name matches this regexp (e.g. 'p16', 'set-p1-3B')")
	binFlag := flag.String("bin", "", "replproxy binary (default: bin/replproxy at the module root; make bench builds it)")
	respBench := flag.Bool("resp", true, "also run go test -bench on ./resp/")
	idle := flag.Bool("idle", true, "also measure RSS and a new client's first reply with 10,000 idle clients")
	flag.Parse()
	if *rounds < 1 {
		fmt.Fprintln(os.Stderr, "benchrun: -rounds must be at least 1")
		os.Exit(2)
	}
	filter, err := regexp.Compile(*runRe)
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchrun: -run: %v\n", err)
		os.Exit(2)
	}

	start := time.Now()
	h := newHarness()
	root := moduleRoot(h)
	bin := *binFlag
	if bin == "" {
		bin = filepath.Join(root, "bin", "replproxy")
	}
	if _, err := os.Stat(bin); err != nil {
		h.Fatalf("%v: build the proxy first with `make build` (`make bench` does)", err)
	}
	if _, err := exec.LookPath("redis-benchmark"); err != nil {
		h.Fatalf("redis-benchmark not found: run `make deps`")
	}

	var todo []scenario
	for _, sc := range scenarios() {
		if filter.MatchString(sc.name) {
			todo = append(todo, sc)
		}
	}
	if len(todo) == 0 {
		h.Fatalf("-run %q matches no scenario", *runRe)
	}
	nameWidth := 0
	for _, sc := range todo {
		nameWidth = max(nameWidth, len(sc.name))
	}

	redisWrap, clientWrap, layout := pinning()
	printHeader(bin, layout, *rounds, slices.ContainsFunc(todo, func(sc scenario) bool { return sc.load == loadMix }))

	if slices.ContainsFunc(todo, func(sc scenario) bool { return sc.tls }) {
		benchPKI = redistest.NewTLS(h)
	}
	// With TLS rows the master also serves TLS, so that the client's own
	// TLS cost is measured against Redis itself (tlsReference).
	var masterArgs []string
	masterTLS := ""
	if benchPKI != nil {
		port := redistest.FreePort(h)
		masterArgs = benchPKI.RedisArgs(port)
		masterTLS = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	topo := redistest.Start(h, redistest.Options{Replicas: 2, Wrapper: redisWrap, MasterArgs: masterArgs})
	master := topo.Master.Addr()
	ticksPerSec := clockTicksPerSecond()
	twem, twemBatch := startBeside(todo, "twemproxy", clientWrap, func(wrapper []string) (*peer, string) {
		return startTwemproxy(h, wrapper, master)
	})
	// The floor beside it, on the same footing; built once, when a row
	// needs it.
	floorBin := sync.OnceValues(func() (string, string) { return buildFloor(h, root) })
	floor, floorBatch := startBeside(todo, "floor", clientWrap, func(wrapper []string) (*peer, string) {
		bin, why := floorBin()
		if bin == "" {
			return nil, why
		}
		return startFloor(h, bin, wrapper, master)
	})

	var rows []*row
	var proxy *proxyProc
	populated := -1 // value size the whole keyspace holds, -1 if unknown
	for _, sc := range todo {
		var extra []string
		if sc.proxyArgs != nil {
			extra = sc.proxyArgs(topo)
		}
		if proxy == nil || !proxy.running() || (proxy.argsKey != strings.Join(extra, "\x00") && !(sc.tls && proxy.tlsAddr != "")) {
			if proxy != nil {
				proxy.stop()
			}
			proxy = startProxy(h, bin, clientWrap, master, extra)
		}
		if sc.readsExisting && populated != sc.valueBytes {
			if _, err := redisBenchmark(clientWrap, master, populateArgv(sc.valueBytes)); err != nil {
				h.Fatalf("filling the keyspace: %v", err)
			}
			populated = sc.valueBytes
		}
		if !sc.readsExisting && sc.valueBytes != populated {
			populated = -1 // partly overwritten with other sizes
		}

		r := &row{sc: sc, requests: sc.requestsFor(*n)}
		rows = append(rows, r)
		for round := 1; round <= *rounds; round++ {
			// The same seed for both runs of a round: the same requests.
			seed := uint64(round)
			directAddr, proxyAddr, runSc := master, proxy.addr, sc
			if sc.tls {
				directAddr, proxyAddr = proxy.addr, proxy.tlsAddr
			}
			dBefore, dErrBefore := proxy.cpuTicks()
			d, err := sc.run(clientWrap, directAddr, r.requests, seed)
			if err != nil {
				h.Fatalf("direct run against the master: %v", err)
			}
			d.cpuUsPerReq, d.sysPerReq, d.ctxPerReq, d.allSysPerReq = math.NaN(), math.NaN(), math.NaN(), math.NaN()
			if dAfter, dErrAfter := proxy.cpuTicks(); sc.tls && dErrBefore == nil && dErrAfter == nil {
				// The "direct" run of a TLS row is the proxy's plaintext.
				d.cpuUsPerReq = float64(dAfter-dBefore) * 1e6 / float64(ticksPerSec) / float64(r.requests)
			}
			r.direct = append(r.direct, d)

			if !proxy.running() {
				proxy = startProxy(h, bin, clientWrap, master, extra)
			}
			var getsBefore getCalls
			if sc.consistency != "" {
				getsBefore = readGetCalls(h, topo)
			}
			counter := startSyscallCounter(proxy.pid())
			before, errBefore := sampleProc(proxy.pid())
			if sc.tls {
				runSc.benchArgs = append(runSc.benchArgs[:len(runSc.benchArgs):len(runSc.benchArgs)], tlsBenchArgs()...)
			}
			p, err := runSc.run(clientWrap, proxyAddr, r.requests, seed)
			after, errAfter := sampleProc(proxy.pid())
			allSyscalls := counter.stop()
			if err != nil {
				r.proxyFailures++
				fmt.Printf("%-*s round %d/%d: PROXY RUN FAILED: %v\nproxy log:\n%s\n", nameWidth, sc.name, round, *rounds, err, tail(proxy.logPath))
				continue
			}
			p.cpuUsPerReq, p.sysPerReq, p.ctxPerReq = perReq(before, after, errBefore, errAfter, r.requests, ticksPerSec)
			p.allSysPerReq = allSyscalls / float64(r.requests)
			p.replicaShare = math.NaN()
			extraInfo := ""
			if sc.consistency != "" {
				p.replicaShare = readGetCalls(h, topo).replicaShareSince(getsBefore)
				extraInfo += ", reads on replicas " + fmtPercent(p.replicaShare)
			}
			if sc.load == loadMix {
				extraInfo += fmt.Sprintf(", GET nils %d/%d, seed %d", d.nils, p.nils, seed)
			}
			if sc.tls {
				extraInfo += fmt.Sprintf(" (plaintext %s µs/req)", fmtFloat(d.cpuUsPerReq, 2))
			}
			t, f := twem, floor
			if sc.batch {
				t, f = twemBatch, floorBatch
			}
			if sc.twemproxy && t != nil && t.running() {
				extraInfo += runPeer(&r.twem, "twemproxy", r, t, clientWrap, seed, ticksPerSec, d.rps)
			}
			if sc.twemproxy && f != nil && f.running() {
				extraInfo += runPeer(&r.floor, "floor", r, f, clientWrap, seed, ticksPerSec, d.rps)
			}
			if sc.tls && masterTLS != "" {
				extraInfo += tlsReference(h, r, sc, runSc, clientWrap, master, masterTLS, seed)
			}
			r.proxy = append(r.proxy, p)
			fmt.Printf("%-*s round %d/%d: direct %9.0f rps, proxy %9.0f rps (%.2f), proxy CPU %s µs/req, syscalls %s+%s/req%s\n",
				nameWidth, sc.name, round, *rounds, d.rps, p.rps, p.rps/d.rps, fmtFloat(p.cpuUsPerReq, 2),
				fmtFloat(p.sysPerReq, 2), fmtFloat(p.ctxPerReq, 2), extraInfo)
		}
	}
	proxy.stop()
	if *idle {
		measureIdle(h, bin, clientWrap, master)
	}

	fmt.Println()
	printTable(rows)
	printSyscalls(rows)
	printTwem(rows, twem != nil || twemBatch != nil || floor != nil || floorBatch != nil)
	printModes(rows)
	printTLS(rows)
	fmt.Printf("\nbenchmark runs took %v\n", time.Since(start).Round(time.Second))

	// The servers are stopped first so the Go benchmarks get the machine.
	h.runCleanups()
	if *respBench {
		runRespBench(root)
	}
	failed := 0
	for _, r := range rows {
		failed += r.proxyFailures
	}
	if failed > 0 {
		fmt.Printf("\n%d proxy run(s) failed; see above\n", failed)
		os.Exit(1)
	}
}

// pinning returns the CPU layout of DESIGN.md: Redis on CPU 0, the proxy
// and redis-benchmark on CPU 1, so that the proxy's cost shows up as lost
// client throughput instead of hiding in an idle core.
func pinning() (redisWrap, clientWrap []string, layout string) {
	taskset, err := exec.LookPath("taskset")
	switch {
	case err != nil:
		return nil, nil, "not pinned (note: taskset not found; install util-linux for the DESIGN.md layout)"
	case runtime.NumCPU() < 2:
		return nil, nil, fmt.Sprintf("not pinned (note: %d CPU; the DESIGN.md layout needs 2)", runtime.NumCPU())
	case exec.Command(taskset, "-c", "0,1", "true").Run() != nil:
		return nil, nil, "not pinned (note: CPUs 0 and 1 are not both usable here)"
	}
	return []string{taskset, "-c", "0"}, []string{taskset, "-c", "1"},
		"Redis on CPU 0; proxy and redis-benchmark on CPU 1 (taskset)"
}

func printHeader(bin, layout string, rounds int, mix bool) {
	version := "unknown"
	if out, err := exec.Command(bin, "--version").Output(); err == nil {
		version = strings.TrimSpace(string(out))
	}
	redis := "unknown"
	if out, err := exec.Command("redis-server", "--version").Output(); err == nil {
		redis = strings.TrimSpace(string(out))
	}
	fmt.Printf("benchrun %s\n", time.Now().Format(time.RFC3339))
	fmt.Printf("  proxy:  %s (%s)\n", bin, version)
	fmt.Printf("  redis:  %s; a master and 2 replicas\n", redis)
	fmt.Printf("  CPUs:   %d; %s\n", runtime.NumCPU(), layout)
	fmt.Printf("  load:   redis-benchmark %s; rounds: %d, each a direct run then a proxy run\n", strings.Join(benchLoad, " "), rounds)
	if mix {
		fmt.Printf("  mix:    benchrun %s -c %d -r %d: GETs and SETs at random, one raw RESP connection per client\n", loadgenArg, benchClients, keyspace)
	}
	fmt.Println()
}

// printSyscalls shows what the proxy asked of the kernel per request:
// DESIGN.md's "≤ 2.1 syscalls per request, GET P1". I/O is syscr+syscw of
// /proc/<pid>/io (read/write/writev); context switches count the calls that
// slept (blocking epoll_wait, futex, sysmon's nanosleep); all is every
// syscall, counted by perf stat's raw_syscalls tracepoint when perf is
// installed and allowed (README "Benchmarks" has the strace -c recipe for
// the breakdown by call).
func printSyscalls(rows []*row) {
	fmt.Println("\nproxy syscalls per request (medians over the rounds):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tread+write (syscr+syscw)\tcontext switches\tall syscalls (perf)\ttarget\t")
	for _, r := range rows {
		if len(r.proxy) == 0 {
			continue
		}
		all := medianOrNaN(collect(r.proxy, func(b benchResult) float64 { return b.allSysPerReq }))
		want := 0.0
		if r.sc.name == "get-p1-3B" || r.sc.name == "get-p1-3B-batch" {
			want = 2.1
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", r.sc.name,
			fmtFloat(median(collect(r.proxy, func(b benchResult) float64 { return b.sysPerReq })), 3),
			fmtFloat(median(collect(r.proxy, func(b benchResult) float64 { return b.ctxPerReq })), 3),
			fmtFloat(all, 3), target("≤", want, all, all <= want))
	}
	tw.Flush()
}

func printTable(rows []*row) {
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tP\tvalue\t-n\tdirect rps\tproxy rps\tproxy/direct\tper-round range\ttarget\treads on replicas\tp50 ms direct/proxy\tp99 ms direct/proxy\tproxy CPU µs/req\ttarget\t")
	for _, r := range rows {
		direct := collect(r.direct, func(b benchResult) float64 { return b.rps })
		proxied := collect(r.proxy, func(b benchResult) float64 { return b.rps })
		dRPS, pRPS := median(direct), median(proxied)
		ratio := math.NaN()
		if len(proxied) > 0 && dRPS > 0 {
			ratio = pRPS / dRPS
		}
		// Direct and proxy runs of one round are neighbours in time, so their
		// ratio shows how much the machine's noise moves the result.
		lo, hi := math.Inf(1), math.Inf(-1)
		for i := range min(len(r.direct), len(r.proxy)) {
			x := r.proxy[i].rps / r.direct[i].rps
			lo, hi = min(lo, x), max(hi, x)
		}
		spread := "-"
		if hi >= lo {
			spread = fmt.Sprintf("%.2f–%.2f", lo, hi)
		}
		cpu := median(collect(r.proxy, func(b benchResult) float64 { return b.cpuUsPerReq }))
		share := "-"
		if r.sc.consistency != "" {
			share = fmtPercent(median(collect(r.proxy, func(b benchResult) float64 { return b.replicaShare })))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s / %s\t%s / %s\t%s\t%s\t\n",
			r.sc.name, r.sc.pipeline, sizeName(r.sc.valueBytes), r.requests,
			dRPS, fmtFloat(pRPS, 0), fmtFloat(ratio, 2), spread,
			target("≥", r.sc.minRatio, ratio, ratio >= r.sc.minRatio),
			share,
			fmtFloat(median(collect(r.direct, func(b benchResult) float64 { return b.p50Ms })), 3),
			fmtFloat(median(collect(r.proxy, func(b benchResult) float64 { return b.p50Ms })), 3),
			fmtFloat(median(collect(r.direct, func(b benchResult) float64 { return b.p99Ms })), 3),
			fmtFloat(median(collect(r.proxy, func(b benchResult) float64 { return b.p99Ms })), 3),
			fmtFloat(cpu, 2),
			target("≤", r.sc.maxCPUPerReqU, cpu, cpu <= r.sc.maxCPUPerReqU))
	}
	tw.Flush()
	fmt.Println("ratios are of the median rps over the rounds; targets from DESIGN.md \"Performance targets\".")
	fmt.Println("reads on replicas: the replicas' share of the GETs served during the proxy runs (INFO commandstats), median over the rounds.")
	printNils(rows)
}

// printNils reports the mix rows' GETs answered nil. The fill leaves about
// e^-10 of the keys unwritten (populateArgv), so a few are expected, about
// as many through the proxy as direct (fewer as the mix's SETs fill the
// gaps). Clearly more through the proxy would mean reads served by a
// replica that a key's first SET had not reached yet: allowed in eventual
// mode, a bug in causal and linearizable.
func printNils(rows []*row) {
	header := false
	for _, r := range rows {
		if r.sc.load != loadMix {
			continue
		}
		var dGets, dNils, pGets, pNils int64
		for _, b := range r.direct {
			dGets, dNils = dGets+b.gets, dNils+b.nils
		}
		for _, b := range r.proxy {
			pGets, pNils = pGets+b.gets, pNils+b.nils
		}
		if !header {
			fmt.Println("GETs answered nil (the fill leaves about e^-10 of the keys unwritten, so a few are expected):")
			header = true
		}
		fmt.Printf("  %s: direct %d of %d, proxy %d of %d; at most about %.0f expected in each\n",
			r.sc.name, dNils, dGets, pNils, pGets, float64(max(dGets, pGets))*math.Exp(-10))
	}
}

// printModes compares the consistency modes on the 80/20 mix, per pipeline
// depth, against DESIGN.md's "causal mode ≥ 0.85× the throughput of
// eventual". The modes' rows run one after another, not interleaved, so the
// second ratio divides out each row's own direct runs: when the machine
// drifts between rows, that one is the steadier.
func printModes(rows []*row) {
	const minCausal = 0.85
	type modeRPS struct{ proxy, ratio float64 }
	byDepth := map[int]map[string]modeRPS{}
	var depths []int
	for _, r := range rows {
		if r.sc.load != loadMix || r.sc.readPercent != 80 || len(r.proxy) == 0 {
			continue
		}
		d := median(collect(r.direct, func(b benchResult) float64 { return b.rps }))
		p := median(collect(r.proxy, func(b benchResult) float64 { return b.rps }))
		if byDepth[r.sc.pipeline] == nil {
			byDepth[r.sc.pipeline] = map[string]modeRPS{}
			depths = append(depths, r.sc.pipeline)
		}
		byDepth[r.sc.pipeline][r.sc.consistency] = modeRPS{proxy: p, ratio: p / d}
	}
	if len(depths) == 0 {
		return
	}
	fmt.Printf("\nconsistency modes on the 80/20 mix (median proxy rps over eventual's; DESIGN.md: causal ≥ %g× eventual):\n", minCausal)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "P\teventual rps\tcausal/eventual\ttarget\tsame, each over its direct\tlinearizable/eventual\tsame, each over its direct\t")
	for _, p := range depths {
		m := byDepth[p]
		ev, ok := m["eventual"]
		if !ok {
			fmt.Fprintf(tw, "%d\tnot run\t-\t-\t-\t-\t-\t\n", p)
			continue
		}
		rel := func(mode string) (float64, float64) {
			x, ok := m[mode]
			if !ok {
				return math.NaN(), math.NaN()
			}
			return x.proxy / ev.proxy, x.ratio / ev.ratio
		}
		causal, causalNorm := rel("causal")
		lin, linNorm := rel("linearizable")
		fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%s\t%s\t%s\t\n", p, ev.proxy,
			fmtFloat(causal, 2), target("≥", minCausal, causal, causal >= minCausal), fmtFloat(causalNorm, 2),
			fmtFloat(lin, 2), fmtFloat(linNorm, 2))
	}
	tw.Flush()
}

// fmtPercent shows a share in [0, 1] as a percentage.
func fmtPercent(share float64) string {
	if math.IsNaN(share) {
		return "n/a"
	}
	return strconv.FormatFloat(100*share, 'f', 1, 64) + "%"
}

// target shows a DESIGN.md target and whether this run met it. It is
// information for the reader, not a verdict: one noisy run decides nothing.
func target(op string, want, got float64, met bool) string {
	switch {
	case want == 0:
		return "-"
	case math.IsNaN(got):
		return op + strconv.FormatFloat(want, 'f', -1, 64)
	case met:
		return op + strconv.FormatFloat(want, 'f', -1, 64) + " met"
	default:
		return op + strconv.FormatFloat(want, 'f', -1, 64) + " missed"
	}
}

func collect(rs []benchResult, f func(benchResult) float64) []float64 {
	var out []float64
	for _, r := range rs {
		if v := f(r); !math.IsNaN(v) {
			out = append(out, v)
		}
	}
	return out
}

func fmtFloat(v float64, prec int) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return strconv.FormatFloat(v, 'f', prec, 64)
}

func runRespBench(root string) {
	fmt.Println("\n== go test -run '^$' -bench . -benchmem ./resp/")
	cmd := exec.Command("go", "test", "-run", "^$", "-bench", ".", "-benchmem", "./resp/")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Printf("note: the resp benchmarks did not run cleanly (%v); the package may not be written yet or may not build\n", err)
	}
}

// moduleRoot finds go.mod upwards from the working directory, so benchrun
// works from any directory of the repo.
func moduleRoot(h *harness) string {
	dir, err := os.Getwd()
	if err != nil {
		h.Fatalf("%v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		} else if !errors.Is(err, fs.ErrNotExist) {
			h.Fatalf("%v", err)
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			h.Fatalf("no go.mod above the working directory: run benchrun from the replproxy repository")
		}
		dir = parent
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}
