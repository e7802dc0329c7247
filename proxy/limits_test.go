package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// syncBuffer collects a proxy's logs for a test to look into.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func bufferLogger(b *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// waitClosed reads c until the proxy closes it, discarding what arrives.
func waitClosed(c net.Conn, timeout time.Duration) error {
	c.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, c)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return err
	}
	return nil
}

// Thousands of connections that never authenticate, and a slowloris that
// sends one byte at a time, fill every client slot; the auth timeout frees
// them, so a real client gets in, and a client that did authenticate is
// never touched by it. Without the timeout the real client would be
// refused for as long as the attackers keep their sockets open.
func TestAuthTimeoutFreesSlotsFromHalfOpenClients(t *testing.T) {
	const halfOpen = 2000
	_, srv := newTopology(t, 0, Config{RequirePass: "secret", MaxClients: halfOpen + 2, AuthTimeout: time.Second})
	ctx := context.Background()
	authed := client(t, srv.Addr(), &redis.Options{Password: "secret", PoolSize: 1, MinIdleConns: 1})
	if err := authed.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}

	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range halfOpen {
		c, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	slow, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	slowDone := make(chan error, 1)
	go func() {
		// AUTH with its password never finished: a byte every 50 ms.
		msg := []byte("*2\r\n$4\r\nAUTH\r\n$6\r\nsecret-and-then-some")
		for i := 0; ; i++ {
			if _, err := slow.Write(msg[i%len(msg) : i%len(msg)+1]); err != nil {
				slowDone <- nil
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	// The real client gets in once the timeout has closed the
	// unauthenticated ones (while they hold the slots it is refused:
	// "max number of clients reached").
	waitFor(t, "a real client to get a slot", 20*time.Second, func() bool {
		c := redis.NewClient(&redis.Options{Addr: srv.Addr(), Password: "secret", Protocol: 2, MaxRetries: -1})
		defer c.Close()
		return c.Set(ctx, "in", "yes", 0).Err() == nil
	})
	for i, c := range conns {
		if err := waitClosed(c, 10*time.Second); err != nil {
			t.Fatalf("half-open connection %d still open: %v", i, err)
		}
	}
	select {
	case <-slowDone:
	case <-time.After(10 * time.Second):
		t.Fatal("slowloris still connected")
	}
	if err := authed.Ping(ctx).Err(); err != nil {
		t.Fatalf("authenticated client hit by the auth timeout: %v", err)
	}
}

// Before AUTH a request may only be small (Redis's unauthenticated
// limits): a 512 MB bulk header is refused as soon as its header arrives,
// without waiting for (or buffering) the bytes it announces. After AUTH the
// same header is a normal big value.
func TestHugeBulkHeaderBeforeAuthRefusedAtOnce(t *testing.T) {
	_, srv := newTopology(t, 0, Config{RequirePass: "secret"})
	cases := []struct {
		name, req, want string
	}{
		{"512 MB bulk", "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n", "-ERR Protocol error: unauthenticated bulk length\r\n"},
		{"16 KiB + 1 bulk", "*2\r\n$4\r\nAUTH\r\n$16385\r\n", "-ERR Protocol error: unauthenticated bulk length\r\n"},
		{"11 arguments", "*11\r\n", "-ERR Protocol error: unauthenticated multibulk length\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := dialRaw(t, srv.Addr())
			r.send(tc.req)
			r.expect(tc.want)
			if err := waitClosed(r, 5*time.Second); err != nil {
				t.Fatalf("connection left open: %v", err)
			}
		})
	}
	t.Run("after AUTH", func(t *testing.T) {
		r := dialRaw(t, srv.Addr())
		r.send("AUTH secret\r\n")
		r.expect("+OK\r\n")
		r.send("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n")
		r.send("PING\r\n") // part of the value, not a command
		if got, err := r.readN(1, 300*time.Millisecond); err == nil {
			t.Fatalf("the proxy answered %q before the value arrived", got)
		}
	})
}

// A subscriber that stops reading is closed at the pubsub class's hard
// limit, far below the normal class's, and the proxy's memory for it stays
// at that limit however much is published.
func TestPubSubHardOutputLimit(t *testing.T) {
	logs := &syncBuffer{}
	topo, srv := newTopology(t, 0, Config{Logger: bufferLogger(logs),
		ClientOutputBufferLimits: map[string]OutputLimit{"pubsub": {HardBytes: 1 << 20}}})
	subscribeAndStopReading(t, srv.Addr(), "news")
	publish := topo.Master.Client()
	payload := strings.Repeat("x", 16<<10)
	ctx := context.Background()
	for i := 0; srv.clients.Load() > 0; i++ {
		if i > 20000 { // 320 MB published
			t.Fatal("subscriber never closed")
		}
		if err := publish.Publish(ctx, "news", payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// (Reading the socket to its end would take long: with a 4 KiB window
	// the kernel's buffers drain at a few tens of KB/s.)
	if !strings.Contains(logs.String(), "hard output buffer limit") || !strings.Contains(logs.String(), "class=pubsub") {
		t.Fatalf("closed, but not for the pubsub hard limit:\n%s", logs.String())
	}
}

// Above the soft limit for longer than its seconds, a subscriber is
// closed even though it never reaches the hard limit.
func TestPubSubSoftOutputLimit(t *testing.T) {
	logs := &syncBuffer{}
	topo, srv := newTopology(t, 0, Config{Logger: bufferLogger(logs),
		ClientOutputBufferLimits: map[string]OutputLimit{"pubsub": {HardBytes: 512 << 20, SoftBytes: 256 << 10, SoftFor: time.Second}}})
	subscribeAndStopReading(t, srv.Addr(), "news")
	publish := topo.Master.Client()
	payload := strings.Repeat("y", 4<<10)
	ctx := context.Background()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for i := 0; srv.clients.Load() > 0; i++ {
		<-tick.C
		if i > 60000 { // 240 MB: well past any socket buffer
			t.Fatal("subscriber never closed")
		}
		if err := publish.Publish(ctx, "news", payload).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if !strings.Contains(logs.String(), "soft output buffer limit") {
		t.Fatalf("closed, but not for the soft limit:\n%s", logs.String())
	}
}

// subscribeAndStopReading subscribes a raw client with a small receive
// buffer and reads nothing after the confirmation.
func subscribeAndStopReading(t *testing.T, addr, channel string) {
	t.Helper()
	r := dialRaw(t, addr)
	r.Conn.(*net.TCPConn).SetReadBuffer(4096)
	r.send("SUBSCRIBE " + channel + "\r\n")
	r.expect(fmt.Sprintf("*3\r\n$9\r\nsubscribe\r\n$%d\r\n%s\r\n:1\r\n", len(channel), channel))
}

// The normal class has a hard limit of its own too.
func TestNormalClassOutputLimit(t *testing.T) {
	logs := &syncBuffer{}
	topo, srv := newTopology(t, 0, Config{Logger: bufferLogger(logs),
		ClientOutputBufferLimits: map[string]OutputLimit{"normal": {HardBytes: 2 << 20}}})
	ctx := context.Background()
	topo.Master.Client().Set(ctx, "v", strings.Repeat("x", 1<<20), 0)
	r := dialRaw(t, srv.Addr())
	r.Conn.(*net.TCPConn).SetReadBuffer(4096)
	r.send("PING\r\n")
	r.expect("+PONG\r\n")
	r.send(strings.Repeat("GET v\r\n", 100))
	waitFor(t, "the client to be closed", 30*time.Second, func() bool { return srv.clients.Load() == 0 })
	if !strings.Contains(logs.String(), "class=normal") {
		t.Fatalf("closed, but not for the normal class:\n%s", logs.String())
	}
}

func TestOutputLimitsResolve(t *testing.T) {
	cases := []struct {
		name           string
		limits         map[string]OutputLimit
		normal, pubsub OutputLimit
		bad            bool
	}{
		{"redis defaults, capped", nil, OutputLimit{HardBytes: 1 << 30}, OutputLimit{HardBytes: 32 << 20, SoftBytes: 8 << 20, SoftFor: time.Minute}, false},
		{"pubsub 0 0 0 is the cap", map[string]OutputLimit{"pubsub": {}}, OutputLimit{HardBytes: 1 << 30}, OutputLimit{HardBytes: 1 << 30}, false},
		{"above the cap", map[string]OutputLimit{"normal": {HardBytes: 4 << 30}}, OutputLimit{HardBytes: 1 << 30}, OutputLimit{HardBytes: 32 << 20, SoftBytes: 8 << 20, SoftFor: time.Minute}, false},
		{"replica class", map[string]OutputLimit{"replica": {}}, OutputLimit{}, OutputLimit{}, true},
		{"negative", map[string]OutputLimit{"normal": {SoftBytes: -1}}, OutputLimit{}, OutputLimit{}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{OutputBufferLimit: 1 << 30, ClientOutputBufferLimits: tc.limits}
			n, p, err := outputLimits(&cfg)
			if tc.bad {
				if err == nil {
					t.Fatal("accepted")
				}
				return
			}
			if err != nil || n != tc.normal || p != tc.pubsub {
				t.Fatalf("= %+v %+v %v; want %+v %+v", n, p, err, tc.normal, tc.pubsub)
			}
		})
	}
}
