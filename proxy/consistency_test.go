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
	return pauseSpells(t, topo, stop, spells{minMs: 5, maxMs: 50, maxGapMs: 20})
}

// spells says how pauseSpells stops replicas: for minMs–maxMs, with gaps of
// up to maxGapMs, one replica at a time or, with all, every replica half of
// the time (so that none is eligible and reads go to the master).
type spells struct {
	minMs, maxMs, maxGapMs int
	all                    bool
}

func pauseSpells(t *testing.T, topo *redistest.Topology, stop <-chan struct{}, sp spells) *sync.WaitGroup {
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
			paused := topo.Replicas
			if !sp.all || rng.Intn(2) == 0 {
				i := rng.Intn(len(paused))
				paused = paused[i : i+1]
			}
			for _, r := range paused {
				r.Pause()
			}
			time.Sleep(time.Duration(sp.minMs+rng.Intn(sp.maxMs-sp.minMs+1)) * time.Millisecond)
			for _, r := range paused {
				r.Resume()
			}
			time.Sleep(time.Duration(rng.Intn(sp.maxGapMs)) * time.Millisecond)
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
		checks:  consistencyChecks(),
		writer:  func(w int) *redis.Client { return direct[w] },
		readers: func(w int) []*redis.Client { return []*redis.Client{clients[w]} },
	}.run(t)
	close(stop)
	pw.Wait()
	t.Logf("linearizable: %d checks in %v, %d stale", res.checks, res.elapsed.Round(time.Millisecond), res.stale)
	if res.stale != 0 {
		t.Fatalf("linearizable mode returned %d stale reads; first: %s", res.stale, res.firstStale)
	}
	if res.checks < consistencyChecks() {
		t.Fatalf("only %d checks ran", res.checks)
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

// Monotonic reads: a connection never reads an older value than one it
// already read, even when its reads move between the master and replicas.
// A counter is incremented directly on the master (no proxy fence covers
// it: only each connection's floor does) while replicas are stopped in
// spells long enough to become ineligible, so reads go to the master, and
// come back while still catching up.
func TestMonotonicReadsAcrossMasterAndReplicas(t *testing.T) {
	topo, srv := splitTopology(t, Config{Consistency: "causal",
		PollInterval: 10 * time.Millisecond, HealthTimeout: 50 * time.Millisecond,
		ReadTimeout: 100 * time.Millisecond})
	ctx := context.Background()
	direct := client(t, topo.Master.Addr(), nil)
	stop := make(chan struct{})
	pw := pauseSpells(t, topo, stop, spells{minMs: 20, maxMs: 150, maxGapMs: 80, all: true})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := direct.Pipelined(ctx, func(p redis.Pipeliner) error {
				for range 8 {
					p.Incr(ctx, "mono")
				}
				return nil
			}); err != nil {
				t.Errorf("INCR on the master: %v", err)
				return
			}
		}
	}()
	const readers = 8
	checks := consistencyChecks() / 2
	var done, backwards atomic.Int64
	var first atomic.Value
	var rw sync.WaitGroup
	for i := range readers {
		rw.Add(1)
		go func() {
			defer rw.Done()
			c := client(t, srv.Addr(), &redis.Options{PoolSize: 1, MaxRetries: -1})
			var last int64
			for done.Load() < checks {
				v, err := c.Get(ctx, "mono").Int64()
				if err != nil && err != redis.Nil {
					t.Errorf("GET: %v", err)
					return
				}
				if v < last && backwards.Add(1) == 1 {
					first.Store(fmt.Sprintf("reader %d read %d after %d", i, v, last))
				}
				last = max(last, v)
				done.Add(1)
			}
		}()
	}
	rw.Wait()
	close(stop)
	wg.Wait()
	pw.Wait()
	var fallbacks [fallbackCount]int64
	for _, l := range *srv.loopLst.Load() {
		for r := range fallbacks {
			fallbacks[r] += l.stats.fallbacks[r].Load()
		}
	}
	t.Logf("monotonic: %d reads, %d went backwards; master fallbacks %v", done.Load(), backwards.Load(), fallbacks)
	if backwards.Load() != 0 {
		t.Fatalf("%d reads went back in time; first: %v", backwards.Load(), first.Load())
	}
	if fallbacks[fallbackNoReplica]+fallbacks[fallbackFloorUnknown] == 0 {
		t.Fatalf("no read went to the master: the test did not exercise the floor of master reads")
	}
}

// Pipelines that alternate reads and writes complete in several segments
// (reads on a replica, writes on the master), with the replies held back
// until the pipeline is done (holdOutput). Every pipeline must complete, in
// order, and under causal and linearizable a GET sees the SET pipelined
// before it.
func TestMixedPipelinesComplete(t *testing.T) {
	for _, mode := range []string{"causal", "linearizable", "eventual"} {
		t.Run(mode, func(t *testing.T) {
			_, srv := splitTopology(t, Config{Consistency: mode})
			ctx := context.Background()
			const clients, batches, depth = 16, 150, 16
			seed := time.Now().UnixNano()
			t.Logf("seed %d", seed)
			var wg sync.WaitGroup
			for w := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rng := rand.New(rand.NewSource(seed + int64(w)))
					c := client(t, srv.Addr(), &redis.Options{PoolSize: 1, MaxRetries: -1, ReadTimeout: 5 * time.Second})
					last := map[string]string{} // what this client last wrote per key
					for b := range batches {
						type op struct {
							key, val string
							get      *redis.StringCmd
							set      *redis.StatusCmd
						}
						ops := make([]op, depth)
						_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
							for i := range ops {
								key := fmt.Sprintf("mix:%d:%d", w, rng.Intn(4))
								ops[i].key = key
								if rng.Intn(5) == 0 {
									ops[i].val = fmt.Sprintf("%d.%d", b, i)
									ops[i].set = p.Set(ctx, key, ops[i].val, 0)
								} else {
									ops[i].get = p.Get(ctx, key)
								}
							}
							return nil
						})
						if err != nil && err != redis.Nil {
							t.Errorf("client %d batch %d: %v", w, b, err)
							return
						}
						for _, o := range ops {
							if o.set != nil {
								if o.set.Err() != nil {
									t.Errorf("SET: %v", o.set.Err())
									return
								}
								last[o.key] = o.val
								continue
							}
							v, err := o.get.Result()
							if err != nil && err != redis.Nil {
								t.Errorf("GET: %v", err)
								return
							}
							if mode != "eventual" && v != last[o.key] {
								t.Errorf("client %d batch %d: GET %s = %q after its SET of %q", w, b, o.key, v, last[o.key])
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			var behind int64
			for _, l := range *srv.loopLst.Load() {
				behind += l.stats.fallbacks[fallbackPipelined].Load()
			}
			t.Logf("%s: %d reads went to the master behind their own requests", mode, behind)
			if (mode == "eventual") != (behind == 0) {
				t.Fatalf("%s: %d reads pipelined behind the master stayed there; want some only under causal and linearizable", mode, behind)
			}
		})
	}
}
