// Package proxytest runs a replproxy Server in-process for tests of other
// packages (difftest, clientlibs): proxy's own tests keep their helper,
// since package proxy cannot import this one.
package proxytest

import (
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/replproxy/replproxy/proxy"
)

// Start serves cfg until the test ends. An empty Listen means a free
// loopback port; a nil Logger discards the log unless REPLPROXY_TEST_LOG is
// set. It returns once the server is ready.
func Start(t testing.TB, cfg proxy.Config) *proxy.Server {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		var w io.Writer = io.Discard
		if os.Getenv("REPLPROXY_TEST_LOG") != "" {
			w = os.Stderr
		}
		cfg.Logger = slog.New(slog.NewTextHandler(w, nil))
	}
	srv, err := proxy.New(cfg)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
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
	t.Cleanup(func() { cancel(); <-done })
	return srv
}
