package topology

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/router"
)

// The empty-master guard (the seed hazard, REPLICATION.md): a master with
// persistence off that restarts comes back empty on a new history, and its
// replicas, reconnecting within a second, full-resync from it and drop
// their data. The guard keeps the data:
//
//  1. Park. The instant the master process is gone (the guard's own idle
//     connection to it ends: EOF or reset, never a mere timeout, which a
//     loaded machine produces without any restart), or a poll finds a new
//     run_id on a new history (the EOF was missed), every replica of its
//     history is pointed at the parking address, where nothing listens
//     (REPLICAOF). A parked replica keeps its data, its replication ID and
//     its offset; it serves reads.
//  2. Judge, when the master answers again: on the same history (a network
//     blip, a restart that reloaded its data) the replicas are pointed back
//     at it and continue with +CONTINUE; on a new history with data (an AOF
//     restart that did not keep its replication ID) likewise, they resync
//     from data; on a new history with no keys while the replicas hold
//     keys, the seed hazard: go on to 3.
//  3. Promote the most advanced parked replica (highest offset, then lowest
//     address: every proxy in front of the deployment picks the same one),
//     point the others and the empty node at it. With Sentinel, through
//     SENTINEL FAILOVER, so Sentinel's configuration agrees; without, the
//     proxy sends the REPLICAOFs itself. Every step is idempotent.
//
// Why parking wins the race in every trial, not on average: a replica
// retries its master from replicationCron, once a second, and the restarted
// node cannot accept its connection before the process has started again
// (tens of milliseconds at the very least); the guard's REPLICAOF reaches
// every replica within a round trip of the EOF it saw at the moment the old
// process died. A replica that did reconnect first is still safe if it is
// parked before its transfer completes: REPLICAOF cancels the handshake and
// the temporary RDB, and the old dataset is flushed only once a whole RDB
// has arrived. Test: proxy.TestEmptyMasterGuard (every trial of every case
// keeps all 20,000 keys) and its guard-off case (the wipe happens).
//
// While the guard acts (Snapshot.Guarding) nothing may run on the master:
// writes are held, then refused with -TRYAGAIN; reads go to the parked
// replicas, which are eligible on the old history.

// incident is one guard episode, from the park to its outcome.
type incident struct {
	Started  time.Time
	Cause    string
	Master   string // the master whose history was in doubt
	ReplID   string // its history
	Offset   int64
	Parked   []string
	Actions  []string // in order, with their results
	Outcome  string
	Resolved time.Time
	// Promoted is the replica made master (empty if none).
	Promoted string

	old    router.NodeState
	parked map[string]bool
	phase  guardPhase
	// sentinelAsked: the master came back empty and the guard asked
	// Sentinel for the failover, at askedAt.
	sentinelAsked bool
	askedAt       time.Time
	// inprog: Sentinel answered -INPROG, a failover of its own under way
	// (asked again soon: see promoteWait).
	inprog bool
	// reparked: when each replica was last parked again (guardReplicaLocked).
	reparked map[string]time.Time
}

// promotionStalled: Sentinel accepted the guard's SENTINEL FAILOVER at
// asked, and no master switch followed within wait. Sentinel gives up on a
// failover without a word the proxy can count on (the Sentinel leading it
// killed or paused, a -failover-abort-* on a connection that was down), and
// until a switch the guard refuses every write: so it judges again, and
// asks again. Asking while the failover is still under way is harmless:
// Sentinel answers -INPROG.
func promotionStalled(phase guardPhase, sentinelAsked bool, asked, now time.Time, wait time.Duration) bool {
	return phase == phasePromoting && sentinelAsked && !asked.IsZero() && now.Sub(asked) >= wait
}

type guardPhase uint8

const (
	phaseParked    guardPhase = iota // waiting for the master to answer again
	phasePromoting                   // promotion under way
	phaseDone
)

// GuardReport is what PROXY GUARD shows: the guard's state and its last
// incident.
type GuardReport struct {
	Enabled  bool
	Active   bool
	Incident *Incident
	Actions  map[string]int64
}

