package proxy

import (
	"time"
)

// Fences (DESIGN.md, "Consistency model"). Every write the proxy forwards is
// followed, in the same batch on the same connection, by a ROLE; the master
// runs it after the write, so the offset it returns is at or past the
// write's end. The write's reply is held until that ROLE answers and the
// offset has raised the proxy-wide fence: a read that arrives after the
// client saw the reply therefore always finds the fence covering it. One
// ROLE covers every request of its batch, so the cost is one small command
// per backend write, never a round trip per request.
//
// The same ROLE after reads on a replica tells the offset the replica had
// reached once it had run them: an upper bound of what the reads observed,
// which becomes the session's monotonic-read floor.

// appendFence queues the ROLE that fences the requests queued before it.
func (b *backend) appendFence() {
	b.needFence = false
	b.out = append(b.out, roleRequest...)
	b.pend.push(pending{kind: pendFence, reqEnd: b.reqEnd(), epoch: b.l.nextEpoch()})
}

// onFence handles the ROLE after a batch: it records the offset, then
// releases the replies it held, in order.
func (b *backend) onFence(p *pending, frame []byte) {
	off, master, ok := roleOffset(frame)
	how := fenceKnown
	switch {
	case !ok:
		b.l.srv.log.Warn("fence ROLE failed; causal reads use the master for a while", "node", b.pool.addr, "reply", string(frame))
		b.l.srv.fenceLost()
		how = fenceFailed
	case !master && !b.pool.replica:
		// The "master" answers as a replica: it was demoted under us. Its
		// offset is not a fence; the switch is the control plane's to make.
		b.l.srv.log.Warn("the master answers ROLE as a replica", "node", b.pool.addr)
		b.l.srv.fenceLost()
		how = fenceDemoted
		go b.l.srv.mon.Suspect(b.pool.addr, true)
	case master:
		b.l.srv.advanceFence(off)
		b.l.masterSampled(p.epoch, off)
		b.sampleEpoch, b.sampleOff = p.epoch, max(b.sampleOff, off)
	default:
		b.pool.learnOffset(off)
	}
	b.releaseHeld(off, how)
}

// fenceResult says what became of the ROLE that fences a batch.
type fenceResult uint8

const (
	fenceKnown    fenceResult = iota // it answered: off is the fence
	fenceFailed                      // it answered an error: no fence
	fenceDemoted                     // the master answered as a replica: off is where it was then
	fenceConnLost                    // the connection closed first: no fence
)

// releaseHeld delivers the held replies. With fenceKnown, off is the offset
// their fence ROLE returned; otherwise the fence is unknown and the proxy
// falls back to the master for causal reads.
//
// A write held when its master was lost under it (fenceDemoted,
// fenceConnLost) ran, but whether it survives depends on the link having
// received it: with the witness on it is answered OK only when the link
// provably holds it (the demoted node's offset is known and the link is
// past it), else with errUnwitnessed. An OK would be an acknowledged write
// the failover may drop: Sentinel's REPLICAOF drops the demoted master's
// replicas, the link among them, with the stream not yet sent to them.
func (b *backend) releaseHeld(off int64, how fenceResult) {
	if len(b.held) == 0 {
		return
	}
	ok := how == fenceKnown
	if !ok && !b.pool.replica {
		b.l.srv.fenceLost()
	}
	doubt := !b.pool.replica && (how == fenceDemoted || how == fenceConnLost) && b.l.witnessActive() &&
		!(how == fenceDemoted && b.l.srv.link.Offset() >= off)
	for i := range b.held {
		h := &b.held[i]
		s := h.p.sess
		reply := b.holdBuf[h.off : h.off+h.n]
		if ok {
			if h.p.write {
				if off > s.writeFence || s.fenceUnproven {
					s.writeFence = off
				}
				s.fenceUnproven = false
				if !s.closed && !b.l.witnessed(off, reply) {
					// The link has not received the write's bytes yet:
					// the reply waits for it (witness.go).
					s.account(b, &h.p)
					b.l.awaitWitness(s, b, h.p.seq, h.p.exec, off, reply)
					h.p = pending{}
					continue
				}
				if b.l.srv.cfg.SyncReplicas > 0 && !s.closed && reply[0] != '-' {
					// Synchronous writes: the reply waits for the replicas.
					s.account(b, &h.p)
					b.l.finishWrite(s, b, h.p.seq, h.p.exec, off, reply)
					h.p = pending{}
					continue
				}
			} else if off > s.floor {
				s.floor = off
			}
		} else if doubt && h.p.write && !s.closed && reply[0] != '-' {
			b.l.stats.witnessFailed.Add(1)
			reply = unwitnessedReply
		}
		s.complete(b, h.p, reply)
		h.p = pending{}
	}
	b.held = b.held[:0]
	if cap(b.holdBuf) > maxRetainedOutBytes {
		b.holdBuf = nil
	} else {
		b.holdBuf = b.holdBuf[:0]
	}
}

