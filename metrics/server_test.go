package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// startServer runs Listen on a free loopback port and stops it at cleanup,
// checking that it shut down cleanly.
func startServer(t *testing.T, cfg ServerConfig) (base string, cancel context.CancelFunc, wait func() error) {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	addr, wait, err := Listen(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("Listen: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := wait(); err != nil {
			t.Errorf("server stopped with %v", err)
		}
	})
	return "http://" + addr, cancel, wait
}

var httpClient = &http.Client{Timeout: 10 * time.Second}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// typeLines returns name → type from the "# TYPE" lines of a text exposition.
func typeLines(body string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(body, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[0] == "#" && f[1] == "TYPE" {
			out[f[2]] = f[3]
		}
	}
	return out
}

func TestServerEndpoints(t *testing.T) {
	var mu sync.Mutex
	var readyErr error
	base, _, _ := startServer(t, ServerConfig{
		Registry: NewRegistry(fullStats),
		Ready: func() error {
			mu.Lock()
			defer mu.Unlock()
			return readyErr
		},
	})

	t.Run("metrics", func(t *testing.T) {
		code, body, h := get(t, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("status %d: %s", code, body)
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("Content-Type %q, want text exposition", ct)
		}
		types := typeLines(body)
		want := map[string]string{
			"replproxy_commands_total":           "counter",
			"replproxy_command_duration_seconds": "histogram",
			"replproxy_replica_lag_seconds":      "gauge",
			"go_goroutines":                      "gauge",
			"process_start_time_seconds":         "gauge",
		}
		for name, typ := range want {
			if types[name] != typ {
				t.Errorf("# TYPE %s = %q, want %q", name, types[name], typ)
			}
		}
		for _, prefix := range []string{"replproxy_", "go_", "process_"} {
			found := false
			for name := range types {
				found = found || strings.HasPrefix(name, prefix)
			}
			if !found {
				t.Errorf("no %s* family in /metrics", prefix)
			}
		}
		if !strings.Contains(body, `replproxy_commands_total{class="read",target="replica"} 15`) {
			t.Errorf("commands_total sample missing from:\n%s", body)
		}
		if !strings.Contains(body, `replproxy_command_duration_seconds_bucket{target="replica",le="+Inf"} 5`) {
			t.Errorf("+Inf bucket missing")
		}
	})

	t.Run("healthz", func(t *testing.T) {
		if code, body, _ := get(t, base+"/healthz"); code != http.StatusOK || body != "ok" {
			t.Errorf("/healthz = %d %q, want 200 ok", code, body)
		}
	})

	t.Run("readyz", func(t *testing.T) {
		if code, body, _ := get(t, base+"/readyz"); code != http.StatusOK || body != "ok" {
			t.Errorf("/readyz ready = %d %q, want 200 ok", code, body)
		}
		mu.Lock()
		readyErr = errors.New("no route to master 10.0.0.1:6379")
		mu.Unlock()
		code, body, _ := get(t, base+"/readyz")
		if code != http.StatusServiceUnavailable || body != "no route to master 10.0.0.1:6379" {
			t.Errorf("/readyz not ready = %d %q, want 503 with the error", code, body)
		}
		// Liveness does not follow readiness.
		if code, _, _ := get(t, base+"/healthz"); code != http.StatusOK {
			t.Errorf("/healthz = %d while not ready, want 200", code)
		}
	})

	t.Run("pprof off", func(t *testing.T) {
		for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
			if code, _, _ := get(t, base+p); code != http.StatusNotFound {
				t.Errorf("%s = %d with pprof off, want 404", p, code)
			}
		}
	})

	t.Run("unknown path", func(t *testing.T) {
		if code, _, _ := get(t, base+"/nope"); code != http.StatusNotFound {
			t.Errorf("/nope = %d, want 404", code)
		}
		if code, body, _ := get(t, base+"/"); code != http.StatusOK || !strings.Contains(body, "/metrics") {
			t.Errorf("/ = %d %q, want an index", code, body)
		}
	})
}

