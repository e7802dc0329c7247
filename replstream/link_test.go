package replstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
)

func TestNewRejectsBadConfig(t *testing.T) {
	for _, cfg := range []Config{
		{Master: "localhost"},
		{Master: "127.0.0.1:6379", BacklogBytes: -1},
		{Master: "127.0.0.1:6379", ReadTimeout: -time.Second},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	l, err := New(Config{Master: "127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	if l.Offset() != -1 || l.ReplID() != "" || l.Connected() || l.LagMs(0, time.Now()) != -1 {
		t.Errorf("fresh link: offset %d replid %q connected %v", l.Offset(), l.ReplID(), l.Connected())
	}
	if _, ok := l.TimeAt(0); ok {
		t.Error("fresh link answered TimeAt")
	}
	if _, ok := l.Backlog(nil, 0); ok {
		t.Error("fresh link answered Backlog")
	}
	if s := l.Stats(); s.State != StateDown || s.Offset != -1 {
		t.Errorf("fresh Stats = %+v", s)
	}
}

// TestRunCancelAndRunTwice: Run returns nil on cancel even while it cannot
// connect, and a second concurrent Run is refused.
func TestRunCancelAndRunTwice(t *testing.T) {
	t.Parallel()
	l, stop := startLink(t, "127.0.0.1:1", func(c *Config) { c.ReconnectBackoffMax = 10 * time.Millisecond })
	waitFor(t, testTimeout, "a failed attempt", func() error {
		if l.Stats().LastError == "" {
			return errors.New("no error yet")
		}
		return nil
	})
	if err := l.Run(context.Background()); !errors.Is(err, ErrRunning) {
		t.Errorf("second Run = %v, want ErrRunning", err)
	}
	stop()
	if s := l.Stats(); s.State != StateDown || s.Reconnects != 0 {
		t.Errorf("after stop: %+v", s)
	}
}

// TestOffsetMatchesMaster: after 10,000 mixed writes the link has processed
// exactly the master's master_repl_offset, the time index is monotone and
// the backlog holds the exact commands.
func TestOffsetMatchesMaster(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := redistest.Start(t, redistest.Options{})
	link, _ := startLink(t, topo.Master.Addr(), func(c *Config) { c.BacklogBytes = 4 << 20 })
	waitConnected(t, link)
	start := link.Offset()

	clients := make([]*redis.Client, 4) // SELECT 0..3 in the stream
	for db := range clients {
		clients[db] = redis.NewClient(&redis.Options{Addr: topo.Master.Addr(), DB: db})
		t.Cleanup(func() { clients[db].Close() })
	}
	big := strings.Repeat("v", 1<<20)
	const script = "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('INCR', KEYS[2])"
	const total = 10000
	writes := 0
	for batch := 0; writes < total; batch++ {
		c := clients[batch%len(clients)]
		pipe := c.Pipeline()
		for j := 0; j < 100 && writes < total; j++ {
			i := writes
			key := "k:" + strconv.Itoa(i%500)
			switch {
			case i%1000 == 999:
				pipe.Set(ctx, "big:"+strconv.Itoa(i), big, 0)
			case i%250 == 0:
				pipe.Eval(ctx, script, []string{key + ":lua", "ctr:lua"}, i)
			case i%97 == 0:
				// Expires soon: the master's active expiry adds DELs.
				pipe.PExpire(ctx, key, 50*time.Millisecond)
			case i%7 == 0:
				pipe.Incr(ctx, "ctr:"+strconv.Itoa(i%13))
			case i%7 == 1:
				pipe.Expire(ctx, key, time.Hour)
			case i%7 == 2:
				pipe.PExpire(ctx, key, time.Hour)
			case i%7 == 3:
				pipe.Del(ctx, key)
			case i%7 == 4:
				pipe.HSet(ctx, "h:"+strconv.Itoa(i%11), "f"+strconv.Itoa(i), i)
			case i%7 == 5:
				pipe.IncrByFloat(ctx, "f:"+strconv.Itoa(i%3), 0.5)
			default:
				pipe.Set(ctx, key, i, 0)
			}
			writes++
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("batch %d: %v", batch, err)
		}
		if batch%5 == 0 {
			if _, err := c.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Set(ctx, "tx:a", batch, 0)
				p.Incr(ctx, "tx:n")
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	end := waitOffsetEqual(t, link, topo.Master)
	st := link.Stats()
	t.Logf("%d writes: master_repl_offset %d, link offset %d (stream %d bytes since sync at %d); stats %+v", total, end, link.Offset(), end-start, start, st)
	if end-start < 10<<20 {
		t.Errorf("stream only %d bytes: the 1 MiB values are missing?", end-start)
	}
	if st.FullSyncs != 1 || st.PartialSyncs != 0 || st.HistoryResets != 0 || st.Reconnects != 0 {
		t.Errorf("stats %+v: want one full sync and nothing else", st)
	}
	if st.ReplID != topo.Master.Info(t, "replication")["master_replid"] {
		t.Errorf("ReplID %q, master has %q", st.ReplID, topo.Master.Info(t, "replication")["master_replid"])
	}

	// TimeAt is defined on [start, end) and monotone.
	var prev time.Time
	for off := start; off < end; off += max(1, (end-start)/2000) {
		at, ok := link.TimeAt(off)
		if !ok {
			t.Fatalf("TimeAt(%d) unknown (window %d..%d)", off, start, end)
		}
		if at.Before(prev) {
			t.Fatalf("TimeAt(%d) = %v before TimeAt of a lower offset %v", off, at, prev)
		}
		prev = at
	}
	if _, ok := link.TimeAt(end); ok {
		t.Error("TimeAt(Offset()) answered")
	}
	if _, ok := link.TimeAt(start - 1); ok {
		t.Error("TimeAt before the sync answered")
	}
	if lag := link.LagMs(end, time.Now()); lag != 0 {
		t.Errorf("LagMs(Offset()) = %d", lag)
	}

	// The backlog holds exactly the commands written after end.
	pipe := clients[3].Pipeline()
	var want [][]string
	for i := range 50 {
		k, v := "tail:"+strconv.Itoa(i), "val:"+strconv.Itoa(i)
		pipe.Set(ctx, k, v, 0)
		want = append(want, []string{"SET", k, v})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	end2 := waitOffsetEqual(t, link, topo.Master)
	got, ok := link.Backlog([]byte("x"), end)
	if !ok || int64(len(got)-1) != end2-end {
		t.Fatalf("Backlog(%d) = %d bytes, %v; want %d", end, len(got)-1, ok, end2-end)
	}
	var sets [][]string
	for _, cmd := range parseStream(t, got[1:]) {
		cmd[0] = strings.ToUpper(cmd[0])
		switch cmd[0] {
		case "SET":
			sets = append(sets, cmd)
		case "PING", "SELECT", "REPLCONF", "DEL", "UNLINK":
		default:
			t.Errorf("unexpected command in the stream: %q", cmd)
		}
	}
	if !slices.EqualFunc(sets, want, slices.Equal) {
		t.Errorf("backlog SETs %q, want %q", sets, want)
	}
	if _, ok := link.Backlog(nil, end2-int64(5<<20)); ok {
		t.Error("Backlog answered for bytes older than BacklogBytes + one segment")
	}
}

// TestFullSyncFramings: disk-based ($<len>) and diskless ($EOF:) transfers of
// a master holding 50k keys, the latter with and without the sync delay
// (keep-alive newlines before the header).
func TestFullSyncFramings(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		args     []string
		diskless bool
		target   string // in the master's log
	}{
		{"disk", []string{"--repl-diskless-sync", "no"}, false, "target: disk"},
		{"diskless", []string{"--repl-diskless-sync", "yes"}, true, "target: replicas sockets"},
		{"diskless delayed", []string{"--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "2"}, true, "target: replicas sockets"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			topo := redistest.Start(t, redistest.Options{MasterArgs: tc.args})
			c := topo.Master.Client()
			for b := range 50 {
				kv := make([]any, 0, 2000)
				for i := range 1000 {
					kv = append(kv, fmt.Sprintf("key:%05d", b*1000+i), fmt.Sprintf("value-%d", i))
				}
				if err := c.MSet(ctx, kv...).Err(); err != nil {
					t.Fatal(err)
				}
			}
			link, _ := startLink(t, topo.Master.Addr(), nil)
			waitConnected(t, link)
			st := link.Stats()
			if st.FullSyncs != 1 || st.RDBDiskless != tc.diskless || st.RDBBytes < 500_000 {
				t.Errorf("stats %+v: want 1 full sync, diskless %v, an RDB of 50k keys", st, tc.diskless)
			}
			if !logContains(t, topo.Master, tc.target) {
				t.Errorf("master log lacks %q", tc.target)
			}
			for i := range 100 {
				c.Set(ctx, fmt.Sprintf("after:%d", i), i, 0)
			}
			off := waitOffsetEqual(t, link, topo.Master)
			t.Logf("RDB %d bytes (diskless %v); offset %d", st.RDBBytes, st.RDBDiskless, off)
		})
	}
}

// TestClientKillContinues: a dropped link resumes with +CONTINUE.
func TestClientKillContinues(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := redistest.Start(t, redistest.Options{})
	c := topo.Master.Client()
	link, _ := startLink(t, topo.Master.Addr(), nil)
	waitConnected(t, link)
	for i := range 100 {
		c.Set(ctx, fmt.Sprintf("k%d", i), i, 0)
	}
	before := waitOffsetEqual(t, link, topo.Master)
	replid := link.ReplID()
	for _, typ := range []string{"replica", "slave"} {
		killed, err := c.Do(ctx, "CLIENT", "KILL", "TYPE", typ).Int()
		if err != nil || killed != 1 {
			t.Fatalf("CLIENT KILL TYPE %s = %d, %v", typ, killed, err)
		}
		c.Set(ctx, "during:"+typ, 1, 0) // written while the link is away
		waitFor(t, testTimeout, "partial resync", func() error {
			if st := link.Stats(); !link.Connected() || st.Reconnects < 1 {
				return fmt.Errorf("stats %+v", st)
			}
			return nil
		})
		waitOffsetEqual(t, link, topo.Master)
	}
	st := link.Stats()
	if st.FullSyncs != 1 || st.PartialSyncs != 2 || st.Reconnects != 2 || st.HistoryResets != 0 || link.ReplID() != replid {
		t.Errorf("stats %+v: want 1 full sync, 2 partial syncs, same replid %s", st, replid)
	}
	if !logContains(t, topo.Master, "Partial resynchronization request from") {
		t.Error("master log shows no partial resynchronization")
	}
	t.Logf("offset %d -> %d, stats %+v", before, link.Offset(), st)
}

// TestWaitNeverCountsLink: the link acks offset 0, so WAIT never counts it.
func TestWaitNeverCountsLink(t *testing.T) {
	t.Parallel()
	for _, replicas := range []int{0, 1} {
		t.Run(fmt.Sprintf("%d replicas", replicas), func(t *testing.T) {
			t.Parallel()
			ctx := ctxT(t)
			topo := redistest.Start(t, redistest.Options{Replicas: replicas})
			link, _ := startLink(t, topo.Master.Addr(), nil)
			waitConnected(t, link)
			// The master sees the link online, at port 0, acked offset 0.
			waitFor(t, testTimeout, "link online in master INFO", func() error {
				info := topo.Master.Info(t, "replication")
				for k, v := range info {
					if strings.HasPrefix(k, "slave") && strings.Contains(v, "port=0,") {
						if !strings.Contains(v, "state=online") || !strings.Contains(v, "offset=0,") {
							return fmt.Errorf("%s:%s", k, v)
						}
						return nil
					}
				}
				return fmt.Errorf("no port-0 replica in %v", info)
			})
			conn := topo.Master.Client().Conn()
			t.Cleanup(func() { conn.Close() })
			if err := conn.Set(ctx, "w", 1, 0).Err(); err != nil {
				t.Fatal(err)
			}
			// First let the real replicas ack the write (WAIT returns as
			// soon as they have, however loaded the machine), so the next
			// WAIT's count depends on the link alone.
			if n, err := conn.Wait(ctx, replicas, testTimeout).Result(); err != nil || n < int64(replicas) {
				t.Fatalf("WAIT %d = %d, %v", replicas, n, err)
			}
			// One more replica than exist: WAIT runs to its timeout, and
			// its GETACK reaches the link too.
			n, err := conn.Wait(ctx, replicas+1, 300*time.Millisecond).Result()
			if err != nil || n != int64(replicas) {
				t.Errorf("WAIT %d 300 = %d, %v; want %d (the link must not count); master %v", replicas+1, n, err, replicas, topo.Master.Info(t, "replication"))
			}
			if !link.Connected() {
				t.Error("link dropped by GETACK")
			}
			// Redis 7.0 sets a connection's WAIT target to the master's
			// offset after every command it runs (processCommand: woff =
			// master_repl_offset), writes or not. Only a WAIT that is a
			// connection's very first command waits for offset 0, which
			// every ack meets: the one case where the link is counted. (A
			// raw connection: go-redis sends HELLO first.)
			raw, err := net.Dial("tcp", topo.Master.Addr())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { raw.Close() })
			fmt.Fprintf(raw, "WAIT %d 300\r\n", replicas+1)
			line, err := bufio.NewReader(raw).ReadString('\n')
			if want := fmt.Sprintf(":%d\r\n", replicas+1); line != want || err != nil {
				t.Errorf("WAIT on a connection without writes = %q, %v; want %q", line, err, want)
			}
		})
	}
}

// TestMinReplicasToWriteCountsLink pins down the documented side effect: the
// master's own min-replicas-to-write counts the link as a good replica.
func TestMinReplicasToWriteCountsLink(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := redistest.Start(t, redistest.Options{MasterArgs: []string{"--min-replicas-to-write", "1", "--min-replicas-max-lag", "10"}})
	c := topo.Master.Client()
	if err := c.Set(ctx, "k", 1, 0).Err(); !isRedisError(err, "NOREPLICAS") {
		t.Fatalf("SET without replicas = %v, want NOREPLICAS", err)
	}
	_, stop := startLink(t, topo.Master.Addr(), nil)
	waitFor(t, testTimeout, "SET accepted with only the link", func() error {
		return c.Set(ctx, "k", 1, 0).Err()
	})
	stop()
	waitFor(t, testTimeout, "NOREPLICAS once the link is gone", func() error {
		if err := c.Set(ctx, "k", 1, 0).Err(); !isRedisError(err, "NOREPLICAS") {
			return fmt.Errorf("SET = %v", err)
		}
		return nil
	})
}

// TestShutdownWaitsForLink pins down the other side effect of acking 0: a
// master shutting down waits shutdown-timeout for the link to catch up.
func TestShutdownWaitsForLink(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := redistest.Start(t, redistest.Options{MasterArgs: []string{"--shutdown-timeout", "1"}})
	link, _ := startLink(t, topo.Master.Addr(), nil)
	waitConnected(t, link)
	topo.Master.Client().Set(ctx, "k", 1, 0)
	waitOffsetEqual(t, link, topo.Master)
	topo.Master.Stop()
	for _, line := range []string{"Waiting for replicas before shutting down", "Lagging replica"} {
		if !logContains(t, topo.Master, line) {
			t.Errorf("master log lacks %q", line)
		}
	}
}

// TestMasterRestartResetsHistory: a master restarted without persistence
// comes back with a new replid and offset ~0; the link reports a history
// reset, signals Changes and follows the new history.
func TestMasterRestartResetsHistory(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := redistest.Start(t, redistest.Options{})
	c := topo.Master.Client()
	link, _ := startLink(t, topo.Master.Addr(), nil)
	waitConnected(t, link)
	for i := range 1000 {
		c.Set(ctx, fmt.Sprintf("k%d", i), i, 0)
	}
	oldOff := waitOffsetEqual(t, link, topo.Master)
	oldID := link.ReplID()
	runID := link.Stats().MasterRunID
	if runID == "" {
		t.Fatal("MasterRunID not learned")
	}
	drain(link)

	topo.Master.Restart()
	waitFor(t, testTimeout, "history reset", func() error {
		if st := link.Stats(); st.HistoryResets != 1 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	waitChange(t, link)
	newID := topo.Master.Info(t, "replication")["master_replid"]
	waitFor(t, testTimeout, "resync to the new history", func() error {
		if !link.Connected() || link.ReplID() != newID {
			return fmt.Errorf("connected %v replid %s, master %s", link.Connected(), link.ReplID(), newID)
		}
		return nil
	})
	c.Set(ctx, "after", 1, 0)
	newOff := waitOffsetEqual(t, link, topo.Master)
	st := link.Stats()
	if st.FullSyncs != 2 || st.MasterRestarts != 1 || st.MasterRunID == runID || newID == oldID || newOff >= oldOff {
		t.Errorf("stats %+v: want 2 full syncs, 1 restart, new run_id and replid, offset %d < %d", st, newOff, oldOff)
	}
	if _, ok := link.TimeAt(oldOff - 1); ok && oldOff-1 >= newOff {
		t.Error("TimeAt answered an offset of the old history")
	}
	// The replaced history stays reachable by its ID, bytes and marks
	// included: what a replay after the empty-master guard's promotion
	// reads.
	old, ok := link.HistoryOf(oldID, oldOff)
	if !ok || old.ReplID() != oldID || old.Offset() != oldOff {
		t.Fatalf("HistoryOf(old) = %v, %v", old, ok)
	}
	start, _, ok := old.ReplayStart(oldOff - 100)
	b, okB := old.Backlog(nil, start)
	if !ok || !okB || len(b) == 0 || !strings.Contains(string(b), "k999") {
		t.Errorf("old history's backlog after %d (start %d, %v, %v): %q", oldOff-100, start, ok, okB, b)
	}
	if cur, ok := link.HistoryOf(newID, newOff); !ok || cur.ReplID() != newID {
		t.Errorf("HistoryOf(new) = %v, %v", cur, ok)
	}
	if _, ok := link.HistoryOf("0000000000000000000000000000000000000000", 0); ok {
		t.Error("HistoryOf found a history the link never followed")
	}
	t.Logf("old history %s@%d, new %s@%d", oldID, oldOff, newID, newOff)
}

// TestContinueWithNewReplID follows a replica; when it is promoted it
// changes its replication ID and drops its sub-replicas, and the link
// continues with +CONTINUE <new id>, offsets unchanged.
func TestContinueWithNewReplID(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := redistest.Start(t, redistest.Options{Replicas: 1})
	r := topo.Replicas[0]
	link, _ := startLink(t, r.Addr(), nil)
	waitConnected(t, link)
	for i := range 100 {
		topo.Master.Client().Set(ctx, fmt.Sprintf("k%d", i), i, 0)
	}
	topo.WaitSynced(t, testTimeout)
	off := waitOffsetEqual(t, link, r)
	oldID := link.ReplID()
	drain(link)
	if err := r.Client().Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	newID := r.Info(t, "replication")["master_replid"]
	waitFor(t, testTimeout, "+CONTINUE with the new ID", func() error {
		if !link.Connected() || link.ReplID() != newID {
			return fmt.Errorf("connected %v replid %s", link.Connected(), link.ReplID())
		}
		return nil
	})
	waitChange(t, link)
	if got := link.Offset(); got < off {
		t.Errorf("offset went back from %d to %d", off, got)
	}
	r.Client().Set(ctx, "on-new-master", 1, 0)
	waitOffsetEqual(t, link, r)
	st := link.Stats()
	if st.FullSyncs != 1 || st.PartialSyncs != 1 || st.HistoryResets != 0 || newID == oldID {
		t.Errorf("stats %+v: want 1 full, 1 partial sync, a new ID", st)
	}
	if _, ok := link.TimeAt(off - 1); !ok {
		t.Error("time index lost across +CONTINUE")
	}
	// The old ID names the same, continued history.
	if h, ok := link.HistoryOf(oldID, off); !ok || h.ReplID() != newID {
		t.Errorf("HistoryOf(old ID) after +CONTINUE = %v, %v; want the current history", h, ok)
	}
}

// TestLagMs: a paused replica's lag, computed from its frozen applied offset,
// is the age of the first write it lacks.
func TestLagMs(t *testing.T) {
	t.Parallel()
	ctx, topo, r, c, link := linkOnMasterWithReplica(t)
	syncOff := link.Offset()
	c.Set(ctx, "warm", 1, 0)
	topo.WaitSynced(t, testTimeout)

	// A quiet moment: the replica has applied all the master produced, so
	// the next stream byte is produced after t0.
	var t0 time.Time
	var applied int64
	waitFor(t, testTimeout, "replica caught up", func() error {
		t0 = time.Now()
		applied = infoInt(t, r, "replication", "slave_repl_offset")
		if m := masterOffset(t, topo.Master); m != applied {
			return fmt.Errorf("replica %d, master %d", applied, m)
		}
		return nil
	})
	waitFor(t, testTimeout, "link has the replica's offset", func() error {
		if link.Offset() < applied {
			return fmt.Errorf("link %d < %d", link.Offset(), applied)
		}
		return nil
	})
	if lag := link.LagMs(applied, time.Now()); lag != 0 {
		t.Errorf("LagMs of a caught-up replica = %d", lag)
	}

	r.Pause()
	t.Cleanup(r.Resume)
	c.Set(ctx, "lagging", 1, 0)
	var tSeen time.Time
	waitFor(t, testTimeout, "link past the replica", func() error {
		if link.Offset() <= applied {
			return errors.New("not yet")
		}
		tSeen = time.Now()
		return nil
	})
	at, ok := link.TimeAt(applied)
	if !ok || at.Before(t0) || at.After(tSeen) {
		t.Fatalf("TimeAt(%d) = %v, %v; want within [%v, %v]", applied, at, ok, t0, tSeen)
	}
	prev := int64(-1)
	waitFor(t, testTimeout, "lag past 300 ms", func() error {
		c.Incr(ctx, "ticks") // writes continue
		now := time.Now()
		lag := link.LagMs(applied, now)
		if lag < prev {
			t.Fatalf("LagMs decreased: %d after %d", lag, prev)
		}
		prev = lag
		// lag = now - TimeAt(applied), and TimeAt is in [t0, tSeen].
		if lo, hi := now.Sub(tSeen).Milliseconds(), now.Sub(t0).Milliseconds(); lag < lo || lag > hi {
			t.Fatalf("LagMs = %d, want within [%d, %d]", lag, lo, hi)
		}
		if lag < 300 {
			return fmt.Errorf("lag %d ms", lag)
		}
		return nil
	})
	// TimeAt is monotone over what the replica lacks.
	var last time.Time
	for off := applied; off < link.Offset(); off++ {
		at, ok := link.TimeAt(off)
		if !ok || at.Before(last) {
			t.Fatalf("TimeAt(%d) = %v, %v after %v", off, at, ok, last)
		}
		last = at
	}
	if lag := link.LagMs(-1, time.Now()); lag != -1 {
		t.Errorf("LagMs(-1) = %d", lag)
	}
	if lag := link.LagMs(syncOff-1, time.Now()); lag != -1 {
		t.Errorf("LagMs before the time index = %d", lag)
	}
	r.Resume()
	topo.WaitSynced(t, testTimeout)
	applied = infoInt(t, r, "replication", "slave_repl_offset")
	waitOffsetEqual(t, link, topo.Master)
	if lag := link.LagMs(applied, time.Now()); lag != 0 {
		t.Errorf("LagMs after catching up = %d", lag)
	}
}

// TestAuth: password, ACL user without INFO, wrong password.
func TestAuth(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := redistest.Start(t, redistest.Options{Password: "s3cret"})
	if err := topo.Master.Client().Do(ctx, "ACL", "SETUSER", "repl", "on", ">replpw", "+psync", "+replconf", "+ping").Err(); err != nil {
		t.Fatal(err)
	}
	ok, _ := startLink(t, topo.Master.Addr(), func(c *Config) { c.Password = "s3cret" })
	user, _ := startLink(t, topo.Master.Addr(), func(c *Config) { c.User, c.Password = "repl", "replpw" })
	bad, _ := startLink(t, topo.Master.Addr(), func(c *Config) { c.Password = "wrong" })
	waitConnected(t, ok)
	waitConnected(t, user)
	if ok.Stats().MasterRunID == "" || user.Stats().MasterRunID != "" {
		t.Errorf("run_id: default user %q, user without +info %q", ok.Stats().MasterRunID, user.Stats().MasterRunID)
	}
	waitFor(t, testTimeout, "AUTH refused", func() error {
		if e := bad.Stats().LastError; !strings.Contains(e, "WRONGPASS") {
			return fmt.Errorf("last error %q", e)
		}
		return nil
	})
	if bad.Connected() || bad.Offset() != -1 {
		t.Error("link with a wrong password streams")
	}
	topo.Master.Client().Set(ctx, "k", 1, 0)
	waitOffsetEqual(t, ok, topo.Master)
	waitOffsetEqual(t, user, topo.Master)
}

// TestReadTimeout: a paused master is detected by the read timeout, and the
// link continues once it is back.
func TestReadTimeout(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{})
	link, _ := startLink(t, topo.Master.Addr(), func(c *Config) {
		c.ReadTimeout = 300 * time.Millisecond
		c.AckInterval = 100 * time.Millisecond
	})
	waitConnected(t, link)
	topo.Master.Pause()
	waitReadTimeout(t, link)
	topo.Master.Resume()
	waitFor(t, testTimeout, "partial resync after the pause", func() error {
		if st := link.Stats(); !link.Connected() || st.PartialSyncs == 0 {
			return fmt.Errorf("stats %+v", st)
		}
		return nil
	})
	if st := link.Stats(); st.FullSyncs != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestForkAtSplit: the link has read further than a promoted replica
// holds (its split). SetMasterContinuing forks the link's history there:
// the promoted replica answers +CONTINUE (no full resync, so no blind
// window), the link follows its new history from the split with the
// shared bytes below it, and the old history stays whole for the replay
// of the suffix the replica lacks.
func TestForkAtSplit(t *testing.T) {
	t.Parallel()
	ctx, topo, r, c, link := linkOnMasterWithReplica(t)
	for i := range 100 {
		c.Set(ctx, fmt.Sprintf("k%d", i), i, 0)
	}
	topo.WaitSynced(t, testTimeout)
	waitOffsetEqual(t, link, topo.Master)
	oldID := link.ReplID()
	// The replica is promoted; the master goes on writing, and the link
	// reads what the replica never gets.
	if err := r.Client().Do(ctx, "REPLICAOF", "NO", "ONE").Err(); err != nil {
		t.Fatal(err)
	}
	info := r.Info(t, "replication")
	newID := info["master_replid"]
	second, _ := strconv.ParseInt(info["second_repl_offset"], 10, 64)
	split := second - 1
	if info["master_replid2"] != oldID || split <= 0 {
		t.Fatalf("promoted replica: %v", info)
	}
	for i := range 50 {
		c.Set(ctx, fmt.Sprintf("suffix%d", i), i, 0)
	}
	oldOff := waitOffsetEqual(t, link, topo.Master)
	if oldOff <= split {
		t.Fatalf("the link (%d) is not past the split (%d): this test shows nothing", oldOff, split)
	}
	full := link.Stats().FullSyncs
	link.SetMasterContinuing(r.Addr(), oldID, split)
	waitFor(t, testTimeout, "+CONTINUE from the split", func() error {
		if !link.Connected() || link.ReplID() != newID {
			return fmt.Errorf("connected %v replid %s", link.Connected(), link.ReplID())
		}
		return nil
	})
	r.Client().Set(ctx, "on-new-master", 1, 0)
	newOff := waitOffsetEqual(t, link, r)
	if st := link.Stats(); st.FullSyncs != full || st.PartialSyncs != 1 {
		t.Errorf("stats %+v: want no new full sync and 1 partial", st)
	}
	// The new history: the replica's own bytes after the split, and the
	// old history's below it, shared.
	cur, ok := link.HistoryOf(newID, split)
	if !ok || cur.ReplID() != newID {
		t.Fatalf("HistoryOf(new) = %v, %v", cur, ok)
	}
	b, ok := cur.Backlog(nil, split-40)
	if !ok || !strings.Contains(string(b), "on-new-master") || strings.Contains(string(b), "suffix") {
		t.Errorf("new history after %d: %v %q", split-40, ok, b)
	}
	if _, ok := link.TimeAt(newOff - 1); !ok {
		t.Error("no time for the new history's bytes")
	}
	// The old ID below the split: the history holding it furthest, the
	// old one, whole, with the suffix.
	old, ok := link.HistoryOf(oldID, split)
	if !ok || old.ReplID() != oldID || old.Offset() != oldOff {
		t.Fatalf("HistoryOf(old, split) = %v (offset %d), %v; want the old history at %d", old.ReplID(), old.Offset(), ok, oldOff)
	}
	b, ok = old.Backlog(nil, split)
	if !ok || !strings.Contains(string(b), "suffix49") || strings.Contains(string(b), "on-new-master") {
		t.Errorf("old history after the split: %v %q", ok, b)
	}
	// The old ID past the split is only the old history's.
	if h, ok := link.HistoryOf(oldID, split+1); !ok || h.Offset() != oldOff {
		t.Errorf("HistoryOf(old, split+1) = %v, %v", h, ok)
	}
	t.Logf("split %d, link was at %d, now %d on %s", split, oldOff, newOff, newID)
}

// linkOnMasterWithReplica starts a master with one replica and a link
// streaming from the master.
func linkOnMasterWithReplica(t *testing.T) (context.Context, *redistest.Topology, *redistest.Node, *redis.Client, *Link) {
	ctx := ctxT(t)
	topo := redistest.Start(t, redistest.Options{Replicas: 1})
	link, _ := startLink(t, topo.Master.Addr(), nil)
	waitConnected(t, link)
	return ctx, topo, topo.Replicas[0], topo.Master.Client(), link
}
