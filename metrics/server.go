package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultAddr is the listen address used when ServerConfig.Addr is empty:
// loopback only, since /metrics and pprof tell a lot about the deployment.
const DefaultAddr = "127.0.0.1:9121"

// Bounds of the HTTP server. Scrapes are small and local; nothing here needs
// more, and an endpoint that faces a network must not hold resources for a
// slow or idle peer.
const (
	shutdownTimeout   = 5 * time.Second
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	// writeTimeout bounds a /metrics response. It is off when pprof is on:
	// /debug/pprof/profile and /trace stream for the duration the caller asks
	// (30 s by default) and refuse to start when it exceeds WriteTimeout.
	writeTimeout = 30 * time.Second
	// scrapeTimeout is below writeTimeout so that a stuck scrape still gets
	// its 503 out before the connection is cut.
	scrapeTimeout      = 20 * time.Second
	idleTimeout        = 60 * time.Second
	maxHeaderBytes     = 16 << 10
	maxScrapesInFlight = 4 // beyond this /metrics answers 503 instead of queueing
)

// ServerConfig configures [Serve] and [Listen]. The zero value serves the Go
// and process metrics on DefaultAddr, always ready, pprof off, no logging.
type ServerConfig struct {
	// Addr is the listen address; "" means DefaultAddr. Port 0 picks a free
	// port ([Listen] returns it).
	Addr string
	// Registry is served on /metrics; nil means a registry with only the Go
	// and process collectors (nothing feeds replproxy_* then).
	Registry *prometheus.Registry
	// Ready backs /readyz: nil error → 200 "ok", otherwise 503 with the
	// error text. It runs on the request goroutine for every probe, so it
	// should only read state (atomics), not do I/O. nil means always ready.
	Ready func() error
	// Pprof mounts net/http/pprof under /debug/pprof/ on this server's own
	// mux (never http.DefaultServeMux). Off by default: profiles expose
	// memory contents and cost CPU.
	Pprof bool
	// Logger receives server and scrape errors; nil discards them.
	Logger *slog.Logger
}

// Serve listens on cfg.Addr and serves /metrics, /healthz, /readyz and, when
// enabled, /debug/pprof/ until ctx is cancelled; it then shuts the server
// down gracefully, giving in-flight requests 5 s before closing them. It
// returns an error wrapping [ErrMetricsListen] if it cannot bind, the
// server's error if it stops on its own, and nil after a clean shutdown.
func Serve(ctx context.Context, cfg ServerConfig) error {
	_, wait, err := Listen(ctx, cfg)
	if err != nil {
		return err
	}
	return wait()
}

// Listen is [Serve] split in two: it returns once the listener is bound,
// with the bound address (useful with port 0) and a wait function that
// blocks until the server has stopped after ctx is cancelled and returns
// what Serve would. wait is safe to call more than once and from several
// goroutines.
func Listen(ctx context.Context, cfg ServerConfig) (addr string, wait func() error, err error) {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.Addr)
	if err != nil {
		return "", nil, fmt.Errorf("%w on %s: %w", ErrMetricsListen, cfg.Addr, err)
	}

	srv := &http.Server{
		Handler:           newMux(cfg, log),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.Pprof {
		srv.WriteTimeout = 0
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	done := make(chan struct{})
	var result error
	go func() {
		defer close(done)
		select {
		case err := <-served:
			// Stopped on its own (accept failed): nothing to shut down.
			result = err
			return
		case <-ctx.Done():
		}
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("metrics server: graceful shutdown timed out, closing connections", "err", err)
			_ = srv.Close()
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			result = err
		}
	}()

	wait = func() error {
		<-done
		return result
	}
	return ln.Addr().String(), wait, nil
}

func newMux(cfg ServerConfig, log *slog.Logger) *http.ServeMux {
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(runtimeCollectors()...)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog: slogPrintln{log},
		// One bad series (say a malformed histogram from a proxy bug) must
		// not blank the whole scrape: serve the rest and log the error.
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: maxScrapesInFlight,
		Timeout:             scrapeTimeout,
	}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	ready := cfg.Ready
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil {
			if err := ready(); err != nil {
				writeText(w, http.StatusServiceUnavailable, err.Error())
				return
			}
		}
		writeText(w, http.StatusOK, "ok")
	})
	if cfg.Pprof {
		// Index serves the named profiles (heap, goroutine, allocs...) under
		// the prefix; the other four are handlers of their own.
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, _ *http.Request) {
		body := "replproxy\n/metrics\n/healthz\n/readyz\n"
		if cfg.Pprof {
			body += "/debug/pprof/\n"
		}
		writeText(w, http.StatusOK, body)
	})
	return mux
}

func writeText(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// slogPrintln adapts slog to promhttp's Logger.
type slogPrintln struct{ log *slog.Logger }

func (l slogPrintln) Println(v ...any) {
	l.log.Warn("metrics scrape", "err", fmt.Sprint(v...))
}