// Incident is an exported copy of an incident.
type Incident struct {
	Started, Resolved     time.Time
	Cause, Master, ReplID string
	Offset                int64
	Parked, Actions       []string
	Outcome, Promoted     string
}

// guardActions counts the guard's actions by kind, for metrics.
type guardActions struct {
	mu sync.Mutex
	n  map[string]int64
}

func (g *guardActions) add(action string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n == nil {
		g.n = make(map[string]int64)
	}
	g.n[action]++
}

func (g *guardActions) snapshot() map[string]int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]int64, len(g.n))
	for k, v := range g.n {
		out[k] = v
	}
	return out
}

// GuardActionKinds are the labels of replproxy_guard_actions_total.
var GuardActionKinds = []string{"park", "unpark", "promote", "repoint", "sentinel_failover", "incident"}

// Guard returns the guard's state and last incident.
func (m *Monitor) Guard() GuardReport {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := GuardReport{Enabled: m.cfg.Guard, Actions: m.actions.snapshot()}
	inc := m.inc
	if inc == nil {
		inc = m.lastInc
	}
	if inc != nil {
		r.Active = inc.phase != phaseDone
		c := Incident{
			Started: inc.Started, Resolved: inc.Resolved, Cause: inc.Cause, Master: inc.Master,
			ReplID: inc.ReplID, Offset: inc.Offset, Outcome: inc.Outcome, Promoted: inc.Promoted,
			Parked: append([]string(nil), inc.Parked...), Actions: append([]string(nil), inc.Actions...),
		}
		r.Incident = &c
	}
	return r
}

// guarding reports whether the guard holds the master back now.
func (m *Monitor) guardingLocked() bool { return m.inc != nil && m.inc.phase != phaseDone }

// masterLost opens an incident and parks the replicas (see above).
func (m *Monitor) masterLost(addr, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if addr == m.master.Addr {
		m.masterLostLocked(why, &m.master)
	}
}

// masterLostLocked opens an incident for the master as old describes it
// (its state before it was lost).
func (m *Monitor) masterLostLocked(why string, old *router.NodeState) {
	addr := old.Addr
	if !m.cfg.Guard || addr == "" || addr != m.master.Addr || m.inc != nil || old.ReplID == "" || old.Role != "master" {
		return
	}
	if old.PersistAOF == 1 || old.PersistRDB == 1 || m.persists[addr] {
		// It reloads its data when it restarts: no seed hazard. (Unknown,
		// -1, is treated as off: parking costs a pause in replication,
		// not parking can cost the data.)
		return
	}
	now := time.Now()
	inc := &incident{
		Started: now, Cause: why, Master: addr, ReplID: old.ReplID, Offset: old.Offset,
		old: *old, parked: make(map[string]bool),
	}
	for a, st := range m.replicas {
		// Replicas of this master's history only: one Sentinel already moved
		// elsewhere is not ours to park.
		if st.Role != "replica" || st.ReplID != inc.ReplID {
			continue
		}
		// A replica of another node the proxy polls is left attached: a
		// replica of a replica (master -> R1 -> R2) has its chain's head
		// parked here, and a parked replica passes nothing on, so nothing
		// from the empty master reaches it; when the guard is done its
		// parent is pointed back at the data and it continues from it. One
		// whose parent the proxy does not poll (so cannot park) is parked
		// itself.
		if p := m.parents[a]; p != "" && !sameHostPort(p, addr) && !st.Parked && m.replicas[p] != nil {
			continue
		}
		inc.parked[a] = true
		inc.Parked = append(inc.Parked, a)
	}
	if len(inc.Parked) == 0 {
		// No replica holds its history: nothing to protect, and an
		// incident would refuse writes until a successor that cannot
		// exist was found.
		return
	}
	sort.Strings(inc.Parked)
	m.inc = inc
	m.actions.add("incident")
	m.log.Warn("EMPTY-MASTER GUARD: master lost; parking its replicas so they keep their data until its history is known",
		"master", addr, "why", why, "replicas", inc.Parked, "park_at", m.cfg.ParkAddr)
	host, port, _ := net.SplitHostPort(m.cfg.ParkAddr)
	for _, a := range inc.Parked {
		m.actLocked(inc, a, "park", "REPLICAOF", host, port)
	}
	m.troubleLocked(now)
	m.holdLocked(now, "the empty-master guard is acting")
	m.publishLocked()
}

