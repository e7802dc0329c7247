package metrics

import "time"

// Stats is one scrape's worth of numbers; the proxy fills it (the source
// passed to [NewRegistry]). Zero values are valid: an empty slice emits no
// series for that family, a zero scalar emits 0.
//
// Counter fields are totals since the process started; they must never go
// down (Prometheus treats a decrease as a restart). Entries of counter slices
// and histograms may repeat the same labels (for example one per event loop):
// the collector sums them.
//
// A Stats is filled and read by one scrape goroutine; the source gets a fresh
// value on every scrape, so it may keep no reference to it.
type Stats struct {
	// Commands counts commands by class and target. Class is one of
	// read|write|local|txn|blocking|subscribe|pinned|denied; Target one of
	// master|replica|proxy.
	Commands []CommandCount
	// Latency holds one command-duration histogram per target. Use
	// [LatencyBuckets] as the bounds (see [LatencyBucket] and [NewLatencyHist]).
	Latency []LatencyHist

	// ClientsConnected is the number of client connections open now.
	ClientsConnected int64
	// ClientsRejected counts connections refused because maxclients was reached.
	ClientsRejected int64

	// Nodes lists every backend node, the master included (Role "master").
	// One entry per Addr.
	Nodes []Node
	// MasterReplOffset is the master's replication offset in bytes; -1 when
	// unknown (the series is then absent).
	MasterReplOffset int64

	// ReadFallbacks counts reads that went to the master although replicas
	// were wanted, by reason: "no_eligible_replica", "causal_wait_expired",
	// "bounded_lag", "check_failed", ...
	ReadFallbacks []ReasonCount
	// ReadRetries counts reads redone elsewhere without the client seeing the
	// first reply, by reason: "loading", "masterdown", "busy", "noscript",
	// "connection_lost", "read_timeout".
	ReadRetries []ReasonCount
	// WriteGateRejections counts writes refused with -NOREPLICAS by the
	// proxy's min-replicas gate.
	WriteGateRejections int64
	// WaitCalls counts WAIT outcomes: "satisfied", "timeout".
	WaitCalls []ReasonCount
	// TopologyChanges counts published topology snapshots that changed
	// eligibility or the node set.
	TopologyChanges int64

	// Stream describes the proxy's own replication link to the master.
	Stream StreamStats

	// BackendConnections is the number of open backend connections by kind:
	// "shared", "dedicated". A gauge: entries with the same kind are summed.
	BackendConnections []ReasonCount

	// Master is the master followed now ("" Addr: none known).
	Master MasterInfo
	// MasterSwitches counts master switches by cause: "sentinel",
	// "master_became_replica".
	MasterSwitches []ReasonCount
	// SwitchDuration is the histogram of how long switches took, from the
	// first sign of trouble to the new master being published, over
	// [SwitchBuckets] (nil: none yet; the series is then absent).
	SwitchDuration *LatencyHist
	// WritesHeld counts writes that waited for a failover to finish;
	// WritesRedirected those answered -READONLY by a replaced master and
	// re-sent to the new one.
	WritesHeld       int64
	WritesRedirected int64

	// GuardActive: the empty-master guard is acting now. GuardActions
	// counts its actions by kind (park, unpark, promote, repoint,
	// sentinel_failover, incident).
	GuardActive  bool
	GuardActions []ReasonCount

	// Witness: write replies that waited for the replication link
	// (WitnessWaited), were released past --witness-timeout without it
	// (WitnessTimeouts) or unwitnessed with the link down (WitnessOff), and
	// writes answered with an error because their master was lost before
	// the link received them (WitnessFailed); WitnessBacklogShort: a
	// replica lags by more than the link's backlog.
	WitnessWaited, WitnessTimeouts, WitnessOff, WitnessFailed int64
	WitnessBacklogShort                                       bool
	// Replays counts failover replays by outcome (replayed, already_done,
	// failed); FailoverLostBytes the stream bytes that could not be.
	Replays           []ReasonCount
	FailoverLostBytes int64
}

// MasterInfo names the master followed now.
type MasterInfo struct {
	Addr       string
	Generation uint64
}

// SwitchBuckets are the bounds, in seconds, of the switch-duration
// histogram: from a switch seen at once to one that waited for Sentinel's
// down-after-milliseconds and an election.
var SwitchBuckets = []float64{0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60}

// NewHist builds a cumulative histogram over bounds from per-bucket counts
// (perBucket[len(bounds)] is the +Inf bucket).
func NewHist(bounds []float64, perBucket []uint64, sumSeconds float64) *LatencyHist {
	h := LatencyHist{Buckets: bounds, Counts: make([]uint64, len(bounds)), Sum: sumSeconds}
	var total uint64
	for i, n := range perBucket {
		total += n
		if i < len(bounds) {
			h.Counts[i] = total
		}
	}
	for i := len(perBucket); i < len(bounds); i++ {
		h.Counts[i] = total
	}
	h.Count = total
	return &h
}

// CommandCount is one commands_total series.
type CommandCount struct {
	Class, Target string
	Count         int64
}

