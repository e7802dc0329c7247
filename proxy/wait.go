package proxy

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
)

// waitState is a WAIT the proxy is answering for its session: how many
// replicas must have applied the session's last write fence, and until when.
type waitState struct {
	seq      uint64
	want     int
	fence    int64
	deadline time.Time // zero: no timeout (WAIT n 0 blocks until satisfied)
}

// wait answers WAIT numreplicas timeout from this client's own write fence
// and the replicas' applied offsets (DESIGN.md "Write rules"): never from a
// shared connection's state, and the proxy's own replication link, which is
// not a replica the topology lists, never counts.
func (s *session) wait(args [][]byte) bool {
	if len(args) != 3 {
		s.localError("ERR wrong number of arguments for 'wait' command")
		return true
	}
	want, ok := resp.ParseInt(args[1])
	if !ok {
		s.localError(errNotInteger)
		return true
	}
	ms, ok := resp.ParseInt(args[2])
	if !ok {
		s.localError("ERR timeout is not an integer or out of range")
		return true
	}
	if ms < 0 {
		s.localError("ERR timeout is negative")
		return true
	}
	if s.pinned != nil {
		return s.send(resp.Command{Args: args}, nil, false, true) // queued in MULTI: the server answers
	}
	// The fence of a write still in flight is not known yet.
	if !s.idle() {
		s.stalled = true
		return false
	}
	w := &waitState{want: int(min(want, 1<<20)), fence: s.writeFence}
	if s.fenceUnproven {
		// Its last write was acknowledged by a master that has been
		// replaced, beyond what the new one is known to hold: no replica
		// can be proven to have it.
		s.l.stats.waits[waitTimeout].Add(1)
		s.scratch = resp.AppendInt(s.scratch[:0], 0)
		s.localReply(s.scratch)
		return true
	}
	if n := s.l.ackedReplicas(w.fence); n >= w.want || w.want <= 0 {
		s.l.stats.waits[waitSatisfied].Add(1)
		s.scratch = resp.AppendInt(s.scratch[:0], int64(n))
		s.localReply(s.scratch)
		return true
	}
	w.seq = s.replies.reserve()
	if ms > 0 {
		w.deadline = time.Now().Add(time.Duration(ms) * time.Millisecond)
		s.l.afterFunc(time.Duration(ms) * time.Millisecond)
	}
	s.waiting = w
	s.stalled = true // like Redis: a client blocked in WAIT runs nothing else
	s.l.parked = append(s.l.parked, s)
	s.l.refreshReplicaOffsets()
	return true
}

// ackedReplicas counts replicas of the master known to have applied fence.
func (l *loop) ackedReplicas(fence int64) int {
	snap := l.srv.topo.Load()
	if snap == nil {
		return 0
	}
	n := 0
	for i := range snap.Replicas {
		st := &snap.Replicas[i]
		if !st.Reachable || st.Role != "replica" || st.ReplID != snap.Master.ReplID {
			continue
		}
		if off := l.appliedOffset(st); off >= fence && off >= 0 {
			n++
		}
	}
	return n
}

// appliedOffset is the freshest applied offset known for a replica: the
// monitor's poll or a ROLE this loop saw since.
func (l *loop) appliedOffset(st *router.NodeState) int64 {
	if p := l.replicas[st.Addr]; p != nil && p.knownOffset > st.Offset {
		return p.knownOffset
	}
	return st.Offset
}

// checkParked answers the WAITs that are satisfied or timed out, and keeps
// replica offsets coming for the others.
func (l *loop) checkParked() {
	now := time.Now()
	l.checkWitness(now)
	l.checkGateWaiters(now)
	l.checkSyncWaits(now)
	if len(l.parked) == 0 {
		if len(l.gateWaiters) > 0 || len(l.syncWaits) > 0 {
			l.refreshReplicaOffsets()
		}
		return
	}
	kept := l.parked[:0]
	for _, s := range l.parked {
		w := s.waiting
		if s.closed || w == nil {
			continue
		}
		n := l.ackedReplicas(w.fence)
		// An unprovable fence (a master switch lost the write's history)
		// is answered at once with the 0 replicas that can be proven.
		timedOut := (!w.deadline.IsZero() && !now.Before(w.deadline)) || w.fence == unprovableFence
		if n < w.want && !timedOut {
			kept = append(kept, s)
			continue
		}
		if n >= w.want {
			l.stats.waits[waitSatisfied].Add(1)
		} else {
			l.stats.waits[waitTimeout].Add(1)
		}
		s.waiting = nil
		var buf [24]byte
		s.deliver(nil, w.seq, resp.AppendInt(buf[:0], int64(n)))
		s.resume()
	}
	for i := len(kept); i < len(l.parked); i++ {
		l.parked[i] = nil
	}
	l.parked = kept
	if len(l.parked) > 0 || len(l.gateWaiters) > 0 || len(l.syncWaits) > 0 {
		l.refreshReplicaOffsets()
	}
}

// refreshReplicaOffsets asks every reachable replica for its offset with a
// ROLE on this loop's connection, one at a time per replica and at most once
// per refreshInterval; checkParked runs on each answer and asks again while
// anyone waits. A paused replica simply never answers: the waiters'
// timeouts still fire.
func (l *loop) refreshReplicaOffsets() {
	snap := l.srv.topo.Load()
	if snap == nil {
		return
	}
	now := time.Now()
	if wait := l.lastRefresh.Add(refreshInterval).Sub(now); wait > 0 {
		if !l.refreshTimer {
			l.refreshTimer = true
			time.AfterFunc(wait, func() {
				_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
					l.tick()
					l.refreshTimer = false
					l.checkParked()
					l.flush()
					return nil
				}))
			})
		}
		return
	}
	l.lastRefresh = now
	for i := range snap.Replicas {
		st := &snap.Replicas[i]
		if !st.Reachable {
			continue
		}
		p := l.replicaPool(st.Addr)
		b, _ := l.sharedBackend(p, 2)
		if b == nil || b.refreshing {
			continue
		}
		b.refreshing = true
		if b.pend.len() == 0 {
			b.lastProgress = now
		}
		b.out = append(b.out, roleRequest...)
		b.pend.push(pending{kind: pendRefresh, reqEnd: b.reqEnd()})
		l.markBackend(b)
	}
}

// refreshInterval paces the ROLEs a parked WAIT sends to replicas: fast
// enough that WAIT answers within about a millisecond of the replicas
// applying the write, slow enough not to busy the replicas.
const refreshInterval = time.Millisecond