// guardReplicaLocked parks again a replica of the incident that a poll
// finds back on the old history and no longer parked (needsRepark).
func (m *Monitor) guardReplicaLocked(st *router.NodeState, now time.Time) {
	inc := m.inc
	if inc == nil || !needsRepark(inc.phase, inc.parked[st.Addr], st, inc.reparked[st.Addr], now, inc.ReplID) {
		return
	}
	if inc.reparked == nil {
		inc.reparked = make(map[string]time.Time)
	}
	inc.reparked[st.Addr] = now
	m.log.Warn("EMPTY-MASTER GUARD: a parked replica is back on the old history but no longer parked (restarted from its own data, with its configured master); parking it again",
		"replica", st.Addr, "offset", st.Offset)
	host, port, _ := net.SplitHostPort(m.cfg.ParkAddr)
	m.actLocked(inc, st.Addr, "park", "REPLICAOF", host, port)
}

// needsRepark: while the guard waits for the master's history to be
// known, a replica it parked answers as a replica of the old history
// (replid) that is not parked: it restarted from its own RDB and its
// configuration points it at the master again, where it would resync
// from the node that came back empty and drop that data. Parked again it
// keeps it, for the successor choice (which waits for every replica on
// the old history to be seen parked). REPLICAOF cancels a resync under
// way and the temporary RDB with it. At most once a second per replica:
// polls come faster than a REPLICAOF shows.
func needsRepark(phase guardPhase, ours bool, st *router.NodeState, last, now time.Time, replid string) bool {
	return phase == phaseParked && ours && st.Reachable && st.Role == "replica" && !st.Parked &&
		!st.Loading && st.ReplID == replid && now.Sub(last) >= time.Second
}

func (m *Monitor) parkedAt(addr string) bool {
	st := m.replicas[addr]
	return st != nil && st.Parked
}

