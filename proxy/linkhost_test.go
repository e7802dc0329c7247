package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

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

// stalledLoop is an event loop that takes a connection to register and
// never runs the registration, as a loop that stopped first.
type stalledLoop struct{ gnet.EventLoop }

func (stalledLoop) Enroll(context.Context, net.Conn) (<-chan gnet.RegisteredResult, error) {
	return make(chan gnet.RegisteredResult), nil
}

// TestLinkHostStopsWaitingWhenTheEngineStops: Attach waits for the loop to
// register the link's connection; once the engine stops (OnShutdown) it
// stops waiting. It used to wait forever, and with it the link's Run and
// the proxy's shutdown (a CI run: "proxy did not shut down within 15 s").
func TestLinkHostStopsWaitingWhenTheEngineStops(t *testing.T) {
	s := &Server{stopping: make(chan struct{})}
	s.loopLst.Store(&[]*loop{{srv: s, el: stalledLoop{}}})
	tcp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	conn, err := net.Dial("tcp", tcp.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	done := make(chan error, 1)
	go func() {
		h, err := linkHost{s}.Attach(conn, nil)
		if h != nil {
			err = errors.New("hosted on a loop that never registered it")
		}
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Attach returned before the engine stopped: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	s.OnShutdown(gnet.Engine{})
	select {
	case err := <-done:
		if !errors.Is(err, errEngineStopping) {
			t.Errorf("Attach: %v, want %v", err, errEngineStopping)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Attach still waits after the engine stopped")
	}
}
