package proxy

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/metrics"
)

// TestLinkStreamOnLoop: once a loop runs, the replication link's stream
// is read on it (linkHost), every write is witnessed there (none released
// at the witness timeout), and when the master drops the link's
// connection the link reconnects and is hosted again, with no write lost
// to the witness meanwhile.
func TestLinkStreamOnLoop(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{})
	// After the proxy's shutdown (the cleanup registered by startProxy,
	// which runs before this one): the link stopped before the engine
	// closed its hosted connection, so it did not take that for a lost
	// master and reconnect.
	var srv *Server
	var reconnects uint64
	t.Cleanup(func() {
		if n := srv.link.Stats().Reconnects; n != reconnects {
			t.Errorf("the link reconnected %d times during the shutdown", n-reconnects)
		}
	})
	// A witness timeout far above the link's pace here (under a
	// millisecond) and far below the second its stream could take to start
	// after the first sync (awaitStreamStart).
	srv = startProxy(t, Config{Master: topo.Master.Addr(), WitnessTimeout: 500 * time.Millisecond})
	c := client(t, srv.Addr(), nil)
	ctx := context.Background()
	hosted := func() bool { return srv.linkLoop.Load() != nil }
	waitFor(t, "the link's stream read on a loop", 30*time.Second, func() bool {
		c.Ping(ctx)
		return hosted()
	})
	set := func(prefix string, n int) {
		for i := range n {
			if err := c.Set(ctx, fmt.Sprintf("%s:%d", prefix, i), i, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	set("a", 500)
	var st metrics.Stats
	srv.Stats(&st)
	if st.WitnessTimeouts != 0 || st.WitnessOff != 0 {
		t.Errorf("witness: %d released at the timeout, %d without it", st.WitnessTimeouts, st.WitnessOff)
	}
	caughtUp(t, srv, topo.Master)
	// The master drops its replicas' connections, the link's among them.
	if err := topo.Master.Client().Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the link back on a loop after a partial resync", 30*time.Second, func() bool {
		return hosted() && srv.link.Stats().PartialSyncs >= 1 && srv.link.Connected()
	})
	set("b", 500)
	srv.Stats(&st)
	if st.WitnessTimeouts != 0 {
		t.Errorf("witness: %d released at the timeout", st.WitnessTimeouts)
	}
	caughtUp(t, srv, topo.Master)
	reconnects = srv.link.Stats().Reconnects
}

// caughtUp waits for the link to reach the master's offset.
func caughtUp(t *testing.T, srv *Server, master *redistest.Node) {
	t.Helper()
	waitFor(t, "the link at the master's offset", 10*time.Second, func() bool {
		return srv.link.Offset() == infoOffset(t, master)
	})
}
