package proxy

import (
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// batchEcho echoes what it reads, but only at the end of a batch: OnTraffic
// keeps the bytes, OnBatchEnd writes them. If gnet (internal/gnet's patch)
// did not call OnBatchEnd after the batch, on the loop that read them,
// nothing would come back.
type batchEcho struct {
	gnet.BuiltinEventEngine
	addr    chan string
	eng     gnet.Engine
	mu      sync.Mutex
	pending map[gnet.EventLoop][]gnet.Conn
	ends    atomic.Int64
	wrong   atomic.Int64 // OnBatchEnd saw a conn of another loop
}

func (h *batchEcho) OnBoot(eng gnet.Engine) gnet.Action {
	h.eng = eng
	return gnet.None
}

func (h *batchEcho) OnTraffic(c gnet.Conn) gnet.Action {
	c.SetContext(append(ctxBytes(c), mustNext(c)...))
	h.mu.Lock()
	h.pending[c.EventLoop()] = append(h.pending[c.EventLoop()], c)
	h.mu.Unlock()
	return gnet.None
}

func ctxBytes(c gnet.Conn) []byte { b, _ := c.Context().([]byte); return b }

func mustNext(c gnet.Conn) []byte {
	b, _ := c.Next(-1)
	return append([]byte(nil), b...)
}

func (h *batchEcho) OnBatchEnd(el gnet.EventLoop) {
	h.ends.Add(1)
	h.mu.Lock()
	cs := h.pending[el]
	h.pending[el] = nil
	h.mu.Unlock()
	for _, c := range cs {
		if c.EventLoop() != el {
			h.wrong.Add(1)
		}
		if b := ctxBytes(c); len(b) > 0 {
			_, _ = c.Write(b)
			c.SetContext([]byte(nil))
		}
	}
}

func (h *batchEcho) NoYield() bool { return true }

func TestGnetBatchEnd(t *testing.T) {
	if !gnet.BatchEndSupported {
		t.Fatal("the default epoll poller of internal/gnet has the batch-end hook: is the replace in go.mod gone?")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	const loops = 2
	h := &batchEcho{pending: map[gnet.EventLoop][]gnet.Conn{}}
	done := make(chan error, 1)
	go func() {
		done <- gnet.Run(h, "tcp://"+addr, gnet.WithMulticore(true), gnet.WithNumEventLoop(loops))
	}()
	t.Cleanup(func() {
		_ = h.eng.Stop(context.Background())
		<-done
	})
	var conns []net.Conn
	deadline := time.Now().Add(5 * time.Second)
	for len(conns) < 8 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		conns = append(conns, c)
	}
	for round := range 50 {
		for i, c := range conns {
			if _, err := c.Write([]byte("m" + strconv.Itoa(round) + "." + strconv.Itoa(i) + ";")); err != nil {
				t.Fatal(err)
			}
		}
		for i, c := range conns {
			want := "m" + strconv.Itoa(round) + "." + strconv.Itoa(i) + ";"
			got := make([]byte, len(want))
			_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
				t.Fatalf("round %d conn %d: %q, %v; want %q (OnBatchEnd not called after the batch?)", round, i, got, err, want)
			}
		}
	}
	if h.wrong.Load() != 0 {
		t.Errorf("OnBatchEnd saw %d connections of another loop", h.wrong.Load())
	}
	if h.ends.Load() == 0 {
		t.Error("OnBatchEnd never ran")
	}
	for _, c := range conns {
		c.Close()
	}
}

// wakeHandler answers a wake-up: OnBatchEnd writes "w" to the one client
// when asked to (asked), and only then.
type wakeHandler struct {
	gnet.BuiltinEventEngine
	eng   gnet.Engine
	conn  atomic.Pointer[gnet.Conn]
	asked atomic.Bool
}

func (h *wakeHandler) OnBoot(eng gnet.Engine) gnet.Action { h.eng = eng; return gnet.None }

func (h *wakeHandler) OnTraffic(c gnet.Conn) gnet.Action {
	_, _ = c.Next(-1)
	h.conn.Store(&c)
	return gnet.None
}

func (h *wakeHandler) OnBatchEnd(gnet.EventLoop) {
	if c := h.conn.Load(); c != nil && h.asked.CompareAndSwap(true, false) {
		_, _ = (*c).Write([]byte("w"))
	}
}

func (h *wakeHandler) NoYield() bool { return true }

// gnet.WakeBatchEnd (internal/gnet's patch) wakes a loop blocked in
// epoll_wait from another goroutine and runs its OnBatchEnd, again and
// again: the witness relies on it to release the replies the link has
// caught up with. A wake-up that did not come would leave the loop asleep
// and the client without its "w".
func TestGnetWakeBatchEnd(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &wakeHandler{}
	done := make(chan error, 1)
	go func() { done <- gnet.Run(h, "tcp://"+addr) }()
	t.Cleanup(func() {
		_ = h.eng.Stop(context.Background())
		<-done
	})
	var c net.Conn
	deadline := time.Now().Add(5 * time.Second)
	for c == nil {
		if c, err = net.Dial("tcp", addr); err != nil {
			if time.Now().After(deadline) {
				t.Fatal(err)
			}
			c = nil
			time.Sleep(10 * time.Millisecond)
		}
	}
	defer c.Close()
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	for h.conn.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the loop never read the client")
		}
		time.Sleep(time.Millisecond)
	}
	el := (*h.conn.Load()).EventLoop()
	got := make([]byte, 1)
	for round := range 100 {
		// Let the loop settle into epoll_wait now and then, so some
		// wake-ups find it asleep and some find it running.
		if round%10 == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		h.asked.Store(true)
		if err := gnet.WakeBatchEnd(el); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil || got[0] != 'w' {
			t.Fatalf("wake-up %d: %q, %v (OnBatchEnd did not run)", round, got, err)
		}
	}
}

// A busy loop yields once per yieldEveryNs, and that interval stays
// inside the runtime's 10-ms slice with room for sysmon's longest sleep
// (10 ms) to see a yield between two of its looks: at twice the interval
// or more, sysmon finds the loop's schedtick unchanged for 10 ms, signals
// it and retakes its P, and polls every 20 µs again (server.go,
// yieldEveryNs: 11,215 nanosleeps in 3 s at GET P16 without the yield).
func TestYieldDue(t *testing.T) {
	const forcePreemptNs = int64(10 * time.Millisecond) // runtime/proc.go forcePreemptNS
	if 2*yieldEveryNs > forcePreemptNs {
		t.Fatalf("yieldEveryNs = %v: sysmon, looking every 10 ms at most, could miss the yield for a whole 10-ms slice", time.Duration(yieldEveryNs))
	}
	const start = int64(1_000_000_000)
	for _, tc := range []struct {
		name         string
		now, yielded int64
		want         bool
	}{
		{"just yielded", start, start, false},
		{"within the interval", start + yieldEveryNs - 1, start, false},
		{"at the interval", start + yieldEveryNs, start, true},
		{"long after", start + 10*yieldEveryNs, start, true},
		{"never yielded", start, 0, true},
	} {
		if got := yieldDue(tc.now, tc.yielded); got != tc.want {
			t.Errorf("%s: yieldDue(%d, %d) = %v, want %v", tc.name, tc.now, tc.yielded, got, tc.want)
		}
	}
}
