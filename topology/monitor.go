package topology

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/router"
)

// Monitor is the control plane's view of the deployment. One goroutine per
// node polls it (INFO replication, persistence, server); with Sentinels, a
// follower asks them and listens to their events (sentinel.go). Every change
// is published as an immutable router.Snapshot through Config.Publish.
// Safe for concurrent use; its state is guarded by mu.
type Monitor struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	master router.NodeState // Addr "" until a master is known
	// masterParent: the master answered as a replica of this node.
	masterParent string
	masterRunID  string
	replicas     map[string]*router.NodeState // by addr
	// parents: replica -> the node its INFO names as its master, by the
	// address the monitor knows that node by (resolveParent).
	parents map[string]string
	// lists: node -> the replicas its last answer listed (INFO slaveN),
	// for discovery down the tree; a replica that stops answering loses
	// its entry, the master keeps its last one.
	lists  map[string][]string
	static map[string]bool // named by the operator: never forgotten
	// capWarned: discovery reached maxDiscovered once (warned about once).
	capWarned bool
	pollers   map[string]context.CancelFunc
	kick      map[string]chan struct{}
	// demoted: a loop saw a replica fail at that time; it stays ineligible
	// until a poll that started after it.
	demoted map[string]time.Time
	gen     uint64
	// masterGen counts masters followed; sw is the last switch.
	masterGen uint64
	sw        router.Switch
	// troubleSince is the first sign that the master is failing (0: none
	// since the last switch); holdUntil ends the current write hold.
	troubleSince time.Time
	holdUntil    time.Time
	ctx          context.Context
	wg           sync.WaitGroup

	sentinel *follower // nil without Sentinels
	known    chan struct{}
	knownSet bool

	// The empty-master guard (guard.go): the open incident, the last one,
	// counters, and the connections its commands go on.
	inc, lastInc *incident
	actions      guardActions
	actMu        sync.Mutex
	actors       map[string]*redis.Client
	// warned: nodes already warned about for having no persistence;
	// persists: nodes seen with AOF or RDB on (a poll during a restart's
	// loading must not make a persistent master look bare to the guard).
	warned   map[string]bool
	persists map[string]bool
}

// New checks cfg and returns a Monitor that does nothing until Start.
func New(cfg Config) (*Monitor, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	m := &Monitor{
		cfg:      cfg,
		log:      cfg.Logger,
		replicas: make(map[string]*router.NodeState),
		parents:  make(map[string]string),
		lists:    make(map[string][]string),
		static:   make(map[string]bool),
		pollers:  make(map[string]context.CancelFunc),
		kick:     make(map[string]chan struct{}),
		demoted:  make(map[string]time.Time),
		known:    make(chan struct{}),
		actors:   make(map[string]*redis.Client),
		warned:   make(map[string]bool),
		persists: make(map[string]bool),
	}
	m.master = router.NodeState{Offset: -1, LagBytes: -1, LagMs: -1, Reason: "unreachable", Keys: -1, PersistRDB: -1, PersistAOF: -1}
	if len(cfg.Sentinels) == 0 {
		m.master.Addr = cfg.Master
		m.masterGen = 1
		m.knownSet = true
		close(m.known)
	} else {
		m.sentinel = newFollower(m)
	}
	for _, r := range cfg.Replicas {
		m.static[r] = true
		m.replicas[r] = newReplicaState(r)
	}
	return m, nil
}

func newReplicaState(addr string) *router.NodeState {
	return &router.NodeState{Addr: addr, Offset: -1, LagBytes: -1, LagMs: -1, Reason: "unreachable", Keys: -1, PersistRDB: -1, PersistAOF: -1}
}

