package proxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/router"
)

// monitor is the control plane's view of the deployment: one goroutine per
// node polls it with go-redis (INFO replication and persistence), and every
// change is published as an immutable router.Snapshot that the event loops
// read through Server.topo. Safe for concurrent use.
type monitor struct {
	srv      *Server
	interval time.Duration
	timeout  time.Duration

	mu       sync.Mutex
	master   router.NodeState
	replicas map[string]*router.NodeState // by addr
	static   map[string]bool              // named with --replica: never forgotten
	pollers  map[string]context.CancelFunc
	gen      uint64
	ctx      context.Context
	// masterRunID is the master process last seen (INFO server run_id).
	masterRunID string
	// demoted: a loop saw a replica fail at that time; it stays ineligible
	// until a poll that started after it.
	demoted map[string]time.Time
	kick    map[string]chan struct{}
	wg      sync.WaitGroup
}

func newMonitor(s *Server) *monitor {
	m := &monitor{
		srv:      s,
		interval: s.cfg.PollInterval,
		timeout:  s.cfg.HealthTimeout,
		replicas: make(map[string]*router.NodeState),
		static:   make(map[string]bool),
		pollers:  make(map[string]context.CancelFunc),
		demoted:  make(map[string]time.Time),
		kick:     make(map[string]chan struct{}),
	}
	m.master = router.NodeState{Addr: s.cfg.Master, Role: "", Offset: -1, LagBytes: -1, LagMs: -1, Reason: "unreachable"}
	for _, r := range s.cfg.Replicas {
		m.static[r] = true
		m.replicas[r] = newReplicaState(r)
	}
	return m
}

func newReplicaState(addr string) *router.NodeState {
	return &router.NodeState{Addr: addr, Offset: -1, LagBytes: -1, LagMs: -1, Reason: "unreachable"}
}

// start launches the pollers; they stop when ctx is done.
func (m *monitor) start(ctx context.Context) {
	m.mu.Lock()
	m.ctx = ctx
	m.spawnLocked(m.srv.cfg.Master, true)
	for addr := range m.replicas {
		m.spawnLocked(addr, false)
	}
	m.publishLocked()
	m.mu.Unlock()
}

func (m *monitor) wait() { m.wg.Wait() }

func (m *monitor) spawnLocked(addr string, isMaster bool) {
	if _, ok := m.pollers[addr]; ok {
		return
	}
	ctx, cancel := context.WithCancel(m.ctx)
	m.pollers[addr] = cancel
	kick := make(chan struct{}, 1)
	m.kick[addr] = kick
	m.wg.Add(1)
	go m.poll(ctx, addr, isMaster, kick)
}

// demote takes a replica out of the published snapshot at once, after a
// loop saw it fail, and asks its poller to look at it now.
func (m *monitor) demote(addr string, at time.Time) {
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
	select {
	case m.kick[addr] <- struct{}{}:
	default:
	}
}

func (m *monitor) poll(ctx context.Context, addr string, isMaster bool, kick <-chan struct{}) {
	defer m.wg.Done()
	rc := redis.NewClient(&redis.Options{
		Addr:            addr,
		Username:        m.srv.cfg.UpstreamUser,
		Password:        m.srv.cfg.UpstreamPassword,
		Protocol:        2,
		DialTimeout:     m.timeout,
		ReadTimeout:     m.timeout,
		WriteTimeout:    m.timeout,
		PoolSize:        1,
		MaxRetries:      -1,
		DisableIdentity: true,
	})
	defer rc.Close()
	t := time.NewTicker(m.interval)
	defer t.Stop()
	for {
		start := time.Now()
		info, err := rc.Info(ctx, "replication", "persistence", "server").Result()
		rtt := time.Since(start)
		if ctx.Err() != nil {
			return
		}
		fields := parseInfo(info)
		if isMaster {
			m.updateMaster(fields, start, err)
		} else {
			m.updateReplica(addr, fields, start, rtt, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
	}
}

func parseInfo(info string) map[string]string {
	f := make(map[string]string, 64)
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimRight(line, "\r")
		if k, v, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(k, "#") {
			f[k] = v
		}
	}
	return f
}

func atoi64(s string, def int64) int64 {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n
	}
	return def
}

// Seen is set to when the poll started, not when it ended: a replica demoted
// by a loop at time T is trusted again only on what it said after T.
func (m *monitor) updateMaster(f map[string]string, start time.Time, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := &m.master
	st.Seen = start
	if err != nil {
		st.Reachable, st.Reason = false, "unreachable"
		m.publishLocked()
		return
	}
	st.Reachable = true
	if runID := f["run_id"]; runID != m.masterRunID {
		// A new master process (restart, failover): its commands, modules
		// and version may differ, so classify by its own COMMAND reply.
		m.masterRunID = runID
		go m.srv.loadCommandTable(m.ctx)
	}
	st.Role = roleName(f["role"])
	st.ReplID = f["master_replid"]
	st.Offset = atoi64(f["master_repl_offset"], -1)
	st.Loading = f["loading"] == "1" || f["async_loading"] == "1"
	st.Reason = ""
	if st.Role != "master" {
		st.Reason = "not a master"
	}
	if *m.srv.cfg.DiscoverReplicas {
		m.discoverLocked(f)
	}
	m.publishLocked()
}

