package proxy

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/router"
)

// The witness acceptance tests (issue 11): 3 real Sentinels
// (down-after-milliseconds 1000), both replicas SIGSTOPped for 400 ms
// while 64 KB values push them past their socket buffers, the master
// SIGKILLed during the pause. Every write a client saw acknowledged must
// be on the new master, once.

// bigWriters SETs 64 KB values through addr until stop closes.
func bigWriters(t *testing.T, addr string, n int, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	blob := strings.Repeat("v", 64<<10)
	for i := 0; i < n; i++ {
		c := client(t, addr, &redis.Options{MaxRetries: -1, PoolSize: 1})
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				if c.Set(context.Background(), fmt.Sprintf("big:%d:%d", i, j%64), blob, 0).Err() != nil {
					time.Sleep(5 * time.Millisecond)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}(i)
	}
	return &wg
}

type witnessResult struct {
	acked, lost int
	errs        int64
	switches    int64 // the most master switches a proxy saw
}

// witnessScenario runs the kill-during-the-pause scenario once with the
// given proxies' config, load spread over them.
func witnessScenario(t *testing.T, proxies int, cfg Config) witnessResult {
	t.Helper()
	// One failover per trial: with the harness's 3 s failover-timeout a
	// Sentinel may start a second one while the first reconfigures
	// replicas busy resyncing 20 MB under -race.
	topo := redistest.Start(t, redistest.Options{Replicas: 2, Sentinels: 3, SentinelFailoverTimeoutMs: 20000})
	var sentinels []string
	for _, s := range topo.Sentinels {
		sentinels = append(sentinels, s.Addr())
	}
	cfg.ReplicationBacklogBytes = 64 << 20
	var srvs []*Server
	for i := 0; i < proxies; i++ {
		srvs = append(srvs, sentinelProxy(t, sentinels, cfg))
	}
	watch := watchSwitch(t, sentinels[0])
	var loads []*seqLoad
	for _, srv := range srvs {
		loads = append(loads, startSeqLoad(t, srv.Addr(), 32/proxies, time.Millisecond))
	}
	stopBig := make(chan struct{})
	bigWG := bigWriters(t, srvs[0].Addr(), 2, stopBig)
	for loads[0].acks() < 1000 {
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range topo.Replicas {
		r.Pause()
	}
	paused := time.Now()
	// 16 MB at once, beside the 64 KB writers, so the paused replicas are
	// behind by more than their socket buffers: what the master
	// acknowledges next waits in its own output buffers and dies with it.
	fill := client(t, srvs[0].Addr(), &redis.Options{MaxRetries: -1})
	filler := strings.Repeat("f", 1<<20)
	for i := 0; i < 16; i++ {
		if err := fill.Set(context.Background(), fmt.Sprintf("filler:%d", i), filler, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for n := loads[0].acks(); loads[0].acks() < n+200; {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(max(0, 200*time.Millisecond-time.Since(paused)))
	topo.Master.Kill()
	time.Sleep(max(0, 400*time.Millisecond-time.Since(paused)))
	for _, r := range topo.Replicas {
		r.Resume()
	}
	switchAt, _ := watch.wait(t)
	for _, l := range loads {
		l.waitAcksAfter(t, switchAt, "+switch-master")
	}
	for n := loads[0].acks(); loads[0].acks() < n+500; {
		time.Sleep(10 * time.Millisecond)
	}
	close(stopBig)
	bigWG.Wait()
	var res witnessResult
	// The master of the end: after a double failover, not the first
	// switch's.
	nm := nodeByAddr(topo, srvs[0].mon.Master()).Client()
	for _, l := range loads {
		l.halt()
		a, lost := l.verify(t, nm)
		res.acked += a
		res.lost += lost
		res.errs += l.errs.Load()
	}
	for _, srv := range srvs {
		if sw := srv.lastSwitch.Load(); sw != nil {
			t.Logf("proxy %s: last switch %+v", srv.Addr(), *sw)
		}
		res.switches = max(res.switches, int64(srv.topo.Load().MasterGen-1))
		t.Logf("proxy %s: %d switches; %s; lost bytes %d; witness waits %d, timeouts %d, released with the link down %d",
			srv.Addr(), srv.topo.Load().MasterGen-1, lastReplay(srv), srv.replays.lostBytes.Load(),
			sumLoops(srv, func(l *loop) int64 { return l.stats.witnessWaited.Load() }),
			sumLoops(srv, func(l *loop) int64 { return l.stats.witnessTimeouts.Load() }),
			sumLoops(srv, func(l *loop) int64 { return l.stats.witnessOff.Load() }))
	}
	return res
}

func lastReplay(srv *Server) string {
	if p := srv.replays.last.Load(); p != nil {
		return *p
	}
	return "no replay"
}

func TestWitnessKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	for trial := 1; trial <= 5; trial++ {
		r := witnessScenario(t, 1, Config{})
		// A second failover happens in some trials: Sentinel gives up on
		// the first promoted replica while it takes the 17 MB replay
		// under -race, and promotes the other. It must lose nothing
		// either (TestDoubleFailoverKeepsAcknowledgedWrites is its
		// deterministic form).
		t.Logf("trial %d: %d switches, %d acknowledged, %d lost, %d errors", trial, r.switches, r.acked, r.lost, r.errs)
		if r.lost != 0 {
			t.Fatalf("trial %d: %d of %d acknowledged writes lost with the witness on (%d switches)", trial, r.lost, r.acked, r.switches)
		}
	}
}

// --witness off: the same scenario loses writes, which shows the test
// above can fail.
func TestWitnessOffLosesWrites(t *testing.T) {
	t.Parallel()
	off := false
	r := witnessScenario(t, 1, Config{Witness: &off})
	t.Logf("witness off: %d acknowledged, %d lost", r.acked, r.lost)
	if r.lost == 0 {
		t.Fatalf("no acknowledged write was lost with the witness off (%d acknowledged): the scenario does not create the loss the witness repairs", r.acked)
	}
}

// Two proxies in front of the deployment: both hold the suffix, one
// replays it, the other finds the marker: every write exactly once.
func TestWitnessTwoProxiesReplayOnce(t *testing.T) {
	t.Parallel()
	r := witnessScenario(t, 2, Config{})
	t.Logf("two proxies: %d acknowledged, %d lost", r.acked, r.lost)
	if r.lost != 0 {
		t.Fatalf("%d of %d acknowledged writes lost", r.lost, r.acked)
	}
}

// What the replay carries: transactions, expiring keys, several databases,
// a 1 MB value and a script's effects, written while the replicas are
// paused and the master then killed: the new master's data equals the old
// master's (DUMP of every key, and the expiry times).
func TestReplayCarriesEveryKind(t *testing.T) {
	t.Parallel()
	topo, sentinels := sentinelTopology(t)
	srv := sentinelProxy(t, sentinels, Config{ReplicationBacklogBytes: 64 << 20})
	watch := watchSwitch(t, sentinels[0])
	ctx := context.Background()
	// Requests wait for the replay: 18 MB under -race on a loaded machine
	// can take longer than go-redis's default 3 s.
	c := client(t, srv.Addr(), &redis.Options{MaxRetries: -1, ReadTimeout: 30 * time.Second})
	c3 := client(t, srv.Addr(), &redis.Options{MaxRetries: -1, DB: 3})
	waitEligible(t, srv, 2)
	for _, r := range topo.Replicas {
		r.Pause()
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	// 16 MB first fill the kernel's buffers toward the paused replicas:
	// what follows stays in the master's, and dies with it.
	filler := strings.Repeat("f", 1<<20)
	for i := 0; i < 16; i++ {
		must(c.Set(ctx, fmt.Sprintf("filler:%d", i), filler, 0).Err())
	}
	must(c.Set(ctx, "plain", "1", 0).Err())
	_, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "tx:a", "1", 0)
		p.Incr(ctx, "tx:n")
		p.LPush(ctx, "tx:l", "x", "y")
		return nil
	})
	must(err)
	must(c.Set(ctx, "exp", "soon", time.Hour).Err())
	must(c.Expire(ctx, "plain", 2*time.Hour).Err())
	must(c3.Set(ctx, "db3", "three", 0).Err())
	must(c.Set(ctx, "mb", strings.Repeat("m", 1<<20), 0).Err())
	must(c.Eval(ctx, "redis.call('HSET', KEYS[1], 'f', ARGV[1]); return redis.call('INCRBY', KEYS[2], 5)", []string{"h", "ctr"}, "v").Err())
	must(c.Set(ctx, "last", "done", 0).Err())
	// The reference: the old master's data, which has every write.
	ref := dumpAll(t, topo.Master.Client(), 0, 3)
	topo.Master.Kill()
	for _, r := range topo.Replicas {
		r.Resume()
	}
	_, newMaster := watch.wait(t)
	// The switch's replay comes before any request reaches the new master.
	if err := c.Get(ctx, "last").Err(); err != nil {
		t.Fatalf("GET after the switch: %v", err)
	}
	got := dumpAll(t, nodeByAddr(topo, newMaster).Client(), 0, 3)
	for k, v := range ref {
		if got[k] != v {
			t.Errorf("%s differs after the replay: got %.60q, want %.60q", k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := ref[k]; !ok && !strings.HasPrefix(k, "0/__replproxy:replayed:") {
			t.Errorf("%s exists only after the replay", k)
		}
	}
	t.Logf("%s", lastReplay(srv))
	if srv.replays.replayed.Load() != 1 {
		t.Fatalf("no replay ran (%s): the promoted replica had every write, and this test showed nothing", lastReplay(srv))
	}
}

// dumpAll returns, for every key of the dbs, DUMP and the expiry time
// (to the second: replay keeps PEXPIREAT exact, a TTL read moves).
func dumpAll(t *testing.T, c *redis.Client, dbs ...int) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, db := range dbs {
		conn := c.Conn()
		if err := conn.Select(ctx, db).Err(); err != nil {
			t.Fatal(err)
		}
		keys, err := conn.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			d, err := conn.Dump(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			exp, _ := conn.Do(ctx, "PEXPIRETIME", k).Int64()
			out[fmt.Sprintf("%d/%s", db, k)] = fmt.Sprintf("%x exp=%d", d, exp/1000)
		}
		conn.Close()
	}
	return out
}

// Replies that wait for the witness come out exactly as the master sent
// them, each to its own client, in order: 8 clients pipeline INCRBYs of
// their own counters (every reply is a different number, of varying
// length) and APPENDs (the new length), next to 64 KB writers that make
// the link lag so replies wait, are released out of arrival order across
// connections, and are moved within the loop's witness buffer.
func TestWitnessRepliesExact(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{Replicas: 1})
	srv := startProxy(t, Config{Master: topo.Master.Addr(), Loops: 1, BackendConns: 4})
	stop := make(chan struct{})
	big := bigWriters(t, srv.Addr(), 2, stop)
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for id := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			c := client(t, srv.Addr(), &redis.Options{MaxRetries: -1})
			key, str := fmt.Sprintf("exact:%d", id), fmt.Sprintf("exact:s:%d", id)
			var sum, length int64
			for round := range 60 {
				p := c.Pipeline()
				var incr, app []*redis.IntCmd
				var want, wantLen []int64
				for j := range 16 {
					by := int64(round*1000 + j*37 + id + 1)
					sum += by
					incr = append(incr, p.IncrBy(ctx, key, by))
					want = append(want, sum)
					piece := strings.Repeat("x", 1+(round+j)%7)
					length += int64(len(piece))
					app = append(app, p.Append(ctx, str, piece))
					wantLen = append(wantLen, length)
				}
				if _, err := p.Exec(ctx); err != nil {
					errc <- fmt.Errorf("client %d round %d: %v", id, round, err)
					return
				}
				for j := range incr {
					if incr[j].Val() != want[j] || app[j].Val() != wantLen[j] {
						errc <- fmt.Errorf("client %d round %d reply %d: INCRBY = %d (want %d), APPEND = %d (want %d)",
							id, round, j, incr[j].Val(), want[j], app[j].Val(), wantLen[j])
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	big.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	waited := sumLoops(srv, func(l *loop) int64 { return l.stats.witnessWaited.Load() })
	t.Logf("%d write replies waited for the witness", waited)
	if waited == 0 {
		t.Error("no reply waited for the witness: the test did not exercise it")
	}
}

// The witness with the empty-master guard: the master dies while both
// replicas are paused behind it and comes back at once, empty. The link
// full-resyncs from the empty master before the guard has promoted a
// replica; the replay must still take the suffix the promoted replica
// lacks from the old history, which the link keeps. Every acknowledged
// push is then on the promoted replica, once.
func TestWitnessWithEmptyMasterGuard(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	srv := startProxy(t, Config{Master: topo.Master.Addr(), ReplicationBacklogBytes: 64 << 20})
	waitGuardArmed(t, srv)
	load := startSeqLoad(t, srv.Addr(), 16, time.Millisecond)
	stopBig := make(chan struct{})
	bigWG := bigWriters(t, srv.Addr(), 2, stopBig)
	for load.acks() < 1000 {
		time.Sleep(10 * time.Millisecond)
	}
	for _, r := range topo.Replicas {
		r.Pause()
	}
	paused := time.Now()
	fill := client(t, srv.Addr(), &redis.Options{MaxRetries: -1})
	filler := strings.Repeat("f", 1<<20)
	for i := 0; i < 16; i++ {
		if err := fill.Set(context.Background(), fmt.Sprintf("filler:%d", i), filler, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for n := load.acks(); load.acks() < n+200; {
		time.Sleep(5 * time.Millisecond)
	}
	old := srv.link.ReplID()
	restartEmpty(topo, 0)
	// The link resyncs from the empty master while the replicas are still
	// paused: the case this test is for.
	waitFor(t, "the link to full-resync from the empty master", 20*time.Second, func() bool {
		return srv.link.ReplID() != old
	})
	time.Sleep(max(0, 400*time.Millisecond-time.Since(paused)))
	for _, r := range topo.Replicas {
		r.Resume()
	}
	waitSnapshot(t, srv, "the guard's promotion", func(s *router.Snapshot) bool { return s.MasterGen >= 2 })
	newMaster := srv.topo.Load().Master.Addr
	load.waitAcksAfter(t, time.Now(), "the promotion")
	for n := load.acks(); load.acks() < n+500; {
		time.Sleep(10 * time.Millisecond)
	}
	close(stopBig)
	bigWG.Wait()
	load.halt()
	acked, lost := load.verify(t, nodeByAddr(topo, newMaster).Client())
	t.Logf("%d acknowledged, %d lost; %s; lost bytes %d; guard: %+v", acked, lost, lastReplay(srv), srv.replays.lostBytes.Load(), srv.mon.Guard().Incident)
	if lost != 0 {
		t.Errorf("%d of %d acknowledged writes lost across the guard's promotion", lost, acked)
	}
	if !strings.HasPrefix(lastReplay(srv), "replayed") {
		t.Errorf("no replay happened (%s): the scenario did not leave the promoted replica behind", lastReplay(srv))
	}
}
