package redistest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	readyTimeout = 10 * time.Second
	// exitTimeout bounds the wait for a SIGKILLed process to be reaped; only
	// a process stuck in the kernel (state D) can exceed it.
	exitTimeout = 10 * time.Second
	// stopGrace is how long Stop lets redis shut down before SIGKILL. A
	// master may spend up to shutdown-timeout (10 s) waiting for lagging
	// replicas; tests do not want that.
	stopGrace = 5 * time.Second
	// pollInterval is short because every wait here is a deadline-bound
	// poll; a sleep this size costs nothing and keeps tests fast.
	pollInterval = 5 * time.Millisecond
	// probeTimeout bounds one readiness probe. It is only a retry period:
	// the readiness deadline decides failure, so -race load cannot flake it.
	probeTimeout = 500 * time.Millisecond
	// adminTimeout bounds one INFO/SENTINEL call made by the harness.
	adminTimeout = 2 * time.Second
	// signalSettleTimeout bounds the wait for SIGSTOP/SIGCONT to take effect.
	signalSettleTimeout = 2 * time.Second
)

// Node is one redis-server process (a master, a replica, a standalone
// server or a Sentinel) with a fixed port and dir that survive restarts.
// All methods are safe for concurrent use; lifecycle methods (Start, Stop,
// Kill, Restart, Pause, Resume) are serialised, so one waits for another.
// Methods that take no TB report failures to the TB the Node was created
// with, so call them from that test's goroutine.
type Node struct {
	tb       TB
	name     string // for messages: "master", "replica 2", "sentinel 1", "server"
	dir      string
	password string
	bin      []string // Wrapper + redis-server
	args     func(port int, dir string) []string
	// setup runs before each first-start attempt (each candidate port),
	// never on a restart: a Sentinel's rewritten config must survive it.
	setup func(port int, dir string) error

	// port is chosen during the first start and never changes after the
	// Node is handed out, so it is read without a lock.
	port         int
	portReserved bool

	// mu serialises lifecycle changes and is held across their waits.
	mu     sync.Mutex
	closed bool // Cleanup ran: no more starts
	proc   atomic.Pointer[process]

	clientMu      sync.Mutex
	clientsClosed bool
	client        *redis.Client
	admin         *adminConn
}

type nodeSpec struct {
	name     string
	bin      []string
	password string
	args     func(port int, dir string) []string
	setup    func(port int, dir string) error
}

// newNode starts the process on a free port and registers its cleanup. It
// returns nil only if tb.Fatalf returned.
func newNode(tb TB, spec nodeSpec) *Node {
	tb.Helper()
	n := &Node{
		tb:       tb,
		name:     spec.name,
		dir:      tb.TempDir(),
		password: spec.password,
		bin:      spec.bin,
		args:     spec.args,
		setup:    spec.setup,
	}
	// Registered before the first spawn so that a Fatalf half-way through
	// still kills whatever was started.
	tb.Cleanup(n.cleanup)

	n.mu.Lock()
	defer n.mu.Unlock()
	if err := n.startFirst(); err != nil {
		n.fatalf(tb, "start: %v", err)
		return nil
	}
	return n
}

func (n *Node) startFirst() error {
	var err error
	for range portAttempts {
		var port int
		port, err = pickPort()
		if err != nil {
			return err
		}
		n.port, n.portReserved = port, true
		if n.setup != nil {
			if err := n.setup(port, n.dir); err != nil {
				return err
			}
		}
		err = n.launch(readyTimeout)
		if !errors.Is(err, errRedistestPortInUse) {
			return err
		}
		releasePort(port)
		n.portReserved = false
	}
	return err
}

// start runs the process again on its own port. The port may be held for a
// moment by someone else (an outgoing connection can get it as its
// ephemeral port), so a bind failure is retried until the deadline.
func (n *Node) start() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		err := n.launch(max(time.Until(deadline), time.Second))
		if err == nil || !errors.Is(err, errRedistestPortInUse) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(pollInterval)
	}
}

// launch spawns one run and waits until it answers PING. On failure the
// run is killed, and a bind failure is reported as errRedistestPortInUse.
func (n *Node) launch(timeout time.Duration) error {
	logOff, stdioOff := fileSize(n.LogPath()), fileSize(n.stdioPath())
	argv := append(slices.Clone(n.bin), n.args(n.port, n.dir)...)
	p, err := spawn(argv, n.dir, n.stdioPath())
	if err != nil {
		return fmt.Errorf("exec %q: %w", argv, err)
	}
	n.proc.Store(p)
	err = n.waitReady(p, time.Now().Add(timeout))
	if err == nil {
		return nil
	}
	p.signal(syscall.SIGKILL, true)
	waitDone(p, exitTimeout)
	const bindFailed = "Address already in use"
	if logContainsSince(n.LogPath(), logOff, bindFailed) || logContainsSince(n.stdioPath(), stdioOff, bindFailed) {
		return fmt.Errorf("%w: %s: %v", errRedistestPortInUse, n.Addr(), err)
	}
	return err
}

