package proxy

import (
	"time"

	"github.com/replproxy/replproxy/resp"
)

// sendRead places a read (planRead) and sends it where the plan says.
func (s *session) sendRead(cmd resp.Command, raw []byte) bool {
	return s.runRead(s.placeRead(), cmd, raw)
}

// placeRead gathers what planRead asks for, until it decides.
func (s *session) placeRead() readPlan {
	var in readInput
	s.readInput(&in)
	if need := s.usualNeeds(&in); need != 0 {
		s.gather(&in, need)
	}
	p := planRead(&in)
	for p.need != 0 {
		s.gather(&in, p.need)
		p = planRead(&in)
	}
	return p
}

// usualNeeds is what planRead asks for on the common path of the session's
// mode, gathered before it is asked so that the read is planned once.
// Facts planRead does not use never change its plan (TestPlanRead plans
// every row on demand too), so this decides only what placing costs.
func (s *session) usualNeeds(in *readInput) readNeed {
	if in.pinned {
		return 0
	}
	switch in.mode {
	case consistencyEventual:
		return haveReplicas
	case consistencyBounded:
		return haveReplicas | haveLags
	case consistencyCausal:
		if !in.behindOwnOnMaster {
			return haveFence | haveReplicas
		}
	case consistencyLinearizable:
		if !in.behindOwnOnMaster && in.linCovered && in.linRequired != linNoSample {
			return haveFence | haveReplicas
		}
	}
	return 0
}

// readInput fills in the session's own facts (in place: a copy of the
// struct on return cost as much as the rest of placing a strong read); the
// rest is gathered on demand.
func (s *session) readInput(in *readInput) {
	in.mode, in.pinned, in.behindOwnOnMaster = s.consistency, s.pinned != nil, s.behindOwnOnMaster()
	in.linCovered, in.linRequired = s.linCovered > 0, s.linRequired
	in.floor, in.floorEpoch = s.floor, s.floorEpoch
	in.sampleEpoch, in.sampleOff = s.l.sampleEpoch, s.l.sampleOff
	if b := s.floorConn; b != nil {
		// A ROLE on another connection may have overtaken the read.
		in.sampleEpoch, in.sampleOff = b.sampleEpoch, b.sampleOff
	}
	in.rr, in.current = s.l.rr, -1
}

// gather fills in the facts planRead asked for.
func (s *session) gather(in *readInput, need readNeed) {
	if need&haveFence != 0 {
		in.fenceTrusted, in.fence = s.srv.fenceTrusted(s.l.nowNs), s.srv.fence.Load()
	}
	if need&haveReplicas != 0 {
		var cur *nodePool
		if t := s.target; t != nil && t.pool.replica && !s.idle() && t.state != stateClosed {
			cur = t.pool
		}
		in.replicas, in.current = s.l.gatherReplicas(s.proto, cur, nil)
		in.maxLagMs, in.nearMs, in.roundRobin = s.srv.cfg.MaxLag.Milliseconds(), s.srv.nearMs(), s.srv.roundRobin()
		in.have &^= haveLags // fresh facts: lags unknown
	}
	if need&haveLags != 0 {
		s.l.gatherLags(in.replicas)
	}
	in.have |= need
}

// runRead executes plan p for the read being dispatched.
func (s *session) runRead(p readPlan, cmd resp.Command, raw []byte) bool {
	s.l.rr = p.rr
	if p.settleFloor {
		s.settleFloor()
	}
	if p.fallback != noFallback {
		s.l.stats.fallback(p.fallback)
	}
	if p.linearize {
		return s.linearize()
	}
	s.next.fenced, s.next.floorLater = p.fenced, p.floorLater
	if p.conditional {
		s.next.conditional, s.next.required, s.next.since = true, p.required, s.l.nowNs
	}
	if p.replica != toMaster {
		if b, _ := s.l.sharedBackend(s.l.readPools[p.replica], s.proto); b != nil {
			if p.conditional {
				// The read must follow a check in the same batch on the
				// connection (queueCheck). Stall first, when sendTo would,
				// so that no check is queued for a read that is not.
				if b != s.target && !s.idle() {
					s.stalled = true
					return false
				}
				b.queueCheck()
			}
			return s.sendTo(b, cmd, raw, true)
		}
		// The replica went into reconnect backoff since its facts were
		// gathered: what the plan does for one it knows is in backoff.
		s.next.conditional, s.next.fenced = false, false
		s.next.floorLater = s.consistency.tracksFloor()
	}
	return s.send(cmd, raw, false, true)
}

