package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/replproxy/replproxy/internal/redistest"
)

// harness is benchrun's redistest.TB: what a *testing.T gives the harness,
// for a program that is not a test. Cleanups run in reverse order at exit,
// whether the run ends normally, by Fatalf or by SIGINT/SIGTERM.
// Safe for concurrent use.
type harness struct {
	mu       sync.Mutex
	cleanups []func()
	tmpRoot  string
	tmpSeq   int

	// cleaningMu is held for a whole runCleanups, so a signal arriving while
	// main is already cleaning up waits for it instead of racing it.
	cleaningMu  sync.Mutex
	cleaning    atomic.Bool
	interrupted atomic.Bool
}

var _ redistest.TB = (*harness)(nil)

func newHarness() *harness {
	h := &harness{}
	root, err := os.MkdirTemp("", "benchrun-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchrun: %v\n", err)
		os.Exit(1)
	}
	h.tmpRoot = root
	// First registered, so last run: every process using a dir is gone.
	h.Cleanup(func() { os.RemoveAll(root) })

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		h.interrupted.Store(true)
		fmt.Fprintf(os.Stderr, "\nbenchrun: %v: stopping the servers and exiting\n", sig)
		h.exit(130)
	}()
	return h
}

func (h *harness) Helper() {}

func (h *harness) Cleanup(f func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.cleanups = append(h.cleanups, f)
}

func (h *harness) Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "  "+format+"\n", args...)
}

// Fatalf never returns, as testing's does not: redistest relies on that.
func (h *harness) Fatalf(format string, args ...any) {
	// After Ctrl-C, runs and servers fail because they are being stopped;
	// saying so would only bury the reason.
	if !h.interrupted.Load() {
		fmt.Fprintf(os.Stderr, "benchrun: FATAL: "+format+"\n", args...)
	}
	if h.cleaning.Load() {
		// Either a cleanup failed (it runs on its own goroutine, see
		// runCleanups, so the rest still run) or another goroutine failed
		// because the servers are going away. Whoever is cleaning up exits.
		runtime.Goexit()
	}
	h.exit(1)
}

func (h *harness) TempDir() string {
	h.mu.Lock()
	h.tmpSeq++
	dir := filepath.Join(h.tmpRoot, strconv.Itoa(h.tmpSeq))
	h.mu.Unlock()
	if err := os.Mkdir(dir, 0o755); err != nil {
		h.Fatalf("TempDir: %v", err)
	}
	return dir
}

// runCleanups runs the registered cleanups newest first, each at most once.
func (h *harness) runCleanups() {
	h.cleaningMu.Lock()
	defer h.cleaningMu.Unlock()
	h.cleaning.Store(true)
	defer h.cleaning.Store(false)
	for {
		h.mu.Lock()
		n := len(h.cleanups)
		if n == 0 {
			h.mu.Unlock()
			return
		}
		f := h.cleanups[n-1]
		h.cleanups = h.cleanups[:n-1]
		h.mu.Unlock()
		// Its own goroutine, so that a Fatalf inside it can Goexit without
		// ending runCleanups.
		done := make(chan struct{})
		go func() {
			defer close(done)
			f()
		}()
		<-done
	}
}

func (h *harness) exit(code int) {
	h.runCleanups()
	os.Exit(code)
}
