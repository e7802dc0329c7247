package proxy

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// The write witness (DESIGN.md "Failover and data safety"). A write's reply
// is released to the client only once the proxy's own replication link has
// received the stream bytes up to the write's fence: every write a client
// saw acknowledged is then in the link's backlog, on a second machine than
// the master, and a failover that promotes a replica lacking it replays it
// (replay.go). Acknowledged means durable on two machines.
//
// Cost: the link reads the stream about when the replicas do, and the
// fence ROLE answers after the write; so the check nearly always passes at
// once. When it does not, the reply waits (witnessWait) and the link's
// OnAdvance hook wakes the loop as soon as the bytes are in. It is bounded
// by WitnessTimeout, after which the reply is released anyway and counted
// (replproxy_witness_timeouts_total); with the link down the witness is off
// (counted, shown in PROXY INFO) rather than blocking every write.

// witnessWait is a write reply waiting for the link to reach its fence.
type witnessWait struct {
	s        *session
	exec     bool     // an EXEC reply: its proxy-answered slots are filled in
	b        *backend // the connection that answered (ends a finished pin)
	seq      uint64
	fence    int64
	deadline time.Time
	// off and n locate the reply in the loop's witnessBuf: one buffer for
	// every waiting reply, so waiting allocates nothing in steady state.
	off, n int
}

// witnessed reports whether a write reply with fence may be released now:
// the link holds its bytes, or the witness is off or cannot help.
func (l *loop) witnessed(fence int64, reply []byte) bool {
	srv := l.srv
	if !*srv.cfg.Witness || srv.link == nil || reply[0] == '-' {
		return true
	}
	if !srv.link.Connected() {
		l.stats.witnessOff.Add(1)
		return true
	}
	return srv.link.Offset() >= fence
}

// awaitWitness parks a write reply until the link holds its bytes;
// finishWrite delivers it then.
func (l *loop) awaitWitness(s *session, b *backend, seq uint64, exec bool, fence int64, reply []byte) {
	srv := l.srv
	s.heldOutstanding++
	off := len(l.witnessBuf)
	l.witnessBuf = append(l.witnessBuf, reply...)
	l.witnessWaits = append(l.witnessWaits, witnessWait{
		s: s, b: b, seq: seq, fence: fence, exec: exec,
		deadline: l.now.Add(srv.cfg.WitnessTimeout),
		off:      off, n: len(reply),
	})
	l.stats.witnessWaited.Add(1)
	l.inflight.Add(1) // a graceful shutdown waits for it too
	l.witnessTimer(srv.cfg.WitnessTimeout)
	// The lowest fence waited for can only go down here; checkWitness
	// recomputes it as replies leave (a scan per wait was quadratic in the
	// replies of a pipelined batch).
	if need := l.witnessNeed.Load(); need == 0 || fence < need {
		l.witnessNeed.Store(fence)
	}
	// The link may have passed the fence between the check and the store
	// of witnessNeed, with its hook seeing the old value: look once more.
	if srv.link.Offset() >= fence && l.witnessWake.CompareAndSwap(false, true) {
		_ = l.el.Execute(context.Background(), l.witnessTask)
	}
}

// updateWitnessNeed publishes the lowest fence waited for (0: none), which
// the link's hook compares with its offset.
func (l *loop) updateWitnessNeed() {
	need := int64(0)
	for i := range l.witnessWaits {
		if f := l.witnessWaits[i].fence; need == 0 || f < need {
			need = f
		}
	}
	l.witnessNeed.Store(need)
}

// onLinkAdvance is the link's OnAdvance hook (its own goroutine): loops
// waiting for an offset now reached are woken.
func (s *Server) onLinkAdvance(off int64) {
	for _, l := range *s.loopLst.Load() {
		if need := l.witnessNeed.Load(); need > 0 && need <= off && l.witnessWake.CompareAndSwap(false, true) {
			_ = l.el.Execute(context.Background(), l.witnessTask)
		}
	}
}

func newWitnessTask(l *loop) gnet.Runnable {
	return gnet.RunnableFunc(func(context.Context) error {
		l.witnessWake.Store(false)
		l.tick()
		l.checkWitness(l.now)
		l.flush()
		return nil
	})
}

