package main

import (
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"
)

// peer is a proxy measured beside replproxy on the rows marked twemproxy,
// on the proxy's CPU, in front of the master alone:
//   - twemproxy, the C proxy DESIGN.md "Performance targets" compares with
//     (nutcracker, one server pool). It is optional: without nutcracker on
//     PATH (apt-get install nutcracker; `make deps` installs it as root)
//     the rows run without it and say so;
//   - the floor: internal/nullproxy, which makes only the socket calls any
//     proxy makes and nothing else (peers.go).
type peer struct {
	child
	addr    string
	logPath string
}

// twemConfig is nutcracker's YAML for one pool in front of master. Its own
// defaults otherwise: no timeout, no auto ejection (one server), hash and
// distribution irrelevant with one server.
func twemConfig(listen, master string) string {
	return fmt.Sprintf("bench:\n  listen: %s\n  redis: true\n  preconnect: true\n  servers:\n    - %s:1\n", listen, master)
}

// startTwemproxy starts nutcracker in front of master, or returns nil and
// why it did not.
func startTwemproxy(h *harness, wrapper []string, master string) (*peer, string) {
	bin, err := exec.LookPath("nutcracker")
	if err != nil {
		return nil, "nutcracker not found (apt-get install nutcracker, or `make deps` as root)"
	}
	port, err1 := freePort()
	statsPort, err2 := freePort()
	if err1 != nil || err2 != nil {
		return nil, fmt.Sprintf("no free port: %v %v", err1, err2)
	}
	dir := h.TempDir()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	conf := filepath.Join(dir, "nutcracker.yml")
	if err := os.WriteFile(conf, []byte(twemConfig(addr, master)), 0o644); err != nil {
		return nil, err.Error()
	}
	logPath := filepath.Join(dir, "nutcracker.log")
	argv := append(slices.Clone(wrapper), bin, "-c", conf, "-o", logPath,
		"-s", strconv.Itoa(statsPort), "-a", "127.0.0.1", "-p", filepath.Join(dir, "nutcracker.pid"))
	return startPeer(h, "twemproxy", argv, addr, logPath, nil)
}