func TestServerPprof(t *testing.T) {
	base, _, _ := startServer(t, ServerConfig{Pprof: true})
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap?debug=1", "/debug/pprof/goroutine?debug=1"} {
		if code, body, _ := get(t, base+p); code != http.StatusOK {
			t.Errorf("%s = %d %q, want 200", p, code, body)
		}
	}
}

// The zero config (but for the port) serves the runtime metrics only.
func TestServerNilRegistry(t *testing.T) {
	base, _, _ := startServer(t, ServerConfig{})
	code, body, _ := get(t, base+"/metrics")
	types := typeLines(body)
	if code != http.StatusOK || types["go_goroutines"] == "" {
		t.Fatalf("/metrics = %d, families %v", code, types)
	}
	for name := range types {
		if strings.HasPrefix(name, "replproxy_") {
			t.Errorf("nil Registry exposes %s", name)
		}
	}
	if code, _, _ := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("nil Ready: /readyz = %d, want 200", code)
	}
}

// lockedBuffer is an io.Writer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A bad series is logged and left out; the scrape still answers.
func TestServerBadSeries(t *testing.T) {
	var logs lockedBuffer
	base, _, _ := startServer(t, ServerConfig{
		Registry: NewRegistry(func(s *Stats) {
			s.ClientsConnected = 3
			s.Latency = []LatencyHist{{Target: "master", Buckets: []float64{2, 1}, Counts: []uint64{0, 0}}}
		}),
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	code, body, _ := get(t, base+"/metrics")
	if code != http.StatusOK || !strings.Contains(body, "replproxy_clients_connected 3") {
		t.Fatalf("/metrics = %d, want 200 with the good series:\n%s", code, body)
	}
	if strings.Contains(body, "replproxy_command_duration_seconds_bucket") {
		t.Errorf("invalid histogram exposed")
	}
	if !strings.Contains(logs.String(), "not strictly ascending") {
		t.Errorf("scrape error not logged; log:\n%s", logs.String())
	}
}

func TestServeStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, ServerConfig{Addr: "127.0.0.1:0"}) }()
	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Serve after cancel = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after ctx was cancelled")
	}
}

// Shutdown is graceful: a request in flight when ctx is cancelled completes,
// and new connections are refused afterwards.
func TestListenGracefulShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, wait, err := Listen(ctx, ServerConfig{
		Addr: "127.0.0.1:0",
		Ready: func() error {
			close(entered)
			<-release
			return nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		code int
		err  error
	}
	resc := make(chan result, 1)
	go func() {
		resp, err := httpClient.Get("http://" + addr + "/readyz")
		if err != nil {
			resc <- result{err: err}
			return
		}
		resp.Body.Close()
		resc <- result{code: resp.StatusCode}
	}()
	<-entered
	cancel()

	waited := make(chan error, 1)
	go func() { waited <- wait() }()
	select {
	case err := <-waited:
		t.Fatalf("wait returned %v with a request in flight", err)
	case <-time.After(50 * time.Millisecond):
		// Not a timing assertion: only a chance to catch a non-graceful stop.
	}
	close(release)
	if r := <-resc; r.err != nil || r.code != http.StatusOK {
		t.Errorf("in-flight request = %d, %v; want 200", r.code, r.err)
	}
	if err := <-waited; err != nil {
		t.Errorf("wait = %v, want nil", err)
	}
	if err := wait(); err != nil {
		t.Errorf("second wait = %v, want nil", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("still accepting on %s after shutdown", addr)
	}
}

func TestListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ctx := context.Background()
	_, _, err = Listen(ctx, ServerConfig{Addr: ln.Addr().String()})
	if !errors.Is(err, ErrMetricsListen) || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Errorf("Listen on a taken port = %v, want ErrMetricsListen naming the address", err)
	}
	if err := Serve(ctx, ServerConfig{Addr: ln.Addr().String()}); !errors.Is(err, ErrMetricsListen) {
		t.Errorf("Serve on a taken port = %v, want ErrMetricsListen", err)
	}
}