// checkWitness releases the replies whose bytes the link holds, and those
// past the witness timeout (counted).
func (l *loop) checkWitness(now time.Time) {
	if len(l.witnessWaits) == 0 {
		return
	}
	have := int64(-1)
	connected := false
	if link := l.srv.link; link != nil {
		have, connected = link.Offset(), link.Connected()
	}
	kept := l.witnessWaits[:0]
	for _, w := range l.witnessWaits {
		if w.s.closed || w.fence <= have || !now.Before(w.deadline) || !connected {
			l.inflight.Add(-1)
			w.s.heldOutstanding--
		}
		reply := l.witnessBuf[w.off : w.off+w.n]
		switch {
		case w.s.closed:
		case w.fence <= have:
			l.finishWrite(w.s, w.b, w.seq, w.exec, w.fence, reply)
		case !now.Before(w.deadline) || !connected:
			if connected {
				l.stats.witnessTimeouts.Add(1)
			} else {
				l.stats.witnessOff.Add(1)
			}
			l.finishWrite(w.s, w.b, w.seq, w.exec, w.fence, reply)
		default:
			kept = append(kept, w)
		}
	}
	for i := len(kept); i < len(l.witnessWaits); i++ {
		l.witnessWaits[i] = witnessWait{}
	}
	l.witnessWaits = kept
	// Compact the kept replies to the front of the buffer (in order, so
	// each moves down or stays: copy handles the overlap). finishWrite
	// copies what it delivers, so nothing points into the buffer now.
	pos := 0
	for i := range kept {
		k := &kept[i]
		copy(l.witnessBuf[pos:], l.witnessBuf[k.off:k.off+k.n])
		k.off = pos
		pos += k.n
	}
	l.witnessBuf = l.witnessBuf[:pos]
	if pos == 0 && cap(l.witnessBuf) > maxRetainedWitnessBytes {
		l.witnessBuf = nil // a burst of large values is not kept forever
	}
	l.updateWitnessNeed()
	if len(kept) > 0 {
		l.witnessTimer(max(time.Millisecond, kept[0].deadline.Sub(now)))
	}
}

// witnessTimer makes sure the loop wakes within d to time out waiting
// replies. One timer at a time: one already due no later serves, since
// every checkWitness re-arms for the replies still waiting (a timer per
// batch was, at P16, thousands of timers, goroutines and wake-ups a
// second).
func (l *loop) witnessTimer(d time.Duration) {
	at := time.Now().Add(d)
	if !l.witnessTimerAt.IsZero() && !l.witnessTimerAt.After(at) {
		return
	}
	l.witnessTimerAt = at
	time.AfterFunc(d, func() { _ = l.el.Execute(context.Background(), l.witnessTimerTask) })
}

func newWitnessTimerTask(l *loop) gnet.Runnable {
	return gnet.RunnableFunc(func(context.Context) error {
		l.tick()
		if !l.witnessTimerAt.After(l.now) {
			l.witnessTimerAt = time.Time{} // the armed timer fired
		}
		l.checkWitness(l.now)
		l.flush()
		return nil
	})
}

// maxRetainedWitnessBytes bounds the witness buffer a loop keeps between
// bursts.
const maxRetainedWitnessBytes = 1 << 20

// finishWrite delivers a witnessed write reply, through the synchronous
// replication wait when --sync-replicas asks for one.
func (l *loop) finishWrite(s *session, b *backend, seq uint64, exec bool, fence int64, reply []byte) {
	if l.srv.cfg.SyncReplicas > 0 && !s.closed && reply[0] != '-' && l.holdForReplicas(s, seq, exec, fence, reply) {
		return
	}
	s.release(b, seq, exec, reply)
}

// release delivers a write's reply, filling in the slots of an EXEC that
// the proxy answered itself (multi.go): every delayed path must come here,
// not to deliver, or those slots show their stand-ins.
func (s *session) release(b *backend, seq uint64, exec bool, reply []byte) {
	if exec {
		s.execReply(b, seq, reply)
		return
	}
	s.deliver(b, seq, reply)
}

// witnessBacklogShort reports whether the link's backlog is smaller than
// what a replica lags behind by: a failover promoting it could not be
// repaired from the backlog.
func (s *Server) witnessBacklogShort() (short bool, lagBytes int64) {
	snap := s.topo.Load()
	if snap == nil {
		return false, 0
	}
	for i := range snap.Replicas {
		lagBytes = max(lagBytes, snap.Replicas[i].LagBytes)
	}
	if s.link == nil {
		return false, lagBytes
	}
	return lagBytes > int64(s.link.BacklogBytes()), lagBytes
}

// backlogBytes is the link's backlog size for a configured value.
func backlogBytes(n int) int {
	if n <= 0 {
		return 1 << 20
	}
	return n
}
