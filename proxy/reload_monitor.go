package proxy

// PORT TO THE CONTROL PLANE: this is Reload's hook into the topology
// monitor of proxy/topology.go, kept apart so it moves as one piece. The
// control-plane package needs the same operation ("the configured replicas
// are now these"); Reload calls it through Server.setStaticReplicas.

// setStaticReplicas makes addrs the replicas named in the configuration.
// New ones are polled at once. One no longer named is forgotten (its poller
// stopped, its state dropped); if the master still lists it and discovery
// is on, the next master poll finds it again as a discovered replica.
func (m *monitor) setStaticReplicas(addrs []string) {
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
		delete(m.replicas, addr)
		delete(m.demoted, addr)
		if cancel := m.pollers[addr]; cancel != nil {
			cancel()
			delete(m.pollers, addr)
		}
		m.srv.log.Info("replica removed by reload", "replica", addr)
	}
	for addr := range want {
		if m.static[addr] {
			continue
		}
		m.static[addr] = true
		if m.replicas[addr] == nil {
			m.replicas[addr] = newReplicaState(addr)
		}
		if m.ctx != nil && m.ctx.Err() == nil {
			m.spawnLocked(addr, false)
		}
		m.srv.log.Info("replica added by reload", "replica", addr)
	}
	m.publishLocked()
}

// setStaticReplicas is Reload's entry point for the replica list.
func (s *Server) setStaticReplicas(addrs []string) { s.mon.setStaticReplicas(addrs) }
