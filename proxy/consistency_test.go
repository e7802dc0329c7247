package proxy

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
)

// checker runs the read-your-writes check of the consistency issue: workers
// each own a key, SET it to a new value and, once the SET was acknowledged,
// GET it — through the same pooled client or through another one — and
// count the GETs that returned an older value.
type checker struct {
	writer  func(w int) *redis.Client // where SETs go
	readers func(w int) []*redis.Client
	workers int
	checks  int64 // total, across workers
	stop    <-chan struct{}
}

type checkResult struct {
	checks, stale int64
	elapsed       time.Duration
	firstStale    string
}

func (c checker) run(t *testing.T) checkResult {
	t.Helper()
	ctx := context.Background()
	var done, stale atomic.Int64
	var first atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < c.workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			wr, rds := c.writer(w), c.readers(w)
			key := fmt.Sprintf("ck:%d:%d", w, time.Now().UnixNano())
			for i := 0; done.Load() < c.checks; i++ {
				if c.stop != nil {
					select {
					case <-c.stop:
						return
					default:
					}
				}
				val := strconv.Itoa(i)
				if err := wr.Set(ctx, key, val, 0).Err(); err != nil {
					t.Errorf("SET: %v", err)
					return
				}
				got, err := rds[i%len(rds)].Get(ctx, key).Result()
				if err != nil && err != redis.Nil {
					t.Errorf("GET: %v", err)
					return
				}
				if got != val {
					if stale.Add(1) == 1 {
						first.Store(fmt.Sprintf("worker %d wrote %q, then read %q", w, val, got))
					}
				}
				done.Add(1)
			}
		}(w)
	}
	wg.Wait()
	r := checkResult{checks: done.Load(), stale: stale.Load(), elapsed: time.Since(start)}
	if v, ok := first.Load().(string); ok {
		r.firstStale = v
	}
	return r
}

// pauser stops random replicas for random 5–50 ms spells until stop closes,
// so they lag behind the master.
func pauser(t *testing.T, topo *redistest.Topology, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		seed := time.Now().UnixNano()
		t.Logf("pauser seed %d", seed)
		rng := rand.New(rand.NewSource(seed))
		for {
			select {
			case <-stop:
				return
			default:
			}
			r := topo.Replicas[rng.Intn(len(topo.Replicas))]
			r.Pause()
			time.Sleep(time.Duration(5+rng.Intn(46)) * time.Millisecond)
			r.Resume()
			time.Sleep(time.Duration(rng.Intn(20)) * time.Millisecond)
		}
	}()
	return &wg
}

func consistencyChecks() int64 {
	if v, err := strconv.ParseInt(os.Getenv("REPLPROXY_CHECKS"), 10, 64); err == nil && v > 0 {
		return v
	}
	return 100000
}

func pooled(t *testing.T, addr string, n int) []*redis.Client {
	cs := make([]*redis.Client, n)
	for i := range cs {
		cs[i] = client(t, addr, &redis.Options{PoolSize: 4, ReadTimeout: 10 * time.Second, MaxRetries: -1})
	}
	return cs
}

// Causal mode: every acknowledged write is visible to every later read,
// from the same pooled client or another one, while replicas lag.
func TestCausalReadsSeeAcknowledgedWrites(t *testing.T) {
	topo, srv := splitTopology(t, Config{Consistency: "causal"})
	const workers = 32
	clients := pooled(t, srv.Addr(), workers)
	stop := make(chan struct{})
	pw := pauser(t, topo, stop)
	res := checker{
		workers: workers,
		checks:  consistencyChecks(),
		writer:  func(w int) *redis.Client { return clients[w] },
		// half the reads through the writer's own pool, half through another client
		readers: func(w int) []*redis.Client { return []*redis.Client{clients[w], clients[(w+1)%workers]} },
	}.run(t)
	close(stop)
	pw.Wait()
	t.Logf("causal: %d checks in %v, %d stale", res.checks, res.elapsed.Round(time.Millisecond), res.stale)
	if res.stale != 0 {
		t.Fatalf("causal mode returned %d stale reads; first: %s", res.stale, res.firstStale)
	}
	if res.checks < consistencyChecks() {
		t.Fatalf("only %d checks ran", res.checks)
	}

	// Without pauses, how many of those causal reads can replicas serve?
	ctx := context.Background()
	for _, n := range append([]*redistest.Node{topo.Master}, topo.Replicas...) {
		n.Client().ConfigResetStat(ctx)
	}
	res = checker{
		workers: workers,
		checks:  20000,
		writer:  func(w int) *redis.Client { return clients[w] },
		readers: func(w int) []*redis.Client { return []*redis.Client{clients[(w+1)%workers]} },
	}.run(t)
	onMaster := cmdCalls(t, topo.Master, "get")
	onReplicas := cmdCalls(t, topo.Replicas[0], "get") + cmdCalls(t, topo.Replicas[1], "get")
	share := float64(onReplicas) / float64(max(onMaster+onReplicas, 1))
	t.Logf("causal, no pauses: %d checks, %d stale; GETs run on replicas %d, on the master %d: %.0f%% served by replicas",
		res.checks, res.stale, onReplicas, onMaster, 100*share)
	if res.stale != 0 {
		t.Fatalf("causal mode returned %d stale reads without pauses", res.stale)
	}
	if onReplicas == 0 {
		t.Fatalf("causal mode never read from a replica")
	}
}

// Linearizable mode: even writes made directly on the master are seen.
func TestLinearizableReadsSeeDirectWrites(t *testing.T) {
	topo, srv := splitTopology(t, Config{Consistency: "linearizable"})
	const workers = 32
	clients := pooled(t, srv.Addr(), workers)
	direct := make([]*redis.Client, workers)
	for i := range direct {
		direct[i] = client(t, topo.Master.Addr(), &redis.Options{PoolSize: 1})
	}
	stop := make(chan struct{})
	pw := pauser(t, topo, stop)
	res := checker{
		workers: workers,
		checks:  consistencyChecks() / 2,
		writer:  func(w int) *redis.Client { return direct[w] },
		readers: func(w int) []*redis.Client { return []*redis.Client{clients[w]} },
	}.run(t)
	close(stop)
	pw.Wait()
	t.Logf("linearizable: %d checks in %v, %d stale", res.checks, res.elapsed.Round(time.Millisecond), res.stale)
	if res.stale != 0 {
		t.Fatalf("linearizable mode returned %d stale reads; first: %s", res.stale, res.firstStale)
	}
}

// Eventual mode promises nothing of the kind: the same checker finds stale
// reads there, which shows it can fail.
func TestEventualReadsCanBeStale(t *testing.T) {
	topo, srv := splitTopology(t, Config{Consistency: "eventual"})
	const workers = 32
	clients := pooled(t, srv.Addr(), workers)
	stop := make(chan struct{})
	pw := pauser(t, topo, stop)
	res := checker{
		workers: workers,
		checks:  consistencyChecks() / 2,
		writer:  func(w int) *redis.Client { return clients[w] },
		readers: func(w int) []*redis.Client { return []*redis.Client{clients[(w+1)%workers]} },
	}.run(t)
	close(stop)
	pw.Wait()
	t.Logf("eventual: %d checks in %v, %d stale (first: %s)", res.checks, res.elapsed.Round(time.Millisecond), res.stale, res.firstStale)
	if res.stale == 0 {
		t.Fatalf("eventual mode with lagging replicas showed no stale read in %d checks: the checker cannot see staleness", res.checks)
	}
}
