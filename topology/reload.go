package topology

// SetStaticReplicas makes addrs the replicas named in the configuration
// (a reload). New ones are polled at once. One no longer named is
// forgotten — its poller stopped, its state dropped — unless the master or
// a Sentinel still lists it and discovery is on: then it stays, as a
// discovered replica, exactly as if it had never been named.
func (m *Monitor) SetStaticReplicas(addrs []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := make(map[string]bool, len(addrs))
	for _, a := range addrs {
		want[a] = true
	}
	for addr := range m.static {
		if want[addr] {
			continue
		}
		delete(m.static, addr)
		if m.cfg.DiscoverReplicas && (m.parents[addr] == m.master.Addr && m.master.Addr != "" || m.sentinelListed(addr)) {
			m.log.Info("replica no longer configured, still discovered", "replica", addr)
			continue
		}
		m.forgetLocked(addr)
		m.log.Info("replica removed by reload", "replica", addr)
	}
	for addr := range want {
		if m.static[addr] || addr == m.master.Addr {
			continue
		}
		m.static[addr] = true
		if m.replicas[addr] == nil {
			m.replicas[addr] = newReplicaState(addr)
			m.spawnLocked(addr)
		}
		m.log.Info("replica added by reload", "replica", addr)
	}
	m.publishLocked()
}