// discoverLocked adds the replicas the master lists (slaveN lines) and
// forgets discovered ones it no longer lists.
func (m *monitor) discoverLocked(f map[string]string) {
	listed := map[string]bool{}
	n := int(atoi64(f["connected_slaves"], 0))
	for i := 0; i < n; i++ {
		line := f["slave"+strconv.Itoa(i)]
		var ip, port string
		for _, kv := range strings.Split(line, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "ip":
				ip = v
			case "port":
				port = v
			}
		}
		if ip == "" || port == "" || port == "0" {
			continue // port 0: a link that announces no address, like the proxy's own
		}
		addr := net.JoinHostPort(ip, port)
		if m.srv.isOwnLink(addr) {
			continue
		}
		listed[addr] = true
		if _, ok := m.replicas[addr]; !ok {
			m.srv.log.Info("replica discovered", "replica", addr)
			m.replicas[addr] = newReplicaState(addr)
			m.spawnLocked(addr, false)
		}
	}
	for addr, st := range m.replicas {
		if !listed[addr] && !m.static[addr] && !st.Reachable {
			m.srv.log.Info("replica forgotten", "replica", addr)
			delete(m.replicas, addr)
			if cancel := m.pollers[addr]; cancel != nil {
				cancel()
				delete(m.pollers, addr)
			}
		}
	}
}

func roleName(r string) string {
	switch r {
	case "master":
		return "master"
	case "slave", "replica":
		return "replica"
	}
	return ""
}

func (m *monitor) updateReplica(addr string, f map[string]string, start time.Time, rtt time.Duration, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.replicas[addr]
	if st == nil {
		return
	}
	st.Seen = start
	if err != nil {
		// Keep what it last said (offset, history): the lag of a replica
		// that stopped answering keeps growing from its last known offset,
		// which is what an operator needs to see.
		st.Reachable, st.LinkUp, st.Reason = false, false, "unreachable"
		m.publishLocked()
		return
	}
	st.Reachable = true
	if st.RTT == 0 {
		st.RTT = rtt
	} else {
		st.RTT = (st.RTT*4 + rtt) / 5
	}
	st.Role = roleName(f["role"])
	st.LinkUp = f["master_link_status"] == "up"
	st.Syncing = f["master_sync_in_progress"] == "1"
	st.Loading = f["loading"] == "1" || f["async_loading"] == "1"
	st.ReplID = f["master_replid"]
	st.Offset = atoi64(f["slave_repl_offset"], -1)
	follows := st.Role == "replica" && sameHostPort(net.JoinHostPort(f["master_host"], f["master_port"]), m.srv.cfg.Master)
	st.Reason = ""
	switch {
	case st.Role != "replica":
		st.Reason = "not a replica"
	case !follows:
		st.Reason = "not a replica of our master"
	}
	m.publishLocked()
}

// sameHostPort compares addresses by port and resolved IPs, since a replica
// names its master as configured ("localhost:6379" vs "127.0.0.1:6379").
func sameHostPort(a, b string) bool {
	if a == b {
		return true
	}
	ha, pa, err1 := net.SplitHostPort(a)
	hb, pb, err2 := net.SplitHostPort(b)
	if err1 != nil || err2 != nil || pa != pb {
		return false
	}
	ipsA, err1 := net.LookupHost(ha)
	ipsB, err2 := net.LookupHost(hb)
	if err1 != nil || err2 != nil {
		return false
	}
	for _, x := range ipsA {
		for _, y := range ipsB {
			if net.ParseIP(x).Equal(net.ParseIP(y)) {
				return true
			}
		}
	}
	return false
}

// publishLocked derives eligibility and lag and publishes a new snapshot.
func (m *monitor) publishLocked() {
	m.gen++
	snap := &router.Snapshot{Gen: m.gen, Taken: time.Now(), Master: m.master}
	snap.Replicas = make([]router.NodeState, 0, len(m.replicas))
	for _, st := range m.replicas {
		r := *st
		r.Eligible = false
		r.LagBytes = -1
		if r.Offset >= 0 && m.master.Offset >= 0 && r.ReplID == m.master.ReplID {
			if r.LagBytes = m.master.Offset - r.Offset; r.LagBytes < 0 {
				r.LagBytes = 0
			}
		}
		r.LagMs = m.srv.lagMs(r.Offset)
		demoted, isDemoted := m.demoted[r.Addr]
		if isDemoted && r.Seen.After(demoted) {
			delete(m.demoted, r.Addr)
			isDemoted = false
		}
		switch {
		case r.Reason != "":
		case isDemoted:
			r.Reason = "failed a read; awaiting the next poll"
		case !r.LinkUp:
			r.Reason = "link down"
		case r.Syncing:
			r.Reason = "syncing"
		case r.Loading:
			r.Reason = "loading"
		case !m.master.Reachable || r.ReplID != m.master.ReplID:
			r.Reason = "other history"
		case r.Offset < 0:
			r.Reason = "offset unknown"
		default:
			r.Eligible = true
		}
		snap.Replicas = append(snap.Replicas, r)
	}
	sortNodes(snap.Replicas)
	if prev := m.srv.topo.Load(); prev == nil || topologyChanged(prev, snap) {
		m.srv.topoChanges.Add(1)
		if prev != nil {
			m.srv.log.Info("topology changed", "gen", snap.Gen, "summary", summarize(snap))
		}
	}
	m.srv.topo.Store(snap)
}

// topologyChanged: the node set, the master's reachability or a replica's
// eligibility differs.
func topologyChanged(a, b *router.Snapshot) bool {
	if a.Master.Reachable != b.Master.Reachable || a.Master.Role != b.Master.Role || len(a.Replicas) != len(b.Replicas) {
		return true
	}
	for i := range a.Replicas {
		if a.Replicas[i].Addr != b.Replicas[i].Addr || a.Replicas[i].Eligible != b.Replicas[i].Eligible {
			return true
		}
	}
	return false
}

func summarize(s *router.Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "master %s reachable=%v", s.Master.Addr, s.Master.Reachable)
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
