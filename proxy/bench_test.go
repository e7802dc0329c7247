package proxy

import (
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/replproxy/replproxy/metrics"
	"github.com/replproxy/replproxy/resp"
)

// BenchmarkProxyPipeline drives the proxy with raw, allocation-free clients
// and reports the process's heap allocations per request: the steady-state
// data path is meant to allocate nothing.
func BenchmarkProxyPipeline(b *testing.B) {
	for _, depth := range []int{1, 16} {
		for _, cmd := range []string{"GET", "SET"} {
			b.Run(cmd+"/P"+itoa(depth), func(b *testing.B) {
				benchPipeline(b, cmd, depth, true)
			})
		}
		// The write witness's cost: SET with it off.
		b.Run("SET/P"+itoa(depth)+"/witness-off", func(b *testing.B) {
			benchPipeline(b, "SET", depth, false)
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func benchPipeline(b *testing.B, cmd string, depth int, witness bool) {
	topo := startTopologyB(b)
	srv := startProxyB(b, Config{Master: topo, Witness: &witness})
	roundTrip := pipelineClient(b, srv.Addr(), cmd, depth)
	for i := 0; i < 200; i++ {
		roundTrip()
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		roundTrip()
	}
	b.StopTimer()
	runtime.ReadMemStats(&after)
	reqs := float64(b.N * depth)
	b.ReportMetric(float64(after.Mallocs-before.Mallocs)/reqs, "allocs/req")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/reqs, "ns/req")
}

// TestSteadyStateAllocs: a pipelined GET or SET round trip through a real
// proxy to a real redis-server allocates nothing per request, in the
// client's session, the backend or the reply path, and no more per loop
// wake-up than gnet's Execute does (wakeupAllocs).
//
// testing.AllocsPerRun counts every goroutine's mallocs, so the proxy's are
// in it, and returns the integer mean per round trip: the few allocations of
// background work (the topology monitor's polls) during 2000 round trips
// vanish, while one per request or per wake-up (at least one wake-up per
// round trip) shows as 1 or more. A round trip of 16 allocating what one of
// 1 does is 0 per request.
//
// SETs run with the write witness on, as by default, once the link streams
// and so vouches for them, and again with it off. With it on, the proxy's
// replication link reads every SET from the master's stream, and a reply
// that arrives before the link holds its bytes waits for the link to wake
// the loop: both allocated, one per waiting reply and 2 per wake-up (a heap
// copy of the wait, and gnet's Execute) before the settle loop worked in
// place and the wake-up became gnet.WakeBatchEnd. How many replies waited
// is logged: that depends on which of the two sockets the kernel delivers
// first, not on the test.
func TestSteadyStateAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	topo := redistestStart(t)
	for _, witness := range []bool{false, true} {
		srv := startProxyB(t, Config{Master: topo, Witness: &witness})
		cmds := []string{"GET", "SET"}
		if witness {
			cmds = cmds[1:]
			waitFor(t, "the proxy's link to stream", 30*time.Second, func() bool { return srv.link.DownFor() == 0 })
		}
		for _, cmd := range cmds {
			perDepth := map[int]float64{}
			for _, depth := range []int{1, 16} {
				name := cmd + "/P" + itoa(depth)
				if witness {
					name += "/witness"
				}
				t.Run(name, func(t *testing.T) {
					roundTrip := pipelineClient(t, srv.Addr(), cmd, depth)
					for range 200 {
						roundTrip()
					}
					if witness {
						// As by default once a loop runs: the link's
						// stream read on it (linkHost).
						waitFor(t, "the link's stream read on a loop", 10*time.Second, func() bool {
							roundTrip()
							return srv.linkLoop.Load() != nil
						})
					}
					var before, after metrics.Stats
					srv.Stats(&before)
					n := testing.AllocsPerRun(2000, roundTrip)
					perDepth[depth] = n
					if witness {
						srv.Stats(&after)
						t.Logf("%d of %d replies waited for the link", after.WitnessWaited-before.WitnessWaited, 2001*depth)
					}
					if n > wakeupAllocs {
						t.Errorf("%v allocations per round trip of %d %ss, want at most %v", n, depth, cmd, wakeupAllocs)
					}
				})
			}
			if perDepth[16] > perDepth[1] {
				t.Errorf("%s: %v allocations per round trip of 16, %v of 1: pipelined requests allocate", cmd, perDepth[16], perDepth[1])
			}
		}
	}
}

// wakeupAllocs is what a loop wake-up that forwards requests may allocate:
// nothing where gnet calls Server.OnBatchEnd (our patch, internal/gnet),
// which writes every dirty backend at the batch's end. Without the hook
// markBackend queues that write with EventLoop.Execute once per wake-up,
// and gnet v2.10 allocates a closure and a lock-free queue node per call:
// 2 (this test's bound before the patch).
var wakeupAllocs = map[bool]float64{true: 0, false: 2}[gnet.BatchEndSupported]

// pipelineClient connects to the proxy at addr and returns a round trip of
// depth pipelined cmds (GET or SET of one key) that itself allocates
// nothing.
func pipelineClient(tb testing.TB, addr, cmd string, depth int) func() {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	var one string
	if cmd == "GET" {
		one = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"
	} else {
		one = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$3\r\nxyz\r\n"
	}
	req := []byte(strings.Repeat(one, depth))
	buf := make([]byte, 64<<10)
	sc := resp.NewReplyScanner(resp.DefaultLimits())
	return func() {
		if _, err := conn.Write(req); err != nil {
			tb.Fatal(err)
		}
		got, have := 0, 0
		for got < depth {
			n, err := conn.Read(buf[have:])
			if err != nil {
				tb.Fatal(err)
			}
			have += n
			off := 0
			for off < have {
				m, err := sc.Scan(buf[off:have])
				if err != nil {
					tb.Fatal(err)
				}
				if m == 0 {
					break
				}
				off += m
				got++
			}
			have = copy(buf, buf[off:have])
		}
	}
}

func startTopologyB(b *testing.B) string {
	return redistestStart(b)
}

func startProxyB(b testing.TB, cfg Config) *Server {
	cfg.Listen = "127.0.0.1:0"
	cfg.Loops = 1
	cfg.Logger = discardLogger()
	srv, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(chanContext(stop)) }()
	select {
	case <-srv.Ready():
	case <-time.After(10 * time.Second):
		b.Fatal("proxy not ready")
	}
	b.Cleanup(func() { close(stop); <-done })
	return srv
}
