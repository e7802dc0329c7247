package proxy

import (
	"bytes"
	"context"
	"strings"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/replproxy/replproxy/metrics"
	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
	"github.com/replproxy/replproxy/topology"
)

// Master switches in the data plane (DESIGN.md "Failover and data safety").
//
// The control plane (package topology) publishes the master as part of
// the snapshot, numbered by MasterGen. Each loop's master connections
// belong to one generation (loop.masterGen). The rule that keeps writes
// off a replaced master: dispatch compares the snapshot's MasterGen with
// the loop's before it runs any request, and when they differ the request
// waits (the session stalls) for the loop's switch task, which closes every
// connection to the old master before the session runs again. So no request
// is sent to the old master after the loop has seen the new snapshot; the
// loop sees it at its next request, and at once through the task the
// control plane queues on every loop (Server.switched).
//
// What happens to requests in flight on the old master:
//   - answered before the switch: delivered as answered;
//   - a write answered -READONLY (the node became a replica: the write was
//     not executed) is kept with its bytes and re-sent, once, to the new
//     master; the client never sees -READONLY (bounded by FailoverHold,
//     after which the -READONLY is delivered as it came);
//   - still unanswered when the switch closes the connection: the client
//     gets "connection lost" (it may or may not have run), never a retry.

// publish stores a snapshot from the control plane.
func (s *Server) publish(snap *router.Snapshot) {
	if prev := s.topo.Load(); prev == nil || topology.Changed(prev, snap) {
		s.topoChanges.Add(1)
		if prev != nil {
			s.log.Info("topology changed", "gen", snap.Gen, "summary", topology.Summarize(snap))
		}
	}
	s.topo.Store(snap)
}

// switched is the control plane's hook after a master switch (called in
// order, under its lock: it must not block). The snapshot is already
// published.
func (s *Server) switched(sw router.Switch, gen uint64) {
	s.log.Debug("switched hook", "to", sw.To, "gen", gen)
	if s.link != nil {
		if sw.Continues && sw.HeldID != "" {
			// The new master holds the history only up to the split:
			// the link forks there and continues (no full resync, no
			// blind window), keeping the suffix whole for the replay.
			s.link.SetMasterContinuing(sw.To, sw.HeldID, sw.HeldTo)
		} else {
			s.link.SetMaster(sw.To)
		}
	}
	s.startReplay()
	if sw.From != "" {
		s.switches.record(sw)
		s.lastSwitch.Store(&sw)
	}
	if !sw.Continues {
		// Offsets of the old history say nothing about the new one: the
		// causal fence starts over, and causal reads use the master until
		// fences taken on the new history are public (fenceGrace).
		s.fence.Store(0)
		s.fenceLost()
	}
	for _, l := range *s.loopLst.Load() {
		_ = l.el.Execute(context.Background(), l.switchTask)
	}
}

// switchStats counts switches by cause kind and keeps their durations.
type switchStats struct {
	mu      sync.Mutex
	byCause map[string]int64
	took    []uint64 // per metrics.LatencyBuckets bucket, +Inf last
	tookSum float64
}

func (w *switchStats) record(sw router.Switch) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.byCause == nil {
		w.byCause = make(map[string]int64)
		w.took = make([]uint64, len(metrics.SwitchBuckets)+1)
	}
	w.byCause[causeKind(sw.Cause)]++
	i := len(metrics.SwitchBuckets)
	for j, b := range metrics.SwitchBuckets {
		if sw.Took.Seconds() <= b {
			i = j
			break
		}
	}
	w.took[i]++
	w.tookSum += sw.Took.Seconds()
}

func (w *switchStats) fill(st *metrics.Stats) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, c := range switchCauses {
		st.MasterSwitches = append(st.MasterSwitches, metrics.ReasonCount{Reason: c, Count: w.byCause[c]})
	}
	if w.took != nil {
		st.SwitchDuration = metrics.NewHist(metrics.SwitchBuckets, w.took, w.tookSum)
	}
}

// switchCounts returns the switches by cause kind.
func (s *Server) switchCounts() map[string]int64 {
	s.switches.mu.Lock()
	defer s.switches.mu.Unlock()
	out := make(map[string]int64, len(s.switches.byCause))
	for k, v := range s.switches.byCause {
		out[k] = v
	}
	return out
}

var switchCauses = []string{"sentinel", "master_became_replica"}

