// Command replproxy is a replication-aware Redis proxy: clients talk to it
// as to one Redis; it sends writes to the master and reads to replicas that
// satisfy the configured consistency. See README.md for flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/replproxy/replproxy/metrics"
	"github.com/replproxy/replproxy/proxy"
)

// version is set at build time: -ldflags "-X main.version=$(git describe)".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run returns the process exit code: 0 after a clean shutdown, 2 for a usage
// or configuration error, 1 when the proxy fails.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, opts, err := buildConfig(args, os.ReadFile)
	if err != nil {
		fmt.Fprintf(stderr, "replproxy: %v\nRun 'replproxy --help' for usage.\n", err)
		return 2
	}
	if opts.showHelp {
		printUsage(stdout)
		return 0
	}
	if opts.showVersion {
		fmt.Fprintf(stdout, "replproxy %s\n", version)
		return 0
	}

	hopts := &slog.HandlerOptions{Level: opts.logLevel}
	var handler slog.Handler = slog.NewTextHandler(stderr, hopts)
	if opts.logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, hopts)
	}
	logger := slog.New(handler)
	slog.SetDefault(logger)
	cfg.Logger = logger

	proxy.Version = version
	logger.Info("starting replproxy", "version", version, "master", cfg.Master,
		"replicas", cfg.Replicas, "consistency", cfg.Consistency)

	rl := &reloader{args: args, read: os.ReadFile, log: logger, opts: opts}
	cfg.Reloader = rl.reload
	srv, err := proxy.New(cfg)
	if err != nil {
		// The proxy's own checks, including features whose flags are
		// accepted before the feature lands: still the user's to fix.
		if errors.Is(err, proxy.ErrProxyBadConfig) || errors.Is(err, proxy.ErrProxyNoMaster) ||
			errors.Is(err, proxy.ErrProxyNotSupported) {
			fmt.Fprintf(stderr, "replproxy: %v\n", err)
			return 2
		}
		logger.Error("cannot start", "err", err)
		return 1
	}

	// GOMAXPROCS from the environment wins; otherwise a P per loop and a
	// spare (proxy.Procs says why).
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(proxy.Procs(srv.Loops()))
	}
	if err := setCPUPolicy(opts.cpuPolicy); err != nil {
		logger.Error("cannot start", "err", err)
		return 1
	}
	logger.Info("event loops", "loops", srv.Loops(), "gomaxprocs", runtime.GOMAXPROCS(0), "cpu_policy", opts.cpuPolicy)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Once the first signal has started a graceful shutdown, restore the
	// default handling so that a second Ctrl-C kills a shutdown that hangs.
	go func() {
		<-ctx.Done()
		stop()
	}()

	// The metrics server outlives Serve by a little: it stops after the
	// proxy has drained, and /readyz fails from the moment the drain starts.
	metricsCtx, stopMetrics := context.WithCancel(context.Background())
	defer stopMetrics()
	metricsDone := make(chan error, 1)
	if opts.metricsListen != "" {
		ready := func() error {
			if ctx.Err() != nil {
				return errors.New("shutting down")
			}
			return srv.Readiness()
		}
		addr, wait, err := metrics.Listen(metricsCtx, metrics.ServerConfig{
			Addr: opts.metricsListen, Registry: metrics.NewRegistry(srv.Stats),
			Ready: ready, Pprof: opts.pprof, Logger: logger,
		})
		if err != nil {
			logger.Error("cannot start the metrics server", "addr", opts.metricsListen, "err", err)
			return 1
		}
		logger.Info("metrics listening", "addr", addr, "pprof", opts.pprof)
		go func() { metricsDone <- wait() }()
	} else {
		metricsDone <- nil
	}

	rl.srv = srv
	stopReload := reloadOnSIGHUP(rl, logger)
	defer stopReload()

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx) }()

	select {
	case <-srv.Ready():
		logger.Info("ready", "addr", srv.Addr(), "version", version)
	case err := <-served:
		return exitServe(logger, err)
	}
	err = <-served
	stopMetrics()
	if merr := <-metricsDone; merr != nil {
		logger.Warn("metrics server", "err", merr)
	}
	return exitServe(logger, err)
}

func exitServe(logger *slog.Logger, err error) int {
	if err != nil {
		logger.Error("proxy stopped", "err", err)
		return 1
	}
	logger.Info("shut down cleanly")
	return 0
}