// startPeer starts argv (output to out, when not nil), serving at addr,
// and waits until it answers; or returns nil and why it did not.
func startPeer(h *harness, name string, argv []string, addr, logPath string, out *os.File) (*peer, string) {
	cmd := exec.Command(argv[0], argv[1:]...)
	if out != nil {
		cmd.Stdout, cmd.Stderr = out, out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Sprintf("start %s: %v", shellJoin(argv), err)
	}
	t := &peer{child: newChild(cmd), addr: addr, logPath: logPath}
	h.Cleanup(t.stop)
	deadline := time.Now().Add(proxyReadyTimeout)
	for {
		// twemproxy answers PING only from 0.5.0 on; a GET of a missing
		// key works with every version.
		if err := getMissing(addr); err == nil {
			break
		} else if !t.running() || time.Now().After(deadline) {
			t.stop()
			return nil, fmt.Sprintf("%s did not serve (%v); its log:\n%s", name, err, tail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.Logf("%s: %s (pid %d)", name, shellJoin(argv), cmd.Process.Pid)
	return t, ""
}

// getMissing sends GET of a key nobody writes and expects a nil reply.
func getMissing(addr string) error {
	return ask(addr, "*2\r\n$3\r\nGET\r\n$20\r\nbenchrun:no-such-key\r\n", "$-1")
}

// runPeer makes a round's load through a peer (named name), right after
// the round's replproxy run, appends its figures to dst and returns them
// for the round's line.
func runPeer(dst *[]benchResult, name string, r *row, t *peer, wrapper []string, seed uint64, ticksPerSec int64, directRPS float64) string {
	counter := startSyscallCounter(t.pid())
	before, errBefore := sampleProc(t.pid())
	res, err := r.sc.run(wrapper, t.addr, r.requests, seed)
	after, errAfter := sampleProc(t.pid())
	all := counter.stop()
	if err != nil {
		return fmt.Sprintf(", %s FAILED: %v", name, err)
	}
	res.cpuUsPerReq, res.sysPerReq, res.ctxPerReq = perReq(before, after, errBefore, errAfter, r.requests, ticksPerSec)
	res.allSysPerReq = all / float64(r.requests)
	*dst = append(*dst, res)
	return fmt.Sprintf("; %s %9.0f rps (%.2f), CPU %s µs/req", name, res.rps, res.rps/directRPS, fmtFloat(res.cpuUsPerReq, 2))
}

// printTwem sets replproxy beside twemproxy and the floor on the rows they
// ran: issue 14 wants replproxy's CPU per request at most 0.6× twemproxy's
// at pipeline 1 and 0.3× at pipeline 16. The floor's columns say how much
// of that is the kernel's: CPU a proxy spends with no code of its own.
func printTwem(rows []*row, ran bool) {
	if !ran {
		return
	}
	fmt.Println("\nreplproxy beside twemproxy and the floor (internal/nullproxy: the socket calls alone), same rounds, same direct runs; medians:")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\treplproxy/direct\ttwemproxy/direct\tfloor/direct\treplproxy CPU µs/req\ttwemproxy\tfloor\tCPU replproxy/twemproxy\ttarget\tfloor/twemproxy\tsyscalls/req replproxy\ttwemproxy\tfloor\t")
	cpu := func(b benchResult) float64 { return b.cpuUsPerReq }
	rps := func(b benchResult) float64 { return b.rps }
	all := func(b benchResult) float64 { return b.allSysPerReq }
	for _, r := range rows {
		if len(r.twem) == 0 && len(r.floor) == 0 {
			continue
		}
		d := median(collect(r.direct, rps))
		ours := median(collect(r.proxy, cpu))
		theirs := medianOrNaN(collect(r.twem, cpu))
		floor := medianOrNaN(collect(r.floor, cpu))
		want := 0.6
		if r.sc.pipeline > 1 {
			want = 0.3
		}
		rel := ours / theirs
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.sc.name,
			fmtFloat(median(collect(r.proxy, rps))/d, 2),
			fmtFloat(medianOrNaN(collect(r.twem, rps))/d, 2),
			fmtFloat(medianOrNaN(collect(r.floor, rps))/d, 2),
			fmtFloat(ours, 2), fmtFloat(theirs, 2), fmtFloat(floor, 2),
			fmtFloat(rel, 2), target("≤", want, rel, rel <= want), fmtFloat(floor/theirs, 2),
			fmtFloat(medianOrNaN(collect(r.proxy, all)), 3),
			fmtFloat(medianOrNaN(collect(r.twem, all)), 3),
			fmtFloat(medianOrNaN(collect(r.floor, all)), 3))
	}
	tw.Flush()
}

// medianOrNaN is median, NaN for no values (median says 0).
func medianOrNaN(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	return median(xs)
}

// startBeside starts a peer (through start, under the wrapper given) on
// the proxy's CPU for the rows marked twemproxy that need it: as it is,
// and under SCHED_BATCH (chrt -b 0) for the -batch rows, where the proxy
// runs with --cpu-policy batch. A peer that could not start is nil, and
// says why.
func startBeside(todo []scenario, name string, clientWrap []string, start func(wrapper []string) (*peer, string)) (plain, batch *peer) {
	if slices.ContainsFunc(todo, func(sc scenario) bool { return sc.twemproxy && !sc.batch }) {
		var why string
		if plain, why = start(clientWrap); plain == nil {
			fmt.Printf("%s: not measured: %s\n\n", name, why)
		}
	}
	if slices.ContainsFunc(todo, func(sc scenario) bool { return sc.twemproxy && sc.batch }) {
		why := "chrt not found (util-linux)"
		if chrt, err := exec.LookPath("chrt"); err == nil {
			batch, why = start(append(slices.Clip(clientWrap), chrt, "-b", "0"))
		}
		if batch == nil {
			fmt.Printf("%s under SCHED_BATCH: not measured: %s\n\n", name, why)
		}
	}
	return plain, batch
}

// buildFloor builds internal/nullproxy, or returns "" and why it did not.
// The floor is what a proxy on this kernel cannot go under with one read
// and one write per client per wake-up: issue 14's targets against
// twemproxy are read beside it.
func buildFloor(h *harness, root string) (bin, why string) {
	bin = filepath.Join(h.TempDir(), "nullproxy")
	build := exec.Command("go", "build", "-o", bin, "./internal/nullproxy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Sprintf("go build ./internal/nullproxy: %v\n%s", err, out)
	}
	return bin, ""
}

// startFloor starts the floor (bin) in front of master under wrapper, or
// returns nil and why it did not.
func startFloor(h *harness, bin string, wrapper []string, master string) (*peer, string) {
	port, err := freePort()
	if err != nil {
		return nil, fmt.Sprintf("no free port: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logPath := filepath.Join(h.TempDir(), "nullproxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err.Error()
	}
	defer logFile.Close() // the child has its own copy
	argv := append(slices.Clone(wrapper), bin, "-listen", addr, "-backend", master)
	return startPeer(h, "floor", argv, addr, logPath, logFile)
}