// causeKind is the metric label of a switch cause (topology's texts).
func causeKind(cause string) string {
	if strings.Contains(cause, "Sentinel") {
		return "sentinel"
	}
	return "master_became_replica"
}

// masterCurrent reports whether the loop's master connections belong to
// the published master generation.
func (l *loop) masterCurrent() bool {
	if l.srv.replaying.Load() {
		return false
	}
	snap := l.srv.topo.Load()
	return snap == nil || snap.MasterGen == l.masterGen
}

// waitForSwitch parks s until the loop has switched masters (see the
// package comment above): it runs again from the switch task.
func (s *session) waitForSwitch() bool {
	s.stalled = true
	s.l.switchWaiters = append(s.l.switchWaiters, s)
	if !s.l.switchQueued && !s.srv.replaying.Load() {
		// (During a replay the loops are woken when it ends.)
		s.l.switchQueued = s.l.el.Execute(context.Background(), s.l.switchTask) == nil
	}
	return false
}

// switchMaster moves the loop to the published master. It runs as a loop
// task of its own, never inside a connection's callback, because it closes
// connections.
func (l *loop) switchMaster() {
	l.switchQueued = false
	snap := l.srv.topo.Load()
	if snap == nil || snap.MasterGen == l.masterGen {
		if !l.srv.replaying.Load() {
			l.resendRedirects() // kept while a replay ran
			l.resumeSwitchWaiters()
			l.flush()
		}
		return
	}
	old := l.master
	l.master = l.newPool(snap.Master.Addr, false)
	l.masterGen = snap.MasterGen
	sw := snap.Switch
	l.witnessSwitched(sw)
	// Close everything that talks to the old master: shared connections
	// (their pending requests fail with "connection lost"), idle dedicated
	// ones, and the dedicated connections of sessions in MULTI, WATCH,
	// blocking calls or pub/sub, whose clients are closed as Redis closes
	// them when Sentinel reconfigures a node (CLIENT KILL TYPE normal), so
	// their libraries reconnect and resubscribe at once.
	for i := range old.shared {
		for _, b := range old.shared[i] {
			if b != nil {
				b.close()
			}
		}
	}
	for i := range l.idleDedicated {
		for _, b := range l.idleDedicated[i] {
			b.close()
		}
		l.idleDedicated[i] = l.idleDedicated[i][:0]
	}
	for s := range l.sessions {
		if s.pinned != nil && s.pinned.pool == old {
			s.pinned.close()
		}
		l.carryFences(s, sw)
	}
	if !sw.Continues {
		l.sampleOff = 0
		for _, p := range l.replicas {
			p.knownOffset = -1
		}
	}
	if !l.srv.replaying.Load() {
		l.resendRedirects()
		l.resumeSwitchWaiters()
	}
	l.checkParked()
	l.flush()
}

// carryFences keeps what a session knows across a switch only where the
// new master's history proves it: offsets up to the split point mean the
// same writes on both sides; a write fence beyond it (or on a history the
// new master does not continue) is no longer provable, so WAIT answers 0
// for it instead of counting replicas of the new history, and monotonic
// reads start over on the new history.
func (l *loop) carryFences(s *session, sw router.Switch) {
	if !sw.Continues {
		s.floor, s.floorEpoch, s.floorConn = 0, 0, nil
	}
	if s.writeFence > 0 && (!sw.Continues || s.writeFence > sw.SplitOffset) {
		s.fenceUnproven = true
	}
	if w := s.waiting; w != nil && s.fenceUnproven {
		w.fence = unprovableFence
	}
}

// unprovableFence: an offset no replica reaches, so WAIT counts none.
const unprovableFence = 1<<63 - 1

func (l *loop) resumeSwitchWaiters() {
	for i, s := range l.switchWaiters {
		l.switchWaiters[i] = nil
		if !s.closed {
			s.resume()
		}
	}
	l.switchWaiters = l.switchWaiters[:0]
}

// redirected is a write the old master refused with -READONLY.
type redirected struct {
	gen      uint64 // the master generation that refused it
	p        pending
	proto    int
	req      []byte
	frame    []byte
	deadline time.Time
}

var readonlyPrefix = []byte("-READONLY")

// maxRedirectBytes bounds the write requests kept for a possible re-send
// on a shared master connection: one that is larger gets the -READONLY.
const maxRedirectBytes = 1 << 20

