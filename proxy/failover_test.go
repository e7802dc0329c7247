package proxy

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/router"
)

// The failover acceptance tests (issue 9): a real master, 2 replicas and 3
// real redis-sentinel processes (down-after-milliseconds 1000), the proxy
// started with --sentinel only. Each test has its own topology and runs in
// parallel with the others: Sentinel's timings, not the CPU, make them slow.

const failoverTimeout = 30 * time.Second

func sentinelTopology(t *testing.T) (*redistest.Topology, []string) {
	t.Helper()
	topo := redistest.Start(t, redistest.Options{Replicas: 2, Sentinels: 3})
	var sentinels []string
	for _, s := range topo.Sentinels {
		sentinels = append(sentinels, s.Addr())
	}
	return topo, sentinels
}

func sentinelProxy(t *testing.T, sentinels []string, cfg Config) *Server {
	t.Helper()
	cfg.Sentinels, cfg.SentinelMaster = sentinels, redistest.SentinelMasterName
	return startProxy(t, cfg)
}

// seqLoad is the acceptance load: each client RPUSHes increasing sequence
// numbers to a list of its own and never re-sends a number, so a number
// found twice is a write the proxy ran twice.
type seqLoad struct {
	t       *testing.T
	clients []*redis.Client
	keys    []string
	pace    time.Duration

	mu       sync.Mutex
	acked    [][]int64
	okTimes  []time.Time
	errs     atomic.Int64
	readonly atomic.Int64
	lastErr  atomic.Value
	stop     chan struct{}
	wg       sync.WaitGroup
}

func startSeqLoad(t *testing.T, proxyAddr string, n int, pace time.Duration) *seqLoad {
	l := &seqLoad{t: t, pace: pace, stop: make(chan struct{}), acked: make([][]int64, n)}
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := 0; i < n; i++ {
		// No retries of its own: every number is sent once.
		l.clients = append(l.clients, client(t, proxyAddr, &redis.Options{PoolSize: 1, MaxRetries: -1, ReadTimeout: 5 * time.Second}))
		l.keys = append(l.keys, fmt.Sprintf("seq:%s:%d", tag, i))
	}
	for i := range l.clients {
		l.wg.Add(1)
		go l.run(i)
	}
	return l
}

func (l *seqLoad) run(i int) {
	defer l.wg.Done()
	ctx := context.Background()
	for n := int64(1); ; n++ {
		select {
		case <-l.stop:
			return
		default:
		}
		err := l.clients[i].RPush(ctx, l.keys[i], n).Err()
		now := time.Now()
		if err != nil {
			l.errs.Add(1)
			l.lastErr.Store(err.Error())
			if strings.Contains(err.Error(), "READONLY") {
				l.readonly.Add(1)
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		l.mu.Lock()
		l.acked[i] = append(l.acked[i], n)
		l.okTimes = append(l.okTimes, now)
		l.mu.Unlock()
		if l.pace > 0 {
			time.Sleep(l.pace)
		}
	}
}

func (l *seqLoad) acks() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.okTimes)
}