// LatencyHist is one cumulative histogram, shaped like Prometheus's own:
// Counts[i] is the number of observations ≤ Buckets[i]; Count (the +Inf
// bucket) is the number of all observations and must be ≥ the last Counts
// entry. A histogram that breaks these rules is reported as a scrape error
// for that series only, never a panic.
type LatencyHist struct {
	Target  string
	Buckets []float64 // upper bounds in seconds, strictly ascending, +Inf excluded
	Counts  []uint64  // cumulative, len(Counts) == len(Buckets)
	Count   uint64
	Sum     float64 // seconds
}

// Node is one backend as the topology monitor sees it.
type Node struct {
	Addr string
	// Role is "master" or "replica". Every node that is not "master" is
	// reported as a replica (replica_* series); "" is shown as "unknown".
	Role string
	Up   bool
	// Eligible tells whether reads may go to this replica now; Reason says
	// why not ("" when eligible; "" while ineligible is shown as "unknown").
	Eligible bool
	Reason   string
	// LagBytes and LagSeconds are the replica's lag behind the master; -1
	// when unknown (the series is then absent, not a fake number).
	LagBytes   int64
	LagSeconds float64
	// Offset is the replication offset the node has applied, in bytes; -1
	// when unknown.
	Offset int64
	// PersistRDB and PersistAOF: 1 the node saves RDB snapshots / writes an
	// AOF, 0 it does not, -1 unknown (the series is then absent).
	PersistRDB, PersistAOF int8
	// Parent is the node a replica replicates from ("" when unknown) and
	// Depth its distance from the master in the replication tree (1: a
	// replica of the master, 2: of a replica, ...; 0 unknown, -1 in a loop
	// of REPLICAOFs). Replicas only.
	Parent string
	Depth  int
}

// ReasonCount is one series of a family keyed by a single reason, outcome or
// kind label.
type ReasonCount struct {
	Reason string
	Count  int64
}

// StreamStats describes the proxy's own replica link (package replstream).
type StreamStats struct {
	Connected bool
	// Offset is the replication offset the link has received up to, in bytes.
	Offset        int64
	FullSyncs     int64
	PartialSyncs  int64
	Reconnects    int64
	HistoryResets int64
	BytesReceived int64
}

// latencyBucketNanos are the command-duration bounds: the 1-2.5-5 series from
// 50µs to 5s. Round numbers so that dashboard and SLO thresholds (1ms, 10ms,
// 100ms) fall on a bucket edge, steps of 2x/2.5x (geometric mean ~2.15x) so
// quantile interpolation stays within a factor ~2 of the truth. 50µs is about
// a loopback round trip to Redis, so the bottom bucket is "as fast as it
// gets"; beyond 5s a command is stuck, not slow. 16 buckets + +Inf keeps a
// per-loop histogram to 17 counters.
var latencyBucketNanos = [...]int64{
	50_000, 100_000, 250_000, 500_000, // 50µs .. 500µs
	1_000_000, 2_500_000, 5_000_000, // 1ms .. 5ms
	10_000_000, 25_000_000, 50_000_000, // 10ms .. 50ms
	100_000_000, 250_000_000, 500_000_000, // 100ms .. 500ms
	1_000_000_000, 2_500_000_000, 5_000_000_000, // 1s .. 5s
}

// LatencyBuckets are the histogram upper bounds, in seconds, the proxy must
// use for [LatencyHist]: 50µs, 100µs, 250µs, 500µs, 1ms, 2.5ms, 5ms, 10ms,
// 25ms, 50ms, 100ms, 250ms, 500ms, 1s, 2.5s, 5s (+Inf implicit).
// Read-only: do not modify.
var LatencyBuckets = func() []float64 {
	b := make([]float64, len(latencyBucketNanos))
	for i, ns := range latencyBucketNanos {
		b[i] = float64(ns) / 1e9
	}
	return b
}()

// LatencyBucket returns the index of the first bucket of [LatencyBuckets]
// whose bound is ≥ d, or len(LatencyBuckets) (the +Inf bucket) when d is
// above them all. It is meant for the proxy's hot path: no allocation, no
// floating point, safe for concurrent use.
func LatencyBucket(d time.Duration) int {
	ns := int64(d)
	for i, b := range latencyBucketNanos {
		if ns <= b {
			return i
		}
	}
	return len(latencyBucketNanos)
}

// NewLatencyHist builds a [LatencyHist] over [LatencyBuckets] from
// per-bucket (non-cumulative) counts as a recorder using [LatencyBucket]
// keeps them: perBucket[i] counts observations that fell in bucket i, and
// perBucket[len(LatencyBuckets)], if present, those above the last bound.
// Extra entries beyond that are ignored. sumSeconds is the sum of all
// observations.
func NewLatencyHist(target string, perBucket []uint64, sumSeconds float64) LatencyHist {
	h := LatencyHist{
		Target:  target,
		Buckets: LatencyBuckets,
		Counts:  make([]uint64, len(LatencyBuckets)),
		Sum:     sumSeconds,
	}
	var total uint64
	for i := range perBucket {
		if i > len(LatencyBuckets) {
			break
		}
		total += perBucket[i]
		if i < len(LatencyBuckets) {
			h.Counts[i] = total
		}
	}
	for i := len(perBucket); i < len(LatencyBuckets); i++ {
		h.Counts[i] = total
	}
	h.Count = total
	return h
}
