package proxy

import (
	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
)

// sendRead routes a read by the session's consistency mode (DESIGN.md):
// strong reads go to the master; eventual reads to any usable replica;
// bounded reads to a replica within --max-lag; causal and linearizable
// reads to a replica that has applied the offset they need (the causal
// fence and the session's floor, plus, for linearizable, the master's
// offset sampled after the read arrived), checking with a ROLE pipelined
// before the read when the replica's offset is not known to suffice.
func (s *session) sendRead(cmd resp.Command, raw []byte) bool {
	if s.pinned != nil {
		return s.send(cmd, raw, false, true) // inside MULTI, WATCH...: in order on the master
	}
	if (s.consistency == consistencyCausal || s.consistency == consistencyLinearizable) && s.behindOwnOnMaster() {
		// Pipelined behind requests of its own still in flight on the
		// master (a write, typically): no replica can have that write yet,
		// and the master runs this read after it, in order. Waiting to
		// switch to a replica would cost the pipeline a round trip, and an
		// offset check that fails (the replica not there yet) another.
		s.l.stats.fallback(fallbackPipelined)
		return s.sendMasterRead(cmd, raw)
	}
	var required int64
	switch s.consistency {
	case consistencyStrong:
		return s.send(cmd, raw, false, true)
	case consistencyEventual:
		if pool := s.pickFor(-1, false); pool != nil {
			return s.sendReplica(pool, cmd, raw)
		}
		s.l.stats.fallback(fallbackNoReplica)
		return s.send(cmd, raw, false, true)
	case consistencyBounded:
		if pool := s.pickFor(-1, true); pool != nil {
			return s.sendReplica(pool, cmd, raw)
		}
		s.l.stats.fallback(fallbackBoundedLag)
		return s.send(cmd, raw, false, true)
	case consistencyLinearizable:
		if s.linCovered <= 0 {
			return s.linearize()
		}
		if s.linRequired == linNoSample {
			return s.sendMasterRead(cmd, raw)
		}
		required = s.linRequired
	}
	now := s.l.nowNs
	if !s.srv.fenceTrusted(now) {
		s.l.stats.fallback(fallbackFenceLost)
		return s.sendMasterRead(cmd, raw)
	}
	if !s.settleFloor() {
		if s.l.replicaEligible() {
			s.l.stats.fallback(fallbackFloorUnknown)
		} else {
			s.l.stats.fallback(fallbackNoReplica)
		}
		return s.sendMasterRead(cmd, raw)
	}
	if f := s.srv.fence.Load(); f > required {
		required = f
	}
	if s.floor > required {
		required = s.floor
	}
	s.next.fenced = true // the reply sets the floor
	if pool := s.pickFor(required, false); pool != nil {
		return s.sendReplica(pool, cmd, raw)
	}
	if pool := s.pickBehind(); pool != nil {
		s.next.conditional, s.next.required, s.next.since = true, required, now
		return s.sendReplica(pool, cmd, raw)
	}
	s.l.stats.fallback(fallbackNoReplica)
	return s.sendMasterRead(cmd, raw)
}

// behindOwnOnMaster: the session has requests in flight on a shared master
// connection.
func (s *session) behindOwnOnMaster() bool {
	t := s.target
	return t != nil && !t.pool.replica && t.owner == nil && t.state != stateClosed && !s.idle()
}

// sendMasterRead sends a read to the master. Under causal and linearizable
// it leaves the session's floor to a later master ROLE (settleFloor).
func (s *session) sendMasterRead(cmd resp.Command, raw []byte) bool {
	s.next.conditional, s.next.fenced = false, false
	s.next.floorLater = s.consistency == consistencyCausal || s.consistency == consistencyLinearizable
	return s.send(cmd, raw, false, true)
}

// sendReplica sends a read to pool's shared connection, keeping to the
// replica the session's reads are already in flight on when it qualifies.
func (s *session) sendReplica(pool *nodePool, cmd resp.Command, raw []byte) bool {
	b, _ := s.l.sharedBackend(pool, s.proto)
	if b == nil {
		return s.sendMasterRead(cmd, raw)
	}
	if s.next.conditional {
		// The read must follow a check in the same batch on the connection
		// (queueCheck). Stall first, when sendTo would, so that no check is
		// queued for a read that is not.
		if b != s.target && !s.idle() {
			s.stalled = true
			return false
		}
		b.queueCheck()
	}
	return s.sendTo(b, cmd, raw, true)
}

// pickFor chooses a replica for a read needing offset required (-1: any).
// withinLag restricts to replicas within --max-lag. The session's current
// replica wins while it qualifies, so pipelined reads need not wait.
func (s *session) pickFor(required int64, withinLag bool) *nodePool {
	snap := s.srv.topo.Load()
	if snap == nil {
		return nil
	}
	if t := s.target; t != nil && t.pool.replica && !s.idle() && t.state != stateClosed {
		if st := stateOf(snap, t.pool.addr); st != nil && s.qualifies(t.pool, st, required, withinLag) {
			return t.pool
		}
	}
	return s.l.pickReplica(s.proto, nil, func(p *nodePool, st *router.NodeState) bool {
		return s.qualifies(p, st, required, withinLag)
	})
}

func (s *session) qualifies(p *nodePool, st *router.NodeState, required int64, withinLag bool) bool {
	if !p.usable(st) {
		return false
	}
	if required >= 0 && max(st.Offset, p.knownOffset) < required {
		return false
	}
	if withinLag {
		lag := s.srv.lagMs(max(st.Offset, p.knownOffset))
		return lag >= 0 && lag <= s.srv.cfg.MaxLag.Milliseconds()
	}
	return true
}