// guardMasterLocked judges a master that answers again during an
// incident; parent is the node it replicates from when it answers as a
// replica.
func (m *Monitor) guardMasterLocked(st *router.NodeState, parent string) {
	inc := m.inc
	if inc != nil && promotionStalled(inc.phase, inc.sentinelAsked, inc.askedAt, time.Now(), m.promoteWait(inc.inprog)) {
		m.log.Warn("EMPTY-MASTER GUARD: Sentinel's failover switched no master; judging again", "asked", inc.askedAt, "replica", inc.Promoted)
		inc.noteLocked(time.Now().Format("15:04:05.000") + " no master switch " + m.promoteWait(inc.inprog).String() + " after SENTINEL FAILOVER: judging again")
		inc.phase, inc.Promoted, inc.sentinelAsked, inc.askedAt, inc.inprog = phaseParked, "", false, time.Time{}, false
	}
	if inc == nil || inc.phase != phaseParked || st.Loading {
		return
	}
	asReplica := restartedAsReplica(&inc.old, st) && !m.holdsHistoryLocked(parent, inc.ReplID)
	if st.Role != "master" && !asReplica {
		// A replica of a master that holds the history (another proxy's
		// guard, or Sentinel, promoted it): the switch follows it.
		return
	}
	cont, _ := continuity(inc.ReplID, st)
	best, bestKeys := m.successorLocked(inc)
	switch {
	case asReplica && best == "" && historyGone(inc.ReplID, m.parkedStatesLocked(inc)):
		// As below, with no master to point anything at.
		m.closeIncidentLocked(inc, "the master restarted as a replica and every parked replica restarted on a new history since: no node holds the old data")
	case asReplica && best == "":
		m.log.Debug("EMPTY-MASTER GUARD: the master restarted as a replica; waiting until every replica is seen parked", "master", st.Addr)
	case asReplica:
		inc.phase = phasePromoting
		inc.Promoted = best
		m.log.Warn("EMPTY-MASTER GUARD: the master restarted as a REPLICA (its configuration names a master); promoting the most advanced replica",
			"master", st.Addr, "its_master", parent, "its_replid", st.ReplID, "its_offset", st.Offset,
			"replica", best, "keys_on_replica", bestKeys, "old_replid", inc.ReplID)
		lost := st.Addr // st is m.master: a switch rewrites it
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			if m.parentPromoted(parent, inc.ReplID) {
				// What the proxy knew of its parent was older than the
				// poll of the master: it is a successor already. Judged
				// again at the next poll, which knows it.
				m.mu.Lock()
				if m.inc == inc && inc.phase == phasePromoting {
					inc.phase, inc.Promoted = phaseParked, ""
				}
				m.mu.Unlock()
				return
			}
			m.promote(inc, best, lost)
		}()
	case cont:
		m.closeIncidentLocked(inc, "the master came back on its history: replicas resumed from it")
		m.unparkLocked(inc, st.Addr)
	case st.Keys < 0:
		// Its keyspace is not known yet: no judgement either way.
	case st.Keys > 0:
		// A new history that holds data (an AOF restart that did not keep
		// its replication ID): resyncing from it loses nothing.
		m.closeIncidentLocked(inc, "the master came back on a new history with its data: replicas resync from it")
		m.unparkLocked(inc, st.Addr)
	case best == "" && historyGone(inc.ReplID, m.parkedStatesLocked(inc)):
		// Every replica parked has restarted since (empty: a new history,
		// not a continuation of the old one): the data is gone from all of
		// them, there is nothing left to protect, and waiting for one to be
		// seen parked on the old history would refuse writes for good.
		m.closeIncidentLocked(inc, "every parked replica restarted on a new history since: no node holds the old data; replicas resync from the master")
		m.unparkLocked(inc, st.Addr)
	case best == "":
		// Before the keys test below: with no successor chosen yet,
		// bestKeys says nothing (a closed incident here unparked replicas
		// onto an empty master).
		m.log.Debug("EMPTY-MASTER GUARD: the master came back empty; waiting until every replica is seen parked", "master", st.Addr)
	case bestKeys <= 0:
		// The replicas hold nothing to protect either.
		m.closeIncidentLocked(inc, "the master came back empty, and so are its replicas: they resync from it")
		m.unparkLocked(inc, st.Addr)
	default:
		inc.phase = phasePromoting
		inc.Promoted = best
		m.log.Warn("EMPTY-MASTER GUARD: the master restarted EMPTY on a new history; promoting the most advanced replica",
			"master", st.Addr, "keys_on_master", st.Keys, "replica", best, "keys_on_replica", bestKeys,
			"old_replid", inc.ReplID, "new_replid", st.ReplID)
		empty := st.Addr // st is m.master: a switch rewrites it
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.promote(inc, best, empty)
		}()
	}
}

// holdsHistoryLocked reports whether addr is a node the proxy polls that
// runs as a master on a history continuing replid: a successor someone
// already promoted (Sentinel, or the guard of another proxy in front of
// the same deployment, which then points the old master at it).
func (m *Monitor) holdsHistoryLocked(addr, replid string) bool {
	st := m.replicas[addr]
	if st == nil || st.Role != "master" {
		return false
	}
	cont, _ := continuity(replid, st)
	return cont
}

// parentPromoted asks addr itself whether it runs as a master on a
// history continuing replid (holdsHistoryLocked, first-hand).
func (m *Monitor) parentPromoted(addr, replid string) bool {
	if addr == "" {
		return false
	}
	info, err := nodeInfo(m.ctx, addr, m.nodeOptions(), m.cfg.Timeout)
	if err != nil || roleName(info["role"]) != "master" {
		return false
	}
	st := router.NodeState{Addr: addr}
	applyInfo(&st, info)
	cont, _ := continuity(replid, &st)
	return cont
}

