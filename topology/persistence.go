package topology

import (
	"context"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/router"
)

// The persistence audit: whether each node can reload its data after a
// restart. AOF comes from INFO persistence (aof_enabled), polled with
// everything else; RDB needs CONFIG GET save, asked every auditInterval,
// and stays unknown (-1) where the upstream user may not run CONFIG: the
// proxy says "unknown", it never guesses.

const auditInterval = 30 * time.Second

// auditRDB asks a node whether it saves RDB snapshots: 1 yes, 0 no, -1 unknown.
func auditRDB(ctx context.Context, rc *redis.Client) int8 {
	kv, err := rc.ConfigGet(ctx, "save").Result()
	if err != nil {
		return -1
	}
	v, ok := kv["save"]
	if !ok {
		return -1
	}
	if strings.TrimSpace(v) == "" {
		return 0
	}
	return 1
}

// setRDB records an audit result.
func (m *Monitor) setRDB(addr string, rdb int8) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case addr == m.master.Addr:
		m.master.PersistRDB = rdb
		if rdb == 1 {
			m.persists[addr] = true
		}
		m.auditLocked(&m.master)
	case m.replicas[addr] != nil:
		m.replicas[addr].PersistRDB = rdb
	}
}

// auditLocked warns once, in plain words, about a master that would come
// back empty from a restart.
func (m *Monitor) auditLocked(st *router.NodeState) {
	if st.Addr != m.master.Addr || st.Role != "master" || st.PersistRDB != 0 || st.PersistAOF != 0 || m.warned[st.Addr] {
		return
	}
	m.warned[st.Addr] = true
	guard := "The empty-master guard is OFF: nothing protects the replicas' data."
	if m.cfg.Guard {
		guard = "The empty-master guard is on: it parks the replicas when the master is lost and promotes one if the master comes back empty; keep it on."
	}
	m.log.Warn("PERSISTENCE OFF ON THE MASTER: it saves no RDB and writes no AOF. If it restarts (crash, supervisor, container restart policy) it comes back EMPTY, and its replicas, resyncing from it, drop all their data. Turn on AOF (appendonly yes) or RDB snapshots (save), or do not let it restart by itself. "+guard,
		"master", st.Addr)
}
