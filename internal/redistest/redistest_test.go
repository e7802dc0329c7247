package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const testTimeout = 20 * time.Second

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// pollT fails t unless cond returns nil before testTimeout.
func pollT(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(pollInterval)
	}
}

func TestReplicasSeeMasterWrites(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := Start(t, Options{Replicas: 2})
	master, replicas := topo.Addrs()
	if master != topo.Master.Addr() || len(replicas) != 2 {
		t.Fatalf("Addrs() = %s, %v", master, replicas)
	}
	if err := topo.Master.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	topo.WaitSynced(t, testTimeout)
	for _, r := range topo.Replicas {
		if got, err := r.Client().Get(ctx, "k").Result(); err != nil || got != "v" {
			t.Errorf("%s: GET k = %q, %v; want v", r, got, err)
		}
		if role := r.Info(t, "replication")["role"]; role != "slave" {
			t.Errorf("%s: role %q", r, role)
		}
	}
}

func TestReplicaKillStartResyncs(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := Start(t, Options{Replicas: 1})
	r := topo.Replicas[0]
	port, dir, oldPID := r.Port(), r.Dir(), r.PID()

	r.Kill()
	if r.Running() || r.PID() != 0 {
		t.Fatalf("after Kill: Running %v, PID %d", r.Running(), r.PID())
	}
	if err := syscall.Kill(oldPID, 0); !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("old pid %d after Kill: kill(0) = %v, want ESRCH", oldPID, err)
	}
	r.Kill() // a no-op now
	if err := topo.Master.Client().Set(ctx, "written-while-down", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}

	r.Start()
	if r.Port() != port || r.Dir() != dir || r.PID() == 0 || r.PID() == oldPID {
		t.Fatalf("after Start: port %d (was %d), dir %s (was %s), pid %d (was %d)", r.Port(), port, r.Dir(), dir, r.PID(), oldPID)
	}
	topo.WaitSynced(t, testTimeout)
	if got, err := r.Client().Get(ctx, "written-while-down").Result(); err != nil || got != "1" {
		t.Fatalf("GET after resync = %q, %v", got, err)
	}
}

func TestPauseTimesOutResumeRestores(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	n := StartServer(t)
	c := redis.NewClient(&redis.Options{
		Addr:        n.Addr(),
		ReadTimeout: 200 * time.Millisecond,
		MaxRetries:  -1,
	})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	n.Pause()
	if !n.Running() {
		t.Fatal("a paused node must count as running")
	}
	err := c.Ping(ctx).Err()
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("PING while paused = %v, want a timeout", err)
	}

	n.Resume()
	n.Resume() // idempotent
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Resume: %v", err)
	}
}

func TestMasterRestartKeepsPort(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := Start(t, Options{Replicas: 1})
	m := topo.Master
	if err := m.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	port, pid, runID := m.Port(), m.PID(), m.Info(t, "server")["run_id"]

	m.Restart()
	if m.Port() != port || m.PID() == pid {
		t.Fatalf("after Restart: port %d (was %d), pid %d (was %d)", m.Port(), port, m.PID(), pid)
	}
	info := m.Info(t, "server")
	if info["tcp_port"] != strconv.Itoa(port) || info["run_id"] == runID {
		t.Fatalf("after Restart: tcp_port %s, run_id %s (was %s)", info["tcp_port"], info["run_id"], runID)
	}
	// No persistence: the master comes back empty and the replica follows it
	// (the seed hazard in REPLICATION.md).
	if n, err := m.Client().DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after Restart = %d, %v; want 0", n, err)
	}
	topo.WaitSynced(t, testTimeout)
	if n, err := topo.Replicas[0].Client().DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("replica DBSIZE after master Restart = %d, %v; want 0", n, err)
	}
}

