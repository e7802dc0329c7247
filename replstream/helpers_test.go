package replstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/resp"
)

// testTimeout bounds every wait of a test; polls use it as their deadline.
const testTimeout = 30 * time.Second

// pollInterval is short: every wait is deadline-bound, so a short sleep costs
// nothing and keeps the tests fast.
const pollInterval = 5 * time.Millisecond

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*testTimeout)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond until it returns nil, failing t after timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still %v after %v", what, err, timeout)
		}
		time.Sleep(pollInterval)
	}
}

// logWriter sends the link's log lines to the test log.
type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// startLink runs a Link to addr until the test ends (or stop is called) and
// checks that Run returns nil when cancelled.
func startLink(t testing.TB, addr string, mod func(*Config)) (l *Link, stop func()) {
	t.Helper()
	w := &logWriter{t: t}
	cfg := Config{
		Master: addr,
		Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&cfg)
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v after cancel, want nil", err)
				}
			case <-time.After(testTimeout):
				t.Errorf("Run did not return after cancel")
			}
			w.mu.Lock()
			w.done = true
			w.mu.Unlock()
		})
	}
	t.Cleanup(stop)
	return l, stop
}

func waitConnected(t testing.TB, l *Link) {
	t.Helper()
	waitFor(t, testTimeout, "link streaming", func() error {
		if !l.Connected() {
			return fmt.Errorf("state %s, last error %q", l.Stats().State, l.Stats().LastError)
		}
		return nil
	})
}

func infoInt(t testing.TB, n *redistest.Node, section, field string) int64 {
	t.Helper()
	v, err := strconv.ParseInt(n.Info(t, section)[field], 10, 64)
	if err != nil {
		t.Fatalf("%s: INFO %s %s: %v", n, section, field, err)
	}
	return v
}

func masterOffset(t testing.TB, n *redistest.Node) int64 {
	t.Helper()
	return infoInt(t, n, "replication", "master_repl_offset")
}

// waitOffsetEqual waits for a moment when the link has processed exactly
// the node's master_repl_offset, and returns it. The link is read first: it
// can never be ahead of what the node reports afterwards.
func waitOffsetEqual(t testing.TB, l *Link, n *redistest.Node) int64 {
	t.Helper()
	var got int64
	waitFor(t, testTimeout, "link offset == master_repl_offset", func() error {
		lo := l.Offset()
		m := masterOffset(t, n)
		if lo > m {
			t.Fatalf("link offset %d ahead of %s's master_repl_offset %d", lo, n, m)
		}
		if lo != m {
			return fmt.Errorf("link %d, master %d", lo, m)
		}
		got = m
		return nil
	})
	return got
}

// drain empties the Changes channel.
func drain(l *Link) {
	select {
	case <-l.Changes():
	default:
	}
}

func waitChange(t testing.TB, l *Link) {
	t.Helper()
	select {
	case <-l.Changes():
	case <-time.After(testTimeout):
		t.Fatal("no Changes() signal")
	}
}

// parseStream splits stream bytes into commands.
func parseStream(t testing.TB, b []byte) [][]string {
	t.Helper()
	p := resp.NewRequestParser(resp.DefaultLimits())
	var out [][]string
	for len(b) > 0 {
		cmd, n, err := p.Parse(b)
		if err != nil || n == 0 {
			t.Fatalf("stream bytes do not parse as whole commands: n=%d err=%v at %q", n, err, b[:min(len(b), 60)])
		}
		args := make([]string, len(cmd.Args))
		for i, a := range cmd.Args {
			args[i] = string(a)
		}
		out = append(out, args)
		b = b[n:]
	}
	return out
}

// pairs turns a RESP2 flat array or a RESP3 map into a string map.
func pairs(v any) map[string]string {
	m := map[string]string{}
	switch v := v.(type) {
	case []any:
		for i := 0; i+1 < len(v); i += 2 {
			m[fmt.Sprint(v[i])] = fmt.Sprint(v[i+1])
		}
	case map[any]any:
		for k, x := range v {
			m[fmt.Sprint(k)] = fmt.Sprint(x)
		}
	}
	return m
}

// sentinelReplicas returns SENTINEL REPLICAS mymaster as maps.
func sentinelReplicas(ctx context.Context, s *redistest.Node) ([]map[string]string, error) {
	v, err := s.Client().Do(ctx, "SENTINEL", "REPLICAS", redistest.SentinelMasterName).Result()
	if err != nil {
		return nil, err
	}
	list, _ := v.([]any)
	out := make([]map[string]string, 0, len(list))
	for _, r := range list {
		out = append(out, pairs(r))
	}
	return out, nil
}

func sentinelMaster(ctx context.Context, s *redistest.Node) (map[string]string, error) {
	v, err := s.Client().Do(ctx, "SENTINEL", "MASTER", redistest.SentinelMasterName).Result()
	if err != nil {
		return nil, err
	}
	return pairs(v), nil
}

func sentinelMasterAddr(ctx context.Context, s *redistest.Node) (string, error) {
	v, err := s.Client().Do(ctx, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", redistest.SentinelMasterName).StringSlice()
	if err != nil {
		return "", err
	}
	if len(v) != 2 {
		return "", fmt.Errorf("GET-MASTER-ADDR-BY-NAME = %q", v)
	}
	return v[0] + ":" + v[1], nil
}

func logContains(t testing.TB, n *redistest.Node, needle string) bool {
	t.Helper()
	b, err := os.ReadFile(n.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	return strings.Contains(string(b), needle)
}

func isRedisError(err error, prefix string) bool {
	var re redis.Error
	return errors.As(err, &re) && strings.HasPrefix(re.Error(), prefix)
}

// waitReadTimeout waits until the link reports its read timeout.
func waitReadTimeout(t testing.TB, link *Link) {
	t.Helper()
	waitFor(t, testTimeout, "read timeout", func() error {
		if e := link.Stats().LastError; !strings.Contains(e, ErrReadTimeout.Error()) {
			return fmt.Errorf("last error %q", e)
		}
		return nil
	})
}
