package proxy

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestWaitAnsweredByTheProxy(t *testing.T) {
	topo, srv := splitTopology(t, Config{})
	ctx := context.Background()
	c := client(t, srv.Addr(), &redis.Options{PoolSize: 1, ReadTimeout: 5 * time.Second})

	if err := c.Set(ctx, "w", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Wait(ctx, 1, 0).Result(); err != nil || n < 1 {
		t.Fatalf("WAIT 1 0 after a write = %d, %v; want >= 1", n, err)
	}
	if n, err := c.Wait(ctx, 2, time.Second).Result(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 1000 = %d, %v; want 2", n, err)
	}
	// Asking for more replicas than exist: the count of the ones that have
	// the write, after the timeout. The proxy's own link never counts.
	start := time.Now()
	if n, err := c.Wait(ctx, 3, 100*time.Millisecond).Result(); err != nil || n != 2 {
		t.Fatalf("WAIT 3 100 = %d, %v; want 2 (the proxy must not count itself)", n, err)
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatalf("WAIT 3 100 returned before its timeout")
	}

	// Every replica paused: the write cannot be acknowledged.
	for _, r := range topo.Replicas {
		r.Pause()
	}
	if err := c.Set(ctx, "w", "2", 0).Err(); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	n, err := c.Wait(ctx, 1, 100*time.Millisecond).Result()
	took := time.Since(start)
	for _, r := range topo.Replicas {
		r.Resume()
	}
	if err != nil || n != 0 {
		t.Fatalf("WAIT 1 100 with replicas paused = %d, %v; want 0", n, err)
	}
	t.Logf("WAIT 1 100 with every replica paused answered 0 after %v", took.Round(time.Millisecond))
	if took < 100*time.Millisecond {
		t.Fatalf("WAIT returned before its timeout: %v", took)
	}
	// once they resume, the write is acknowledged
	if n, err := c.Wait(ctx, 2, 5*time.Second).Result(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 5000 after resume = %d, %v", n, err)
	}
	// errors as Redis words them
	for cmd, want := range map[string]string{
		"WAIT 1":     "wrong number of arguments",
		"WAIT x 0":   "not an integer",
		"WAIT 1 -1":  "timeout is negative",
		"WAIT 1 abc": "timeout is not an integer",
	} {
		args := []any{}
		for _, f := range strings.Fields(cmd) {
			args = append(args, f)
		}
		if err := c.Do(ctx, args...).Err(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s = %v, want an error containing %q", cmd, err, want)
		}
	}
}

// A WAIT in a pipeline waits for the writes before it, and the commands
// after it wait for the WAIT, as on a single Redis connection.
func TestWaitInPipelineOrder(t *testing.T) {
	_, srv := splitTopology(t, Config{})
	ctx := context.Background()
	c := client(t, srv.Addr(), &redis.Options{PoolSize: 1})
	pipe := c.Pipeline()
	set := pipe.Set(ctx, "pw", "v", 0)
	wait := pipe.Do(ctx, "WAIT", 2, 2000)
	get := pipe.Get(ctx, "pw")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if n, _ := wait.Int(); set.Err() != nil || n != 2 || get.Val() != "v" {
		t.Fatalf("pipeline SET/WAIT/GET = %v / %v / %v", set, wait, get)
	}
}
