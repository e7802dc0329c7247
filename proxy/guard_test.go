package proxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/router"
)

// The empty-master guard's acceptance tests (issue 10): the master runs
// with persistence off (the harness's --save "" --appendonly no), 20,000
// keys reach every replica through the replication stream, the master is
// SIGKILLed and restarted empty on the same port.

const guardKeys = 20000

// loadKeys writes n keys with ordinary SETs on the master, so they reach
// the replicas through the stream, and waits until every replica has them.
func loadKeys(t *testing.T, topo *redistest.Topology, n int) {
	t.Helper()
	ctx := context.Background()
	m := topo.Master.Client()
	for start := 0; start < n; start += 1000 {
		p := m.Pipeline()
		for i := start; i < min(n, start+1000); i++ {
			p.Set(ctx, "gk:"+strconv.Itoa(i), i, 0)
		}
		if _, err := p.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	topo.WaitSynced(t, 30*time.Second)
	for _, r := range topo.Replicas {
		if got := r.Client().DBSize(ctx).Val(); got != int64(n) {
			t.Fatalf("%s holds %d keys before the kill, want %d", r, got, n)
		}
	}
}

// restartEmpty kills the master and starts it again, empty, after delay.
func restartEmpty(topo *redistest.Topology, delay time.Duration) time.Time {
	topo.Master.Kill()
	if delay > 0 {
		time.Sleep(delay)
	}
	topo.Master.Start()
	return time.Now()
}

// dataServed waits until every key is readable through the proxy from a
// replica (eventual mode) and a write succeeds; it returns when that was
// first true, or fails at the deadline.
func dataServed(t *testing.T, srv *Server, n int, within time.Duration) time.Time {
	t.Helper()
	ctx := context.Background()
	c := client(t, srv.Addr(), &redis.Options{MaxRetries: -1})
	if err := c.Do(ctx, "PROXY", "CONSISTENCY", "eventual").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(within)
	for {
		err := allKeys(ctx, c, n)
		if err == nil {
			err = c.Set(ctx, "guard:write", "ok", 0).Err()
		}
		if err == nil {
			return time.Now()
		}
		if time.Now().After(deadline) {
			t.Fatalf("data not served %v after the restart: %v; guard: %+v; topology: %s", within, err, srv.mon.Guard().Incident, describeSnap(srv.topo.Load()))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func allKeys(ctx context.Context, c *redis.Client, n int) error {
	for start := 0; start < n; start += 1000 {
		p := c.Pipeline()
		cmds := make([]*redis.StringCmd, 0, 1000)
		for i := start; i < min(n, start+1000); i++ {
			cmds = append(cmds, p.Get(ctx, "gk:"+strconv.Itoa(i)))
		}
		if _, err := p.Exec(ctx); err != nil {
			return err
		}
		for i, cmd := range cmds {
			if v, err := cmd.Result(); err != nil || v != strconv.Itoa(start+i) {
				return fmt.Errorf("gk:%d = %q, %v", start+i, v, err)
			}
		}
	}
	return nil
}

// keysEverywhere checks that every data node ends up with the keys: the
// promoted replica, the other one, and the empty node, now a replica.
func keysEverywhere(t *testing.T, topo *redistest.Topology, n int) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for _, node := range append([]*redistest.Node{topo.Master}, topo.Replicas...) {
		for {
			got, err := node.Client().DBSize(ctx).Result()
			if err == nil && got >= int64(n) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s holds %d keys (%v), want %d", node, got, err, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func TestEmptyMasterGuard(t *testing.T) {
	for _, tc := range []struct {
		name       string
		delay      time.Duration
		disklessMs string // repl-diskless-sync-delay of the restarted master, seconds
	}{
		{"restart at once, diskless delay 0", 0, "0"},
		{"restart at once, diskless delay 5 (default)", 0, "5"},
		{"restart after 1.5s, diskless delay 0", 1500 * time.Millisecond, "0"},
		{"restart after 1.5s, diskless delay 5 (default)", 1500 * time.Millisecond, "5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			for trial := 1; trial <= guardTrials(); trial++ {
				topo := redistest.Start(t, redistest.Options{Replicas: 2, MasterArgs: []string{"--repl-diskless-sync-delay", tc.disklessMs}})
				srv := startProxy(t, Config{Master: topo.Master.Addr()})
				loadKeys(t, topo, guardKeys)
				waitGuardArmed(t, srv)
				restarted := restartEmpty(topo, tc.delay)
				served := dataServed(t, srv, guardKeys, 10*time.Second)
				keysEverywhere(t, topo, guardKeys)
				inc := srv.mon.Guard().Incident
				if inc == nil || inc.Promoted == "" {
					t.Fatalf("trial %d: data kept but the guard reports no promotion: %+v", trial, inc)
				}
				t.Logf("trial %d: parked %v after the kill; promoted %s %v after the restart; data served %v after the restart",
					trial, inc.Parked, inc.Promoted, inc.Resolved.Sub(restarted).Round(time.Millisecond), served.Sub(restarted).Round(time.Millisecond))
			}
		})
	}
}

func guardTrials() int {
	return 5
}

// waitGuardArmed waits until the proxy knows the master's persistence
// (off) and both replicas as eligible: before that it could not tell what
// to protect.
func waitGuardArmed(t *testing.T, srv *Server) {
	t.Helper()
	waitSnapshot(t, srv, "master audited, 2 replicas eligible", func(s *router.Snapshot) bool {
		n := 0
		for _, r := range s.Replicas {
			if r.Eligible {
				n++
			}
		}
		return n == 2 && s.Master.PersistRDB == 0 && s.Master.PersistAOF == 0
	})
}

// Every parked replica restarts (empty) while the master is down, then the
// master restarts empty too: no node holds the old data any more, so there
// is nothing to protect and the incident must end, not refuse writes for
// good waiting for a replica to be seen parked on the old history (the
// chaos test restarts nodes during incidents).
func TestEmptyMasterGuardEveryReplicaRestarted(t *testing.T) {
	t.Parallel()
	// Diskless load: a replica keeps no dump.rdb of its sync, so it
	// restarts empty, on a new history (with one, it would reload it and
	// come back on the old history, holding data).
	topo := redistest.Start(t, redistest.Options{Replicas: 2, ReplicaArgs: []string{"--repl-diskless-load", "swapdb"}})
	srv := startProxy(t, Config{Master: topo.Master.Addr()})
	loadKeys(t, topo, 1000)
	waitGuardArmed(t, srv)
	topo.Master.Kill()
	waitParks(t, srv, 2)
	for _, r := range topo.Replicas {
		r.Restart()
	}
	// The proxy must see them restarted before the master answers again:
	// judged on the states polled before the restarts, the guard promotes
	// a replica it still believes parked on the old history.
	old := srv.mon.Guard().Incident.ReplID
	waitSnapshot(t, srv, "both replicas polled on a new history", func(s *router.Snapshot) bool {
		n := 0
		for _, r := range s.Replicas {
			if r.Reachable && r.ReplID != "" && r.ReplID != old {
				n++
			}
		}
		return n == 2
	})
	topo.Master.Start()
	if err := writeAccepted(srv, 20*time.Second); err != nil {
		t.Fatalf("no write accepted 20 s after every node restarted: %v; guard: %+v; topology: %s", err, srv.mon.Guard().Incident, describeSnap(srv.topo.Load()))
	}
	g := srv.mon.Guard()
	if g.Active || g.Incident == nil || !strings.Contains(g.Incident.Outcome, "restarted") {
		t.Fatalf("the incident did not end as nothing left to protect: active=%v %+v", g.Active, g.Incident)
	}
}

// writeAccepted retries a write through srv until one is accepted or d
// has passed, and returns the last error.
func writeAccepted(srv *Server, d time.Duration) error {
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
	defer c.Close()
	var err error
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if err = c.Set(context.Background(), "after", "1", 0).Err(); err == nil {
			return nil
		}
	}
	return err
}

// waitParks waits until the guard's incident records n parks that
// succeeded.
func waitParks(t *testing.T, srv *Server, n int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		inc := srv.mon.Guard().Incident
		parked := 0
		if inc != nil {
			for _, a := range inc.Actions {
				if strings.Contains(a, " park ") && strings.HasSuffix(a, ": ok") {
					parked++
				}
			}
		}
		if parked >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the guard did not park %d times: %+v", n, inc)
		}
	}
}

