package proxy

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
)

// stallConn is the link's connection to the master with reads that wait
// while stalled is set: the master's stream to the link then backs up in
// its output buffer, as toward a link that is slow or far away.
type stallConn struct {
	net.Conn
	stalled *atomic.Bool
}

func (c *stallConn) Read(p []byte) (int, error) {
	for c.stalled.Load() {
		time.Sleep(2 * time.Millisecond)
	}
	return c.Conn.Read(p)
}

// The link drops while writes wait for it. When the master went with it
// (Sentinel's REPLICAOF drops a master's replicas and discards the stream
// they had not been sent), those writes are gone from the next master: an
// OK would be an acknowledged write lost, the double-failover loss that
// TestWitnessKeepsAcknowledgedWrites once showed (32 writes, one per
// client). They must be answered with an error. When the master lives
// (only the link's connection dropped), they are on it as on a lone
// Redis, and answered as it answered.
func TestWitnessLinkDropsWithMaster(t *testing.T) {
	t.Parallel()
	topo := redistest.Start(t, redistest.Options{})
	// The node the master is demoted to: empty, so the master's data is
	// replaced, the pushes with it.
	other := redistest.StartServer(t)
	var stalled, refused atomic.Bool
	dial := func(ctx context.Context, addr string) (net.Conn, error) {
		if refused.Load() {
			return nil, fmt.Errorf("test: dial refused")
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return nil, err
		}
		return &stallConn{Conn: c, stalled: &stalled}, nil
	}
	// A witness timeout the steps below fit in: the writes must still be
	// waiting when the link drops.
	srv := startProxyKnobs(t, Config{Master: topo.Master.Addr(), WitnessTimeout: 3 * time.Second}, testKnobs{linkDial: dial})
	deadline := time.Now().Add(10 * time.Second)
	for !srv.link.Connected() {
		if time.Now().After(deadline) {
			t.Fatal("the replication link never connected")
		}
		time.Sleep(10 * time.Millisecond)
	}
	ctx := context.Background()
	direct := topo.Master.Client() // the master, for the filler
	const writers = 8

	// pushes stalls the link, backs 16 MB of stream up toward it (written
	// to the master directly, so nothing waits for them), then starts one
	// push per writer through the proxy and returns once all are waiting
	// for the witness; done collects each push's reply.
	pushes := func(round string) (done func() (ok, failed int, other []string)) {
		for !srv.link.Connected() {
			if time.Now().After(deadline) {
				t.Fatalf("round %s: the replication link is not streaming", round)
			}
			time.Sleep(5 * time.Millisecond)
		}
		stalled.Store(true)
		filler := strings.Repeat("f", 1<<20)
		for i := 0; i < 16; i++ {
			if err := direct.Set(ctx, fmt.Sprintf("filler:%s:%d", round, i), filler, 0).Err(); err != nil {
				t.Fatal(err)
			}
		}
		waited := sumLoops(srv, func(l *loop) int64 { return l.stats.witnessWaited.Load() })
		var wg sync.WaitGroup
		errs := make([]error, writers)
		for i := 0; i < writers; i++ {
			c := client(t, srv.Addr(), &redis.Options{MaxRetries: -1, PoolSize: 1, ReadTimeout: 20 * time.Second})
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				errs[i] = c.RPush(ctx, fmt.Sprintf("push:%s:%d", round, i), "x").Err()
			}(i)
		}
		for sumLoops(srv, func(l *loop) int64 { return l.stats.witnessWaited.Load() }) < waited+writers {
			if time.Now().After(deadline) {
				t.Fatalf("round %s: the pushes never waited for the witness", round)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return func() (ok, failed int, other []string) {
			wg.Wait()
			for _, err := range errs {
				switch {
				case err == nil:
					ok++
				case strings.Contains(err.Error(), "lost before the proxy's replication link received it"):
					failed++
				default:
					other = append(other, err.Error())
				}
			}
			return ok, failed, other
		}
	}

	// 1. Only the link's connection drops, and it stays away; the master
	// lives: the master, asked at the deadline, still answers as one.
	deadline = time.Now().Add(20 * time.Second)
	done := pushes("alive")
	offBefore := sumLoops(srv, func(l *loop) int64 { return l.stats.witnessOff.Load() })
	refused.Store(true)
	if err := direct.Do(ctx, "CLIENT", "KILL", "TYPE", "replica").Err(); err != nil {
		t.Fatal(err)
	}
	stalled.Store(false)
	ok, failed, others := done()
	refused.Store(false)
	t.Logf("link dropped, master alive: %d OK, %d errors %v", ok, failed, others)
	if ok != writers {
		t.Errorf("with the master alive, %d of %d pushes were answered OK (%d with the unwitnessed error, others %v): they are on the master", ok, writers, failed, others)
	}
	if n := sumLoops(srv, func(l *loop) int64 { return l.stats.witnessOff.Load() }) - offBefore; n != writers {
		t.Errorf("replproxy_witness_unwitnessed_total rose by %d, want %d (the master's answer decides them)", n, writers)
	}

	// 2. The master is demoted: its replicas dropped, the stream they had
	// not been sent discarded, and its data replaced by the empty node's.
	deadline = time.Now().Add(20 * time.Second)
	done = pushes("demoted")
	failedBefore := sumLoops(srv, func(l *loop) int64 { return l.stats.witnessFailed.Load() })
	host, port, _ := net.SplitHostPort(other.Addr())
	if err := direct.Do(ctx, "REPLICAOF", host, port).Err(); err != nil {
		t.Fatal(err)
	}
	stalled.Store(false)
	ok, failed, others = done()
	t.Logf("master demoted: %d OK, %d errors, others %v; witness off %d",
		ok, failed, others, sumLoops(srv, func(l *loop) int64 { return l.stats.witnessOff.Load() }))
	if ok != 0 || failed != writers {
		t.Fatalf("with the master demoted under them, %d of %d unwitnessed pushes were answered OK and %d with the unwitnessed error (others %v): an OK is an acknowledged write the demotion dropped", ok, writers, failed, others)
	}
	if n := sumLoops(srv, func(l *loop) int64 { return l.stats.witnessFailed.Load() }) - failedBefore; n != writers {
		t.Errorf("replproxy_witness_failed_total rose by %d, want %d", n, writers)
	}

	// 3. The master dies (the proxy followed the demotion to the other
	// node, which nobody replaces): the replies wait out the deadline for
	// the link, then the proxy asks the master, which is gone.
	deadline = time.Now().Add(20 * time.Second)
	for !srv.link.StreamingFrom(other.Addr()) {
		if time.Now().After(deadline) {
			t.Fatalf("the link never followed the switch to %s", other.Addr())
		}
		time.Sleep(10 * time.Millisecond)
	}
	direct = other.Client()
	done = pushes("killed")
	other.Kill()
	stalled.Store(false)
	ok, failed, others = done()
	t.Logf("master killed: %d OK, %d errors, others %v", ok, failed, others)
	if ok != 0 || failed != writers {
		t.Fatalf("with the master killed under them, %d of %d unwitnessed pushes were answered OK and %d with the unwitnessed error (others %v)", ok, writers, failed, others)
	}
}