// nextEpoch hands out the next loop epoch (see loop.epoch).
func (l *loop) nextEpoch() uint64 {
	l.epoch++
	return l.epoch
}

// masterSampled records the offset a master ROLE of that epoch returned.
func (l *loop) masterSampled(epoch uint64, off int64) {
	l.sampleEpoch = max(l.sampleEpoch, epoch)
	l.sampleOff = max(l.sampleOff, off)
}

// settleFloor folds into the session's floor the master offset sampled
// after its last master read, once there is one (monotonic reads: a replica
// read must not go back before what that read saw). It reports whether the
// floor is known; until it is, the session reads from the master.
//
// Master reads are not held for their fence like writes are: the floor
// matters to this session's own later reads only, and those are routed
// after this check, while a write's fence must be public before anyone can
// see its reply.
func (s *session) settleFloor() bool {
	if s.floorEpoch == 0 {
		return true
	}
	sampleEpoch, sampleOff := s.l.sampleEpoch, s.l.sampleOff
	if b := s.floorConn; b != nil {
		if b.state == stateClosed && b.sampleEpoch <= s.floorEpoch {
			// Its fence is lost, and the read is over (failPending
			// answered it): any ROLE queued from now on ran after it.
			s.floorEpoch, s.floorConn = s.l.nextEpoch(), nil
			return false
		}
		// A ROLE on another connection may have overtaken the read.
		sampleEpoch, sampleOff = b.sampleEpoch, b.sampleOff
	}
	if sampleEpoch <= s.floorEpoch {
		return false
	}
	if sampleOff > s.floor {
		s.floor = sampleOff
	}
	s.floorEpoch, s.floorConn = 0, nil
	return true
}

// replicaEligible reports whether any replica could serve reads now.
func (l *loop) replicaEligible() bool {
	snap := l.srv.topo.Load()
	if snap == nil {
		return false
	}
	for i := range snap.Replicas {
		if snap.Replicas[i].Eligible {
			return true
		}
	}
	return false
}

// advanceFence raises the proxy-wide causal fence to off.
func (s *Server) advanceFence(off int64) {
	for {
		cur := s.fence.Load()
		if off <= cur || s.fence.CompareAndSwap(cur, off) {
			return
		}
	}
}

// fenceGrace is how long causal reads go to the master after a fence was
// lost: far longer than any ROLE round trip, so by then a newer fence,
// sampled after the unfenced writes ran, has been taken.
const fenceGrace = time.Second

func (s *Server) fenceLost() {
	s.fenceLostAt.Store(time.Now().UnixNano())
}

func (s *Server) fenceTrusted(now int64) bool {
	return now-s.fenceLostAt.Load() > int64(fenceGrace)
}

// learnOffset records a replica offset seen in a ROLE reply on this loop's
// connection: fresher than the monitor's poll.
func (p *nodePool) learnOffset(off int64) {
	if off > p.knownOffset {
		p.knownOffset = off
	}
}