// redirect keeps a write answered -READONLY on the master for the next
// master. It reports false when it cannot be kept (not logged, too large).
func (b *backend) redirect(p pending, req, frame []byte) bool {
	if len(req) == 0 || p.sess.closed || !bytes.HasPrefix(frame, readonlyPrefix) {
		return false
	}
	l := b.l
	s := p.sess
	s.account(b, &p)
	p.retried = true
	s.retryOutstanding++
	hold := l.srv.cfg.FailoverHold
	l.redirects = append(l.redirects, redirected{
		gen: l.masterGen, p: p, proto: b.proto,
		req:      append([]byte(nil), req...),
		frame:    append([]byte(nil), frame...),
		deadline: l.now.Add(hold),
	})
	l.stats.redirected.Add(1)
	if len(l.redirects) == 1 {
		l.afterFunc(hold)
		addr := b.pool.addr
		go l.srv.mon.Suspect(addr, true) // takes the monitor's lock: not on the loop
	}
	return true
}

// resendRedirects sends the kept writes, in order, to the current master
// when it is not the one that refused them.
func (l *loop) resendRedirects() {
	kept := l.redirects[:0]
	for i := range l.redirects {
		r := &l.redirects[i]
		s := r.p.sess
		if s.closed {
			continue
		}
		if r.gen >= l.masterGen {
			kept = append(kept, *r)
			continue
		}
		b, why := l.sharedBackend(l.master, r.proto)
		if b == nil {
			s.retryOutstanding--
			var buf [256]byte
			s.deliver(nil, r.p.seq, resp.AppendError(buf[:0], errBackendDown+why))
			continue
		}
		b.send(r.p, r.req, true)
	}
	for i := len(kept); i < len(l.redirects); i++ {
		l.redirects[i] = redirected{}
	}
	l.redirects = kept
}

// expireRedirects delivers the -READONLY of kept writes past their
// deadline: no new master came in time, and the client is told the truth.
func (l *loop) expireRedirects(now time.Time) {
	if len(l.redirects) == 0 {
		return
	}
	kept := l.redirects[:0]
	for _, r := range l.redirects {
		switch {
		case r.p.sess.closed:
		case now.Before(r.deadline):
			kept = append(kept, r)
		default:
			r.p.sess.retryOutstanding--
			r.p.sess.deliver(nil, r.p.seq, r.frame)
		}
	}
	for i := len(kept); i < len(l.redirects); i++ {
		l.redirects[i] = redirected{}
	}
	l.redirects = kept
}

// guarding reports whether the empty-master guard holds the master back.
func (l *loop) guarding() bool {
	snap := l.srv.topo.Load()
	return snap != nil && snap.Guarding
}

// held reports whether writes are held for a failover now, or until the
// control plane has seen the master again (masterUnconfirmed).
func (l *loop) writesHeld(now time.Time) bool {
	snap := l.srv.topo.Load()
	return snap != nil && (snap.HoldWrites && now.Before(snap.HoldUntil) || l.masterUnconfirmed(snap))
}

// masterUnconfirmed: the loop lost its master connection and no poll of
// that master begun since has succeeded. With the empty-master guard on, a
// write must wait for one. The guard learns of a restart from its own
// watch connection's EOF, on another goroutine; the loop, redialling
// within milliseconds of the same death, could otherwise put writes on
// the restarted node first. A node that came back empty would then hold
// keys, and the guard, finding data on it, would take it for a restart
// that reloaded its data and unpark the replicas onto it: the wipe it
// exists to prevent (a CI run under load showed 144 keys on the empty
// master). A successful poll begun after the loss has dialled the node
// anew: if it restarted, that poll saw the new run_id, and the guard's
// incident (Guarding) is in the same snapshot. A persistent master
// reloads its data: no wait.
func (l *loop) masterUnconfirmed(snap *router.Snapshot) bool {
	if l.masterLostAt.IsZero() {
		return false
	}
	m := &snap.Master
	if m.Addr != l.masterLostAddr || m.Reachable && m.Seen.After(l.masterLostAt) || m.PersistRDB == 1 || m.PersistAOF == 1 {
		l.masterLostAt, l.masterLostAddr = time.Time{}, ""
		return false
	}
	return true
}

// newSwitchTask is the loop task that applies a master switch.
func newSwitchTask(l *loop) gnet.Runnable {
	return gnet.RunnableFunc(func(context.Context) error {
		l.tick()
		l.switchMaster()
		return nil
	})
}