// behindOwnOnMaster: the session has requests in flight on a shared master
// connection.
func (s *session) behindOwnOnMaster() bool {
	t := s.target
	return t != nil && !t.pool.replica && t.owner == nil && t.state != stateClosed && !s.idle()
}

// gatherReplicas returns the facts planRead needs of every replica in the
// topology snapshot, for a session speaking proto, and the index of
// current (-1: absent or nil). exclude is marked excluded. The slice and
// the matching pools (readPools) are the loop's, reused by the next call.
func (l *loop) gatherReplicas(proto int, current, exclude *nodePool) ([]replicaFact, int) {
	rs, pools, cur := l.readFacts[:0], l.readPools[:0], -1
	if snap := l.srv.topo.Load(); snap != nil {
		for i := range snap.Replicas {
			st := &snap.Replicas[i]
			f := replicaFact{eligible: st.Eligible, offset: -1, lagMs: -1}
			var p *nodePool
			if st.Eligible {
				p = l.replicaPool(st.Addr)
				f.usable, f.excluded = p.usable(st), p == exclude
				f.offset, f.rtt = max(st.Offset, p.knownOffset), st.RTT
				if b := p.shared[proto-2][0]; b != nil {
					f.connected, f.outstanding, f.batched = true, b.pend.len(), len(b.out) > 0
				}
				if f.usable {
					f.dialBlocked = p.mayDial() != ""
				}
			}
			if cur < 0 && current != nil && st.Addr == current.addr {
				cur = i
			}
			rs, pools = append(rs, f), append(pools, p)
		}
	}
	l.readFacts, l.readPools = rs, pools
	return rs, cur
}

// gatherLags fills in the lag of every usable replica (Server.lagMs), at
// one instant: the clock is read once, and only when a lag is looked up.
func (l *loop) gatherLags(rs []replicaFact) {
	link := l.srv.link
	if link == nil {
		return // unknown, as lagMs says
	}
	var now time.Time
	for i := range rs {
		if f := &rs[i]; f.usable && f.offset >= 0 {
			if now.IsZero() {
				now = time.Now()
			}
			f.lagMs = link.LagMs(f.offset, now)
		}
	}
}

// nearMs is how far behind an up-to-date replica looks between two polls
// (see pickBehind).
func (s *Server) nearMs() int64 { return (s.cfg.PollInterval + s.cfg.CausalWait).Milliseconds() }

func (s *Server) roundRobin() bool { return s.cfg.ReadBalance == "round-robin" }

// pickReplica chooses the replica pool for a read re-sent elsewhere by a
// session speaking proto (chooseReplica), never exclude, or returns nil
// when no replica may serve it.
func (l *loop) pickReplica(proto int, exclude *nodePool) *nodePool {
	rs, _ := l.gatherReplicas(proto, nil, exclude)
	i, rr := chooseReplica(rs, replicaWant{minOffset: -1}, l.srv.roundRobin(), l.rr)
	l.rr = rr
	if i < 0 {
		return nil
	}
	return l.readPools[i]
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
		rs, _ := s.l.gatherReplicas(s.proto, nil, nil)
		s.l.gatherLags(rs)
		i, rr := pickBehind(rs, s.srv.nearMs(), s.srv.roundRobin(), s.l.rr)
		s.l.rr = rr
		if i >= 0 {
			b, _ = s.l.sharedBackend(s.l.readPools[i], from.proto)
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
