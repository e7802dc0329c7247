package deploy_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
)

// proc is one process a test started (replproxy, prometheus, a script). It
// is stopped by its PID at the test's cleanup, never by name. Safe for
// concurrent use.
type proc struct {
	name    string
	pid     int
	logPath string
	cmd     *exec.Cmd

	// mu makes "has it exited?" and "send a signal" one step: the reaper sets
	// exited before it reaps, so while exited is false the PID (and the
	// process group named after it) cannot belong to anybody else.
	mu     sync.Mutex
	exited bool
	done   chan struct{} // closed once reaped; waitErr is then set
	// waitErr is the exit status; read only after done is closed.
	waitErr error
}

const (
	// procStopGrace is longer than replproxy's default --shutdown-timeout
	// (5s), so a drain is not cut short.
	procStopGrace = 10 * time.Second
	procKillWait  = 10 * time.Second
)

// needProgram returns the path of a program the tests run, or fails the
// test saying how to install it. Never a skip: CI must not pass a test that
// did not run.
func needProgram(t testing.TB, name, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("%s not found in PATH: install it with `apt-get install -y %s` (deploy/ensure-redis.sh does, as root)", name, pkg)
	}
	return path
}

// startProc starts argv in dir with env added to the test's environment,
// stdout and stderr in a log file, in a process group of its own. It is
// stopped (SIGTERM to the group, SIGKILL after procStopGrace) at cleanup.
func startProc(t testing.TB, name string, argv []string, dir string, env ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), strings.ReplaceAll(name, " ", "-")+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("%s: log: %v", name, err)
	}
	defer logFile.Close() // the child has its own copy

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group, so that a stop also reaches a script's children.
		Setpgid: true,
		// Dies with the test binary if it crashes before Cleanup.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := redistest.StartOnLockedThread(cmd); err != nil {
		t.Fatalf("%s: start %q: %v", name, argv, err)
	}
	p := &proc{name: name, pid: cmd.Process.Pid, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go p.reap()
	t.Cleanup(func() { p.stop(t) })
	t.Logf("%s: pid %d: %s (log %s)", name, p.pid, strings.Join(argv, " "), logPath)
	return p
}

func (p *proc) reap() {
	redistest.WaitExitedNoReap(p.pid)
	p.mu.Lock()
	p.exited = true
	p.mu.Unlock()
	p.waitErr = p.cmd.Wait()
	close(p.done)
}

// signalGroup signals the process group unless the leader has exited.
func (p *proc) signalGroup(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.exited {
		_ = syscall.Kill(-p.pid, sig)
	}
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop asks for a graceful exit, then kills. Safe to call twice.
func (p *proc) stop(t testing.TB) {
	p.signalGroup(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(procStopGrace):
	}
	t.Logf("%s (pid %d) ignored SIGTERM for %v: SIGKILL", p.name, p.pid, procStopGrace)
	p.signalGroup(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(procKillWait):
		t.Logf("%s (pid %d) not reaped %v after SIGKILL", p.name, p.pid, procKillWait)
	}
}

// wait waits for the process to exit by itself, up to timeout.
func (p *proc) wait(timeout time.Duration) (exited bool, err error) {
	if !p.running() {
		return true, p.waitErr
	}
	select {
	case <-p.done:
		return true, p.waitErr
	case <-time.After(timeout):
		return false, nil
	}
}

// logTail is the end of the process's log, for failure messages.
func (p *proc) logTail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(log unreadable: %v)", err)
	}
	const max = 4000
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return fmt.Sprintf("--- tail of %s (%s) ---\n%s", p.logPath, p.name, b)
}

// exitStatus describes how the process ended, for messages.
func (p *proc) exitStatus() string {
	if p.running() {
		return "still running"
	}
	if p.waitErr == nil {
		return "exit status 0"
	}
	return p.waitErr.Error()
}