// Start launches the pollers (and the Sentinel follower); they stop when
// ctx is done. It publishes a first snapshot before returning.
func (m *Monitor) Start(ctx context.Context) {
	m.mu.Lock()
	m.ctx = ctx
	if m.master.Addr != "" {
		m.spawnLocked(m.master.Addr)
	}
	for addr := range m.replicas {
		m.spawnLocked(addr)
	}
	m.publishLocked()
	m.mu.Unlock()
	if m.sentinel != nil {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.sentinel.run(ctx)
		}()
	}
	if m.cfg.Guard && !m.cfg.NoMasterWatch {
		m.wg.Add(1)
		go m.watchMaster(ctx)
	}
	context.AfterFunc(ctx, func() {
		m.actMu.Lock()
		defer m.actMu.Unlock()
		for _, c := range m.actors {
			c.Close()
		}
	})
}

// Wait returns once every goroutine Start launched has stopped.
func (m *Monitor) Wait() { m.wg.Wait() }

// Known is closed once a master is known (at once with a fixed master).
func (m *Monitor) Known() <-chan struct{} { return m.known }

// Master returns the address of the master followed now ("" if none yet).
func (m *Monitor) Master() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.master.Addr
}

// Sentinels returns the Sentinels known now (configured and discovered).
func (m *Monitor) Sentinels() []string {
	if m.sentinel == nil {
		return nil
	}
	return m.sentinel.sentinels()
}

