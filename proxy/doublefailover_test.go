package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/metrics"
	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
)

// A double failover keeps every acknowledged write (DESIGN.md "Failover
// and data safety"): the master M dies with writes only the link holds;
// Sentinel promotes R1, which gets them by replay, and takes more writes;
// then R1 dies and Sentinel promotes R2. Every write a client saw
// acknowledged must be on R2, once: each is an INCR of its own key, so a
// lost one reads 0 and one run twice reads 2.
//
// Two ways R2 can stand:
//   - it never followed R1 (paused from before the first writes until R1
//     is dead): R2 continues M's history, behind R1's split, and what it
//     lacks is M's writes past its own offset plus all R1 wrote. Before
//     the link forked its history at the split, it full-resynced from R1
//     and its history of R1 began where R1 was then, so the replay onto R2
//     found nothing to start from: every write after R2's pause was lost;
//   - it followed R1 until it was paused: R2 continues R1's history, and
//     lacks R1's last writes.
func TestDoubleFailoverKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		mode secondReplica
	}{
		{"second replica never followed the first", neverFollowed},
		{"second replica followed the first until paused", followedFirst},
		{"second replica ahead of the first on the first master's history", aheadOfFirst},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			doubleFailover(t, tc.mode)
		})
	}
}

// secondReplica is where R2 stands when it is promoted.
type secondReplica int

const (
	// neverFollowed: paused from before the first writes until R1 is dead.
	neverFollowed secondReplica = iota
	// followedFirst: followed R1 until paused before R1's last writes.
	followedFirst
	// aheadOfFirst: had more of M's stream than R1 when R1 was promoted
	// (paused after R1), and never followed R1: a diverged switch. What
	// it lacks is M's suffix past its own offset and R1's writes after
	// R1's replay, which ran part of what R2 has already.
	aheadOfFirst
)

func doubleFailover(t *testing.T, mode secondReplica) {
	topo, srv, c := replayTopology(t, 30*time.Second)
	ctx := context.Background()
	r1, r2 := topo.Replicas[0], topo.Replicas[1]
	var keys, fillers []string
	incr := func(prefix string, n int) { keys = append(keys, incrEach(t, c, prefix, n)...) }
	if mode == neverFollowed {
		r2.Pause()
	}
	incr("a", 200)
	// 16 MB fill the kernel's buffers toward a paused replica: what
	// follows stays in the master's, and dies with it.
	fill := func(prefix string) {
		t.Helper()
		filler := strings.Repeat("f", 1<<20)
		for i := range 16 {
			k := fmt.Sprintf("%s:%d", prefix, i)
			if err := c.Set(ctx, k, filler, 0).Err(); err != nil {
				t.Fatal(err)
			}
			fillers = append(fillers, k)
		}
	}
	r1.Pause()
	switch mode {
	case followedFirst:
		r2.Pause()
	case aheadOfFirst:
		// R2 gets the "b" writes R1 does not; then it stops too, and
		// the "x" writes are the link's alone.
		fill("filler")
		incr("b", 200)
		waitFor(t, "R2 to get the b writes", failoverTimeout, func() bool {
			off, _ := strconv.ParseInt(r2.Info(t, "replication")["slave_repl_offset"], 10, 64)
			return off >= infoOffset(t, topo.Master)
		})
		r2.Pause()
		fill("filler2")
		incr("x", 200)
	}
	if mode != aheadOfFirst {
		fill("filler")
		incr("b", 200) // the link's alone
	}
	topo.Master.Kill()
	r1.Resume()
	if mode == followedFirst {
		r2.Resume()
	}
	waitSnapshotFor(t, srv, failoverTimeout, "the switch to R1", func(s *router.Snapshot) bool {
		return s.Master.Addr == r1.Addr()
	})
	incr("c", 200) // on R1, after its replay
	if mode == followedFirst && followR1(t, srv, r1, r2) {
		r2.Pause()
		fill("filler2") // as above: the "d" writes stay in R1's buffers
		incr("d", 200)
	}
	r1.Kill()
	r2.Resume()
	waitSnapshotFor(t, srv, 2*failoverTimeout, "the switch to R2", func(s *router.Snapshot) bool {
		return s.Master.Addr == r2.Addr()
	})
	incr("e", 50) // served again, after the replays
	for _, m := range srv.replayNotes() {
		t.Log(m)
	}
	got := r2.Client()
	lost, twice := countOnce(got, keys)
	for _, k := range fillers {
		if n, _ := got.StrLen(ctx, k).Result(); n != 1<<20 {
			lost++
		}
	}
	t.Logf("%d acknowledged writes: %d lost, %d run twice; %d replays, %d found done, lost bytes %d, %d switches",
		len(keys), lost, twice, srv.replays.replayed.Load(), srv.replays.skipped.Load(), srv.replays.lostBytes.Load(), srv.topo.Load().MasterGen-1)
	if lost > 0 || twice > 0 {
		t.Fatalf("%d acknowledged writes lost and %d run twice on the second promoted replica", lost, twice)
	}
	if srv.replays.replayed.Load() == 0 {
		t.Fatal("no replay ran: the promoted replicas had every write, and this test showed nothing")
	}
}

