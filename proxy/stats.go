package proxy

import (
	"sync/atomic"
	"time"

	"github.com/replproxy/replproxy/metrics"
	"github.com/replproxy/replproxy/router"
)

// loopStats are one event loop's counters: written only by that loop (so no
// cache line is shared between loops on the hot path), read by the metrics
// scrape through atomics.
type loopStats struct {
	commands       [router.ClassDenied + 1][targetCount]atomic.Int64
	fallbacks      [fallbackCount]atomic.Int64
	retries        [retryCount]atomic.Int64
	waits          [waitOutcomeCount]atomic.Int64
	gateRejections atomic.Int64
	// held: writes that waited for a failover; redirected: writes a
	// replaced master refused with -READONLY, re-sent to the new one.
	held, redirected atomic.Int64
	// witnessWaited: write replies that waited for the link; witnessTimeouts:
	// released past --witness-timeout without it; witnessOff: released
	// unwitnessed because the link was down; witnessFailed: answered
	// errUnwitnessed (the master was lost with the link short of the write).
	witnessWaited, witnessTimeouts, witnessOff, witnessFailed atomic.Int64
	// latency per target: per-bucket counts (metrics.LatencyBuckets plus
	// +Inf) and the sum in nanoseconds.
	latency    [targetCount][maxLatencyBuckets]atomic.Uint64
	latencySum [targetCount]atomic.Int64
}

// maxLatencyBuckets bounds the histogram's buckets (+Inf included): an
// array, so the counters need no allocation; init checks it fits.
const maxLatencyBuckets = 32

func init() {
	if len(metrics.LatencyBuckets)+1 > maxLatencyBuckets {
		panic("proxy: metrics.LatencyBuckets has more buckets than maxLatencyBuckets")
	}
}

func (s *loopStats) observe(t target, sentNs, nowNs int64) {
	d := time.Duration(nowNs - sentNs)
	s.latency[t][metrics.LatencyBucket(d)].Add(1)
	s.latencySum[t].Add(int64(d))
}

type target uint8

const (
	targetMaster target = iota
	targetReplica
	targetProxy
	targetCount
)

var targetNames = [targetCount]string{"master", "replica", "proxy"}

// Why a read that could have gone to a replica went to the master.
type fallbackReason uint8

const (
	fallbackNoReplica    fallbackReason = iota // no eligible replica (or none with the needed offset)
	fallbackCausalWait                         // no replica caught up within --causal-wait
	fallbackBoundedLag                         // no replica within --max-lag
	fallbackFenceLost                          // a write's fence was lost: causal reads use the master for a while
	fallbackFloorUnknown                       // the connection's last read ran on the master; its floor is being sampled
	fallbackPipelined                          // pipelined behind the connection's own requests on the master
	fallbackCount
)

var fallbackNames = [fallbackCount]string{"no_eligible_replica", "causal_wait_expired", "bounded_lag", "fence_lost", "floor_unknown", "pipelined_behind_master"}

// Why a read was re-sent, invisibly to the client.
type retryReason uint8

const (
	retryLoading retryReason = iota
	retryMasterDown
	retryBusy
	retryNoScript
	retryConnectionLost
	retryReadTimeout
	retryCheckFailed
	retryCount
)

var retryNames = [retryCount]string{"loading", "masterdown", "busy", "noscript", "connection_lost", "read_timeout", "check_failed"}

type waitOutcome uint8

const (
	waitSatisfied waitOutcome = iota
	waitTimeout
	waitOutcomeCount
)

var waitNames = [waitOutcomeCount]string{"satisfied", "timeout"}

func (s *loopStats) fallback(r fallbackReason) { s.fallbacks[r].Add(1) }
func (s *loopStats) retry(r retryReason)       { s.retries[r].Add(1) }