func TestStopStart(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	n := StartServer(t)
	n.Pause() // Stop must also end a paused server
	n.Stop()
	if n.Running() {
		t.Fatal("running after Stop")
	}
	if !strings.Contains(tailFile(n.LogPath()), "Redis is now ready to exit") {
		t.Errorf("Stop did not shut down cleanly; log:\n%s", tailFile(n.LogPath()))
	}
	n.Stop() // a no-op now
	n.Start()
	if err := n.Client().Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

func TestSentinelReportsMaster(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := Start(t, Options{Replicas: 1, Sentinels: 1})
	s := topo.Sentinels[0]
	got, err := s.Client().Do(ctx, "SENTINEL", "get-master-addr-by-name", SentinelMasterName).StringSlice()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"127.0.0.1", strconv.Itoa(topo.Master.Port())}; !slices.Equal(got, want) {
		t.Fatalf("get-master-addr-by-name = %v, want %v", got, want)
	}
	if mode := s.Info(t, "server")["redis_mode"]; mode != "sentinel" {
		t.Fatalf("redis_mode %q", mode)
	}
}

// TestSentinelFailover checks that Start leaves Sentinels ready to act: a
// killed master is replaced without any further waiting by the caller.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := Start(t, Options{Replicas: 1, Sentinels: 1, Password: "pw"})
	topo.Master.Kill()
	want := []string{"127.0.0.1", strconv.Itoa(topo.Replicas[0].Port())}
	pollT(t, "failover", func() error {
		got, err := topo.Sentinels[0].Client().Do(ctx, "SENTINEL", "get-master-addr-by-name", SentinelMasterName).StringSlice()
		if err == nil && !slices.Equal(got, want) {
			err = fmt.Errorf("master is %v, want %v", got, want)
		}
		return err
	})
	if role := topo.Replicas[0].Info(t, "replication")["role"]; role != "master" {
		t.Fatalf("promoted replica has role %q", role)
	}
}

func TestPassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"Password", Options{Replicas: 1, Sentinels: 1, Password: "s3 cr\"et"}},
		{"Args", Options{Replicas: 1, Sentinels: 1, Args: []string{"--requirepass", "pw", "--masterauth", "pw"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			topo := Start(t, tc.opts)
			if err := topo.Master.Client().Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			topo.WaitSynced(t, testTimeout)
			anon := redis.NewClient(&redis.Options{Addr: topo.Master.Addr(), MaxRetries: -1})
			t.Cleanup(func() { anon.Close() })
			if err := anon.Get(ctx, "k").Err(); err == nil || !strings.Contains(err.Error(), "NOAUTH") {
				t.Fatalf("GET without a password = %v, want NOAUTH", err)
			}
		})
	}
}

func TestWrapperAndArgs(t *testing.T) {
	t.Parallel()
	topo := Start(t, Options{
		Replicas:    1,
		Wrapper:     []string{"nice", "-n", "7"}, // nice execs, keeping the PID
		Args:        []string{"--maxmemory", "10mb"},
		MasterArgs:  []string{"--hz", "20"},
		ReplicaArgs: []string{"--replica-priority", "7"},
	})
	check := func(n *Node, key, want string) {
		t.Helper()
		if got := configGet(t, n, key); got != want {
			t.Errorf("%s: %s = %q, want %q", n, key, got, want)
		}
	}
	check(topo.Master, "maxmemory", "10485760")
	check(topo.Replicas[0], "maxmemory", "10485760")
	check(topo.Master, "hz", "20")
	check(topo.Replicas[0], "hz", "10")
	check(topo.Replicas[0], "replica-priority", "7")
	check(topo.Master, "save", "")
	check(topo.Master, "bind", "127.0.0.1")
	for _, n := range []*Node{topo.Master, topo.Replicas[0]} {
		if got := procNice(t, n.PID()); got != "7" {
			t.Errorf("%s: nice %s, want 7 (not started through the wrapper?)", n, got)
		}
	}
}

// procNice reads field 19 of /proc/pid/stat.
func procNice(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]) // fields from 3 on
	return fields[19-3]
}

func configGet(t *testing.T, n *Node, key string) string {
	t.Helper()
	m, err := n.Client().ConfigGet(ctxT(t), key).Result()
	if err != nil {
		t.Fatalf("%s: CONFIG GET %s: %v", n, key, err)
	}
	return m[key]
}

