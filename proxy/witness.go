package proxy

import (
	"context"
	"math"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/replproxy/replproxy/replstream"
	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
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
	// probe, when not 0, is the master ROLE (loop.witnessProbes) that
	// decides the reply: the link dropped and did not come back by the
	// deadline.
	probe uint64
	// off and n locate the reply in the loop's witnessBuf: one buffer for
	// every waiting reply, so waiting allocates nothing in steady state.
	off, n int
}

// unwitnessedReply answers a write whose master was lost with the link
// short of it.
var unwitnessedReply = resp.AppendError(nil, errUnwitnessed)

// witnessActive reports whether the witness vouches for writes now: it is
// on, and the link streams or only just dropped. A link down for longer
// than WitnessTimeout (or not synced yet) is "off": writes are answered as
// the master answers them, counted, rather than all failing while the
// link is away.
func (l *loop) witnessActive() bool {
	srv := l.srv
	return *srv.cfg.Witness && srv.link != nil && srv.link.DownFor() < srv.cfg.WitnessTimeout
}

// witnessed reports whether a write reply with fence may be released now:
// the link holds its bytes, or the witness is off or cannot help.
//
// A link that has just dropped may have dropped with the master (Sentinel's
// REPLICAOF drops a master's replicas, unsent stream and all; a dying
// master takes its socket buffers along): the reply waits, for the link to
// come back, and at the deadline the master is asked (checkWitness).
func (l *loop) witnessed(fence int64, reply []byte) bool {
	srv := l.srv
	if !*srv.cfg.Witness || srv.link == nil || reply[0] == '-' {
		return true
	}
	if srv.link.Offset() >= fence {
		return true // in the link's backlog, whether it streams now or not
	}
	if d := srv.link.DownFor(); d >= srv.cfg.WitnessTimeout {
		l.stats.witnessOff.Add(1)
		return true
	}
	return false
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
	if srv.link.Offset() >= fence {
		l.wakeWitness(true)
	}
}

// wakeWitness makes the loop check its waiting replies soon (checkWitness).
// With the batch-end hook that is a flag OnBatchEnd reads, and, from
// another goroutine (onLoop false), the eventfd write that wakes the loop:
// no task, so no allocation (gnet's Execute made 2 per call, one call per
// link read that released replies: about one per SET at pipeline 1).
func (l *loop) wakeWitness(onLoop bool) {
	if !l.witnessWake.CompareAndSwap(false, true) {
		return // a wake-up is already on its way
	}
	switch {
	case !gnet.BatchEndSupported:
		_ = l.el.Execute(context.Background(), l.witnessTask)
	case !onLoop:
		_ = gnet.WakeBatchEnd(l.el)
	}
	// On the loop, this batch's OnBatchEnd sees the flag.
}

