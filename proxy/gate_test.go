package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWriteGateRejectsWhileAReplicaLags(t *testing.T) {
	topo, srv := splitTopology(t, Config{MinReplicasToWrite: 2, MinReplicasMaxLag: 200 * time.Millisecond})
	ctx := context.Background()
	c := client(t, srv.Addr(), &redis.Options{MaxRetries: -1})
	waitFor(t, "writes accepted with both replicas in sync", 10*time.Second, func() bool {
		return c.Set(ctx, "g", "1", 0).Err() == nil
	})
	topo.Replicas[0].Pause()
	defer topo.Replicas[0].Resume()
	start := time.Now()
	var err error
	waitFor(t, "-NOREPLICAS once the paused replica lags past 200ms", 10*time.Second, func() bool {
		err = c.Set(ctx, "g", "2", 0).Err()
		return err != nil
	})
	if !strings.HasPrefix(err.Error(), "NOREPLICAS Not enough good replicas to write.") {
		t.Fatalf("write with a lagging replica = %v", err)
	}
	t.Logf("writes refused %v after the pause", time.Since(start).Round(time.Millisecond))
	// reads and non-write commands are not gated
	if err := c.Get(ctx, "g").Err(); err != nil {
		t.Fatalf("GET at a closed gate: %v", err)
	}
	if err := c.Info(ctx, "server").Err(); err != nil {
		t.Fatalf("INFO at a closed gate: %v", err)
	}
	// a transaction with writes is refused at EXEC and runs nothing
	_, err = c.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, "tx-gated", "x", 0)
		return nil
	})
	if err == nil || !strings.HasPrefix(err.Error(), "NOREPLICAS") {
		t.Fatalf("EXEC at a closed gate = %v", err)
	}
	topo.Replicas[0].Resume()
	waitFor(t, "writes accepted after the resume", 10*time.Second, func() bool {
		return c.Set(ctx, "g", "3", 0).Err() == nil
	})
	if n := topo.Master.Client().Exists(ctx, "tx-gated").Val(); n != 0 {
		t.Fatalf("the refused transaction ran")
	}
	var rejected int64
	for _, l := range *srv.loopLst.Load() {
		rejected += l.stats.gateRejections.Load()
	}
	if rejected == 0 {
		t.Fatalf("gate rejections not counted")
	}
}

func TestWriteGateWaitHoldsWrites(t *testing.T) {
	topo, srv := splitTopology(t, Config{MinReplicasToWrite: 2, MinReplicasMaxLag: 200 * time.Millisecond,
		WriteGate: "wait", WriteGateTimeout: 3 * time.Second})
	ctx := context.Background()
	c := client(t, srv.Addr(), &redis.Options{MaxRetries: -1, ReadTimeout: 10 * time.Second})
	waitFor(t, "writes accepted", 10*time.Second, func() bool { return c.Set(ctx, "g", "1", 0).Err() == nil })
	other := client(t, topo.Master.Addr(), nil)
	// Start from an open gate (lags known and small), so that "closed"
	// below means closed by the pause.
	waitFor(t, "the gate open", 10*time.Second, func() bool { return srv.Readiness() == nil })
	// Both replicas paused: the gate is closed whatever either one's last
	// known offset says.
	topo.Replicas[0].Pause()
	topo.Replicas[1].Pause()
	// keep the master's offset moving so the paused replica falls behind
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				other.Incr(ctx, "tick")
			}
		}
	}()
	defer close(stop)
	waitFor(t, "the gate closed by the paused replica's lag", 10*time.Second, func() bool {
		err := srv.Readiness()
		return err != nil && strings.Contains(err.Error(), "write gate closed")
	})
	go func() {
		time.Sleep(500 * time.Millisecond)
		topo.Replicas[0].Resume()
		topo.Replicas[1].Resume()
	}()
	start := time.Now()
	if err := c.Set(ctx, "held", "1", 0).Err(); err != nil {
		t.Fatalf("write held at the gate then released: %v", err)
	}
	if took := time.Since(start); took < 100*time.Millisecond {
		t.Fatalf("the write was not held (%v)", took)
	}
}

func TestSyncWrites(t *testing.T) {
	topo, srv := splitTopology(t, Config{SyncReplicas: 2, SyncTimeout: 300 * time.Millisecond})
	ctx := context.Background()
	c := client(t, srv.Addr(), &redis.Options{MaxRetries: -1})
	if err := c.Set(ctx, "s", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	// when the reply arrives, both replicas have the write
	for _, r := range topo.Replicas {
		if v := r.Client().Get(ctx, "s").Val(); v != "1" {
			t.Fatalf("replica %s lacks a synchronous write after its reply: %q", r, v)
		}
	}
	topo.Replicas[1].Pause()
	defer topo.Replicas[1].Resume()
	err := c.Set(ctx, "s", "2", 0).Err()
	if err == nil || !strings.Contains(err.Error(), "not confirmed by enough replicas") {
		t.Fatalf("synchronous write with a replica paused = %v", err)
	}
	if v := topo.Master.Client().Get(ctx, "s").Val(); v != "2" {
		t.Fatalf("the timed-out write is not applied on the master: %q", v)
	}
}