// pickBehind chooses a replica for a conditional read: the least busy of
// those that are close behind (lag within --poll-interval plus
// --causal-wait: what an up-to-date replica looks like between two polls),
// else the most advanced one. The check before the read decides whether it
// counts; the choice only spreads the load and avoids replicas that stopped.
func (s *session) pickBehind() *nodePool {
	snap := s.srv.topo.Load()
	if snap == nil {
		return nil
	}
	var best *nodePool
	var bestOff int64 = -1
	near := 0
	nearMs := (s.srv.cfg.PollInterval + s.srv.cfg.CausalWait).Milliseconds()
	for i := range snap.Replicas {
		st := &snap.Replicas[i]
		p := s.l.replicaPool(st.Addr)
		if !p.usable(st) || p.mayDial() != "" {
			continue
		}
		off := max(st.Offset, p.knownOffset)
		if off > bestOff {
			best, bestOff = p, off
		}
		if lag := s.srv.lagMs(off); lag >= 0 && lag <= nearMs {
			near++
		}
	}
	if near < 2 {
		return best
	}
	return s.l.pickReplica(s.proto, nil, func(p *nodePool, st *router.NodeState) bool {
		lag := s.srv.lagMs(max(st.Offset, p.knownOffset))
		return lag >= 0 && lag <= nearMs
	})
}

// queueCheck puts a ROLE before the conditional read about to be queued on
// b, unless one is already in the batch: every read after a ROLE on the
// connection runs after it, so one check serves all the conditional reads
// of a batch, from any session, each judged against its own requirement.
func (b *backend) queueCheck() {
	if b.checkQueued {
		return
	}
	b.checkQueued = true
	b.out = append(b.out, roleRequest...)
	b.pend.push(pending{kind: pendCheck, reqEnd: b.reqEnd()})
}

func stateOf(snap *router.Snapshot, addr string) *router.NodeState {
	for i := range snap.Replicas {
		if snap.Replicas[i].Addr == addr {
			return &snap.Replicas[i]
		}
	}
	return nil
}

// redoRead runs again a conditional read whose check failed: on a replica
// again (the check itself taught us its offset) while --causal-wait allows,
// then on the master.
func (s *session) redoRead(from *backend, p pending, req []byte) bool {
	if s.closed || len(req) == 0 {
		return false
	}
	s.l.stats.retry(retryCheckFailed)
	req = append(s.l.redoBuf[:0], req...) // req aliases from's log, which the resend may grow
	s.l.redoBuf = req
	s.account(from, &p)
	p.retried = true
	s.retryOutstanding++
	var b *backend
	if s.l.nowNs-p.since < int64(s.srv.cfg.CausalWait) {
		if pool := s.pickBehind(); pool != nil {
			b, _ = s.l.sharedBackend(pool, from.proto)
		}
	}
	if b != nil {
		b.queueCheck()
	} else {
		s.l.stats.fallback(fallbackCausalWait)
		p.conditional = false
		b, _ = s.l.sharedBackend(s.l.master, from.proto)
		if b == nil {
			s.retryOutstanding--
			var buf [256]byte
			s.deliver(from, p.seq, resp.AppendError(buf[:0], errBackendDown+"master connection failed"))
			return true
		}
	}
	b.send(p, req, true)
	return true
}

// linearize asks the master for its offset on behalf of this session's
// reads: one ROLE per loop at a time covers every read that arrived before
// it was sent (ReadIndex-style batching). The session waits meanwhile.
func (s *session) linearize() bool {
	s.stalled = true
	if !s.linWaiting {
		s.linWaiting = true
		s.linCovered = s.c.InboundBuffered() - s.procOff
		s.l.linWaiting = append(s.l.linWaiting, s)
		s.l.sendLinearize()
	}
	return false
}

// consumed is told the size of each request the session ran, so the
// linearizable sample stops covering input that arrived after it.
func (s *session) consumed(n int) {
	if s.linCovered > 0 {
		s.linCovered -= n
	}
}

// sendLinearize sends the batch's ROLE unless one is in flight already;
// waiters that came meanwhile get the next one.
func (l *loop) sendLinearize() {
	if l.linSent || len(l.linWaiting) == 0 {
		return
	}
	l.linSent = true
	l.linInFlight, l.linWaiting = l.linWaiting, l.linInFlight[:0]
	b, _ := l.sharedBackend(l.master, 2)
	if b == nil {
		// No master connection: the waiters' reads go to the master and
		// fail there with its error. (Resumed through Wake, so no recursion.)
		l.linearized(0, false)
		return
	}
	b.out = append(b.out, roleRequest...)
	b.pend.push(pending{kind: pendLinearize, reqEnd: b.reqEnd(), epoch: l.nextEpoch()})
	l.markBackend(b)
}

// linearized hands the sampled master offset to the waiting sessions.
func (l *loop) linearized(off int64, ok bool) {
	l.linSent = false
	for i, s := range l.linInFlight {
		l.linInFlight[i] = nil
		s.linWaiting = false
		if ok {
			s.linRequired = off
		} else {
			// No sample: let the reads through to the master instead.
			s.linRequired = linNoSample
		}
		s.resume()
	}
	l.linInFlight = l.linInFlight[:0]
	l.sendLinearize()
}

// linNoSample marks a failed master offset sample: the reads it covers go
// to the master.
const linNoSample = 1<<63 - 1
