package proxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
)

// startProxy runs a proxy in front of master until the test ends.
func startProxy(t *testing.T, cfg Config) *Server {
	t.Helper()
	return startProxyTB(t, cfg)
}

// startProxyTB is startProxy for any testing.TB (a fuzz target's F).
func startProxyTB(t testing.TB, cfg Config) *Server {
	t.Helper()
	return startProxyKnobs(t, cfg, testKnobs{})
}

// startProxyKnobs is startProxy with test knobs.
func startProxyKnobs(t testing.TB, cfg Config, knobs testKnobs) *Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		var w io.Writer = io.Discard
		if os.Getenv("REPLPROXY_TEST_LOG") != "" {
			w = os.Stderr
		}
		cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := newServer(cfg, knobs)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("Serve: %v", err)
	case <-time.After(10 * time.Second):
		cancel()
		t.Fatalf("proxy did not become ready")
	}
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("proxy did not shut down within 15 s; goroutines:\n%s", goroutineDump())
		}
	})
	return srv
}

// goroutineDump is every goroutine's stack, cut to 256 KB: what a proxy
// that does not stop is waiting for.
func goroutineDump() string {
	var b strings.Builder
	_ = pprof.Lookup("goroutine").WriteTo(&b, 2)
	s := b.String()
	if len(s) > 256<<10 {
		s = s[:256<<10] + "\n[cut]"
	}
	return s
}

// newTopology starts a master (and replicas) and a proxy in front of it.
func newTopology(t *testing.T, replicas int, cfg Config) (*redistest.Topology, *Server) {
	t.Helper()
	topo := redistest.Start(t, redistest.Options{Replicas: replicas})
	cfg.Master = topo.Master.Addr()
	return topo, startProxy(t, cfg)
}

func client(t *testing.T, addr string, opt *redis.Options) *redis.Client {
	t.Helper()
	if opt == nil {
		opt = &redis.Options{}
	}
	opt.Addr = addr
	if opt.Protocol == 0 {
		opt.Protocol = 2
	}
	if opt.ReadTimeout == 0 {
		opt.ReadTimeout = 10 * time.Second
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConn is a client speaking raw RESP, for what go-redis would not send.
type rawConn struct {
	t *testing.T
	net.Conn
	buf []byte
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, Conn: c}
}

func (r *rawConn) send(s string) {
	r.t.Helper()
	if _, err := r.Write([]byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// readUntil reads until the bytes received so far contain want in full, or
// the deadline passes, and returns everything read.
func (r *rawConn) readN(n int, timeout time.Duration) (string, error) {
	r.SetReadDeadline(time.Now().Add(timeout))
	for len(r.buf) < n {
		tmp := make([]byte, 64<<10)
		m, err := r.Read(tmp)
		r.buf = append(r.buf, tmp[:m]...)
		if err != nil {
			out := string(r.buf)
			r.buf = nil
			return out, err
		}
	}
	out := string(r.buf[:n])
	r.buf = r.buf[n:]
	return out, nil
}

func (r *rawConn) expect(want string) {
	r.t.Helper()
	got, err := r.readN(len(want), 5*time.Second)
	if got != want {
		r.t.Fatalf("got %q (err %v), want %q", got, err, want)
	}
}

func startTopologyOnly(t *testing.T) *redistest.Topology {
	return redistest.Start(t, redistest.Options{})
}

// startProxyManual starts a proxy and returns a stop function that performs
// a graceful shutdown and waits for Serve to return.
func startProxyManual(t *testing.T, cfg Config) (*Server, func()) {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	<-srv.Ready()
	var once bool
	stop := func() {
		if once {
			return
		}
		once = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(stop)
	return srv, stop
}

func redistestStart(tb redistest.TB) string {
	return redistest.Start(tb, redistest.Options{}).Master.Addr()
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// chanContext is a context cancelled when stop is closed.
func chanContext(stop <-chan struct{}) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stop; cancel() }()
	return ctx
}

func sprint(v any) string { return fmt.Sprint(v) }
