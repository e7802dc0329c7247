package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
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

// proxyProc is one running bin/replproxy. Owned by main's goroutine.
type proxyProc struct {
	cmd     *exec.Cmd
	addr    string
	tlsAddr string // --tls-listen, if given
	argsKey string // identifies the extra args it was started with
	logPath string
	exited  chan struct{} // closed once reaped
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
	p := &proxyProc{cmd: cmd, addr: addr, tlsAddr: tlsAddrOf(extra), argsKey: strings.Join(extra, "\x00"), logPath: logPath, exited: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
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

func (p *proxyProc) pid() int { return p.cmd.Process.Pid }

func (p *proxyProc) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// stop asks for a graceful shutdown, then kills. Safe to call twice.
func (p *proxyProc) stop() {
	if !p.running() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(proxyStopTimeout):
		fmt.Fprintf(os.Stderr, "benchrun: proxy pid %d ignored SIGTERM for %v; killing it\n", p.pid(), proxyStopTimeout)
		p.cmd.Process.Kill()
		<-p.exited
	}
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
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
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