// waitAcksAfter waits until some write succeeded after t0.
func (l *seqLoad) waitAcksAfter(t *testing.T, t0 time.Time, what string) time.Time {
	t.Helper()
	deadline := time.Now().Add(failoverTimeout)
	for {
		l.mu.Lock()
		for _, ts := range l.okTimes {
			if ts.After(t0) {
				l.mu.Unlock()
				return ts
			}
		}
		l.mu.Unlock()
		if time.Now().After(deadline) {
			last, _ := l.lastErr.Load().(string)
			t.Fatalf("no write succeeded after %s (errors %d, last: %s)", what, l.errs.Load(), last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (l *seqLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

// outage is the longest gap between two successful writes.
func (l *seqLoad) outage() time.Duration {
	d, _ := l.worstGap()
	return d
}

// worstGap is the longest gap between two successful writes and when
// writes succeeded again after it.
func (l *seqLoad) worstGap() (time.Duration, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := slices.Clone(l.okTimes)
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	var worst time.Duration
	var end time.Time
	for i := 1; i < len(ts); i++ {
		if d := ts[i].Sub(ts[i-1]); d > worst {
			worst, end = d, ts[i]
		}
	}
	return worst, end
}

// verify reads every list from node and reports acknowledged numbers that
// are missing (lost), and fails on a number that is there twice.
func (l *seqLoad) verify(t *testing.T, node *redis.Client) (acked, lost int) {
	t.Helper()
	ctx := context.Background()
	for i, key := range l.keys {
		vals, err := node.LRange(ctx, key, 0, -1).Result()
		if err != nil {
			t.Fatalf("LRANGE %s: %v", key, err)
		}
		have := make(map[int64]bool, len(vals))
		for _, v := range vals {
			n, _ := strconv.ParseInt(v, 10, 64)
			if have[n] {
				t.Errorf("%s holds %d twice: a write was executed twice", key, n)
			}
			have[n] = true
		}
		var missing []int64
		for _, n := range l.acked[i] {
			acked++
			if !have[n] {
				lost++
				missing = append(missing, n)
			}
		}
		if len(missing) > 0 && lost-len(missing) < 8 {
			// Where in the sequence: the last writes before a switch, or a
			// gap in the middle, tells which path lost them.
			top := int64(0)
			for n := range have {
				top = max(top, n)
			}
			t.Logf("%s: acknowledged but missing %v (of %d acknowledged; the list holds %d, up to %d)",
				key, missing[:min(len(missing), 8)], len(l.acked[i]), len(vals), top)
		}
	}
	return acked, lost
}

// switchWatch records when a Sentinel published +switch-master.
type switchWatch struct {
	at atomic.Pointer[time.Time]
	to atomic.Pointer[string]
}

func watchSwitch(t *testing.T, sentinel string) *switchWatch {
	t.Helper()
	w := &switchWatch{}
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel})
	t.Cleanup(func() { sc.Close() })
	ps := sc.Subscribe(context.Background(), "+switch-master")
	if _, err := ps.Receive(context.Background()); err != nil {
		t.Fatalf("subscribe +switch-master: %v", err)
	}
	go func() {
		for msg := range ps.Channel() {
			now := time.Now()
			f := strings.Fields(msg.Payload)
			if len(f) == 5 {
				to := net.JoinHostPort(f[3], f[4])
				w.to.Store(&to)
			}
			w.at.Store(&now)
		}
	}()
	t.Cleanup(func() { ps.Close() })
	return w
}

func (w *switchWatch) wait(t *testing.T) (time.Time, string) {
	t.Helper()
	deadline := time.Now().Add(failoverTimeout)
	for time.Now().Before(deadline) {
		if at := w.at.Load(); at != nil {
			return *at, *w.to.Load()
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("Sentinel never published +switch-master")
	return time.Time{}, ""
}

func nodeByAddr(topo *redistest.Topology, addr string) *redistest.Node {
	for _, n := range append([]*redistest.Node{topo.Master}, topo.Replicas...) {
		if n.Addr() == addr {
			return n
		}
	}
	return nil
}

func TestSentinelOnlyStartServes(t *testing.T) {
	t.Parallel()
	topo, sentinels := sentinelTopology(t)
	srv := sentinelProxy(t, sentinels, Config{})
	// The proxy listens even before a Sentinel has answered (as it does
	// when the master is down at start); wait for the master.
	waitSnapshot(t, srv, "the master Sentinel names", func(s *router.Snapshot) bool { return s.MasterGen == 1 && s.Master.Reachable })
	c := client(t, srv.Addr(), nil)
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET through a Sentinel-only proxy: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v", got, err)
	}
	snap := srv.topo.Load()
	if snap.Master.Addr != topo.Master.Addr() || snap.MasterGen != 1 {
		t.Fatalf("master %s gen %d, want %s gen 1", snap.Master.Addr, snap.MasterGen, topo.Master.Addr())
	}
	_, replicas := topo.Addrs()
	waitSnapshot(t, srv, "Sentinel's replicas eligible", func(s *router.Snapshot) bool {
		for _, r := range replicas {
			if st := replicaState(s, r); st == nil || !st.Eligible {
				return false
			}
		}
		return true
	})
	// The proxy learned the Sentinels' peers and lists them.
	if got := srv.mon.Sentinels(); len(got) != 3 {
		t.Fatalf("sentinels %v", got)
	}
}

// SIGKILL of the master under 32 writing clients.
func TestFailoverMasterKilled(t *testing.T) {
	t.Parallel()
	topo, sentinels := sentinelTopology(t)
	srv := sentinelProxy(t, sentinels, Config{ReadBalance: "round-robin"})
	watch := watchSwitch(t, sentinels[0])
	load := startSeqLoad(t, srv.Addr(), 32, time.Millisecond)
	// go-redis's own Sentinel client, straight to Redis, as the yardstick.
	direct := startFailoverClientLoad(t, sentinels, 4, time.Millisecond)
	for load.acks() < 2000 {
		time.Sleep(10 * time.Millisecond)
	}
	oldMaster := topo.Master.Addr()
	killedAt := time.Now()
	topo.Master.Kill()
	switchAt, newMaster := watch.wait(t)
	load.waitAcksAfter(t, switchAt, "+switch-master")
	// Writes go on for a while on the new master.
	for n := load.acks(); load.acks() < n+2000; {
		time.Sleep(10 * time.Millisecond)
	}
	load.halt()
	direct.waitAcksAfter(t, switchAt, "+switch-master (go-redis FailoverClient)")
	direct.halt()
	outage, resumed := load.worstGap()
	dOutage, dResumed := direct.worstGap()
	t.Logf("go-redis FailoverClient on the same Sentinels: writes succeed again at %v (%v after +switch-master); longest write outage %v",
		dResumed.Sub(killedAt).Round(time.Millisecond), dResumed.Sub(switchAt).Round(time.Millisecond), dOutage.Round(time.Millisecond))
	if n := load.readonly.Load(); n != 0 {
		t.Errorf("clients received -READONLY %d times", n)
	}
	// Sentinel's master now: under load it may fail over again after the
	// first +switch-master (it gives up on the first promoted replica),
	// also while this waits; the proxy must follow whichever it names, so
	// Sentinel is asked on every look. (A CI run asked once, got the first
	// promoted replica, and then watched the proxy rightly follow the
	// second failover 2.5 s later, to the end of the timeout.)
	ctx := context.Background()
	waitSnapshotFor(t, srv, failoverTimeout, "the proxy to follow Sentinel's current master", func(s *router.Snapshot) bool {
		cur, err := topo.Sentinels[0].Client().Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", redistest.SentinelMasterName).StringSlice()
		if err != nil || len(cur) != 2 {
			return false
		}
		if now := net.JoinHostPort(cur[0], cur[1]); now != newMaster {
			t.Logf("Sentinel failed over again: %s after %s", now, newMaster)
			newMaster = now
		}
		return s.Master.Addr == newMaster
	})
	nm := nodeByAddr(topo, newMaster)
	if nm == nil {
		t.Fatalf("Sentinel promoted %s, not a node of the topology", newMaster)
	}
	acked, lost := load.verify(t, nm.Client())
	t.Logf("SIGKILL: killed at 0, +switch-master at %v, writes succeed again at %v (%v after +switch-master); longest write outage %v; %d writes acknowledged, %d lost, %d errors",
		switchAt.Sub(killedAt).Round(time.Millisecond), resumed.Sub(killedAt).Round(time.Millisecond),
		resumed.Sub(switchAt).Round(time.Millisecond), outage.Round(time.Millisecond), acked, lost, load.errs.Load())

	// The old master comes back (empty: no persistence); Sentinel turns it
	// into a replica of the new master, and the proxy reads from it once
	// it is eligible.
	topo.Master.Start()
	waitSnapshotFor(t, srv, failoverTimeout, "the old master eligible as a replica", func(s *router.Snapshot) bool {
		st := replicaState(s, oldMaster)
		return st != nil && st.Eligible
	})
	c := client(t, srv.Addr(), nil)
	if err := c.Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	before := getCalls(t, topo.Master)
	for deadline := time.Now().Add(failoverTimeout); getCalls(t, topo.Master) == before && time.Now().Before(deadline); {
		for i := 0; i < 50; i++ {
			if err := c.Get(ctx, "after").Err(); err != nil {
				t.Fatalf("GET: %v", err)
			}
		}
	}
	if getCalls(t, topo.Master) == before {
		var calls []string
		for _, n := range append([]*redistest.Node{topo.Master}, topo.Replicas...) {
			calls = append(calls, fmt.Sprintf("%s: %d", n.Addr(), getCalls(t, n)))
		}
		t.Errorf("no read reached the old master after it became an eligible replica; GET calls %v; topology %s", calls, describeSnap(srv.topo.Load()))
	}
}

// startFailoverClientLoad runs the same load through go-redis's
// FailoverClient on the Sentinels, without the proxy.
func startFailoverClientLoad(t *testing.T, sentinels []string, n int, pace time.Duration) *seqLoad {
	l := &seqLoad{t: t, pace: pace, stop: make(chan struct{}), acked: make([][]int64, n)}
	tag := strconv.FormatInt(time.Now().UnixNano(), 36)
	for i := 0; i < n; i++ {
		c := redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName: redistest.SentinelMasterName, SentinelAddrs: sentinels,
			MaxRetries: -1, PoolSize: 1, ReadTimeout: 5 * time.Second,
		})
		t.Cleanup(func() { c.Close() })
		l.clients = append(l.clients, c)
		l.keys = append(l.keys, fmt.Sprintf("direct:%s:%d", tag, i))
	}
	for i := range l.clients {
		l.wg.Add(1)
		go l.run(i)
	}
	return l
}

func getCalls(t *testing.T, n *redistest.Node) int64 {
	t.Helper()
	s := n.Info(t, "commandstats")["cmdstat_get"]
	for _, kv := range strings.Split(s, ",") {
		if v, ok := strings.CutPrefix(kv, "calls="); ok {
			c, _ := strconv.ParseInt(v, 10, 64)
			return c
		}
	}
	return 0
}

func waitSnapshotFor(t *testing.T, srv *Server, timeout time.Duration, what string, ok func(*router.Snapshot) bool) *router.Snapshot {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		snap := srv.topo.Load()
		if snap != nil && ok(snap) {
			return snap
		}
		if time.Now().After(deadline) {
			t.Fatalf("topology never showed %s; last: %+v", what, snap)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// SENTINEL FAILOVER under the same load: the old master stays up and keeps
// accepting writes until Sentinel demotes it, so this is where a proxy that
// writes to the old master loses acknowledged writes.
func TestFailoverManual(t *testing.T) {
	t.Parallel()
	topo, sentinels := sentinelTopology(t)
	srv := sentinelProxy(t, sentinels, Config{})
	watch := watchSwitch(t, sentinels[0])
	ctx := context.Background()
	// A subscriber through the proxy: its connection lives on the old
	// master and is closed at the switch; go-redis resubscribes by itself.
	sub := client(t, srv.Addr(), nil).Subscribe(ctx, "news")
	if _, err := sub.Receive(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := sub.Channel()
	load := startSeqLoad(t, srv.Addr(), 32, time.Millisecond)
	for load.acks() < 2000 {
		time.Sleep(10 * time.Millisecond)
	}
	startedAt := time.Now()
	if err := topo.Sentinels[0].Client().Do(ctx, "SENTINEL", "FAILOVER", redistest.SentinelMasterName).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	switchAt, newMaster := watch.wait(t)
	load.waitAcksAfter(t, switchAt, "+switch-master")
	for n := load.acks(); load.acks() < n+2000; {
		time.Sleep(10 * time.Millisecond)
	}
	load.halt()
	if n := load.readonly.Load(); n != 0 {
		t.Errorf("clients received -READONLY %d times", n)
	}
	nm := nodeByAddr(topo, newMaster)
	acked, lost := load.verify(t, nm.Client())
	if lost != 0 {
		t.Errorf("%d of %d acknowledged writes lost in a manual failover", lost, acked)
	}
	pub := client(t, srv.Addr(), nil)
	got := false
	for deadline := time.Now().Add(failoverTimeout); !got && time.Now().Before(deadline); {
		if err := pub.Publish(ctx, "news", "after").Err(); err != nil {
			t.Fatalf("PUBLISH: %v", err)
		}
		select {
		case m := <-msgs:
			got = m.Payload == "after"
		case <-time.After(100 * time.Millisecond):
		}
	}
	if !got {
		t.Error("the subscriber never received a message published after the switch")
	}
	// WAIT after the switch counts the new master's replicas.
	acks, err := int64(0), error(nil)
	for deadline := time.Now().Add(failoverTimeout); acks < 1 && time.Now().Before(deadline); {
		if err := pub.Set(ctx, "w", "1", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if acks, err = pub.Do(ctx, "WAIT", 1, 1000).Int64(); err != nil {
			t.Fatal(err)
		}
	}
	if acks < 1 {
		t.Error("WAIT 1 never counted a replica of the new master")
	}
	info, err := pub.Do(ctx, "PROXY", "INFO").Result()
	if err != nil {
		t.Fatal(err)
	}
	txt := fmt.Sprint(info)
	for _, want := range []string{"master_generation 2", "master " + newMaster, "-> " + newMaster, "continues history"} {
		if !strings.Contains(txt, want) {
			t.Errorf("PROXY INFO lacks %q: %s", want, txt)
		}
	}
	t.Logf("SENTINEL FAILOVER: +switch-master %v after the command; longest write outage %v; %d writes acknowledged, %d lost, %d errored during the switch; %d held, %d redirected",
		switchAt.Sub(startedAt).Round(time.Millisecond), load.outage().Round(time.Millisecond), acked, lost, load.errs.Load(),
		sumLoops(srv, func(l *loop) int64 { return l.stats.held.Load() }), sumLoops(srv, func(l *loop) int64 { return l.stats.redirected.Load() }))
}

func sumLoops(srv *Server, f func(*loop) int64) int64 {
	var n int64
	for _, l := range *srv.loopLst.Load() {
		n += f(l)
	}
	return n
}

// The causal checker (pooled clients, write then read) through a manual
// failover: a read never misses a write acknowledged before it.
func TestCausalAcrossFailover(t *testing.T) {
	t.Parallel()
	topo, sentinels := sentinelTopology(t)
	srv := sentinelProxy(t, sentinels, Config{})
	watch := watchSwitch(t, sentinels[0])
	clients := pooled(t, srv.Addr(), 4)
	ctx := context.Background()
	var checks, stale, errs atomic.Int64
	var first atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			key := fmt.Sprintf("causal:%d", w)
			var last int64 // highest value acknowledged
			for i := int64(1); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := clients[w%4].Set(ctx, key, i, 0).Err(); err != nil {
					errs.Add(1)
					time.Sleep(5 * time.Millisecond)
					continue // maybe executed: the value may be i or older
				}
				last = i
				got, err := clients[(w+1)%4].Get(ctx, key).Int64()
				if err != nil {
					errs.Add(1)
					continue
				}
				checks.Add(1)
				if got < last {
					if stale.Add(1) == 1 {
						first.Store(fmt.Sprintf("worker %d acknowledged %d, then read %d", w, last, got))
					}
				}
			}
		}(w)
	}
	for checks.Load() < 3000 {
		time.Sleep(10 * time.Millisecond)
	}
	if err := topo.Sentinels[1].Client().Do(ctx, "SENTINEL", "FAILOVER", redistest.SentinelMasterName).Err(); err != nil {
		t.Fatalf("SENTINEL FAILOVER: %v", err)
	}
	watch.wait(t)
	for n := checks.Load(); checks.Load() < n+5000; {
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if n := stale.Load(); n != 0 {
		t.Errorf("%d stale reads in %d checks; first: %v", n, checks.Load(), first.Load())
	}
	t.Logf("causal across a failover: %d checks, %d stale, %d errors", checks.Load(), stale.Load(), errs.Load())
}

// A Sentinel that is down and one that names a replica (stale, or
// misconfigured) come first in the list: the proxy never takes a
// non-master for the master.
func TestSentinelDownOrLyingIsNotFollowed(t *testing.T) {
	t.Parallel()
	topo, sentinels := sentinelTopology(t)
	liar := redistest.StartSentinel(t, topo.Replicas[0].Port())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close() // nothing listens there now
	srv := sentinelProxy(t, append([]string{down, liar.Addr()}, sentinels...), Config{})
	waitSnapshot(t, srv, "the master Sentinel names", func(s *router.Snapshot) bool { return s.MasterGen == 1 && s.Master.Reachable })
	ctx := context.Background()
	if got, err := liar.Client().Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", redistest.SentinelMasterName).StringSlice(); err != nil || net.JoinHostPort(got[0], got[1]) != topo.Replicas[0].Addr() {
		t.Fatalf("the lying Sentinel answers %v, %v; want the replica %s", got, err, topo.Replicas[0].Addr())
	}
	c := client(t, srv.Addr(), &redis.Options{MaxRetries: -1})
	deadline := time.Now().Add(3 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if err := c.Set(ctx, "k"+strconv.Itoa(i%100), i, 0).Err(); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if snap := srv.topo.Load(); snap.Master.Addr != topo.Master.Addr() || snap.MasterGen != 1 {
			t.Fatalf("the proxy follows %s (gen %d), the master is %s", snap.Master.Addr, snap.MasterGen, topo.Master.Addr())
		}
	}
}

// Without Sentinel: Redis's own FAILOVER command demotes the master and
// promotes a replica after it caught up; writes blocked in its pause are
// answered -READONLY by the demoted master. The proxy follows the master
// that became a replica and re-sends those writes: no client sees
// -READONLY, none is executed twice, none acknowledged is lost.
func TestFollowMasterThatBecameReplica(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	srv := startProxy(t, Config{Master: topo.Master.Addr()})
	load := startSeqLoad(t, srv.Addr(), 32, time.Millisecond)
	for load.acks() < 2000 {
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	target := topo.Replicas[0]
	at := time.Now()
	if err := topo.Master.Client().Do(ctx, "FAILOVER", "TO", "127.0.0.1", target.Port()).Err(); err != nil {
		t.Fatalf("FAILOVER: %v", err)
	}
	waitSnapshotFor(t, srv, failoverTimeout, "the promoted replica as master", func(s *router.Snapshot) bool {
		return s.Master.Addr == target.Addr() && s.MasterGen == 2
	})
	load.waitAcksAfter(t, time.Now(), "the switch")
	for n := load.acks(); load.acks() < n+2000; {
		time.Sleep(10 * time.Millisecond)
	}
	load.halt()
	if n := load.readonly.Load(); n != 0 {
		t.Errorf("clients received -READONLY %d times", n)
	}
	acked, lost := load.verify(t, target.Client())
	if lost != 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, acked)
	}
	sw := srv.lastSwitch.Load()
	if sw == nil || !sw.Continues || causeKind(sw.Cause) != "master_became_replica" {
		t.Errorf("last switch %+v: want one that continues the history, caused by the master becoming a replica", sw)
	}
	t.Logf("FAILOVER: switch %v after the command; longest write outage %v; %d acknowledged, %d lost, %d errors, %d redirected after -READONLY",
		sw.At.Sub(at).Round(time.Millisecond), load.outage().Round(time.Millisecond), acked, lost, load.errs.Load(),
		sumLoops(srv, func(l *loop) int64 { return l.stats.redirected.Load() }))
}

func describeSnap(s *router.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "master %s gen %d;", s.Master.Addr, s.MasterGen)
	for _, r := range s.Replicas {
		fmt.Fprintf(&b, " %s eligible=%v reason=%q offset=%d lag_ms=%d;", r.Addr, r.Eligible, r.Reason, r.Offset, r.LagMs)
	}
	return b.String()
}

// SIGKILL of the master right after its replicas fell behind: the writes
// the master acknowledged while they were paused are not on the replica
// Sentinel promotes. This is the loss the write witness exists to remove;
// here it is measured and reported, and nothing else may go wrong.
func TestFailoverKilledWithLaggingReplicas(t *testing.T) {
	t.Parallel()
	topo, sentinels := sentinelTopology(t)
	srv := sentinelProxy(t, sentinels, Config{})
	watch := watchSwitch(t, sentinels[0])
	load := startSeqLoad(t, srv.Addr(), 32, time.Millisecond)
	for load.acks() < 2000 {
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range topo.Replicas {
		r.Pause()
	}
	// 16 MB of values fill the kernel's socket buffers toward the paused
	// replicas; what the master acknowledges after them waits in its own
	// output buffers, and dies with it.
	big := client(t, srv.Addr(), nil)
	blob := strings.Repeat("x", 1<<20)
	for i := 0; i < 16; i++ {
		if err := big.Set(context.Background(), "blob"+strconv.Itoa(i), blob, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	topo.Master.Kill()
	for _, r := range topo.Replicas {
		r.Resume()
	}
	switchAt, newMaster := watch.wait(t)
	load.waitAcksAfter(t, switchAt, "+switch-master")
	for n := load.acks(); load.acks() < n+1000; {
		time.Sleep(10 * time.Millisecond)
	}
	load.halt()
	if n := load.readonly.Load(); n != 0 {
		t.Errorf("clients received -READONLY %d times", n)
	}
	acked, lost := load.verify(t, nodeByAddr(topo, newMaster).Client())
	t.Logf("SIGKILL with replicas paused (16 MB behind) just before: %d writes acknowledged, %d lost (acknowledged by the killed master, never replicated), outage %v",
		acked, lost, load.outage().Round(time.Millisecond))
}

// What a session knows across a switch (carryFences): kept where the new
// master's history proves it, dropped where it cannot.
func TestCarryFences(t *testing.T) {
	for _, tc := range []struct {
		name               string
		sw                 router.Switch
		writeFence, floor  int64
		waiting            bool
		wantUnproven       bool
		wantFloor          int64
		wantWaitUnprovable bool
	}{
		{"continues past the write", router.Switch{Continues: true, SplitOffset: 1000}, 900, 800, true, false, 800, false},
		{"write exactly at the split survives", router.Switch{Continues: true, SplitOffset: 1000}, 1000, 800, false, false, 800, false},
		// Acknowledged by the old master after what the promoted replica
		// had: WAIT must not count replicas of the new history for it.
		{"write beyond the split is unprovable", router.Switch{Continues: true, SplitOffset: 1000}, 1001, 800, true, true, 800, true},
		{"new history: fence unprovable, floor reset", router.Switch{Continues: false, SplitOffset: -1}, 500, 400, true, true, 0, true},
		{"no write yet: nothing to prove", router.Switch{Continues: false, SplitOffset: -1}, 0, 400, false, false, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &loop{}
			s := &session{writeFence: tc.writeFence, floor: tc.floor, floorEpoch: 3}
			if tc.waiting {
				s.waiting = &waitState{want: 1, fence: tc.writeFence}
			}
			l.carryFences(s, tc.sw)
			if s.fenceUnproven != tc.wantUnproven || s.floor != tc.wantFloor {
				t.Fatalf("unproven %v floor %d; want %v %d", s.fenceUnproven, s.floor, tc.wantUnproven, tc.wantFloor)
			}
			if tc.waiting && (s.waiting.fence == unprovableFence) != tc.wantWaitUnprovable {
				t.Fatalf("blocked WAIT fence %d; unprovable want %v", s.waiting.fence, tc.wantWaitUnprovable)
			}
		})
	}
}