// restartedAsReplica: the lost master answers again as a replica, from a
// new process (a new run_id; the same one is a demotion, Sentinel's or an
// operator's, whose switch the follower sees). Its configuration named a
// master: a promoted replica restarted with its replicaof line, pointing
// at the old master, which the guard or Sentinel had made a replica of it
// (a chaos run). Nothing else breaks that loop: each refuses the other's
// sync (NOMASTERLINK), and Sentinel, seeing its master answer as a
// replica, passes over replicas whose link has been down longer than ten
// times down-after-milliseconds, which these soon are: it never fails
// over. Whatever history it reloaded, it is no longer the master, so it
// is judged as an empty master is: the most advanced parked replica is
// promoted. Unless it replicates from a node that already holds the
// history as a master (holdsHistoryLocked): then a successor exists, and
// a second promotion would only make another failover.
func restartedAsReplica(old, st *router.NodeState) bool {
	return st.Role == "replica" && old.RunID != "" && st.RunID != "" && st.RunID != old.RunID
}

// successorLocked is the replica to promote: reachable, parked, on the old
// history, highest applied offset, then lowest address (deterministic, so
// every proxy in front of the deployment chooses the same).
//
// Only offsets read after the replica was parked count: they no longer
// move, so every proxy reads the same ones. Until each reachable parked
// replica has been polled parked, there is no choice yet (two proxies
// choosing on offsets read at different moments promoted two masters).
func (m *Monitor) successorLocked(inc *incident) (string, int64) {
	cands, ready := successorCandidates(inc.ReplID, m.parkedStatesLocked(inc))
	if !ready {
		return "", 0
	}
	return chooseSuccessor(cands)
}

// successorCandidates are the nodes a successor may be chosen from: each
// reachable parked replica still on history replid, and a node already
// promoted from it (a Sentinel failover that got as far as REPLICAOF NO ONE
// and no further: it holds the data, and passing it over for a less
// advanced replica would make a second master), compared by its offset at
// the split. ready is false while a replica on the history has not been
// seen parked (its offset may still move).
func successorCandidates(replid string, nodes []*router.NodeState) (cands []router.NodeState, ready bool) {
	for _, st := range nodes {
		if st == nil || !st.Reachable {
			continue
		}
		cont, split := continuity(replid, st)
		switch {
		case !cont:
		case st.ReplID != replid:
			// Promoted from the history (replid2): only a master counts.
			if st.Role == "master" {
				c := *st
				c.Offset = split
				cands = append(cands, c)
			}
		case !st.Parked:
			return nil, false
		default:
			cands = append(cands, *st)
		}
	}
	return cands, true
}

// parkedStatesLocked returns the state of each replica inc parked (nil for
// one no longer in view).
func (m *Monitor) parkedStatesLocked(inc *incident) []*router.NodeState {
	out := make([]*router.NodeState, len(inc.Parked))
	for i, a := range inc.Parked {
		out[i] = m.replicas[a]
	}
	return out
}

// historyGone reports whether none of the nodes can still hold history
// replid: each is reachable and on another history that does not continue
// it (restarted empty). A node out of view or unreachable may still hold
// it (paused, partitioned), so it keeps the answer false.
func historyGone(replid string, nodes []*router.NodeState) bool {
	if len(nodes) == 0 {
		return false
	}
	for _, st := range nodes {
		if st == nil || !st.Reachable || st.ReplID == "" || st.ReplID == replid || st.ReplID2 == replid {
			return false
		}
	}
	return true
}

// chooseSuccessor picks the most advanced node: highest offset, then
// lowest address. It returns "" when there is none.
func chooseSuccessor(cands []router.NodeState) (string, int64) {
	best := -1
	for i := range cands {
		c := &cands[i]
		if best < 0 || c.Offset > cands[best].Offset || (c.Offset == cands[best].Offset && c.Addr < cands[best].Addr) {
			best = i
		}
	}
	if best < 0 {
		return "", 0
	}
	return cands[best].Addr, cands[best].Keys
}

