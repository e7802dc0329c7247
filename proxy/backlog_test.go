package proxy

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/replstream"
	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
)

func TestBacklogTarget(t *testing.T) {
	const mb = 1 << 20
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name    string
		in      backlogInput
		want    int
		wantLow time.Time
	}{
		{"quiet: the configured size", backlogInput{configured: mb, max: 256 * mb, have: mb, maxLag: 0, windowBytes: 1000, now: t0}, mb, time.Time{}},
		{"unknown lag, quiet", backlogInput{configured: mb, max: 256 * mb, have: mb, maxLag: -1, now: t0}, mb, time.Time{}},
		{"the last 10 s and a quarter, rounded up to MB", backlogInput{configured: mb, max: 256 * mb, have: mb, windowBytes: 8 * mb, now: t0}, 10 * mb, time.Time{}},
		{"twice the lag", backlogInput{configured: mb, max: 256 * mb, have: mb, maxLag: 20 * mb, windowBytes: 8 * mb, now: t0}, 40 * mb, time.Time{}},
		{"capped at max", backlogInput{configured: mb, max: 32 * mb, have: mb, maxLag: 100 * mb, now: t0}, 32 * mb, time.Time{}},
		{"never below the configured size", backlogInput{configured: 4 * mb, max: 32 * mb, have: 4 * mb, windowBytes: 100, now: t0}, 4 * mb, time.Time{}},
		{"auto-sizing off: max not above configured", backlogInput{configured: 4 * mb, max: 4 * mb, have: 4 * mb, maxLag: 100 * mb, now: t0}, 4 * mb, time.Time{}},
		{"auto-sizing off (-1)", backlogInput{configured: 4 * mb, max: -1, have: 8 * mb, maxLag: 100 * mb, now: t0}, 4 * mb, time.Time{}},
		{"needing more than half: kept", backlogInput{configured: mb, max: 256 * mb, have: 40 * mb, windowBytes: 20 * mb, now: t0}, 40 * mb, time.Time{}},
		{"needing less than half: the minute starts", backlogInput{configured: mb, max: 256 * mb, have: 40 * mb, windowBytes: mb, now: t0}, 40 * mb, t0},
		{"still low, within the minute: kept", backlogInput{configured: mb, max: 256 * mb, have: 40 * mb, windowBytes: mb, lowSince: t0, now: t0.Add(59 * time.Second)}, 40 * mb, t0},
		{"low for a minute: shrunk", backlogInput{configured: mb, max: 256 * mb, have: 40 * mb, windowBytes: mb, lowSince: t0, now: t0.Add(time.Minute)}, 2 * mb, time.Time{}},
		{"low, then a burst: grown at once, the minute forgotten", backlogInput{configured: mb, max: 256 * mb, have: 40 * mb, windowBytes: 60 * mb, lowSince: t0, now: t0.Add(30 * time.Second)}, 75 * mb, time.Time{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, low := backlogTarget(tc.in)
			if got != tc.want || !low.Equal(tc.wantLow) {
				t.Errorf("backlogTarget(%+v) = %d MB, low %v; want %d MB, low %v", tc.in, got>>20, low, tc.want>>20, tc.wantLow)
			}
		})
	}
}

