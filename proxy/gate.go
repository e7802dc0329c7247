package proxy

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/replproxy/replproxy/resp"
)

// Redis's own text, so clients already handle it.
const errNoReplicas = "NOREPLICAS Not enough good replicas to write."

// goodReplicas counts the replicas a write may count on: eligible, and
// behind the master by no more than --min-replicas-max-lag, in milliseconds
// from the replication stream's offset→time map (Redis's own check only has
// whole seconds since the last ack).
func (l *loop) goodReplicas() int {
	snap := l.srv.topo.Load()
	if snap == nil {
		return 0
	}
	maxLag := l.srv.cfg.MinReplicasMaxLag.Milliseconds()
	n := 0
	for i := range snap.Replicas {
		st := &snap.Replicas[i]
		if !st.Eligible {
			continue
		}
		if lag := l.srv.lagMs(l.appliedOffset(st)); lag >= 0 && lag <= maxLag {
			n++
		}
	}
	return n
}

// gate applies the write gate to a write about to be forwarded. It returns
// true when the write may go; otherwise it has answered -NOREPLICAS, or
// (--write-gate wait) parked the session, and returns dispatch's verdict in
// consumed.
func (s *session) gate() (pass, consumed bool) {
	if s.l.writesHeld(s.l.now) {
		// A failover is in progress: the write waits for the next master
		// rather than reaching the one being replaced, where it could be
		// acknowledged and then lost (FailoverHold bounds the wait).
		if s.holdDeadline.IsZero() {
			s.holdDeadline = s.l.now.Add(s.srv.cfg.FailoverHold)
			s.l.afterFunc(s.srv.cfg.FailoverHold)
			s.l.stats.held.Add(1)
		}
		if s.l.now.Before(s.holdDeadline) {
			s.stalled = true
			s.l.gateWaiters = append(s.l.gateWaiters, s)
			return false, false
		}
		if snap := s.l.srv.topo.Load(); snap != nil && s.l.masterUnconfirmed(snap) {
			// Still not seen again: the write is not sent (see
			// masterUnconfirmed), and nothing was executed.
			s.holdDeadline = time.Time{}
			s.localError(errMasterUnconfirmed)
			return false, true
		}
	}
	s.holdDeadline = time.Time{}
	need := s.srv.cfg.MinReplicasToWrite
	if need <= 0 || s.l.goodReplicas() >= need {
		s.gateDeadline = time.Time{}
		return true, true
	}
	now := time.Now()
	if s.srv.cfg.WriteGate == "wait" {
		if s.gateDeadline.IsZero() {
			s.gateDeadline = now.Add(s.srv.cfg.WriteGateTimeout)
			s.l.afterFunc(s.srv.cfg.WriteGateTimeout)
		}
		if now.Before(s.gateDeadline) {
			s.stalled = true
			s.l.gateWaiters = append(s.l.gateWaiters, s)
			s.l.refreshReplicaOffsets()
			return false, false
		}
	}
	s.gateDeadline = time.Time{}
	s.l.stats.gateRejections.Add(1)
	s.localError(errNoReplicas)
	return false, true
}

// afterFunc runs checkParked on the loop after d.
func (l *loop) afterFunc(d time.Duration) {
	time.AfterFunc(d, func() { _ = l.el.Execute(context.Background(), l.timerTask) })
}

func newTimerTask(l *loop) gnet.Runnable {
	return gnet.RunnableFunc(func(context.Context) error {
		l.tick()
		l.checkParked()
		l.flush()
		return nil
	})
}

// checkGateWaiters resumes the sessions whose write may now go, or whose
// wait is over (their dispatch then answers -NOREPLICAS).
func (l *loop) checkGateWaiters(now time.Time) {
	if len(l.gateWaiters) == 0 {
		return
	}
	open := !l.writesHeld(now) && l.goodReplicas() >= l.srv.cfg.MinReplicasToWrite
	kept := l.gateWaiters[:0]
	for _, s := range l.gateWaiters {
		if s.closed {
			continue
		}
		if open || (!s.gateDeadline.IsZero() && !now.Before(s.gateDeadline)) || (!s.holdDeadline.IsZero() && !now.Before(s.holdDeadline)) {
			s.resume()
			continue
		}
		kept = append(kept, s)
	}
	for i := len(kept); i < len(l.gateWaiters); i++ {
		l.gateWaiters[i] = nil
	}
	l.gateWaiters = kept
}

// syncWait is a write reply held until enough replicas applied the write
// (--sync-replicas).
type syncWait struct {
	s        *session
	exec     bool
	seq      uint64
	fence    int64
	deadline time.Time
	reply    []byte
}

// holdForReplicas parks a write's reply until SyncReplicas replicas have
// applied fence. It returns false when they already have.
func (l *loop) holdForReplicas(s *session, seq uint64, exec bool, fence int64, reply []byte) bool {
	if l.ackedReplicas(fence) >= l.srv.cfg.SyncReplicas {
		return false
	}
	s.heldOutstanding++
	l.syncWaits = append(l.syncWaits, syncWait{
		s: s, seq: seq, fence: fence, exec: exec,
		deadline: time.Now().Add(l.srv.cfg.SyncTimeout),
		reply:    append([]byte(nil), reply...),
	})
	if len(l.syncWaits) == 1 {
		l.afterFunc(l.srv.cfg.SyncTimeout)
	}
	l.refreshReplicaOffsets()
	return true
}

func (l *loop) checkSyncWaits(now time.Time) {
	if len(l.syncWaits) == 0 {
		return
	}
	kept := l.syncWaits[:0]
	for _, w := range l.syncWaits {
		if w.s.closed {
			continue
		}
		if l.ackedReplicas(w.fence) >= l.srv.cfg.SyncReplicas || !now.Before(w.deadline) {
			w.s.heldOutstanding--
		}
		switch {
		case l.ackedReplicas(w.fence) >= l.srv.cfg.SyncReplicas:
			w.s.release(nil, w.seq, w.exec, w.reply)
		case !now.Before(w.deadline):
			if l.srv.cfg.SyncTimeoutAction == "pass" {
				w.s.release(nil, w.seq, w.exec, w.reply)
			} else {
				if w.exec && len(w.s.execQueue) > 0 {
					w.s.execQueue = w.s.execQueue[1:] // this EXEC's slots: the error replaces its array
				}
				var buf [160]byte
				w.s.deliver(nil, w.seq, resp.AppendError(buf[:0], errSyncTimeout))
			}
		default:
			kept = append(kept, w)
			continue
		}
	}
	for i := len(kept); i < len(l.syncWaits); i++ {
		l.syncWaits[i] = syncWait{}
	}
	l.syncWaits = kept
	if len(l.syncWaits) > 0 {
		l.afterFunc(time.Until(l.syncWaits[0].deadline) + time.Millisecond)
	}
}

// errSyncTimeout: the write ran on the master, but the replicas did not
// confirm it in time. It keeps Redis's NOREPLICAS prefix, which clients
// treat as "not safely replicated", and says the write was applied.
const errSyncTimeout = "NOREPLICAS Write applied on the master but not confirmed by enough replicas within --sync-timeout"
