package replstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// Defaults, Redis's own where Redis has one.
const (
	defaultBacklogBytes        = 1 << 20 // repl-backlog-size
	defaultTimeIndexSize       = 65536
	defaultAckInterval         = time.Second // a replica's replicationCron acks once a second
	defaultDialTimeout         = 2 * time.Second
	defaultReadTimeout         = 60 * time.Second // repl-timeout
	defaultReconnectBackoffMax = time.Second
	// minReconnectBackoff is the first wait after a failed session; it
	// doubles up to ReconnectBackoffMax.
	minReconnectBackoff = 50 * time.Millisecond
)

// Config says which master to follow and how much history to keep. Every
// zero field means the default written next to it, so a Config with only
// Master set is a working link. New copies the Config; changing it later has
// no effect.
type Config struct {
	// Master is the address of the Redis master, host:port. Empty means
	// "not known yet": the link waits for Link.SetMaster.
	Master string

	// User and Password authenticate the link: AUTH [User] Password is sent
	// when Password is set (User alone is ignored). The user needs at least
	// +ping +replconf +psync (+info to learn the master's run_id; without it
	// the link works but cannot tell a restart by the run_id alone).
	User, Password string

	// BacklogBytes is how many of the most recent stream bytes Backlog can
	// return. 0 means 1 MiB (Redis's repl-backlog-size default). The link
	// keeps at least this many and at most one segment (1/4 of it, capped at
	// 64 KiB) more.
	BacklogBytes int

	// TimeIndexSize is how many arrival-time samples are kept, one per read
	// from the master's socket that brought stream bytes. 0 means 65536
	// (about 1 MiB of memory). It bounds how far back TimeAt and LagMs can
	// answer: under a steady write load, TimeIndexSize reads' worth.
	TimeIndexSize int

	// AckInterval is the period of REPLCONF ACK. 0 means 1 s, as a Redis
	// replica. It must stay well below the master's repl-timeout, or the
	// master drops the link.
	AckInterval time.Duration

	// TLS, when not nil, makes the link a TLS client of the master (Redis's
	// tls-replication): the handshake is bounded by DialTimeout, and an
	// empty ServerName defaults to Master's host. Nil means plain TCP.
	TLS *tls.Config

	// DialTimeout bounds the TCP connect (and the TLS handshake). 0 means 2 s.
	DialTimeout time.Duration

	// Dial, when not nil, opens the connection to addr in place of a TCP
	// dial (a tunnel, a socket of the caller's; tests pause the stream
	// with it). ctx carries DialTimeout; TLS, when set, runs over it.
	Dial func(ctx context.Context, addr string) (net.Conn, error)

	// ReadTimeout: when no byte at all arrives for this long (the master
	// PINGs the stream every repl-ping-replica-period, 10 s, and sends a
	// newline every second while preparing an RDB), the link is considered
	// dead and is re-established. It also bounds every handshake reply.
	// 0 means 60 s, Redis's repl-timeout.
	ReadTimeout time.Duration

	// ReconnectBackoffMax caps the wait between two connection attempts
	// (it starts at 50 ms and doubles). 0 means 1 s, about what a Redis
	// replica does (it retries from replicationCron, once a second).
	ReconnectBackoffMax time.Duration

	// OnAdvance, when not nil, is called on the goroutine that reads the
	// stream (the link's, or the Host's while it hosts the connection)
	// after every read that moved the offset, with the new offset. It must
	// not block (the proxy uses it to release write replies waiting for
	// the link to hold their bytes: the write witness).
	OnAdvance func(offset int64)

	// Host, when not nil, is offered each plain TCP connection once it
	// streams, to read it on the caller's event loop instead of the
	// link's goroutine (host.go says why and what it promises).
	Host Host

	// Logger receives connection, sync and history events. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// withDefaults validates c and fills in the defaults.
func (c Config) withDefaults() (Config, error) {
	if _, port, err := net.SplitHostPort(c.Master); c.Master != "" && (err != nil || port == "") {
		return c, fmt.Errorf("%w: Master %q is not host:port", ErrConfig, c.Master)
	}
	for _, f := range []struct {
		name string
		neg  bool
	}{
		{"BacklogBytes", c.BacklogBytes < 0},
		{"TimeIndexSize", c.TimeIndexSize < 0},
		{"AckInterval", c.AckInterval < 0},
		{"DialTimeout", c.DialTimeout < 0},
		{"ReadTimeout", c.ReadTimeout < 0},
		{"ReconnectBackoffMax", c.ReconnectBackoffMax < 0},
	} {
		if f.neg {
			return c, fmt.Errorf("%w: %s is negative", ErrConfig, f.name)
		}
	}
	if c.BacklogBytes == 0 {
		c.BacklogBytes = defaultBacklogBytes
	}
	if c.TimeIndexSize == 0 {
		c.TimeIndexSize = defaultTimeIndexSize
	}
	if c.TimeIndexSize < 2 {
		// One sample is the lower bound of the window, so fewer than two
		// could never answer anything.
		c.TimeIndexSize = 2
	}
	if c.AckInterval == 0 {
		c.AckInterval = defaultAckInterval
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = defaultReadTimeout
	}
	if c.ReconnectBackoffMax == 0 {
		c.ReconnectBackoffMax = defaultReconnectBackoffMax
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c, nil
}
