package topology

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/replproxy/replproxy/router"
)

// Config is what a Monitor is built from. Zero fields mean the default
// written next to them. New copies it; changing it later has no effect.
type Config struct {
	// Master is the master's address. Required without Sentinels; with
	// them it is only a first guess (Sentinel's answer wins), and may be
	// empty.
	Master string
	// Replicas are replicas named by the operator: polled always, never
	// forgotten.
	Replicas []string
	// DiscoverReplicas adds the replicas the master lists (INFO
	// replication), the replicas those list in turn, to any depth
	// (cascading replicas), and, with Sentinels, those Sentinel lists.
	DiscoverReplicas bool

	// Sentinels and SentinelMaster make the monitor follow the master the
	// Sentinels name (see sentinel.go). Empty Sentinels: a fixed master,
	// followed only when it says it became a replica of another node.
	Sentinels      []string
	SentinelMaster string
	// SentinelUser and SentinelPassword authenticate to Sentinels, apart
	// from the data nodes' credentials.
	SentinelUser, SentinelPassword string
	SentinelTLS                    *tls.Config

	// User, Password and TLS are what the monitor sends to every data node.
	User, Password string
	TLS            *tls.Config

	// PollInterval is how often every node (and every Sentinel) is asked.
	// 0 means 100ms.
	PollInterval time.Duration
	// Timeout bounds one poll. 0 means 1s.
	Timeout time.Duration
	// HoldMax bounds how long a write may be held while a failover is in
	// progress (Snapshot.HoldWrites). 0 means 2s: below the 3s read timeout
	// most client libraries use, so a held write is answered, not timed out.
	HoldMax time.Duration

	// Guard turns the empty-master guard on (guard.go). ParkAddr is where
	// it points replicas to keep them from syncing (host:port where nothing
	// listens); "" means 127.0.0.1:1.
	Guard    bool
	ParkAddr string
	// NoMasterWatch leaves the guard's EOF watch out, so it learns of a
	// restart from polls alone: for tests of what must hold while the
	// watch has not yet seen the EOF (on a loaded machine it can be late).
	NoMasterWatch bool

	// Logger receives topology events. Nil means slog.Default().
	Logger *slog.Logger

	// Publish receives every snapshot, in order, on the monitor's
	// goroutines (one at a time). Required.
	Publish func(*router.Snapshot)
	// LagMs tells how stale a replica that applied offset is, in ms
	// (the replication link's time index); nil or -1 means unknown.
	LagMs func(offset int64) int64
	// OwnLink reports whether a replica address the master lists is the
	// proxy's own replication link (never polled, never used). Nil: port 0.
	OwnLink func(addr string) bool
	// NewMasterProcess is called (on its own goroutine) when the master's
	// run_id is first seen or changes, and after every switch: the proxy
	// reloads its command table from that server.
	NewMasterProcess func(addr string)
	// BeforeSwitch is called with the monitor's lock held just before a
	// switch is published (the proxy takes the stream suffix the new master
	// lacks while its link still holds it, and holds requests until it is
	// replayed). It must not block.
	BeforeSwitch func(router.Switch)
	// Switched is called after a switch was published, with the monitor's
	// lock held (so hooks see switches in order); it must not block.
	Switched func(router.Switch, uint64)
}

func (c Config) withDefaults() (Config, error) {
	if c.Publish == nil {
		return c, fmt.Errorf("%w: Publish is nil", ErrConfig)
	}
	if c.Master == "" && len(c.Sentinels) == 0 {
		return c, fmt.Errorf("%w: no master and no Sentinel", ErrConfig)
	}
	if len(c.Sentinels) > 0 && c.SentinelMaster == "" {
		return c, fmt.Errorf("%w: Sentinels without SentinelMaster", ErrConfig)
	}
	for _, a := range append(append([]string{c.Master}, c.Replicas...), c.Sentinels...) {
		if a == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return c, fmt.Errorf("%w: address %q: %v", ErrConfig, a, err)
		}
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 100 * time.Millisecond
	}
	if c.Timeout <= 0 {
		c.Timeout = time.Second
	}
	if c.HoldMax <= 0 {
		c.HoldMax = 2 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ParkAddr == "" {
		c.ParkAddr = "127.0.0.1:1"
	}
	if _, _, err := net.SplitHostPort(c.ParkAddr); err != nil {
		return c, fmt.Errorf("%w: park address %q: %v", ErrConfig, c.ParkAddr, err)
	}
	if c.LagMs == nil {
		c.LagMs = func(int64) int64 { return -1 }
	}
	if c.OwnLink == nil {
		c.OwnLink = func(addr string) bool {
			_, port, err := net.SplitHostPort(addr)
			return err == nil && port == "0"
		}
	}
	return c, nil
}
