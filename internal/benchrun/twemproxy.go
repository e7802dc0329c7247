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

// twemproxy is the C proxy measured beside replproxy on the rows marked
// twemproxy (DESIGN.md "Performance targets" compares with it): nutcracker
// with one server pool of the master alone, on the proxy's CPU. It is
// optional: without nutcracker on PATH (apt-get install nutcracker; `make
// deps` installs it as root) the rows run without it and say so.
type twemproxy struct {
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
func startTwemproxy(h *harness, wrapper []string, master string) (*twemproxy, string) {
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
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Sprintf("start %s: %v", shellJoin(argv), err)
	}
	t := &twemproxy{child: newChild(cmd), addr: addr, logPath: logPath}
	h.Cleanup(t.stop)
	deadline := time.Now().Add(proxyReadyTimeout)
	for {
		// twemproxy answers PING only from 0.5.0 on; a GET of a missing
		// key works with every version.
		if err := getMissing(addr); err == nil {
			break
		} else if !t.running() || time.Now().After(deadline) {
			t.stop()
			return nil, fmt.Sprintf("nutcracker did not serve (%v); its log:\n%s", err, tail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
	h.Logf("twemproxy: %s (pid %d)", shellJoin(argv), cmd.Process.Pid)
	return t, ""
}

// getMissing sends GET of a key nobody writes and expects a nil reply.
func getMissing(addr string) error {
	return ask(addr, "*2\r\n$3\r\nGET\r\n$20\r\nbenchrun:no-such-key\r\n", "$-1")
}

// runTwem makes a round's load through twemproxy, right after the round's
// replproxy run, and returns its figures for the round's line.
func runTwem(r *row, t *twemproxy, wrapper []string, seed uint64, ticksPerSec int64, directRPS float64) string {
	counter := startSyscallCounter(t.pid())
	before, errBefore := sampleProc(t.pid())
	res, err := r.sc.run(wrapper, t.addr, r.requests, seed)
	after, errAfter := sampleProc(t.pid())
	all := counter.stop()
	if err != nil {
		return fmt.Sprintf(", twemproxy FAILED: %v", err)
	}
	res.cpuUsPerReq, res.sysPerReq, res.ctxPerReq = perReq(before, after, errBefore, errAfter, r.requests, ticksPerSec)
	res.allSysPerReq = all / float64(r.requests)
	r.twem = append(r.twem, res)
	return fmt.Sprintf("; twemproxy %9.0f rps (%.2f), CPU %s µs/req", res.rps, res.rps/directRPS, fmtFloat(res.cpuUsPerReq, 2))
}

// printTwem sets replproxy beside twemproxy on the rows both ran: issue 14
// wants replproxy's CPU per request at most 0.6× twemproxy's at pipeline 1
// and 0.3× at pipeline 16.
func printTwem(rows []*row, ran bool) {
	if !ran {
		return
	}
	fmt.Println("\nreplproxy beside twemproxy (same rounds, same direct runs; medians):")
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\treplproxy/direct\ttwemproxy/direct\treplproxy CPU µs/req\ttwemproxy CPU µs/req\tCPU replproxy/twemproxy\ttarget\tsyscalls/req replproxy\ttwemproxy\t")
	for _, r := range rows {
		if len(r.twem) == 0 {
			continue
		}
		d := median(collect(r.direct, func(b benchResult) float64 { return b.rps }))
		ours := median(collect(r.proxy, func(b benchResult) float64 { return b.cpuUsPerReq }))
		theirs := median(collect(r.twem, func(b benchResult) float64 { return b.cpuUsPerReq }))
		want := 0.6
		if r.sc.pipeline > 1 {
			want = 0.3
		}
		rel := ours / theirs
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.sc.name,
			fmtFloat(median(collect(r.proxy, func(b benchResult) float64 { return b.rps }))/d, 2),
			fmtFloat(median(collect(r.twem, func(b benchResult) float64 { return b.rps }))/d, 2),
			fmtFloat(ours, 2), fmtFloat(theirs, 2), fmtFloat(rel, 2), target("≤", want, rel, rel <= want),
			fmtFloat(medianOrNaN(collect(r.proxy, func(b benchResult) float64 { return b.allSysPerReq })), 3),
			fmtFloat(medianOrNaN(collect(r.twem, func(b benchResult) float64 { return b.allSysPerReq })), 3))
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
