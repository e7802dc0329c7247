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
	b.pend.push(pending{kind: pendFence, reqEnd: b.reqEnd()})
}

// onFence handles the ROLE after a batch: it records the offset, then
// releases the replies it held, in order.
func (b *backend) onFence(frame []byte) {
	off, master, ok := roleOffset(frame)
	switch {
	case !ok:
		b.l.srv.log.Warn("fence ROLE failed; causal reads use the master for a while", "node", b.pool.addr, "reply", string(frame))
		b.l.srv.fenceLost()
	case master:
		b.l.srv.advanceFence(off)
	default:
		b.pool.learnOffset(off)
	}
	b.releaseHeld(off, ok)
}

// releaseHeld delivers the held replies. With ok, off is the offset their
// fence ROLE returned; without, the fence is unknown (the connection died
// or ROLE failed) and the proxy falls back to the master for causal reads.
func (b *backend) releaseHeld(off int64, ok bool) {
	if len(b.held) == 0 {
		return
	}
	if !ok && !b.pool.replica {
		b.l.srv.fenceLost()
	}
	for i := range b.held {
		h := &b.held[i]
		s := h.p.sess
		reply := b.holdBuf[h.off : h.off+h.n]
		if ok {
			if h.p.write {
				if off > s.writeFence {
					s.writeFence = off
				}
				if b.l.srv.cfg.SyncReplicas > 0 && !s.closed && reply[0] != '-' {
					// Synchronous writes: the reply waits for the replicas.
					s.account(b, &h.p)
					if b.l.holdForReplicas(s, h.p.seq, off, reply) {
						h.p = pending{}
						continue
					}
					s.deliver(b, h.p.seq, reply)
					h.p = pending{}
					continue
				}
			} else if off > s.floor {
				s.floor = off
			}
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
