package proxy

import (
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

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
	conn, err := net.Dial("tcp", srv)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var one string
	if cmd == "GET" {
		one = "*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n"
	} else {
		one = "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$3\r\nxyz\r\n"
	}
	req := []byte(strings.Repeat(one, depth))
	buf := make([]byte, 64<<10)
	sc := resp.NewReplyScanner(resp.DefaultLimits())
	roundTrip := func() {
		if _, err := conn.Write(req); err != nil {
			b.Fatal(err)
		}
		got, have := 0, 0
		for got < depth {
			n, err := conn.Read(buf[have:])
			if err != nil {
				b.Fatal(err)
			}
			have += n
			off := 0
			for off < have {
				m, err := sc.Scan(buf[off:have])
				if err != nil {
					b.Fatal(err)
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

func startTopologyB(b *testing.B) string {
	return redistestStart(b)
}

func startProxyB(b *testing.B, cfg Config) string {
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
	return srv.Addr()
}
