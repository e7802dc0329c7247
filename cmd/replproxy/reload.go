package main

import (
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/replproxy/replproxy/proxy"
)

// reloader re-reads what the proxy was started from (the same command
// line, the config file it names, the certificate files) and applies it,
// on SIGHUP and on PROXY RELOAD. Flags still override the file, so a
// reload changes what the file says and what the files hold. Safe for
// concurrent use; reloads are serialized.
type reloader struct {
	mu   sync.Mutex
	args []string
	read func(string) ([]byte, error)
	log  *slog.Logger
	srv  *proxy.Server // set once New returned, before Serve
	// opts are the options the process started with: the ones that never
	// reach proxy.Config (metrics, logging) cannot change without a restart.
	opts options
}

// reload returns the settings applied and those that need a restart, as
// flag names; err means nothing changed.
func (r *reloader) reload() (applied, notLive []string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cfg, opts, err := buildConfig(r.args, r.read)
	if err != nil {
		return nil, nil, err
	}
	cfg.Logger = r.log
	running := r.opts.upstreamTLS
	if running != nil {
		// The clients the proxy built keep the configuration they were
		// given; its callbacks read what adopt stores below.
		if cfg.UpstreamTLS != nil {
			cfg.UpstreamTLS = running.config()
		}
		if cfg.SentinelTLS != nil {
			cfg.SentinelTLS = running.config()
		}
	}
	applied, notLive, err = r.srv.Reload(cfg)
	if err != nil {
		return nil, nil, err
	}
	applied, notLive = flagNames(applied), flagNames(notLive)
	switch {
	case running != nil && opts.upstreamTLS != nil:
		if running.adopt(opts.upstreamTLS) {
			notLive = append(notLive, "upstream-tls-ca-cert-file")
		}
		applied = append(applied, "upstream-tls-cert-file")
	case (running == nil) != (opts.upstreamTLS == nil):
		notLive = append(notLive, "upstream-tls")
	}
	if running != nil && opts.upstreamTLS != nil && running.serverName != opts.upstreamTLS.serverName {
		notLive = append(notLive, "upstream-tls-server-name")
	}
	for _, o := range []struct {
		flag    string
		changed bool
	}{
		{"metrics-listen", opts.metricsListen != r.opts.metricsListen},
		{"pprof", opts.pprof != r.opts.pprof},
		{"log-format", opts.logFormat != r.opts.logFormat},
		{"log-level", opts.logLevel != r.opts.logLevel},
		{"cpu-policy", opts.cpuPolicy != r.opts.cpuPolicy},
	} {
		if o.changed {
			notLive = append(notLive, o.flag)
		}
	}
	return applied, notLive, nil
}

// configFlags names the flag behind each proxy.Config field that Reload
// may report. TestConfigFlagsCoverConfig keeps it complete.
var configFlags = map[string]string{
	"Listen": "listen", "ListenAddrs": "listen", "Master": "master", "Replicas": "replica",
	"DiscoverReplicas": "discover-replicas", "NoReplicationLink": "replication-link",
	"ReplicationBacklogBytes": "replication-backlog", "ReplicationBacklogMax": "replication-backlog-max",
	"UpstreamUser":     "upstream-user",
	"UpstreamPassword": "upstream-password", "RequirePass": "requirepass", "Users": "user",
	"AllowCommands": "allow-command", "Loops": "loops", "BackendConns": "backend-conns",
	"MaxClients": "maxclients", "MaxDedicatedConns": "max-dedicated-conns", "IdleTimeout": "timeout",
	"MaxPipeline": "max-pipeline", "QueryBufferLimit": "query-buffer-limit",
	"OutputBufferLimit": "output-buffer-limit", "MaxBulkBytes": "proto-max-bulk-len",
	"PollInterval": "poll-interval", "HealthTimeout": "health-timeout", "ReadTimeout": "read-timeout",
	"ReadBalance": "read-balance", "ConnectTimeout": "connect-timeout",
	"ShutdownTimeout": "shutdown-timeout", "Consistency": "consistency", "MaxLag": "max-lag",
	"CausalWait": "causal-wait", "MinReplicasToWrite": "min-replicas-to-write",
	"MinReplicasMaxLag": "min-replicas-max-lag", "WriteGate": "write-gate",
	"WriteGateTimeout": "write-gate-timeout", "SyncReplicas": "sync-replicas",
	"SyncTimeout": "sync-timeout", "SyncTimeoutAction": "sync-timeout-action",
	"Sentinels": "sentinel", "SentinelMaster": "sentinel-master",
	"SentinelUser": "sentinel-user", "SentinelPassword": "sentinel-password",
	"FailoverHold": "failover-hold", "Witness": "witness", "WitnessTimeout": "witness-timeout",
	"EmptyMasterGuard": "empty-master-guard", "GuardParkAddr": "guard-park-addr",
	"UnixSocketPerm": "unixsocketperm", "ProtectedMode": "protected-mode", "TLSListen": "tls-listen",
	"TLS": "tls-cert-file", "AuthTimeout": "auth-timeout",
	"ClientOutputBufferLimits": "client-output-buffer-limit",
}

// notReported are proxy.Config fields with no flag: cmd never sets them,
// so a reload never changes them.
var notReported = map[string]bool{
	"Logger": true, "Reloader": true, "UpstreamTLS": true, "SentinelTLS": true,
	"Databases": true, "ReconnectBackoffMax": true,
}

func flagNames(fields []string) []string {
	out := make([]string, 0, len(fields))
	for _, f := range fields {
		if n, ok := configFlags[f]; ok {
			f = n
		}
		out = append(out, f)
	}
	return out
}

// reloadOnSIGHUP reloads on every SIGHUP until stop is called. Redis
// ignores SIGHUP; a proxy that reloads on it is what operators expect of a
// daemon (nginx, HAProxy), and the results are logged either way.
func reloadOnSIGHUP(r *reloader, log *slog.Logger) (stop func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
			}
			applied, notLive, err := r.reload()
			if err != nil {
				log.Warn("SIGHUP: reload refused, nothing changed", "err", err)
				continue
			}
			log.Info("SIGHUP: configuration reloaded", "applied", applied, "needs_restart", notLive)
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}