// waitReady polls until p answers PING. It first checks that the answering
// server is p (INFO process_id): while p is losing a bind race, the port
// belongs to someone else, who would answer for it.
func (n *Node) waitReady(p *process, deadline time.Time) error {
	c := &adminConn{addr: n.Addr(), password: n.password}
	defer c.close()
	pidChecked := false
	var lastErr error
	for {
		if p.hasExited() {
			<-p.done
			return fmt.Errorf("%w (%v) before answering PING; last probe: %v", errRedistestExited, p.waitErr, lastErr)
		}
		lastErr = probe(c, p.pid, &pidChecked)
		if lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PING answer (pid %d) before the deadline: %w", p.pid, lastErr)
		}
		time.Sleep(pollInterval)
	}
}

func probe(c *adminConn, pid int, pidChecked *bool) error {
	if !*pidChecked {
		s, err := c.str(probeTimeout, "INFO", "server")
		if err != nil {
			return err
		}
		if got := parseInfo(s)["process_id"]; got != strconv.Itoa(pid) {
			return fmt.Errorf("the port is answered by process_id %s, not by ours (%d): another process holds it, or Wrapper does not exec redis-server", got, pid)
		}
		*pidChecked = true
	}
	_, err := c.str(probeTimeout, "PING") // fails with LOADING until the dataset is in
	return err
}

func waitDone(p *process, timeout time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

func (n *Node) cleanup() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closed = true
	n.closeClients()
	if p := n.proc.Load(); p != nil {
		p.signal(syscall.SIGKILL, true)
		if !waitDone(p, exitTimeout) {
			n.tb.Logf("redistest: %s (pid %d) still not reaped %v after SIGKILL", n, p.pid, exitTimeout)
		}
	}
	if n.portReserved {
		releasePort(n.port)
		n.portReserved = false
	}
}

// Addr is "127.0.0.1:port".
func (n *Node) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(n.port)) }

// Port is the node's port; it stays the same across restarts.
func (n *Node) Port() int { return n.port }

// Dir is the node's working dir (holding redis.log); it is removed by the
// TB's TempDir cleanup.
func (n *Node) Dir() string { return n.dir }

// LogPath is the server's logfile.
func (n *Node) LogPath() string { return filepath.Join(n.dir, "redis.log") }

// stdioPath collects stdout and stderr, where redis-server reports errors
// that come before it opens its logfile (a bad config line, for one).
func (n *Node) stdioPath() string { return filepath.Join(n.dir, "stdio.log") }

// String names the node in messages, e.g. "replica 1 127.0.0.1:40123".
func (n *Node) String() string { return n.name + " " + n.Addr() }

// PID is the server's process id, 0 when it is not running.
func (n *Node) PID() int {
	if p := n.proc.Load(); p != nil && !p.hasExited() {
		return p.pid
	}
	return 0
}

// Running reports whether the process is alive (a paused one is).
func (n *Node) Running() bool { return n.PID() != 0 }

// Client is a go-redis client with default settings (and the node's
// password), created on first use and closed at cleanup. It outlives
// restarts: go-redis drops broken connections and dials again.
func (n *Node) Client() *redis.Client {
	n.clientMu.Lock()
	defer n.clientMu.Unlock()
	if n.client == nil {
		n.client = redis.NewClient(&redis.Options{Addr: n.Addr(), Password: n.password})
		if n.clientsClosed {
			_ = n.client.Close() // calls fail with ErrClosed instead of leaking a pool
		}
	}
	return n.client
}

// adminConn serves the harness's own INFO and SENTINEL calls. Unlike
// Client it is usable after cleanup (it just dials), which costs nothing.
func (n *Node) adminConn() *adminConn {
	n.clientMu.Lock()
	defer n.clientMu.Unlock()
	if n.admin == nil {
		n.admin = &adminConn{addr: n.Addr(), password: n.password}
	}
	return n.admin
}

func (n *Node) closeClients() {
	n.clientMu.Lock()
	defer n.clientMu.Unlock()
	n.clientsClosed = true
	if n.client != nil {
		_ = n.client.Close()
	}
	if n.admin != nil {
		n.admin.close()
	}
}

// Kill sends SIGKILL to the process group and waits until the process is
// reaped. A no-op when not running.
func (n *Node) Kill() {
	n.tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.kill()
}

func (n *Node) kill() {
	n.tb.Helper()
	p := n.proc.Load()
	if p == nil {
		return
	}
	p.signal(syscall.SIGKILL, true)
	if !waitDone(p, exitTimeout) {
		n.fatalf(n.tb, "pid %d not reaped %v after SIGKILL", p.pid, exitTimeout)
	}
}

// Stop asks the server to shut down (SIGTERM; with --save "" nothing is
// written) and waits, with SIGKILL after 5 s. A no-op when not running.
func (n *Node) Stop() {
	n.tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.proc.Load()
	if p == nil {
		return
	}
	p.signal(syscall.SIGTERM, false)
	// A paused server would sit on the SIGTERM until continued.
	p.signal(syscall.SIGCONT, false)
	if waitDone(p, stopGrace) {
		return
	}
	n.kill()
}