// promoteWait is how long a Sentinel failover the guard asked for may take
// before the guard judges again (promotionStalled). Generous: a failover
// under load took 10.5 s in TestChaos, and asking a Sentinel that is not
// leading the one under way starts a second, competing failover.
//
// After -INPROG, a second: the failover under way is Sentinel's own (its
// master was down past down-after-milliseconds), and it may never
// complete (its choice was parked, and it waits failover-timeout before it
// aborts). Meanwhile the parked replicas' links age, and Sentinel passes
// over a replica whose link has been down longer than ten times
// down-after-milliseconds: waiting the full time made every Sentinel
// answer NOGOODSLAVE (TestEmptyMasterGuardPromotedRestartsAsReplica).
// Asking again while it runs costs another -INPROG.
func (m *Monitor) promoteWait(inprog bool) time.Duration {
	if inprog {
		return time.Second
	}
	return max(30*time.Second, 10*m.cfg.Timeout)
}

// promote makes best the master (see above). It runs on its own goroutine.
func (m *Monitor) promote(inc *incident, best, empty string) {
	ctx, cancel := context.WithTimeout(m.ctx, 10*m.cfg.Timeout)
	defer cancel()
	if m.sentinel != nil {
		// Sentinel's own failover: it picks by priority, then offset, and
		// its configuration then names the new master, so it never turns
		// it back into a replica of the empty node. The follower switches.
		for _, s := range m.sentinel.sentinels() {
			err := m.sentinel.client(s).Failover(ctx, m.cfg.SentinelMaster).Err()
			m.recordAction(inc, "sentinel_failover", s, err)
			if err == nil || strings.HasPrefix(err.Error(), "INPROG") {
				m.mu.Lock()
				inc.sentinelAsked, inc.askedAt, inc.inprog = true, time.Now(), err != nil
				m.mu.Unlock()
				m.sentinel.kickNow()
				return
			}
		}
		m.log.Error("EMPTY-MASTER GUARD: no Sentinel accepted SENTINEL FAILOVER; promoting without it")
	}
	if err := m.act(ctx, best, "REPLICAOF", "NO", "ONE"); err != nil {
		m.recordAction(inc, "promote", best, err)
		m.mu.Lock()
		inc.phase = phaseParked // judged again at the next poll
		m.mu.Unlock()
		return
	}
	m.recordAction(inc, "promote", best, nil)
	info, err := nodeInfo(ctx, best, m.nodeOptions(), m.cfg.Timeout)
	if err != nil || roleName(info["role"]) != "master" {
		m.log.Error("EMPTY-MASTER GUARD: the promoted replica does not answer as a master", "replica", best, "err", err)
		m.mu.Lock()
		inc.phase = phaseParked
		m.mu.Unlock()
		return
	}
	m.SwitchMaster(best, "empty-master guard: "+empty+" restarted empty; "+best+" holds the data", info)
}

// closeIncidentLocked ends inc with outcome and publishes it.
func (m *Monitor) closeIncidentLocked(inc *incident, outcome string) {
	m.endIncidentLocked(inc, outcome)
	m.publishLocked()
}

// endIncidentLocked ends inc without publishing (the caller does).
func (m *Monitor) endIncidentLocked(inc *incident, outcome string) {
	if inc.phase == phaseDone {
		return
	}
	inc.phase = phaseDone
	inc.Outcome = outcome
	inc.Resolved = time.Now()
	m.lastInc, m.inc = inc, nil
	m.holdUntil = time.Time{}
	m.log.Warn("EMPTY-MASTER GUARD: incident over", "outcome", outcome, "took", inc.Resolved.Sub(inc.Started))
}

