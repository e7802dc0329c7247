package proxy

import (
	"time"
)

// Sizing the link's backlog (the witness, DESIGN.md "Failover and data
// safety"). What a failover must replay is the promoted replica's lag at
// the moment the master died, so the backlog must hold at least the
// unreplicated window. That window is not known in advance: a replica
// that pauses (a fork, a slow disk, a SIGSTOP) falls behind at the write
// rate. So the backlog is sized from both:
//   - the replicas' lag now, twice over (it is still growing when polled);
//   - the stream bytes of the last backlogWindow, plus a quarter: a replica
//     may stall for that long before the failover that needs its bytes
//     (Sentinel's down-after plus its election take seconds, and a lag
//     measured by polls arrives late; sizing from lag alone would grow the
//     backlog only after the bytes it needed were evicted);
//   - never below --replication-backlog, never above
//     --replication-backlog-max (memory is the operator's to bound; past
//     it PROXY INFO and replproxy_witness_backlog_short say so).
// It grows at once and shrinks only after a minute of needing less than
// half, so one quiet second after a burst does not throw away the window.

const (
	backlogWindow      = 10 * time.Second
	backlogShrinkAfter = time.Minute
	backlogRound       = 1 << 20
	backlogSamples     = 128 // > backlogWindow / the 100 ms tick
)

// backlogInput is what backlogTarget decides from.
type backlogInput struct {
	configured, max int   // --replication-backlog, --replication-backlog-max
	have            int   // the backlog's size now
	maxLag          int64 // the largest replica lag in bytes (-1: unknown)
	windowBytes     int64 // stream bytes received in the last backlogWindow
	// lowSince is when the target first fell below half of have (zero:
	// it has not).
	lowSince time.Time
	now      time.Time
}

// backlogTarget returns the size the backlog should have (have when it
// should not change) and the new lowSince.
func backlogTarget(in backlogInput) (int, time.Time) {
	if in.max <= in.configured {
		return in.configured, time.Time{} // auto-sizing off
	}
	want := int64(in.configured)
	want = max(want, 2*in.maxLag, in.windowBytes+in.windowBytes/4)
	want = (want + backlogRound - 1) / backlogRound * backlogRound
	want = min(want, int64(in.max))
	want = max(want, int64(in.configured))
	switch {
	case want > int64(in.have):
		return int(want), time.Time{}
	case want*2 > int64(in.have):
		return in.have, time.Time{}
	case in.lowSince.IsZero():
		return in.have, in.now
	case in.now.Sub(in.lowSince) >= backlogShrinkAfter:
		return int(want), time.Time{}
	default:
		return in.have, in.lowSince
	}
}

// backlogSizer samples the link's offset and resizes its backlog. Only
// OnTick's goroutine uses it.
type backlogSizer struct {
	at       [backlogSamples]time.Time
	off      [backlogSamples]int64
	n, head  int
	lowSince time.Time
	// size is the size last asked of the link (0: the configured one).
	// Decisions compare with it, not with the link's capacity, which is
	// rounded up to whole segments.
	size int
}

// sizeBacklog is called every tick.
func (s *Server) sizeBacklog(now time.Time) {
	if s.link == nil {
		return
	}
	z := &s.backlogSizer
	off := s.link.Offset()
	if z.n > 0 {
		last := (z.head + backlogSamples - 1) % backlogSamples
		if off < z.off[last] {
			z.n = 0 // a new history: its offsets start over
		} else if now.Sub(z.at[last]) < 90*time.Millisecond {
			return
		}
	}
	z.at[z.head], z.off[z.head] = now, off
	z.head = (z.head + 1) % backlogSamples
	z.n = min(z.n+1, backlogSamples)
	// The oldest sample within the window.
	var window int64
	for i := z.n; i >= 1; i-- {
		j := (z.head - i + backlogSamples) % backlogSamples
		if now.Sub(z.at[j]) <= backlogWindow {
			window = off - z.off[j]
			break
		}
	}
	maxLag := int64(-1)
	if snap := s.topo.Load(); snap != nil {
		for i := range snap.Replicas {
			maxLag = max(maxLag, snap.Replicas[i].LagBytes)
		}
	}
	configured := backlogBytes(s.cfg.ReplicationBacklogBytes)
	have := z.size
	if have == 0 {
		have = configured
	}
	want, low := backlogTarget(backlogInput{
		configured: configured, max: s.cfg.ReplicationBacklogMax,
		have: have, maxLag: maxLag, windowBytes: window, lowSince: z.lowSince, now: now,
	})
	z.lowSince = low
	if want != have {
		s.log.Info("replication backlog resized", "from_bytes", have, "to_bytes", want,
			"replica_lag_bytes", maxLag, "stream_bytes_last_10s", window)
		s.link.SetBacklogBytes(want)
		z.size = want
	}
}