// TestCleanupKills checks that a finished test leaves no process behind,
// paused ones included.
func TestCleanupKills(t *testing.T) {
	t.Parallel()
	var pids []int
	t.Run("topology", func(t *testing.T) {
		topo := Start(t, Options{Replicas: 1, Sentinels: 1})
		topo.Replicas[0].Pause()
		for _, n := range []*Node{topo.Master, topo.Replicas[0], topo.Sentinels[0]} {
			pids = append(pids, n.PID())
		}
	})
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("pid %d after cleanup: kill(0) = %v, want ESRCH", pid, err)
		}
	}
}

// TestConcurrentUse is for -race: readers run while the node restarts.
func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	n := StartServer(t)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _, _, _ = n.PID(), n.Running(), n.Addr(), n.Client()
				_, _ = n.tryInfo("server")
			}
		})
	}
	for range 3 {
		n.Restart()
		n.Pause()
		n.Resume()
		n.Stop()
		n.Start()
		n.WaitReady(t, testTimeout)
	}
	close(stop)
	wg.Wait()
}

// TestRestartWaitsForPort holds a stopped node's port for a while: Start
// must retry the bind instead of failing or moving.
func TestRestartWaitsForPort(t *testing.T) {
	t.Parallel()
	n := StartServer(t)
	n.Kill()
	l, err := net.Listen("tcp", n.Addr())
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, func() { l.Close() })
	n.Start()
	if got := n.Info(t, "server")["tcp_port"]; got != strconv.Itoa(n.Port()) {
		t.Fatalf("tcp_port %s, want %d", got, n.Port())
	}
}

// fakeTB runs a function the way testing runs a test, to observe Fatalf.
type fakeTB struct {
	t        *testing.T
	mu       sync.Mutex
	fatal    string
	cleanups []func()
}

func (f *fakeTB) Helper()                      {}
func (f *fakeTB) Logf(format string, a ...any) { f.t.Logf(format, a...) }
func (f *fakeTB) TempDir() string              { return f.t.TempDir() }
func (f *fakeTB) Cleanup(fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups = append(f.cleanups, fn)
}
func (f *fakeTB) Fatalf(format string, a ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, a...)
	f.mu.Unlock()
	runtime.Goexit()
}

// run calls fn on its own goroutine, runs the cleanups and returns the
// Fatalf message ("" if none).
func (f *fakeTB) run(fn func(TB)) string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range slices.Backward(f.cleanups) {
		c()
	}
	return f.fatal
}

func TestFailuresShowTheLog(t *testing.T) {
	t.Parallel()
	f := &fakeTB{t: t}
	var n *Node
	msg := f.run(func(tb TB) { n = StartServer(tb, "--no-such-directive", "1") })
	if n != nil || !strings.Contains(msg, "Bad directive") || !strings.Contains(msg, "stdio.log") {
		t.Fatalf("Fatalf message does not carry the server's error:\n%s", msg)
	}
}

// TestFirstStartMovesOffTakenPort makes the first candidate port one held
// by another redis-server: the new node must notice it is not the one
// answering, and move to a fresh port. Not parallel: it swaps a hook.
func TestFirstStartMovesOffTakenPort(t *testing.T) {
	other := StartServer(t)
	orig := pickPort
	t.Cleanup(func() { pickPort = orig })
	first := true
	pickPort = func() (int, error) {
		if first {
			first = false
			return other.Port(), nil
		}
		return orig()
	}
	n := StartServer(t)
	if n.Port() == other.Port() {
		t.Fatal("started on a port held by another server")
	}
	if got := n.Info(t, "server")["process_id"]; got != strconv.Itoa(n.PID()) {
		t.Fatalf("process_id %s, want %d", got, n.PID())
	}
	if log := tailFile(n.LogPath()); !strings.Contains(log, "Address already in use") {
		t.Fatalf("the first attempt did not hit the taken port; log:\n%s", log)
	}
}

// TestMissingRedisFails runs with an empty PATH. Not parallel: Setenv.
func TestMissingRedisFails(t *testing.T) {
	t.Setenv("PATH", "")
	f := &fakeTB{t: t}
	msg := f.run(func(tb TB) { Start(tb, Options{}) })
	const want = "redis-server not found in PATH: install it with `apt-get install -y redis-server redis-tools redis-sentinel` (make test does this when run as root)"
	if msg != want {
		t.Fatalf("Fatalf message = %q", msg)
	}
}