// followR1 waits until R2 follows R1 and has everything R1 has, and
// reports true. A loaded machine can make Sentinel give up on R1 first
// (its replay of megabytes and a 1 s down-after, seen in CI) and promote
// R2: the double failover then came early, R2 has all it will get, and it
// reports false; the caller's check of every acknowledged write on R2
// still holds. On a timeout it fails with R2's and R1's replication state
// and logs: a CI run timed out here with nothing to say why.
func followR1(t *testing.T, srv *Server, r1, r2 *redistest.Node) bool {
	t.Helper()
	var last string
	deadline := time.Now().Add(failoverTimeout)
	for {
		if m := srv.topo.Load().Master.Addr; m != r1.Addr() {
			t.Logf("the master switched to %s before R2 followed R1 (last: %s): the second failover came early", m, last)
			return false
		}
		ri := r2.Info(t, "replication")
		r1Off := infoOffset(t, r1)
		off, _ := strconv.ParseInt(ri["slave_repl_offset"], 10, 64)
		if ri["master_port"] == strconv.Itoa(r1.Port()) && ri["master_link_status"] == "up" && off >= r1Off {
			return true
		}
		last = fmt.Sprintf("R2 role %s master_port %s link %s sync %s offset %d, R1 offset %d",
			ri["role"], ri["master_port"], ri["master_link_status"], ri["master_sync_in_progress"], off, r1Off)
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for R2 to follow R1 and catch up: %s\nR1:%s\nR2:%s", last, r1.LogTails(), r2.LogTails())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEligible waits until n replicas are eligible for reads.
func waitEligible(t *testing.T, srv *Server, n int) {
	t.Helper()
	waitSnapshot(t, srv, fmt.Sprintf("%d replicas eligible", n), func(s *router.Snapshot) bool {
		k := 0
		for _, r := range s.Replicas {
			if r.Eligible {
				k++
			}
		}
		return k == n
	})
}

// The replay queue's decisions: the newest switch's job runs first, a
// switch sends the committed but unwitnessed replays back to run onto
// the new master (requests wait for them), and drops them, counted, when
// the new master does not continue the history.
func TestReplayQueueOrder(t *testing.T) {
	q := &replayQueue{jobs: []*replayJob{{seq: 1}, {seq: 3}, {seq: 2}}}
	if !q.newerThanLocked(2) || q.newerThanLocked(3) {
		t.Fatal("newerThan")
	}
	for _, want := range []uint64{3, 2, 1} {
		if got := q.popNewestLocked().seq; got != want {
			t.Fatalf("popNewest = %d, want %d", got, want)
		}
	}
	if len(q.jobs) != 0 {
		t.Fatalf("%d jobs left", len(q.jobs))
	}

	srv := &Server{log: slog.New(slog.DiscardHandler)}
	held := &replayJob{seq: 1, start: 100, end: 300, heldID: "b", heldOff: 900}
	srv.replayQ.held = []*replayJob{held}
	srv.beforeSwitch(router.Switch{From: "r1", To: "r2", Continues: true, SplitOffset: 50})
	if len(srv.replayQ.jobs) != 1 || srv.replayQ.jobs[0] != held || len(srv.replayQ.held) != 0 || held.heldID != "" {
		t.Fatalf("a held replay was not sent back to run onto the new master: jobs %v held %v", srv.replayQ.jobs, srv.replayQ.held)
	}
	if !srv.replaying.Load() {
		t.Fatal("requests do not wait for the replay sent back")
	}

	// A switch while a job runs: it may commit on the master replaced, so
	// it is marked to run again, and requests wait for it.
	srv = &Server{log: slog.New(slog.DiscardHandler)}
	running := &replayJob{seq: 1, start: 100, end: 300}
	srv.replayQ.current = running
	srv.beforeSwitch(router.Switch{From: "r1", To: "r2", Continues: true, SplitOffset: 50})
	if !running.switched || !srv.replaying.Load() {
		t.Fatalf("a switch during a replay: switched %v, replaying %v; want both", running.switched, srv.replaying.Load())
	}

	srv = &Server{log: slog.New(slog.DiscardHandler)}
	srv.replayQ.held = []*replayJob{{seq: 1, start: 100, end: 300, heldID: "b", heldOff: 900}}
	srv.beforeSwitch(router.Switch{From: "r1", To: "r2", Continues: false, SplitOffset: -1})
	if len(srv.replayQ.jobs) != 0 || len(srv.replayQ.held) != 0 || srv.replaying.Load() || srv.replays.lostBytes.Load() != 200 {
		t.Fatalf("a switch to a new history: jobs %v held %v replaying %v lost %d; want it dropped and counted",
			srv.replayQ.jobs, srv.replayQ.held, srv.replaying.Load(), srv.replays.lostBytes.Load())
	}
}

// replayedEnd finds where the writes after a master's replay begin: just
// past the EXEC of the transaction that set the replay's marker.
func TestReplayedEnd(t *testing.T) {
	cmd := func(args ...string) []byte { return resp.AppendCommandStrings(nil, args...) }
	var stream []byte
	add := func(b []byte) int64 { stream = append(stream, b...); return int64(len(stream)) }
	const base = 1000
	add(cmd("PING"))
	add(cmd("MULTI"))
	add(cmd("SET", "k", "v"))
	afterOther := add(cmd("EXEC")) // a transaction without a marker
	add(cmd("MULTI"))
	add(cmd("INCR", "n"))
	add(cmd("SET", "__replproxy:replayed:aaaa:17", "900", "EX", "86400"))
	afterReplay := add(cmd("EXEC"))
	add(cmd("SET", "own", "write"))
	for _, tc := range []struct {
		name   string
		prefix string
		end    int64
		found  bool
	}{
		{"the replay of that history", "__replproxy:replayed:aaaa:", base + afterReplay, true},
		{"a replay of another history", "__replproxy:replayed:bbbb:", 0, false},
	} {
		end, found := replayedEnd(stream, base, tc.prefix)
		if end != tc.end || found != tc.found {
			t.Errorf("%s: replayedEnd = %d, %v; want %d, %v", tc.name, end, found, tc.end, tc.found)
		}
	}
	if end, found := replayedEnd(stream[:afterOther], base, "__replproxy:replayed:aaaa:"); found {
		t.Errorf("found a replay's end at %d in a stream without one", end)
	}
}

func TestAroundVoids(t *testing.T) {
	for _, tc := range []struct {
		name      string
		from, end int64
		voids     [][2]int64
		want      [][2]int64
	}{
		{"no void", 100, 200, nil, [][2]int64{{100, 200}}},
		{"a void inside", 100, 200, [][2]int64{{120, 150}}, [][2]int64{{100, 120}, {150, 200}}},
		{"starting at a void's start", 120, 200, [][2]int64{{120, 150}}, [][2]int64{{150, 200}}},
		{"a void before", 100, 200, [][2]int64{{50, 90}}, [][2]int64{{100, 200}}},
		{"a void reaching the end", 100, 200, [][2]int64{{150, 200}}, [][2]int64{{100, 150}}},
		{"two voids", 100, 300, [][2]int64{{120, 150}, {200, 250}}, [][2]int64{{100, 120}, {150, 200}, {250, 300}}},
		{"all void", 100, 200, [][2]int64{{90, 210}}, nil},
	} {
		if got := aroundVoids(tc.from, tc.end, tc.voids); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%s: aroundVoids = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// Sentinel gives up on the first promoted replica R1 while the replay onto
// it is under way (here R1 is paused just after the switch to it, as a
// node busy with a 17 MB transaction looks to Sentinel), and promotes R2.
// R1 then resumes and commits the replay: on a master no longer in use.
// The replay must run again onto R2. Before, it was held for a link that
// had moved on to R2, and the writes it carried were lost.
func TestReplayCommittedAfterSwitchRunsAgain(t *testing.T) {
	t.Parallel()
	topo, srv, c := replayTopology(t, 60*time.Second)
	ctx := context.Background()
	r1, r2 := topo.Replicas[0], topo.Replicas[1]
	var keys []string
	incr := func(prefix string, n int) { keys = append(keys, incrEach(t, c, prefix, n)...) }
	incr("a", 100)
	r1.Pause()
	r2.Pause()
	filler := strings.Repeat("f", 1<<20)
	for i := range 16 {
		if err := c.Set(ctx, fmt.Sprintf("filler:%d", i), filler, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	incr("b", 200) // the link's alone
	topo.Master.Kill()
	r1.Resume()
	r2.Resume()
	waitSnapshotFor(t, srv, failoverTimeout, "the switch to R1", func(s *router.Snapshot) bool {
		return s.Master.Addr == r1.Addr()
	})
	// R1 must not be promoted again: under load R2, busy with the
	// replay's transaction, can look down to Sentinel, and a flip back to
	// R1 is a third switch, not this test's case (stop 22 saw one). A
	// master's replica-priority counts once it is a replica.
	if err := r1.Client().ConfigSet(ctx, "replica-priority", "0").Err(); err != nil {
		t.Fatal(err)
	}
	r1.Pause() // the replay onto it stalls
	waitSnapshotFor(t, srv, 2*failoverTimeout, "the switch to R2", func(s *router.Snapshot) bool {
		return s.Master.Addr == r2.Addr()
	})
	r1.Resume() // and commits, on a master no longer in use
	incr("c", 100)
	for _, m := range srv.replayNotes() {
		t.Log(m)
	}
	got := r2.Client()
	lost, twice := countOnce(got, keys)
	t.Logf("%d acknowledged writes: %d lost, %d run twice; %d replays, %d found done", len(keys), lost, twice, srv.replays.replayed.Load(), srv.replays.skipped.Load())
	if lost > 0 || twice > 0 {
		// Which writes, and what the proxy and its link went through: a CI
		// run lost 100 of 400 once (stop 24's note), never reproduced alone.
		for _, prefix := range []string{"a", "b", "c"} {
			var mine []string
			for _, k := range keys {
				if strings.HasPrefix(k, prefix+":") {
					mine = append(mine, k)
				}
			}
			l, tw := countOnce(got, mine)
			t.Logf("writes %s: %d of %d lost, %d twice", prefix, l, len(mine), tw)
		}
		if sw := srv.lastSwitch.Load(); sw != nil {
			t.Logf("last switch %+v; %d switches; lost bytes %d", *sw, srv.topo.Load().MasterGen-1, srv.replays.lostBytes.Load())
		}
		var st metrics.Stats
		srv.Stats(&st)
		t.Logf("witness: %d waited, %d released at the timeout, %d failed, %d off", st.WitnessWaited, st.WitnessTimeouts, st.WitnessFailed, st.WitnessOff)
		if h, ok := srv.link.History(); ok {
			t.Logf("link: history %s at offset %d; R1 %s, R2 %s", h.ReplID(), h.Offset(), r1.Addr(), r2.Addr())
		}
		t.Fatalf("%d acknowledged writes lost and %d run twice on R2", lost, twice)
	}
}

// incrEach INCRs prefix:0 .. prefix:n-1 once each through c and returns
// the keys: each acknowledged write then reads 1, a lost one 0, one run
// twice 2.
func incrEach(t *testing.T, c *redis.Client, prefix string, n int) []string {
	t.Helper()
	keys := make([]string, 0, n)
	for i := range n {
		k := fmt.Sprintf("%s:%d", prefix, i)
		if err := c.Incr(context.Background(), k).Err(); err != nil {
			t.Fatalf("INCR %s: %v", k, err)
		}
		keys = append(keys, k)
	}
	return keys
}

// countOnce counts the keys that read 0 (lost) and more than 1 (run
// twice) on node.
func countOnce(node *redis.Client, keys []string) (lost, twice int) {
	for _, k := range keys {
		switch v, _ := node.Get(context.Background(), k).Int(); {
		case v == 0:
			lost++
		case v > 1:
			twice++
		}
	}
	return lost, twice
}

// replayTopology starts a master, R1 and R2 (Sentinel's second choice:
// it prefers the lower replica-priority) under 3 Sentinels, a proxy with a
// 64 MB backlog in front, and a client of it whose reads wait up to
// readTimeout (requests wait for the replays: megabytes under -race).
func replayTopology(t *testing.T, readTimeout time.Duration) (*redistest.Topology, *Server, *redis.Client) {
	t.Helper()
	topo, sentinels := sentinelTopology(t)
	srv := sentinelProxy(t, sentinels, Config{ReplicationBacklogBytes: 64 << 20})
	c := client(t, srv.Addr(), &redis.Options{MaxRetries: -1, ReadTimeout: readTimeout})
	waitEligible(t, srv, 2)
	if err := topo.Replicas[1].Client().ConfigSet(context.Background(), "replica-priority", "200").Err(); err != nil {
		t.Fatal(err)
	}
	return topo, srv, c
}
