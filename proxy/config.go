package proxy

import (
	"crypto/tls"
	"log/slog"
	"os"
	"time"
)

// Config is what a Server is built from. The zero value of every field means
// "the default" (written next to the field), so a Config that sets only Listen
// and Master is a working proxy. Config is read once by New; changing it later
// has no effect.
type Config struct {
	// Listen is the client-facing address, host:port. Default 127.0.0.1:6380.
	Listen string
	// Master is the Redis master, host:port. Required.
	Master string
	// Replicas are the replicas named on the command line. Nil means none
	// (discovery, when enabled, may still find some).
	Replicas []string
	// DiscoverReplicas asks the master which replicas it has, and every
	// replica which replicas it has in turn (master -> R1 -> R2), to any
	// depth. Nil means true.
	DiscoverReplicas *bool
	// NoReplicationLink disables the proxy's own replica link to the master
	// (replstream). Without it replica lag in milliseconds is unknown, so
	// the bounded mode and the write gate count no replica as good.
	NoReplicationLink bool
	// ReplicationBacklogBytes is how many of the most recent replication
	// stream bytes the link keeps, with their offsets. 0 means 1 MiB, as
	// Redis's repl-backlog-size.
	ReplicationBacklogBytes int
	// ReplicationBacklogMax lets the backlog grow past
	// ReplicationBacklogBytes to hold the unreplicated window the witness
	// needs (backlog.go), up to this many bytes. 0 means 256 MiB; -1 (or
	// a value not above ReplicationBacklogBytes) keeps it fixed.
	ReplicationBacklogMax int

	// Upstream credentials: what the proxy itself sends to every Redis node.
	// Empty means no AUTH (or AUTH <password> for the default user when only
	// UpstreamPassword is set). They are unrelated to clients' credentials.
	UpstreamUser     string
	UpstreamPassword string
	// UpstreamTLS, when not nil, is the TLS configuration of every
	// connection the proxy opens to a Redis node: the data path, the
	// control plane's clients and the replication link. Nil means plain TCP.
	// Sentinel connections use SentinelTLS.
	UpstreamTLS *tls.Config
	// SentinelTLS, when not nil, is used for connections to Sentinels.
	// Nil means plain TCP.
	SentinelTLS *tls.Config

	// RequirePass is the password of the proxy's "default" user, as
	// redis.conf's requirepass. Empty with no Users means no authentication.
	RequirePass string
	// Users are additional ACL-style users (name → password) that clients may
	// AUTH as. A client authenticated as any user may run every command the
	// proxy allows; per-command ACLs stay in Redis.
	Users map[string]string

	// AllowCommands lets through commands the proxy denies by default
	// (router.Options.Allow): "monitor", "debug", "config|set"... Nil
	// allows none of them.
	AllowCommands []string

	// Loops is the number of gnet event loops. 0 means one per CPU.
	Loops int
	// BackendConns is the number of shared connections per event loop to each
	// backend. 0 means 1: a single pipelined connection is how Redis is
	// cheapest to drive.
	BackendConns int

	// MaxClients caps client connections, as redis.conf maxclients. 0 means 10000.
	MaxClients int
	// MaxDedicatedConns caps the master connections held by one client each
	// (blocking calls, MULTI/WATCH, pub/sub, client tracking); past it such
	// commands get an error instead of a connection. 0 means MaxClients.
	MaxDedicatedConns int
	// IdleTimeout closes clients idle this long, as redis.conf timeout.
	// 0 means never.
	IdleTimeout time.Duration
	// MaxPipeline caps the commands one client may have in flight; past it the
	// proxy stops reading that client until replies drain. 0 means 100000.
	MaxPipeline int
	// QueryBufferLimit caps the unparsed bytes buffered for one client, as
	// client-query-buffer-limit. 0 means 1 GiB.
	QueryBufferLimit int
	// OutputBufferLimit caps the reply bytes buffered for a client that does
	// not read them; past it the client is closed. 0 means 1 GiB.
	OutputBufferLimit int
	// MaxBulkBytes caps one bulk string in a request, as proto-max-bulk-len.
	// 0 means 512 MiB.
	MaxBulkBytes int64
	// Databases is the number of logical databases clients may SELECT.
	// 0 means: ask the master (CONFIG GET databases), else 16.
	Databases int

	// PollInterval is how often the topology monitor polls each node.
	// 0 means 100ms.
	PollInterval time.Duration
	// HealthTimeout bounds one poll of a node; a node that does not answer
	// in time is unreachable. 0 means 1s.
	HealthTimeout time.Duration
	// ReadTimeout is how long a read may wait on a replica before the
	// replica is considered hung and the read is re-sent elsewhere.
	// 0 means 1s.
	ReadTimeout time.Duration
	// ReadBalance chooses among eligible replicas: "least-outstanding"
	// (requests in flight, ties broken by round-trip time) or "round-robin".
	// Empty means least-outstanding.
	ReadBalance string

	// ConnectTimeout bounds dialing and handshaking a backend. 0 means 2s.
	ConnectTimeout time.Duration
	// ReconnectBackoffMax caps the delay between reconnect attempts to a
	// backend that keeps failing. 0 means 1s.
	ReconnectBackoffMax time.Duration
	// ShutdownTimeout bounds how long a graceful shutdown waits for in-flight
	// requests. 0 means 5s.
	ShutdownTimeout time.Duration

	// Consistency is the default read consistency: strong, linearizable,
	// causal, bounded or eventual (DESIGN.md). Empty means causal.
	Consistency string
	// MaxLag is the staleness bound of the bounded mode. 0 means 100ms.
	MaxLag time.Duration
	// CausalWait bounds how long a causal or linearizable read waits for a
	// replica to catch up before it goes to the master. 0 means 2ms.
	CausalWait time.Duration
	// MinReplicasToWrite and MinReplicasMaxLag form the write gate: a write is
	// forwarded only when at least MinReplicasToWrite replicas are eligible
	// with lag <= MinReplicasMaxLag. 0 replicas means no gate; 0 lag means 10s.
	MinReplicasToWrite int
	MinReplicasMaxLag  time.Duration
	// WriteGate is what a write that fails the gate gets: "reject" (at once,
	// -NOREPLICAS) or "wait" (held up to WriteGateTimeout for replicas to
	// catch up, then rejected). Empty means reject; 0 timeout means 100ms.
	WriteGate        string
	WriteGateTimeout time.Duration
	// SyncReplicas > 0 makes writes synchronous: a write's reply is released
	// only once that many replicas have applied it. Past SyncTimeout (0 means
	// 1s) the client gets SyncTimeoutAction: "error" (-NOREPLICAS, the
	// write stays applied on the master) or "pass" (the normal reply).
	SyncReplicas      int
	SyncTimeout       time.Duration
	SyncTimeoutAction string
	// Sentinels and SentinelMaster make the proxy follow the master that
	// Sentinel names. Empty means the master is fixed.
	Sentinels      []string
	SentinelMaster string
	// SentinelUser and SentinelPassword authenticate to the Sentinels
	// (their own requirepass / ACL), apart from the data nodes' Upstream*.
	SentinelUser, SentinelPassword string
	// FailoverHold bounds how long a write waits while a failover is in
	// progress (Sentinel announced one, or the master answered -READONLY)
	// for the next master, instead of going to the one being replaced.
	// 0 means 2s: below the 3s read timeout most client libraries use.
	FailoverHold time.Duration

	// Witness makes the proxy's replication link a witness of every write
	// (witness.go): a write's reply waits, up to WitnessTimeout, until the
	// link holds its bytes, and a failover replays what the new master
	// lacks (replay.go). Nil means on; 0 timeout means 100ms.
	Witness        *bool
	WitnessTimeout time.Duration

	// EmptyMasterGuard turns on the empty-master guard (package topology,
	// guard.go): nil means on. GuardParkAddr is where it parks replicas
	// (host:port where nothing listens); "" means 127.0.0.1:1.
	EmptyMasterGuard *bool
	GuardParkAddr    string

	// Logger receives the proxy's logs. Nil means slog.Default().
	Logger *slog.Logger

	// Hardening: listeners, protected mode, client TLS, hostile clients,
	// reload (listen.go, tls.go, limits.go, reload.go).

	// ListenAddrs, when not empty, are every plaintext address clients
	// connect to, in place of Listen: "host:port" or "unix:/path" (a unix
	// socket). An empty list means Listen alone.
	ListenAddrs []string
	// UnixSocketPerm is the mode of the unix sockets listened on, as
	// redis.conf's unixsocketperm. 0 leaves what the umask gave.
	UnixSocketPerm os.FileMode
	// ProtectedMode, as Redis's protected-mode: with no RequirePass and no
	// Users, New refuses to listen on a non-loopback address. Nil means true.
	ProtectedMode *bool
	// TLSListen are addresses (host:port) served over TLS with TLS as the
	// server configuration. Empty means none.
	TLSListen []string
	// TLS is the server side of TLSListen: certificates, client CAs,
	// ClientAuth. Required with TLSListen. To change certificates without
	// a restart, set GetConfigForClient or GetCertificate.
	TLS *tls.Config
	// AuthTimeout closes a client that has not finished its TLS handshake,
	// or (with a password set) not authenticated, this long after it
	// connected. 0 means 10s; negative means never.
	AuthTimeout time.Duration
	// ClientOutputBufferLimits are Redis's client-output-buffer-limit
	// classes, "normal" and "pubsub". A class that is absent has Redis's
	// default (normal 0 0 0, pubsub 32mb 8mb 60). OutputBufferLimit stays
	// the hard cap of every class.
	ClientOutputBufferLimits map[string]OutputLimit
	// Reloader, when not nil, is what PROXY RELOAD runs: it re-reads the
	// configuration and applies it with Server.Reload (cmd/replproxy's
	// re-reads the command line, the config file and the certificates, as
	// on SIGHUP). It runs on its own goroutine. Nil means PROXY RELOAD
	// answers an error.
	Reloader func() (applied, notLive []string, err error)
}
