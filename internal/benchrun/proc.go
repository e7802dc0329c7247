package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// child is a started process and the channel closed once it is reaped.
type child struct {
	cmd    *exec.Cmd
	exited chan struct{}
}

func newChild(cmd *exec.Cmd) child {
	c := child{cmd: cmd, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(c.exited)
	}()
	return c
}

func (c child) pid() int { return c.cmd.Process.Pid }

func (c child) running() bool {
	select {
	case <-c.exited:
		return false
	default:
		return true
	}
}

// stop asks for a graceful shutdown, then kills. Safe to call twice.
func (c child) stop() {
	if !c.running() {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(proxyStopTimeout):
		fmt.Fprintf(os.Stderr, "benchrun: pid %d (%s) ignored SIGTERM for %v; killing it\n", c.pid(), filepath.Base(c.cmd.Path), proxyStopTimeout)
		c.cmd.Process.Kill()
		<-c.exited
	}
}

// proxyProc is one running bin/replproxy. Owned by main's goroutine.
type proxyProc struct {
	child
	addr    string
	tlsAddr string // --tls-listen, if given
	argsKey string // identifies the extra args it was started with
	logPath string
}

const (
	proxyReadyTimeout = 15 * time.Second
	// Longer than the proxy's default --shutdown-timeout (5s), so a slow
	// drain is seen as such rather than cut short.
	proxyStopTimeout = 10 * time.Second
)

// startProxy starts bin/replproxy in front of master and waits until it
// answers PING. Its metrics server is off so benchmark runs never collide
// on port 9121.
func startProxy(h *harness, bin string, wrapper []string, master string, extra []string) *proxyProc {
	port, err := freePort()
	if err != nil {
		h.Fatalf("free port for the proxy: %v", err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	args := append([]string{
		"--master", master,
		"--listen", addr,
		"--metrics-listen", "",
		"--discover-replicas=false",
	}, extra...)
	argv := append(slices.Clone(wrapper), bin)
	argv = append(argv, args...)

	logPath := filepath.Join(h.TempDir(), "replproxy.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		h.Fatalf("proxy log: %v", err)
	}
	defer logFile.Close() // the child has its own copy

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// A terminal Ctrl-C reaches benchrun, which stops the proxy in order;
		// if benchrun dies without cleaning up, the proxy dies with it.
		Setpgid:   true,
		Pdeathsig: syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		h.Fatalf("start %s: %v", shellJoin(argv), err)
	}
	p := &proxyProc{child: newChild(cmd), addr: addr, tlsAddr: tlsAddrOf(extra), argsKey: strings.Join(extra, "\x00"), logPath: logPath}
	h.Cleanup(p.stop)
	h.Logf("proxy: %s (pid %d, log %s)", shellJoin(argv), cmd.Process.Pid, logPath)

	deadline := time.Now().Add(proxyReadyTimeout)
	for {
		if err := ping(addr); err == nil {
			break
		} else if !p.running() {
			h.Fatalf("proxy exited before answering PING (%v); its log:\n%s", cmd.ProcessState, tail(logPath))
		} else if time.Now().After(deadline) {
			h.Fatalf("proxy did not answer PING within %v: %v; its log:\n%s", proxyReadyTimeout, err, tail(logPath))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// With a wrapper, CPU accounting is only right if the wrapper exec'd the
	// proxy in place (taskset does).
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", cmd.Process.Pid)); err == nil &&
		strings.TrimSpace(string(comm)) != filepath.Base(bin) {
		h.Logf("note: pid %d is %q, not %s: proxy CPU figures are wrong", cmd.Process.Pid, strings.TrimSpace(string(comm)), filepath.Base(bin))
	}
	return p
}

// cpuTicks is the proxy's user+system CPU time so far, in clock ticks.
func (p *proxyProc) cpuTicks() (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid()))
	if err != nil {
		return 0, err
	}
	return parseProcStatCPU(data)
}

// parseProcStatCPU returns utime+stime (fields 14 and 15 of proc(5)) from
// /proc/<pid>/stat. Fields are counted after the last ')', because the
// command name in field 2 may itself contain spaces and parentheses.
func parseProcStatCPU(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat: no ')'")
	}
	fields := strings.Fields(string(stat[i+1:]))
	// fields[0] is field 3 (state), so field k is fields[k-3].
	const utime, stime = 14 - 3, 15 - 3
	if len(fields) <= stime {
		return 0, fmt.Errorf("malformed /proc stat: %d fields after the name", len(fields))
	}
	u, err1 := strconv.ParseInt(fields[utime], 10, 64)
	s, err2 := strconv.ParseInt(fields[stime], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("malformed /proc stat: %w", err)
	}
	return u + s, nil
}

// clockTicksPerSecond is sysconf(_SC_CLK_TCK), the unit of /proc stat CPU
// times. Go has no sysconf without cgo; getconf has, and Linux reports 100
// on every common architecture, so that is the fallback.
func clockTicksPerSecond() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && n > 0 {
			return n
		}
	}
	return 100
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends a RESP PING and expects +PONG: enough to know the proxy is
// serving without pulling a client library into the timing path.
func ping(addr string) error { return ask(addr, "*1\r\n$4\r\nPING\r\n", "+PONG") }