// unparkLocked points every replica still parked at master.
func (m *Monitor) unparkLocked(inc *incident, master string) {
	host, port, _ := net.SplitHostPort(master)
	for _, a := range inc.Parked {
		if a == master {
			continue
		}
		kind := "unpark"
		if inc.Promoted != "" {
			kind = "repoint"
		}
		m.actLocked(inc, a, kind, "REPLICAOF", host, port)
	}
	if inc.Promoted != "" && inc.Master != master {
		// The empty node becomes a replica of the data.
		m.actLocked(inc, inc.Master, "repoint", "REPLICAOF", host, port)
	}
}

// guardSwitchedLocked: the master changed during an incident (Sentinel's
// failover, or the guard's own promotion): the replicas still parked
// follow the new master, and the empty node too.
func (m *Monitor) guardSwitchedLocked(to string) {
	inc := m.inc
	if inc == nil {
		return
	}
	// The node that holds the data now: Sentinel's choice where it made
	// one (its order, priority then offset then run ID, can differ from
	// the guard's among equals).
	inc.Promoted = to
	// Published by the switch itself, after its BeforeSwitch hook: the
	// new master must not be visible before the proxy is ready for it.
	m.endIncidentLocked(inc, "a new master holds the data: "+to)
	if m.sentinel != nil {
		// Sentinel reconfigures its replicas and the old master itself;
		// only replicas still parked are pointed at the new master here.
		host, port, _ := net.SplitHostPort(to)
		for _, a := range inc.Parked {
			if a != to && m.parkedAt(a) {
				m.actLocked(inc, a, "repoint", "REPLICAOF", host, port)
			}
		}
		if inc.sentinelAsked && inc.Master != to {
			// The empty node: Sentinel's configuration already makes it a
			// replica of the new master, but Sentinel converts it only
			// when it next looks (seconds); pointing it there now agrees
			// with Sentinel and gives it the data sooner.
			m.actLocked(inc, inc.Master, "repoint", "REPLICAOF", host, port)
		}
		return
	}
	m.unparkLocked(inc, to)
}

// actLocked sends one command to a node on its own goroutine and records
// the result in the incident.
func (m *Monitor) actLocked(inc *incident, addr, kind string, args ...string) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		// Retried: a step that times out on a loaded node (the empty node
		// not yet pointed at the data, say) must not be left undone.
		var err error
		for attempt := 0; attempt < 5 && m.ctx.Err() == nil; attempt++ {
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.Timeout)
			err = m.act(ctx, addr, args...)
			cancel()
			if err == nil || isRedisError(err) {
				break
			}
			sleepCtx(m.ctx, time.Duration(attempt+1)*100*time.Millisecond)
		}
		m.recordAction(inc, kind, addr+" "+strings.Join(args, " "), err)
		m.mu.Lock()
		m.kickLocked(addr)
		m.mu.Unlock()
	}()
}

func (m *Monitor) recordAction(inc *incident, kind, what string, err error) {
	m.actions.add(kind)
	line := time.Now().Format("15:04:05.000") + " " + kind + " " + what + ": "
	if err != nil {
		line += "failed: " + err.Error()
		m.log.Error("EMPTY-MASTER GUARD: action failed", "action", kind, "what", what, "err", err)
	} else {
		line += "ok"
		m.log.Info("EMPTY-MASTER GUARD: action", "action", kind, "what", what)
	}
	m.mu.Lock()
	inc.noteLocked(line)
	m.mu.Unlock()
}

// noteLocked appends one line to the incident's record (bounded); the
// caller holds the Monitor's lock.
func (inc *incident) noteLocked(line string) {
	if len(inc.Actions) < 64 {
		inc.Actions = append(inc.Actions, line)
	}
}