// A parked replica restarted while the master is down reloads its own
// RDB, comes back on the old history with its data, and its configuration
// points it at the master again, where it would resync from the node
// about to come back empty. The guard parks it again; then the master
// restarts empty and the data survives on the new master.
func TestEmptyMasterGuardReparksRestartedReplica(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	srv := startProxy(t, Config{Master: topo.Master.Addr()})
	loadKeys(t, topo, 1000)
	waitGuardArmed(t, srv)
	ctx := context.Background()
	r := topo.Replicas[0]
	if err := r.Client().Save(ctx).Err(); err != nil { // its data and history, on disk
		t.Fatal(err)
	}
	topo.Master.Kill()
	waitParks(t, srv, 2)
	old := srv.mon.Guard().Incident.ReplID
	r.Restart()
	waitFor(t, "the restarted replica parked again", 10*time.Second, func() bool {
		info, err := r.Client().Info(ctx, "replication").Result()
		return err == nil && infoField(info, "master_port") == "1" && infoField(info, "master_replid") == old
	})
	if n, _ := r.Client().DBSize(ctx).Result(); n < 1000 {
		t.Fatalf("the restarted replica holds %d keys; its RDB had 1000", n)
	}
	topo.Master.Start()
	if err := writeAccepted(srv, 20*time.Second); err != nil {
		t.Fatalf("no write accepted 20 s after the master restarted: %v; guard: %+v", err, srv.mon.Guard().Incident)
	}
	if n, err := nodeByAddr(topo, srv.mon.Master()).Client().DBSize(ctx).Result(); err != nil || n < 1000 {
		t.Fatalf("the new master %s holds %d keys (%v); want the 1000 kept", srv.mon.Master(), n, err)
	}
	t.Logf("guard: %+v", srv.mon.Guard().Incident)
}