// The backlog grows with the stream: 24 MB written through a proxy whose
// backlog starts at 1 MB leaves it holding them (and the oldest still
// readable), and PROXY INFO says how large it is; with the maximum at the
// configured size it stays there.
func TestBacklogGrowsWithTheStream(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{})
	auto := startProxy(t, Config{Master: topo.Master.Addr(), ReplicationBacklogBytes: 1 << 20, ReplicationBacklogMax: 64 << 20})
	fixed := startProxy(t, Config{Master: topo.Master.Addr(), ReplicationBacklogBytes: 1 << 20, ReplicationBacklogMax: -1})
	waitFor(t, "both links connected", 10*time.Second, func() bool { return auto.link.Connected() && fixed.link.Connected() })
	ctx := context.Background()
	c := client(t, auto.Addr(), &redis.Options{MaxRetries: -1})
	start := auto.link.Offset()
	blob := strings.Repeat("b", 256<<10)
	for i := 0; i < 96; i++ { // 24 MB over about 2 s
		if err := c.Set(ctx, fmt.Sprintf("blob:%d", i), blob, 0).Err(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitFor(t, "the backlog to hold the last 24 MB", 20*time.Second, func() bool {
		return auto.link.BacklogBytes() >= 24<<20
	})
	// Growth came in time: the first bytes of the burst are still there
	// (they would be long evicted from a 1 MB backlog).
	if _, ok := auto.link.Backlog(nil, start+(2<<20)); !ok {
		t.Errorf("bytes from the start of the burst are gone (backlog %d MB)", auto.link.BacklogBytes()>>20)
	}
	info, err := c.Do(ctx, "PROXY", "INFO").Result()
	if err != nil {
		t.Fatal(err)
	}
	txt := fmt.Sprint(info)
	if !strings.Contains(txt, fmt.Sprintf("replication_backlog_bytes %d", auto.link.BacklogBytes())) || !strings.Contains(txt, "replication_backlog_max 67108864") {
		t.Errorf("PROXY INFO does not show the backlog's size: %s", txt)
	}
	if got := fixed.link.BacklogBytes(); got != 1<<20 {
		t.Errorf("with auto-sizing off the backlog is %d bytes, want 1 MB", got)
	}
}

func TestCompleteTransactions(t *testing.T) {
	cmd := func(args ...string) string { return string(resp.AppendCommandStrings(nil, args...)) }
	set, multi, exec := cmd("SET", "a", "1"), cmd("MULTI"), cmd("EXEC")
	for _, tc := range []struct {
		name, stream string
		want         int
	}{
		{"plain commands", set + set, 2 * len(set)},
		{"a whole transaction", set + multi + set + exec + set, len(set)*3 + len(multi) + len(exec)},
		{"a transaction only begun: cut before its MULTI", set + multi + set, len(set)},
		{"a discarded one is whole", multi + set + cmd("DISCARD"), len(multi) + len(set) + len(cmd("DISCARD"))},
		{"the second one begun", multi + exec + set + cmd("multi") + set, len(multi) + len(exec) + len(set)},
		{"empty", "", 0},
	} {
		got, err := completeTransactions([]byte(tc.stream))
		if err != nil || got != tc.want {
			t.Errorf("%s: completeTransactions = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if _, err := completeTransactions([]byte(set[:5])); err == nil {
		t.Error("a stream ending inside a command was accepted")
	}
	for reply, want := range map[string]int64{"$-1\r\n": -1, "$5\r\n12345\r\n": 12345, "$3\r\nabc\r\n": -1, "$20\r\n2026-12-02T00:00:00Z\r\n": -1} {
		got, ok := markerEnd([]byte(reply))
		if (want < 0) == ok || (ok && got != want) {
			t.Errorf("markerEnd(%q) = %d, %v; want %d", reply, got, ok, want)
		}
	}
}

// Two proxies whose links read different lengths of the old master's
// stream replay each byte once: the shorter replay marks where it ended,
// the longer one then replays only what lies beyond, and a third finds
// nothing left. The stream is INCRs: every counter on the target ends at
// exactly 1. (The unfinished transaction a replay leaves out is
// TestCompleteTransactions'.)
func TestReplayOnceAcrossUnequalLinks(t *testing.T) {
	t.Parallel()
	src := redistest.Start(t, redistest.Options{})
	dst := redistest.Start(t, redistest.Options{})
	srv := startProxy(t, Config{Master: dst.Master.Addr(), NoReplicationLink: true})
	link, err := replstream.New(replstream.Config{Master: src.Master.Addr()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = link.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	waitFor(t, "the link to stream", 10*time.Second, func() bool { return link.Connected() })
	c := src.Master.Client()
	bg := context.Background()
	// A first write, so the stream's SELECT is behind the split.
	c.Set(bg, "warm", "1", 0)
	waitFor(t, "the link to hold the first write", 10*time.Second, func() bool {
		return link.Offset() >= infoOffset(t, src.Master)
	})
	base := link.Offset()
	for i := 0; i < 20; i++ {
		if err := c.Incr(bg, fmt.Sprintf("ctr:%d", i)).Err(); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "the link to hold the INCRs", 10*time.Second, func() bool {
		return link.Offset() >= infoOffset(t, src.Master)
	})
	mid := link.Offset()
	for i := 20; i < 40; i++ {
		c.Incr(bg, fmt.Sprintf("ctr:%d", i))
	}
	waitFor(t, "the link to hold the rest", 10*time.Second, func() bool {
		return link.Offset() >= infoOffset(t, src.Master)
	})
	full := link.Offset()
	hist, _ := link.History()
	start, db, ok := link.ReplayStart(base)
	if !ok {
		t.Fatal("no replay start")
	}
	sw := router.Switch{OldReplID: hist.ReplID(), SplitOffset: base}
	// The shorter link first, then the longer, as two proxies would.
	srv.replay(&replayJob{sw: sw, start: start, end: mid, db: db, hist: hist})
	first := lastReplay(srv)
	srv.replay(&replayJob{sw: sw, start: start, end: full, db: db, hist: hist})
	second := lastReplay(srv)
	srv.replay(&replayJob{sw: sw, start: start, end: full, db: db, hist: hist})
	third := lastReplay(srv)
	t.Logf("%s\n%s\n%s", first, second, third)
	d := dst.Master.Client()
	for i := 0; i < 40; i++ {
		if v, err := d.Get(bg, fmt.Sprintf("ctr:%d", i)).Int(); err != nil || v != 1 {
			t.Errorf("ctr:%d = %d, %v after the replays; want 1 (each INCR once)", i, v, err)
		}
	}
	if !strings.Contains(second, fmt.Sprintf("offsets %d-%d", mid, full)) || !strings.Contains(third, "already replayed") {
		t.Errorf("the second replay should cover %d-%d and the third nothing:\n%s\n%s", mid, full, second, third)
	}
}

func infoOffset(t *testing.T, n *redistest.Node) int64 {
	v, _ := strconv.ParseInt(n.Info(t, "replication")["master_repl_offset"], 10, 64)
	return v
}