// Start runs the server again on the same port and dir with the same
// arguments, and waits until it answers PING. It fails the test if the
// node is running. After the test's cleanup it does nothing.
func (n *Node) Start() {
	n.tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.startLocked()
}

func (n *Node) startLocked() {
	n.tb.Helper()
	if n.closed {
		return
	}
	if p := n.proc.Load(); p != nil && !p.hasExited() {
		n.fatalf(n.tb, "Start: already running (pid %d)", p.pid)
		return
	}
	if err := n.start(); err != nil {
		n.fatalf(n.tb, "Start: %v", err)
	}
}

// Restart is Kill then Start, with no other lifecycle call in between.
func (n *Node) Restart() {
	n.tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	n.kill()
	n.startLocked()
}

// Pause stops the process with SIGSTOP and returns once the kernel shows
// it stopped: connections stay open and requests hang, like a stalled
// server. It fails the test when the node is not running.
func (n *Node) Pause() {
	n.tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.proc.Load()
	if p == nil || !p.signal(syscall.SIGSTOP, false) {
		n.fatalf(n.tb, "Pause: not running")
		return
	}
	if err := waitProcState(p, func(state byte) bool { return state == 'T' }); err != nil {
		n.fatalf(n.tb, "Pause: %v", err)
	}
}

// Resume continues a paused process (SIGCONT). A no-op when not running.
func (n *Node) Resume() {
	n.tb.Helper()
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.proc.Load()
	if p == nil || !p.signal(syscall.SIGCONT, false) {
		return
	}
	if err := waitProcState(p, func(state byte) bool { return state != 'T' }); err != nil {
		n.fatalf(n.tb, "Resume: %v", err)
	}
}

// waitProcState polls /proc until the process state satisfies ok, because
// signal delivery is asynchronous: right after kill(SIGSTOP) a PING may
// still be answered. A process that exits meanwhile counts as settled.
func waitProcState(p *process, ok func(state byte) bool) error {
	deadline := time.Now().Add(signalSettleTimeout)
	for {
		state, err := procState(p.pid)
		if err != nil || p.hasExited() || ok(state) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still in state %c after %v", p.pid, state, signalSettleTimeout)
		}
		time.Sleep(pollInterval)
	}
}

func procState(pid int) (byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0, fmt.Errorf("unexpected /proc/%d/stat: %q", pid, s)
	}
	return s[i+2], nil
}

// WaitReady polls until the node answers PING (not LOADING), and fails the
// test after timeout or as soon as the process is found dead.
func (n *Node) WaitReady(tb TB, timeout time.Duration) {
	tb.Helper()
	p := n.proc.Load()
	if p == nil || p.hasExited() {
		n.fatalf(tb, "WaitReady: not running")
		return
	}
	if err := n.waitReady(p, time.Now().Add(timeout)); err != nil {
		n.fatalf(tb, "WaitReady: %v", err)
	}
}

// Info returns the parsed fields of INFO section ("" for the default
// sections), failing the test on error.
func (n *Node) Info(tb TB, section string) map[string]string {
	tb.Helper()
	m, err := n.tryInfo(section)
	if err != nil {
		n.fatalf(tb, "INFO %s: %v", section, err)
	}
	return m
}

func (n *Node) tryInfo(sections ...string) (map[string]string, error) {
	sections = slices.DeleteFunc(sections, func(s string) bool { return s == "" })
	s, err := n.adminConn().str(adminTimeout, append([]string{"INFO"}, sections...)...)
	if err != nil {
		return nil, err
	}
	return parseInfo(s), nil
}

func parseInfo(s string) map[string]string {
	m := make(map[string]string)
	for line := range strings.SplitSeq(s, "\n") {
		line = strings.TrimRight(line, "\r")
		if line == "" || line[0] == '#' {
			continue
		}
		if k, v, ok := strings.Cut(line, ":"); ok {
			m[k] = v
		}
	}
	return m
}

// fatalf fails tb with the tail of the node's logs, which is where redis
// says why it would not start or sync.
func (n *Node) fatalf(tb TB, format string, args ...any) {
	tb.Helper()
	tb.Fatalf("redistest: %s: %s%s", n, fmt.Sprintf(format, args...), n.LogTails())
}

// LogTails is the last lines of the node's log (and of its stdio, when
// it wrote any), headed by their paths: what a failing test prints to
// say what the server did.
func (n *Node) LogTails() string {
	s := fmt.Sprintf("\n--- tail of %s ---\n%s", n.LogPath(), tailFile(n.LogPath()))
	if fileSize(n.stdioPath()) > 0 {
		s += fmt.Sprintf("\n--- tail of %s ---\n%s", n.stdioPath(), tailFile(n.stdioPath()))
	}
	return s
}