func (m *Monitor) spawnLocked(addr string) {
	if _, ok := m.pollers[addr]; ok || m.ctx == nil {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.pollers[addr] = cancel
	kick := make(chan struct{}, 1)
	m.kick[addr] = kick
	m.wg.Add(1)
	go m.poll(ctx, addr, kick)
}

func (m *Monitor) kickLocked(addr string) {
	select {
	case m.kick[addr] <- struct{}{}:
	default:
	}
}

// Demote takes a replica out of the published snapshot at once, after a
// loop saw it fail, and asks its poller to look at it now.
func (m *Monitor) Demote(addr string, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.replicas[addr] == nil {
		return
	}
	if prev, ok := m.demoted[addr]; ok && !at.After(prev) {
		return
	}
	m.demoted[addr] = at
	m.publishLocked()
	m.kickLocked(addr)
}

// Suspect is told by the data plane that the master at addr misbehaved:
// its connection was lost, or it answered -READONLY to a write (it is a
// replica now). The master is polled at once, Sentinel is asked at once,
// and with readonly writes are held for the next master.
func (m *Monitor) Suspect(addr string, readonly bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if addr != m.master.Addr {
		return
	}
	now := time.Now()
	m.troubleLocked(now)
	switch {
	case readonly:
		m.holdLocked(now, "the master answered -READONLY")
	case m.sentinel != nil:
		m.holdLocked(now, "the connection to the master was lost")
	}
	m.kickLocked(addr)
	if m.sentinel != nil {
		m.sentinel.kickNow()
	}
}

func (m *Monitor) troubleLocked(now time.Time) {
	if m.troubleSince.IsZero() {
		m.troubleSince = now
	}
}

// holdLocked holds writes for up to HoldMax from now (see Snapshot.HoldWrites).
func (m *Monitor) holdLocked(now time.Time, why string) {
	until := now.Add(m.cfg.HoldMax)
	if until.Sub(m.holdUntil) < m.cfg.PollInterval && m.holdUntil.After(now) {
		return // already held about as long: no new snapshot for it
	}
	if !m.holdUntil.After(now) {
		m.log.Info("holding writes: a failover is in progress", "why", why, "for", m.cfg.HoldMax)
	}
	m.holdUntil = until
	m.publishLocked()
}

// release ends a write hold (a failover aborted, the master is back).
func (m *Monitor) release(why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holdUntil.IsZero() {
		return
	}
	m.log.Info("writes no longer held", "why", why)
	m.holdUntil = time.Time{}
	m.publishLocked()
}

func (m *Monitor) hold(why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := time.Now()
	m.troubleLocked(now)
	m.holdLocked(now, why)
}

func (m *Monitor) poll(ctx context.Context, addr string, kick <-chan struct{}) {
	defer m.wg.Done()
	o := m.nodeOptions()
	o.Addr = addr
	rc := redis.NewClient(o)
	defer func() { rc.Close() }()
	t := time.NewTicker(m.cfg.PollInterval)
	defer t.Stop()
	var audited time.Time
	for {
		if time.Since(audited) >= auditInterval {
			rdb := auditRDB(ctx, rc)
			if rdb >= 0 || audited.IsZero() {
				m.setRDB(addr, rdb)
			}
			audited = time.Now()
			if rdb < 0 {
				// Refused or timed out: ask again in a second, not in 30.
				audited = audited.Add(time.Second - auditInterval)
			}
		}
		start := time.Now()
		info, err := rc.Info(ctx, "replication", "persistence", "server", "keyspace").Result()
		rtt := time.Since(start)
		if ctx.Err() != nil {
			return
		}
		m.update(addr, parseInfo(info), start, rtt, err)
		if err != nil {
			// go-redis's pool, after failed dials, waits a second between
			// attempts: a fresh client sees a restarted node at the next
			// poll instead.
			rc.Close()
			rc = redis.NewClient(o)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
	}
}

// update records one poll of addr. Seen is set to when the poll started,
// not when it ended: a replica demoted by a loop at time T is trusted
// again only on what it said after T.
func (m *Monitor) update(addr string, f map[string]string, start time.Time, rtt time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case addr == m.master.Addr:
		m.updateMasterLocked(f, start, err)
	case m.replicas[addr] != nil:
		m.updateReplicaLocked(m.replicas[addr], f, start, rtt, err)
	default:
		return // forgotten while polled
	}
	m.reconsiderLocked()
	m.pruneLocked()
	m.publishLocked()
}

func (m *Monitor) updateMasterLocked(f map[string]string, start time.Time, err error) {
	st := &m.master
	st.Seen = start
	if err != nil {
		if st.Reachable {
			m.log.Warn("master unreachable", "master", st.Addr, "err", err)
		}
		st.Reachable, st.Reason = false, "unreachable"
		m.troubleLocked(start)
		if m.sentinel != nil {
			// Sentinel will fail it over, or it comes back: either way a
			// write is better held for a moment than refused.
			m.holdLocked(start, "the master is unreachable")
			m.sentinel.kickNow()
		}
		return
	}
	st.Reachable = true
	prev := *st
	applyInfo(st, f)
	if st.PersistAOF == 1 || st.PersistRDB == 1 {
		m.persists[st.Addr] = true
	}
	m.auditLocked(st)
	if m.inc == nil && m.cfg.Guard && prev.RunID != "" && st.RunID != prev.RunID {
		// A restart the guard's EOF watch missed (it was reconnecting):
		// park now, judge at the next poll. One that came back a replica
		// is lost as a master whatever history it reloaded (see
		// restartedAsReplica).
		if cont, _ := continuity(prev.ReplID, st); st.Role == "replica" || !cont {
			m.masterLostLocked("the master restarted (run_id changed) as a "+st.Role+" on history "+st.ReplID, &prev)
		}
	}
	if m.inc != nil {
		m.guardMasterLocked(st, resolveParent(parentOf(f), m.knownAddrsLocked(), sameHostPort))
	}
	if st.RunID != m.masterRunID {
		// A new master process (restart, failover): its commands, modules
		// and version may differ.
		m.masterRunID = st.RunID
		if m.cfg.NewMasterProcess != nil {
			go m.cfg.NewMasterProcess(st.Addr)
		}
	}
	st.Reason = ""
	m.masterParent = ""
	if st.Role != "master" {
		st.Reason = "not a master"
		m.masterParent = parentOf(f)
		m.troubleLocked(start)
		m.holdLocked(start, "the master answers as a replica")
		if m.sentinel != nil {
			m.sentinel.kickNow()
		}
		return
	}
	if m.cfg.DiscoverReplicas {
		m.discoverLocked(st.Addr, listedReplicas(f), "listed by the master")
	}
}

// discoverLocked records the replicas node lists (INFO replication slaveN
// lines: the master's, or a replica's own replicas) and starts polling the
// new ones, whose own lists are read in turn: discovery goes down the
// replication tree to any depth. A node is polled once however many list
// it, or under how many names (knownLocked), so a loop of REPLICAOFs
// cannot make the walk go round.
func (m *Monitor) discoverLocked(node string, listed []string, why string) {
	kept := listed[:0]
	for _, addr := range listed {
		if m.cfg.OwnLink(addr) {
			continue
		}
		if known := m.knownLocked(addr); known != "" {
			kept = append(kept, known)
			continue
		}
		if len(m.replicas) >= maxDiscovered {
			if !m.capWarned {
				m.capWarned = true
				m.log.Warn("replica not polled: discovery already polls the most it may", "replica", addr, "listed_by", node, "max", maxDiscovered)
			}
			continue
		}
		kept = append(kept, addr)
		m.addReplicaLocked(addr, why+" "+node)
	}
	m.lists[node] = kept
}

// maxDiscovered bounds the replicas discovery polls (a goroutine and a
// connection each, a poll every PollInterval): far above any real
// replication tree, low enough that lists gone wrong cannot exhaust the
// proxy.
const maxDiscovered = 512

// knownLocked returns the address the monitor polls addr under ("" when
// it does not): the same string, or the same host and port by another
// name.
func (m *Monitor) knownLocked(addr string) string {
	if addr == m.master.Addr {
		return addr
	}
	if _, ok := m.replicas[addr]; ok {
		return addr
	}
	if r := resolveParent(addr, m.knownAddrsLocked(), sameHostPort); r != addr {
		return r // the same node under another name
	}
	return ""
}

// knownAddrsLocked is the master then the replicas, sorted: what
// resolveParent searches.
func (m *Monitor) knownAddrsLocked() []string {
	out := make([]string, 0, 1+len(m.replicas))
	for a := range m.replicas {
		out = append(out, a)
	}
	sort.Strings(out)
	if m.master.Addr != "" {
		out = append([]string{m.master.Addr}, out...)
	}
	return out
}

// pruneLocked forgets the discovered replicas no node lists any more, once
// they stop answering (staleReplicas).
func (m *Monitor) pruneLocked() {
	if !m.cfg.DiscoverReplicas {
		return
	}
	for _, addr := range staleReplicas(m.replicas, m.static, m.lists, m.sentinelListed) {
		if m.inc != nil && m.inc.parked[addr] {
			// The guard's incident holds it: a replica paused or slow
			// while the master came back empty (and lists nobody) is the
			// data the guard protects; forgetting it left nothing to
			// promote.
			continue
		}
		m.log.Info("replica forgotten", "replica", addr)
		m.forgetLocked(addr)
	}
}

func (m *Monitor) sentinelListed(addr string) bool {
	return m.sentinel != nil && m.sentinel.listed(addr)
}

func (m *Monitor) addReplicaLocked(addr, why string) {
	if _, ok := m.replicas[addr]; ok || addr == m.master.Addr {
		return
	}
	m.log.Info("replica discovered", "replica", addr, "how", why)
	m.replicas[addr] = newReplicaState(addr)
	m.spawnLocked(addr)
}

func (m *Monitor) forgetLocked(addr string) {
	delete(m.replicas, addr)
	delete(m.parents, addr)
	delete(m.lists, addr)
	delete(m.demoted, addr)
	if cancel := m.pollers[addr]; cancel != nil {
		cancel()
		delete(m.pollers, addr)
		delete(m.kick, addr)
	}
}

func (m *Monitor) updateReplicaLocked(st *router.NodeState, f map[string]string, start time.Time, rtt time.Duration, err error) {
	st.Seen = start
	if err != nil {
		// Keep what it last said (offset, history): the lag of a replica
		// that stopped answering keeps growing from its last known offset,
		// which is what an operator needs to see.
		st.Reachable, st.LinkUp, st.Reason = false, false, "unreachable"
		// What it listed can no longer be confirmed (staleReplicas).
		delete(m.lists, st.Addr)
		return
	}
	st.Reachable = true
	if st.RTT == 0 {
		st.RTT = rtt
	} else {
		st.RTT = (st.RTT*4 + rtt) / 5
	}
	applyInfo(st, f)
	m.auditLocked(st)
	parent := parentOf(f)
	m.parents[st.Addr] = resolveParent(parent, m.knownAddrsLocked(), sameHostPort)
	st.Parked = parent != "" && sameHostPort(parent, m.cfg.ParkAddr)
	st.Reason = ""
	m.guardReplicaLocked(st, start)
	if m.cfg.DiscoverReplicas && st.Role == "replica" {
		// A replica's own replicas (master -> R1 -> R2). Only below nodes
		// that answer as replicas: a node we took for a replica that runs
		// as a master heads another tree until it becomes ours.
		m.discoverLocked(st.Addr, listedReplicas(f), "listed by replica")
	} else {
		delete(m.lists, st.Addr)
	}
	// Who it replicates from decides nothing here: a replica of a replica
	// is eligible on its own link and history (eligibility).
	switch {
	case st.Role == "master":
		st.Reason = "not a replica"
		if m.sentinel != nil && m.master.ReplID != "" && st.ReplID2 == m.master.ReplID {
			// Promoted from our master's history: a failover is under way.
			m.troubleLocked(start)
			if m.sentinel.selectedIs(st.Addr, m.master.Addr) {
				// The replica a Sentinel chose, now running as a master:
				// Sentinel's own decision, seen up to a second before
				// Sentinel's INFO poll of it announces +promoted-slave.
				m.switchLocked(st.Addr, "Sentinel selected it and it runs as master", nil)
				return
			}
			m.holdLocked(start, "replica "+st.Addr+" was promoted")
			m.sentinel.kickNow()
		}
	case st.Role != "replica":
		st.Reason = "not a replica"
	}
}

// reconsiderLocked follows a fixed master that became a replica: without
// Sentinel, the node it now replicates from is the master once that node
// answers as one (an operator's REPLICAOF, or Redis's FAILOVER command).
// With Sentinel, Sentinel's answer decides (sentinel.go).
func (m *Monitor) reconsiderLocked() {
	if m.sentinel != nil || m.masterParent == "" || !m.master.Reachable || m.master.Role != "replica" {
		return
	}
	parent := m.masterParent
	var cand *router.NodeState
	for addr, st := range m.replicas {
		if sameHostPort(addr, parent) {
			cand = st
			parent = addr
			break
		}
	}
	if cand == nil {
		m.addReplicaLocked(parent, "the master replicates from it")
		m.kickLocked(parent)
		return
	}
	if cand.Reachable && cand.Role == "master" {
		m.switchLocked(parent, "the master "+m.master.Addr+" became a replica of "+parent, nil)
	}
}

// SwitchMaster makes addr the master, f being its INFO (already checked to
// say role:master). It reports whether the master changed.
func (m *Monitor) SwitchMaster(addr, cause string, f map[string]string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.switchLocked(addr, cause, f)
}

// switchLocked publishes addr as the master with a new generation.
//
// Safety: the loops compare the snapshot's MasterGen with the generation
// of their master connections before every write they forward (and on
// every wake-up), and drop the old master's connections when it differs:
// once this snapshot is published, no loop starts a write on the old
// master. Writes already sent there are answered by it, or fail with the
// connection ("may or may not have been executed") and are never re-sent;
// writes it refuses with -READONLY were not executed and are re-sent to
// the node published here.
func (m *Monitor) switchLocked(addr, cause string, f map[string]string) bool {
	if addr == m.master.Addr {
		return false
	}
	old := m.master
	now := time.Now()
	next := router.NodeState{Addr: addr, Offset: -1, LagBytes: -1, LagMs: -1, Keys: -1, PersistRDB: -1, PersistAOF: -1}
	if r := m.replicas[addr]; r != nil {
		next = *r
		delete(m.replicas, addr)
		delete(m.parents, addr)
		delete(m.demoted, addr)
	}
	if f != nil {
		next.Reachable, next.Seen = true, now
		applyInfo(&next, f)
	}
	next.Reason, next.Eligible, next.LagBytes, next.LagMs = "", false, -1, -1
	if next.Role != "master" {
		next.Reason = "not a master"
	}
	// The history the switch continues or not: the old master's, unless
	// the empty-master guard is promoting — the master it replaces
	// restarted on a new, empty history, and what the promoted replica
	// continues is the incident's, the one every acknowledged write (and
	// every fence) belongs to. Writes on the empty master were refused
	// while the guard acted, so no fence names its history.
	// The guard's master as it was before it was lost, too: what it
	// answers now (empty, or a replica restarted on an older history)
	// says nothing of the history it held (its replid2 for a double
	// failover).
	oldID, oldState := old.ReplID, &old
	if m.inc != nil && m.inc.ReplID != "" {
		oldID, oldState = m.inc.ReplID, &m.inc.old
	}
	cont, split, held, heldTo, diverged := switchContinuity(oldID, oldState, &next)
	m.master = next
	m.masterParent = ""
	m.masterRunID = next.RunID
	if old.Addr != "" {
		// The old master stays in view as a replica: Sentinel (or the
		// operator) turns it into one, and reads may use it once it is.
		if _, ok := m.replicas[old.Addr]; !ok {
			m.replicas[old.Addr] = newReplicaState(old.Addr)
		}
	}
	m.spawnLocked(addr)
	m.kickLocked(addr)
	m.masterGen++
	sw := router.Switch{From: old.Addr, To: addr, Cause: cause, At: now, Continues: cont, SplitOffset: split, OldReplID: oldID, HeldID: held, HeldTo: heldTo, Diverged: diverged}
	if !m.troubleSince.IsZero() {
		sw.Took = now.Sub(m.troubleSince)
	}
	m.sw = sw
	m.troubleSince, m.holdUntil = time.Time{}, time.Time{}
	if m.inc != nil && old.Addr != "" {
		m.guardSwitchedLocked(addr)
	}
	if old.Addr == "" {
		m.log.Info("master found", "master", addr, "how", cause)
	} else {
		m.log.Warn("MASTER SWITCH", "from", old.Addr, "to", addr, "cause", cause, "generation", m.masterGen,
			"continues_history", cont, "split_offset", split, "held_as", held, "held_to", heldTo, "diverged", diverged, "took", sw.Took)
	}
	if m.cfg.NewMasterProcess != nil {
		go m.cfg.NewMasterProcess(addr)
	}
	if m.cfg.BeforeSwitch != nil && old.Addr != "" {
		m.cfg.BeforeSwitch(sw)
	}
	m.publishLocked()
	if !m.knownSet {
		m.knownSet = true
		close(m.known)
	}
	if m.cfg.Switched != nil {
		// Under the lock, so hooks see switches in order; they must not
		// block or call back into the Monitor.
		m.cfg.Switched(sw, m.masterGen)
	}
	return true
}

// addSentinelReplicas adds the replicas Sentinel lists for our master.
func (m *Monitor) addSentinelReplicas(addrs []string) {
	if !m.cfg.DiscoverReplicas {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, a := range addrs {
		if !m.cfg.OwnLink(a) {
			m.addReplicaLocked(a, "listed by Sentinel")
		}
	}
}

// masterState returns a copy of the master's state.
func (m *Monitor) masterState() router.NodeState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.master
}

// publishLocked derives eligibility and lag and publishes a new snapshot.
func (m *Monitor) publishLocked() {
	m.gen++
	snap := &router.Snapshot{
		Gen: m.gen, Taken: time.Now(), Master: m.master,
		MasterGen: m.masterGen, Switch: m.sw,
	}
	if m.holdUntil.After(snap.Taken) {
		snap.HoldWrites, snap.HoldUntil = true, m.holdUntil
	}
	// While the guard acts, replicas are judged against the history it
	// protects, not against the node that came back empty.
	em := &m.master
	if m.guardingLocked() {
		snap.Guarding = true
		em = &m.inc.old
	}
	snap.Replicas = make([]router.NodeState, 0, len(m.replicas))
	depths := treeDepths(m.master.Addr, m.parents)
	for _, st := range m.replicas {
		r := *st
		r.Parent, r.Depth = m.parents[r.Addr], depths[r.Addr]
		r.Eligible = false
		r.LagBytes = -1
		if r.Offset >= 0 && em.Offset >= 0 && r.ReplID == em.ReplID {
			if r.LagBytes = em.Offset - r.Offset; r.LagBytes < 0 {
				r.LagBytes = 0
			}
		}
		r.LagMs = m.cfg.LagMs(r.Offset)
		demoted, isDemoted := m.demoted[r.Addr]
		if isDemoted && r.Seen.After(demoted) {
			delete(m.demoted, r.Addr)
			isDemoted = false
		}
		if r.Parked && snap.Guarding {
			r.LinkUp = true // parked on purpose: its data is the data
		}
		r.Eligible, r.Reason = eligibility(&r, em, isDemoted)
		snap.Replicas = append(snap.Replicas, r)
	}
	sortNodes(snap.Replicas)
	m.cfg.Publish(snap)
}

// Changed reports whether b differs from a in what an operator is told
// about: the node set, the master, its reachability or a replica's
// eligibility.
func Changed(a, b *router.Snapshot) bool {
	if a.MasterGen != b.MasterGen || a.Master.Reachable != b.Master.Reachable || a.Master.Role != b.Master.Role ||
		a.HoldWrites != b.HoldWrites || len(a.Replicas) != len(b.Replicas) {
		return true
	}
	for i := range a.Replicas {
		if a.Replicas[i].Addr != b.Replicas[i].Addr || a.Replicas[i].Eligible != b.Replicas[i].Eligible {
			return true
		}
	}
	return false
}

// Summarize is a one-line description of s for logs.
func Summarize(s *router.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "master %s reachable=%v gen=%d", s.Master.Addr, s.Master.Reachable, s.MasterGen)
	if s.HoldWrites {
		b.WriteString(" writes-held")
	}
	for _, r := range s.Replicas {
		if r.Eligible {
			fmt.Fprintf(&b, "; %s eligible", r.Addr)
		} else {
			fmt.Fprintf(&b, "; %s %s", r.Addr, r.Reason)
		}
	}
	return b.String()
}

func sortNodes(ns []router.NodeState) {
	for i := 1; i < len(ns); i++ {
		for j := i; j > 0 && ns[j].Addr < ns[j-1].Addr; j-- {
			ns[j], ns[j-1] = ns[j-1], ns[j]
		}
	}
}

// nodeInfo asks addr for INFO replication and server with a short-lived
// connection: how a node Sentinel names is checked before it is used.
func nodeInfo(ctx context.Context, addr string, opts *redis.Options, timeout time.Duration) (map[string]string, error) {
	o := *opts
	o.Addr = addr
	rc := redis.NewClient(&o)
	defer rc.Close()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, err := rc.Info(ctx, "replication", "server").Result()
	if err != nil {
		return nil, err
	}
	return parseInfo(info), nil
}
