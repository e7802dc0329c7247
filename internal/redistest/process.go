package redistest

import (
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"unsafe"
)

// process is one run of a server. A Node gets a new one on every start.
// Safe for concurrent use.
type process struct {
	cmd *exec.Cmd
	pid int

	// mu makes "has it exited?" and "send a signal" one step: the reaper sets
	// exited before it reaps, so while exited is false the PID (and the process
	// group named after it) cannot have been reused by an unrelated process.
	mu     sync.Mutex
	exited bool

	done    chan struct{} // closed once the process is reaped
	waitErr error         // the exit status; read only after done is closed
}

// spawn starts argv with stdout and stderr appended to stdioPath (startup
// errors are printed there before redis-server opens its logfile).
func spawn(argv []string, dir, stdioPath string) (*process, error) {
	stdio, err := os.OpenFile(stdioPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer stdio.Close() // the child has its own copy

	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Stdout = stdio // an *os.File, so Wait starts no copying goroutines
	cmd.Stderr = stdio
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own group: a terminal's Ctrl-C does not hit the server
		// before the harness can, and a SIGKILL to the group also takes any
		// child redis forked for a diskless sync.
		Setpgid: true,
		// Dies with us when the test binary crashes or os.Exits without
		// running Cleanup.
		Pdeathsig: syscall.SIGKILL,
	}
	if err := startOnLockedThread(cmd); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go p.reap()
	return p, nil
}

func (p *process) reap() {
	waitExitedNoReap(p.pid)
	p.mu.Lock()
	p.exited = true
	p.mu.Unlock()
	p.waitErr = p.cmd.Wait()
	close(p.done)
}

// signal sends sig to the process, or to its whole group, unless it has
// already exited. It reports whether the signal was sent.
func (p *process) signal(sig syscall.Signal, group bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.exited {
		return false
	}
	target := p.pid
	if group {
		target = -p.pid
	}
	return syscall.Kill(target, sig) == nil
}

func (p *process) hasExited() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exited
}

// Pdeathsig fires when the *thread* that forked the child exits, not the
// process (golang/go#27505), and the Go runtime ends a thread whenever a
// goroutine exits while locked to it. All forks therefore happen on one
// thread that is locked for the life of the process and so never ends.
var spawner struct {
	once sync.Once
	reqs chan spawnRequest
}

type spawnRequest struct {
	cmd  *exec.Cmd
	errc chan error
}

// StartOnLockedThread starts cmd from the one locked thread, so a
// Pdeathsig in its SysProcAttr fires only when the test binary exits:
// for other packages' tests that spawn programs of their own.
func StartOnLockedThread(cmd *exec.Cmd) error { return startOnLockedThread(cmd) }

// WaitExitedNoReap waits until pid has exited, leaving it a zombie (see
// waitExitedNoReap).
func WaitExitedNoReap(pid int) { waitExitedNoReap(pid) }

func startOnLockedThread(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnRequest)
		go func() {
			runtime.LockOSThread() // never unlocked, on purpose
			for r := range spawner.reqs {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	req := spawnRequest{cmd: cmd, errc: make(chan error, 1)}
	spawner.reqs <- req
	return <-req.errc
}

const (
	pPID    = 1         // P_PID from <sys/wait.h>
	wNoWait = 0x1000000 // WNOWAIT
)

// waitExitedNoReap blocks until pid has exited but leaves it a zombie, so
// its PID stays reserved until cmd.Wait reaps it (the same trick os/exec
// uses internally before Wait).
func waitExitedNoReap(pid int) {
	var siginfo [128]byte
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_WAITID, pPID, uintptr(pid),
			uintptr(unsafe.Pointer(&siginfo[0])), syscall.WEXITED|wNoWait, 0, 0)
		if errno != syscall.EINTR {
			return
		}
	}
}