// act runs one command on a data node, on a connection kept for the guard
// (so it is not queued behind a poll).
func (m *Monitor) act(ctx context.Context, addr string, args ...string) error {
	m.actMu.Lock()
	c := m.actors[addr]
	if c == nil {
		o := m.nodeOptions()
		o.Addr = addr
		o.PoolSize = 2
		c = redis.NewClient(o)
		m.actors[addr] = c
	}
	m.actMu.Unlock()
	a := make([]any, len(args))
	for i, s := range args {
		a[i] = s
	}
	err := c.Do(ctx, a...).Err()
	if err != nil && !isRedisError(err) {
		// A connection problem: the next action dials afresh (see poll).
		m.actMu.Lock()
		if m.actors[addr] == c {
			delete(m.actors, addr)
		}
		m.actMu.Unlock()
		c.Close()
	}
	return err
}

func (m *Monitor) nodeOptions() *redis.Options {
	return &redis.Options{
		Username:        m.cfg.User,
		Password:        m.cfg.Password,
		TLSConfig:       m.cfg.TLS,
		Protocol:        2,
		DialTimeout:     m.cfg.Timeout,
		ReadTimeout:     m.cfg.Timeout,
		WriteTimeout:    m.cfg.Timeout,
		PoolSize:        1,
		MaxRetries:      -1,
		DisableIdentity: true,
	}
}

// watchMaster keeps an idle connection to the master, so the guard learns
// of the master's death from the EOF, at once, rather than at the next
// poll. It is a plain connection that sends a PING a second (so a server
// `timeout` never closes it): a subscription would show in PUBSUB CHANNELS,
// a blocked command in blocked_clients, and clients would see either.
func (m *Monitor) watchMaster(ctx context.Context) {
	defer m.wg.Done()
	for ctx.Err() == nil {
		addr := m.Master()
		if addr == "" {
			sleepCtx(ctx, m.cfg.PollInterval)
			continue
		}
		err := m.watchOnce(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		var ne net.Error
		if errors.Is(err, errWatchSwitched) {
			continue // the master changed: watch the new one
		}
		if errors.As(err, &ne) && ne.Timeout() {
			// Slow, not dead (a loaded machine, a long command): only
			// the connection's end says the process is gone.
			continue
		}
		if m.Master() == addr {
			m.masterLost(addr, "the connection to the master closed: "+err.Error())
		}
		sleepCtx(ctx, 50*time.Millisecond)
	}
}

// watchOnce holds one watch connection until it fails.
func (m *Monitor) watchOnce(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: m.cfg.Timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	if m.cfg.TLS != nil {
		cfg := m.cfg.TLS
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			// As go-redis does for its own dials: verify the name dialled.
			host, _, _ := net.SplitHostPort(addr)
			cfg = cfg.Clone()
			cfg.ServerName = host
		}
		conn = tls.Client(conn, cfg)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	r := bufio.NewReader(conn)
	if m.cfg.Password != "" {
		auth := []string{"AUTH", m.cfg.Password}
		if m.cfg.User != "" {
			auth = []string{"AUTH", m.cfg.User, m.cfg.Password}
		}
		if err := watchRoundTrip(conn, r, m.cfg.Timeout, auth...); err != nil {
			return err
		}
	}
	for {
		if m.Master() != addr {
			// A switch: a connection left on the old master would see its
			// end, not the new master's, and a promoted replica that then
			// restarts would go unseen (a chaos run: it came back a replica
			// of the old master, itself a replica of it, and nothing broke
			// the loop).
			return errWatchSwitched
		}
		if err := watchRoundTrip(conn, r, m.cfg.Timeout, "PING"); err != nil {
			return err
		}
		// Idle until the next ping: a read that ends early is the EOF.
		conn.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := r.Peek(1); err == nil {
			return errors.New("unexpected bytes from the master")
		} else if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			return err
		}
	}
}

// errWatchSwitched ends a watch whose node is no longer the master.
var errWatchSwitched = errors.New("the master changed")

// watchRoundTrip sends one command and reads a one-line reply.
func watchRoundTrip(conn net.Conn, r *bufio.Reader, timeout time.Duration, args ...string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return err
	}
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.HasPrefix(line, "-") {
		return errors.New(strings.TrimSpace(line[1:]))
	}
	return nil
}

// isRedisError: the node answered with an error reply (the connection works).
func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