// witnessWoken runs at a batch's end (OnBatchEnd), or as witnessTask,
// when wakeWitness asked. The plain load first: OnBatchEnd calls it after
// every batch, and a locked CAS each time is not needed to see "no".
func (l *loop) witnessWoken() {
	if !l.witnessWake.Load() || !l.witnessWake.CompareAndSwap(true, false) {
		return
	}
	l.tick()
	l.checkWitness(l.now)
	l.flush()
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

// onLinkAdvance is the link's OnAdvance hook, on the goroutine reading the
// stream: the link's own, or linkLoop's (linkHost). Loops waiting for an
// offset now reached are woken; linkLoop, when it is the one reading, by
// its own batch end.
func (s *Server) onLinkAdvance(off int64) {
	host := s.linkLoop.Load()
	for _, l := range *s.loopLst.Load() {
		if need := l.witnessNeed.Load(); need > 0 && need <= off {
			l.wakeWitness(l == host)
		}
	}
}

// newWitnessTask is wakeWitness's task where gnet has no batch-end hook.
func newWitnessTask(l *loop) gnet.Runnable {
	return gnet.RunnableFunc(func(context.Context) error {
		l.witnessWoken()
		return nil
	})
}

// witnessVerdict is what becomes of a waiting reply.
type witnessVerdict uint8

const (
	witnessKeep witnessVerdict = iota // it waits on
	witnessOK                         // the reply is delivered as the master gave it
	witnessFail                       // errUnwitnessed is delivered instead
)

// checkWitness releases the replies whose bytes the link holds, and those
// past the witness timeout: while the link streams (it is slow), as they
// are, counted; when it has dropped, the master is asked first
// (sendWitnessProbe).
func (l *loop) checkWitness(now time.Time) {
	if len(l.witnessWaits) == 0 {
		return
	}
	link := l.srv.link
	have, down := int64(-1), time.Duration(math.MaxInt64)
	if link != nil {
		have, down = link.Offset(), link.DownFor()
	}
	probe := false
	l.settleWitness(func(w *witnessWait) witnessVerdict {
		switch {
		case w.fence <= have:
			return witnessOK
		case w.probe != 0 || now.Before(w.deadline):
			return witnessKeep
		case down == 0:
			l.stats.witnessTimeouts.Add(1)
			return witnessOK
		default:
			w.probe, probe = l.witnessProbes+1, true
			return witnessKeep
		}
	})
	if probe {
		l.sendWitnessProbe()
	}
}

// sendWitnessProbe asks the master for ROLE on behalf of the replies whose
// link dropped. One at a time: those marked while one is in flight are
// decided by the next, sent when it answers, so every answer is from a
// ROLE sent after its replies' link was seen down.
func (l *loop) sendWitnessProbe() {
	if l.witnessProbing {
		return
	}
	l.witnessProbes++
	b, _ := l.sharedBackend(l.master, 2)
	if b == nil {
		l.witnessProbed(l.master, 0, false)
		return
	}
	l.witnessProbing = true
	b.out = append(b.out, roleRequest...)
	b.pend.push(pending{kind: pendWitnessProbe, reqEnd: b.reqEnd(), epoch: l.nextEpoch()})
	l.markBackend(b)
}

// witnessProbed decides the replies waiting for the probe that pool
// answered (master: as a master, at offset off). The master still holds a
// write it answered as a master after the link dropped: it is as durable
// as on a lone Redis, and delivered (counted as witness off). A master
// gone, demoted, restarted below the fence, or another node than the
// write's: errUnwitnessed.
func (l *loop) witnessProbed(pool *nodePool, off int64, master bool) {
	l.witnessProbing = false
	done := l.witnessProbes
	have := int64(-1)
	if link := l.srv.link; link != nil {
		have = link.Offset()
	}
	more := false
	l.settleWitness(func(w *witnessWait) witnessVerdict {
		switch {
		case w.probe == 0:
			return witnessKeep
		case w.probe > done:
			more = true
			return witnessKeep
		case w.fence <= have:
			return witnessOK
		case master && w.b.pool == pool && w.fence <= off:
			l.stats.witnessOff.Add(1)
			return witnessOK
		default:
			return witnessFail
		}
	})
	if more {
		l.sendWitnessProbe()
	}
}

// witnessSwitched decides every waiting reply when the loop switches
// masters: they are the old master's writes, and the link's offsets are
// about to be the new master's. A reply is delivered when the link's copy
// of the old history holds the write (the replay carries it over) or the
// new master continues the history past it; otherwise errUnwitnessed.
func (l *loop) witnessSwitched(sw router.Switch) {
	if len(l.witnessWaits) == 0 {
		return
	}
	var old replstream.History
	held := false
	if link := l.srv.link; link != nil && sw.OldReplID != "" {
		old, held = link.HistoryOf(sw.OldReplID, 0)
	}
	l.settleWitness(func(w *witnessWait) witnessVerdict {
		switch {
		case held && old.Offset() >= w.fence:
			return witnessOK
		case sw.Continues && w.fence <= sw.SplitOffset:
			return witnessOK
		default:
			return witnessFail
		}
	})
}

// settleWitness applies decide to every waiting reply, delivering those it
// releases (closed sessions' are dropped), and keeps the others in order.
func (l *loop) settleWitness(decide func(*witnessWait) witnessVerdict) {
	// w points into the slice, not at a copy: a copy whose address went to
	// decide (a func value) was moved to the heap, one allocation per
	// settled reply. Nothing below appends to witnessWaits (only a fence
	// reply, read from a backend, parks one), and kept only ever writes at
	// an index at or below i, so w stays valid until it is copied.
	kept := l.witnessWaits[:0]
	for i := range l.witnessWaits {
		w := &l.witnessWaits[i]
		v := witnessKeep
		if w.s.closed {
			v = witnessFail
		} else {
			v = decide(w)
		}
		if v == witnessKeep {
			kept = append(kept, *w)
			continue
		}
		l.inflight.Add(-1)
		w.s.heldOutstanding--
		switch {
		case w.s.closed:
		case v == witnessOK:
			l.finishWrite(w.s, w.b, w.seq, w.exec, w.fence, l.witnessBuf[w.off:w.off+w.n])
		default:
			l.stats.witnessFailed.Add(1)
			w.s.release(w.b, w.seq, w.exec, unwitnessedReply)
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
	var next time.Time
	for i := range kept {
		k := &kept[i]
		copy(l.witnessBuf[pos:], l.witnessBuf[k.off:k.off+k.n])
		k.off = pos
		pos += k.n
		if k.probe == 0 && (next.IsZero() || k.deadline.Before(next)) {
			next = k.deadline
		}
	}
	l.witnessBuf = l.witnessBuf[:pos]
	if pos == 0 && cap(l.witnessBuf) > maxRetainedWitnessBytes {
		l.witnessBuf = nil // a burst of large values is not kept forever
	}
	l.updateWitnessNeed()
	if !next.IsZero() {
		l.witnessTimer(max(time.Millisecond, next.Sub(l.now)))
	}
}

// witnessTimer makes sure the loop wakes within d to time out waiting
// replies. One timer at a time: one already due no later serves, since
// every checkWitness re-arms for the replies still waiting (a timer per
// batch was, at P16, thousands of timers, goroutines and wake-ups a
// second).
//
// The loop's clock (l.now, taken at the wake-up) stands for now: a reading
// per waiting reply was 1.6% of the proxy's CPU at SET pipeline 16, where a
// third of the replies wait. It can only be early, so the timer fires at or
// after at, and the task sees it due. The one time.Timer is reused (Reset),
// not a new AfterFunc per arming.
func (l *loop) witnessTimer(d time.Duration) {
	at := l.now.Add(d)
	if !l.witnessTimerAt.IsZero() && !l.witnessTimerAt.After(at) {
		return
	}
	l.witnessTimerAt = at
	if l.witnessTimerT == nil {
		l.witnessTimerT = time.AfterFunc(d, func() { _ = l.el.Execute(context.Background(), l.witnessTimerTask) })
		return
	}
	l.witnessTimerT.Reset(d)
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