// --empty-master-guard off: the wipe happens, which shows the test above
// can fail.
func TestEmptyMasterGuardOffLosesData(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	off := false
	srv := startProxy(t, Config{Master: topo.Master.Addr(), EmptyMasterGuard: &off})
	loadKeys(t, topo, guardKeys)
	waitSnapshot(t, srv, "2 replicas eligible", func(s *router.Snapshot) bool { return len(s.Replicas) == 2 })
	restartEmpty(topo, 0)
	ctx := context.Background()
	deadline := time.Now().Add(15 * time.Second)
	for _, r := range topo.Replicas {
		for {
			n, err := r.Client().DBSize(ctx).Result()
			if err == nil && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("with the guard off %s still holds %d keys: the hazard did not happen, the guard test proves nothing", r, n)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// With 3 Sentinels too slow to notice (down-after-milliseconds 10000): the
// data is kept, and Sentinel agrees on the new master.
func TestEmptyMasterGuardWithSentinel(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{Replicas: 2, Sentinels: 3, SentinelDownAfterMs: 10000})
	var sentinels []string
	for _, s := range topo.Sentinels {
		sentinels = append(sentinels, s.Addr())
	}
	srv := sentinelProxy(t, sentinels, Config{})
	loadKeys(t, topo, guardKeys)
	waitGuardArmed(t, srv)
	restarted := restartEmpty(topo, 0)
	served := dataServed(t, srv, guardKeys, 15*time.Second)
	keysEverywhere(t, topo, guardKeys)
	master := srv.topo.Load().Master.Addr
	ctx := context.Background()
	for _, s := range topo.Sentinels {
		deadline := time.Now().Add(15 * time.Second)
		for {
			got, err := s.Client().Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", redistest.SentinelMasterName).StringSlice()
			if err == nil && len(got) == 2 && net.JoinHostPort(got[0], got[1]) == master {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s names %v (%v), the proxy follows %s", s, got, err, master)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("with Sentinel: data served %v after the restart; master %s", served.Sub(restarted).Round(time.Millisecond), master)
}

// The replica the guard had promoted restarts with its configuration's
// replicaof line, naming the old master, which the guard made a replica of
// it: each waits on the other (NOMASTERLINK) and Sentinel, its master
// answering as a replica, passes over replicas whose link is down longer
// than ten times down-after-milliseconds: no master, ever (a chaos run's
// end state). The guard judges a master restarted as a replica like one
// restarted empty: the most advanced parked replica is promoted, and
// every key written before and after the first incident is kept.
func TestEmptyMasterGuardPromotedRestartsAsReplica(t *testing.T) {
	t.Parallel()
	topo, sentinels := sentinelTopology(t)
	srv := sentinelProxy(t, sentinels, Config{})
	loadKeys(t, topo, 1000)
	waitGuardArmed(t, srv)
	restartEmpty(topo, 0)
	dataServed(t, srv, 1000, 20*time.Second)
	keysEverywhere(t, topo, 1000)
	promoted := nodeByAddr(topo, srv.mon.Master())
	if promoted == nil || promoted == topo.Master {
		t.Fatalf("the guard promoted %q, not a replica", srv.mon.Master())
	}
	ctx := context.Background()
	c := client(t, srv.Addr(), &redis.Options{MaxRetries: -1})
	for i := range 200 {
		if err := c.Set(ctx, "after:"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// Every node on the promoted one's history, with its writes.
	waitFor(t, "every node a replica of the promoted one, in sync", 20*time.Second, func() bool {
		want := promoted.Info(t, "replication")["master_repl_offset"]
		for _, n := range append([]*redistest.Node{topo.Master}, topo.Replicas...) {
			if n == promoted {
				continue
			}
			info := n.Info(t, "replication")
			if info["master_port"] != strconv.Itoa(promoted.Port()) || info["master_link_status"] != "up" || info["master_repl_offset"] != want {
				return false
			}
		}
		return true
	})
	first := srv.mon.Guard().Incident
	promoted.Restart()
	info := promoted.Info(t, "replication")
	if info["role"] != "slave" || info["master_port"] != strconv.Itoa(topo.Master.Port()) {
		t.Fatalf("the restarted node is not a replica of the old master: %v", info)
	}
	if err := writeAccepted(srv, 30*time.Second); err != nil {
		t.Fatalf("no write accepted 30 s after the promoted replica restarted as a replica: %v; guard: %+v; topology: %s",
			err, srv.mon.Guard().Incident, describeSnap(srv.topo.Load()))
	}
	second := srv.mon.Guard().Incident
	if second == nil || second.Started.Equal(first.Started) || !strings.Contains(second.Outcome, "a new master holds the data") {
		t.Fatalf("no second incident promoted a replica: %+v", second)
	}
	master := nodeByAddr(topo, srv.mon.Master())
	if master == nil || master == promoted {
		t.Fatalf("master %q after the second incident", srv.mon.Master())
	}
	if err := allKeys(ctx, master.Client(), 1000); err != nil {
		t.Fatalf("the new master %s lost keys of the first 1000: %v", master, err)
	}
	for i := range 200 {
		if v, err := master.Client().Get(ctx, "after:"+strconv.Itoa(i)).Result(); err != nil || v != strconv.Itoa(i) {
			t.Fatalf("the new master %s lost after:%d (%q, %v): a write acknowledged by the first promoted master", master, i, v, err)
		}
	}
	keysEverywhere(t, topo, 1200)
	t.Logf("second incident: %+v", second)
}

// The guard's EOF watch has not seen the master die (left out here; on a
// loaded machine it can be late) while 16 clients write: the loops redial
// the restarted, empty master within milliseconds, before the next poll.
// Writes wait until a poll has seen the master again, which finds the new
// run_id and opens the incident: nothing lands on the empty node, the
// guard promotes a replica, and no acknowledged write or loaded key is
// lost. Without the wait, the writes reached the empty node first and the
// guard, finding keys on it, unparked the replicas onto it.
func TestEmptyMasterGuardWritesWaitForPoll(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	srv := startProxyKnobs(t, Config{Master: topo.Master.Addr()}, testKnobs{noMasterWatch: true})
	loadKeys(t, topo, 1000)
	waitGuardArmed(t, srv)
	load := startSeqLoad(t, srv.Addr(), 16, 0)
	for load.acks() < 2000 {
		time.Sleep(10 * time.Millisecond)
	}
	restartEmpty(topo, 0)
	waitSnapshot(t, srv, "the guard's promotion", func(s *router.Snapshot) bool { return s.MasterGen >= 2 })
	load.waitAcksAfter(t, time.Now(), "the promotion")
	load.halt()
	master := nodeByAddr(topo, srv.mon.Master())
	acked, lost := load.verify(t, master.Client())
	inc := srv.mon.Guard().Incident
	t.Logf("%d acknowledged, %d lost; guard: %+v", acked, lost, inc)
	if lost != 0 {
		t.Errorf("%d of %d acknowledged writes lost", lost, acked)
	}
	if err := allKeys(context.Background(), master.Client(), 1000); err != nil {
		t.Errorf("the new master %s lost loaded keys: %v", master, err)
	}
}

// Two proxies in front of one deployment: both keep the data and converge
// on the same master, which then stays put.
func TestEmptyMasterGuardTwoProxies(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	a := startProxy(t, Config{Master: topo.Master.Addr()})
	b := startProxy(t, Config{Master: topo.Master.Addr()})
	loadKeys(t, topo, guardKeys)
	waitGuardArmed(t, a)
	waitGuardArmed(t, b)
	restartEmpty(topo, 0)
	var wg sync.WaitGroup
	for _, srv := range []*Server{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dataServed(t, srv, guardKeys, 10*time.Second)
		}()
	}
	wg.Wait()
	keysEverywhere(t, topo, guardKeys)
	ma, mb := a.topo.Load(), b.topo.Load()
	if ma.Master.Addr != mb.Master.Addr {
		t.Fatalf("the proxies disagree: %s and %s", ma.Master.Addr, mb.Master.Addr)
	}
	time.Sleep(2 * time.Second) // no flapping afterwards
	if a.topo.Load().MasterGen != ma.MasterGen || b.topo.Load().MasterGen != mb.MasterGen {
		t.Fatalf("master generation moved after convergence: %d->%d, %d->%d", ma.MasterGen, a.topo.Load().MasterGen, mb.MasterGen, b.topo.Load().MasterGen)
	}
}

// A master restarted with AOF on reloads its data: the guard does not act.
func TestEmptyMasterGuardLeavesPersistentMaster(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{Replicas: 2, MasterArgs: []string{"--appendonly", "yes", "--appendfsync", "always"}})
	srv := startProxy(t, Config{Master: topo.Master.Addr()})
	loadKeys(t, topo, guardKeys)
	waitSnapshot(t, srv, "master audited with AOF", func(s *router.Snapshot) bool { return s.Master.PersistAOF == 1 && len(s.Replicas) == 2 })
	restartEmpty(topo, 0)
	dataServed(t, srv, guardKeys, 15*time.Second)
	g := srv.mon.Guard()
	if g.Incident != nil || g.Actions["park"] != 0 || g.Actions["promote"] != 0 {
		t.Fatalf("the guard acted on a master that persists: %+v", g)
	}
	if got := srv.topo.Load().Master.Addr; got != topo.Master.Addr() {
		t.Fatalf("master moved to %s", got)
	}
	full := topo.Master.Info(t, "stats")["sync_full"]
	partial := topo.Master.Info(t, "stats")["sync_partial_ok"]
	t.Logf("AOF restart: replicas resynced with sync_full=%s sync_partial_ok=%s (Redis 7.0 keeps the replication ID only in an RDB)", full, partial)
}