// ask sends one request on a new connection and expects the reply line want.
func ask(addr, req, want string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(line); got != want {
		return fmt.Errorf("answered %q, want %q", got, want)
	}
	return nil
}

// tail returns the last lines of a log for an error message.
func tail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// shellJoin shows argv as it would be typed, so `--metrics-listen ""` does
// not read as a missing value.
func shellJoin(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a == "" || strings.ContainsAny(a, " \t'\"\\$") {
			a = strconv.Quote(a)
		}
		out[i] = a
	}
	return strings.Join(out, " ")
}

// procSample is what benchrun reads of a proxy process around a run.
type procSample struct {
	cpuTicks int64 // utime+stime, clock ticks
	// ioSyscalls is syscr+syscw of /proc/<pid>/io: read- and write-family
	// calls (read, readv, write, writev, ...). epoll_wait, futex and
	// nanosleep are not in it; ctxSwitches counts those that sleep.
	ioSyscalls int64
	// ctxSwitches sums voluntary and involuntary context switches over
	// every thread: each blocking epoll_wait, futex wait and sysmon
	// nanosleep is one, so ioSyscalls+ctxSwitches is close to the full
	// syscall count (strace -c, README "Benchmarks", gives it exactly).
	ctxSwitches int64
}

// sampleProc reads pid's counters; the error is the first file that failed.
func sampleProc(pid int) (procSample, error) {
	var s procSample
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return s, err
	}
	if s.cpuTicks, err = parseProcStatCPU(stat); err != nil {
		return s, err
	}
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return s, err
	}
	r, w := procField(io, "syscr:"), procField(io, "syscw:")
	if r < 0 || w < 0 {
		return s, errors.New("malformed /proc io: no syscr or syscw")
	}
	s.ioSyscalls = r + w
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/status", pid))
	if err != nil {
		return s, err
	}
	for _, t := range tasks {
		st, err := os.ReadFile(t)
		if err != nil {
			continue // the thread exited between Glob and ReadFile
		}
		s.ctxSwitches += max(procField(st, "voluntary_ctxt_switches:"), 0) + max(procField(st, "nonvoluntary_ctxt_switches:"), 0)
	}
	return s, nil
}

// procField is the integer after name at the start of a line of a /proc
// "key: value" file, -1 if there is none.
func procField(data []byte, name string) int64 {
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				return -1
			}
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				return -1
			}
			return n
		}
	}
	return -1
}

// perReq turns the counters' growth between two samples into figures per
// request: CPU µs, I/O syscalls and context switches. NaN where a sample
// failed.
func perReq(before, after procSample, errBefore, errAfter error, requests int, ticksPerSec int64) (cpuUs, sys, ctx float64) {
	if errBefore != nil || errAfter != nil || requests <= 0 {
		return math.NaN(), math.NaN(), math.NaN()
	}
	n := float64(requests)
	return float64(after.cpuTicks-before.cpuTicks) * 1e6 / float64(ticksPerSec) / n,
		float64(after.ioSyscalls-before.ioSyscalls) / n,
		float64(after.ctxSwitches-before.ctxSwitches) / n
}

// rssKiB is VmRSS of /proc/<pid>/status.
func rssKiB(pid int) (int64, error) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	if n := procField(st, "VmRSS:"); n >= 0 {
		return n, nil
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// syscallCounter is `perf stat -e raw_syscalls:sys_enter -p <pid>` over a
// run: every syscall of every thread, counted in the kernel, at a cost the
// run does not notice (strace -c stops the process at each call and halves
// its throughput). Nil when perf is missing or may not trace.
type syscallCounter struct {
	cmd *exec.Cmd
	out string
}

func startSyscallCounter(pid int) *syscallCounter {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return nil
	}
	f, err := os.CreateTemp("", "benchrun-perf-")
	if err != nil {
		return nil
	}
	f.Close()
	cmd := exec.Command(perf, "stat", "-x", ",", "-o", f.Name(), "-e", "raw_syscalls:sys_enter", "-p", strconv.Itoa(pid))
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		os.Remove(f.Name())
		return nil
	}
	// perf attaches asynchronously; a run of about 2 s misses little of it.
	time.Sleep(100 * time.Millisecond)
	return &syscallCounter{cmd: cmd, out: f.Name()}
}

// stop ends the count and returns it, NaN if there is none.
func (c *syscallCounter) stop() float64 {
	if c == nil {
		return math.NaN()
	}
	defer os.Remove(c.out)
	c.cmd.Process.Signal(os.Interrupt)
	c.cmd.Wait()
	data, err := os.ReadFile(c.out)
	if err != nil {
		return math.NaN()
	}
	// CSV: count,unit,event,... ; "<not counted>" or "<not supported>"
	// when the tracepoint is not allowed.
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Split(line, ",")
		if len(f) >= 3 && strings.HasPrefix(f[2], "raw_syscalls:sys_enter") {
			if n, err := strconv.ParseFloat(f[0], 64); err == nil {
				return n
			}
		}
	}
	return math.NaN()
}
