package proxy

import (
	"fmt"

	"github.com/replproxy/replproxy/metrics"
	"github.com/replproxy/replproxy/router"
	"github.com/replproxy/replproxy/topology"
)

// Stats fills st for a metrics scrape. Safe for concurrent use: it reads
// the loops' atomics and the published topology only.
func (s *Server) Stats(st *metrics.Stats) {
	loops := *s.loopLst.Load()
	for c := router.ClassWrite; c <= router.ClassDenied; c++ {
		for t := target(0); t < targetCount; t++ {
			var n int64
			for _, l := range loops {
				n += l.stats.commands[c][t].Load()
			}
			if n > 0 || t != targetProxy || c == router.ClassLocal || c == router.ClassDenied {
				st.Commands = append(st.Commands, metrics.CommandCount{Class: c.String(), Target: targetNames[t], Count: n})
			}
		}
	}
	for t := target(0); t < targetCount; t++ {
		per := make([]uint64, len(metrics.LatencyBuckets)+1)
		var sum int64
		for _, l := range loops {
			for i := range per {
				per[i] += l.stats.latency[t][i].Load()
			}
			sum += l.stats.latencySum[t].Load()
		}
		if t != targetProxy {
			st.Latency = append(st.Latency, metrics.NewLatencyHist(targetNames[t], per, float64(sum)/1e9))
		}
	}
	for r := fallbackReason(0); r < fallbackCount; r++ {
		var n int64
		for _, l := range loops {
			n += l.stats.fallbacks[r].Load()
		}
		st.ReadFallbacks = append(st.ReadFallbacks, metrics.ReasonCount{Reason: fallbackNames[r], Count: n})
	}
	for r := retryReason(0); r < retryCount; r++ {
		var n int64
		for _, l := range loops {
			n += l.stats.retries[r].Load()
		}
		st.ReadRetries = append(st.ReadRetries, metrics.ReasonCount{Reason: retryNames[r], Count: n})
	}
	for o := waitOutcome(0); o < waitOutcomeCount; o++ {
		var n int64
		for _, l := range loops {
			n += l.stats.waits[o].Load()
		}
		st.WaitCalls = append(st.WaitCalls, metrics.ReasonCount{Reason: waitNames[o], Count: n})
	}
	for _, l := range loops {
		st.WriteGateRejections += l.stats.gateRejections.Load()
	}
	st.ClientsConnected = s.clients.Load()
	st.ClientsRejected = s.rejected.Load()
	st.TopologyChanges = s.topoChanges.Load()
	st.BackendConnections = []metrics.ReasonCount{
		{Reason: "shared", Count: s.sharedConns.Load()},
		{Reason: "dedicated", Count: s.dedicated.Load()},
	}
	st.MasterReplOffset = -1
	s.switches.fill(st)
	for _, l := range loops {
		st.WritesHeld += l.stats.held.Load()
		st.WritesRedirected += l.stats.redirected.Load()
	}
	for _, l := range loops {
		st.WitnessWaited += l.stats.witnessWaited.Load()
		st.WitnessTimeouts += l.stats.witnessTimeouts.Load()
		st.WitnessOff += l.stats.witnessOff.Load()
		st.WitnessFailed += l.stats.witnessFailed.Load()
	}
	st.WitnessBacklogShort, _ = s.witnessBacklogShort()
	st.Replays = []metrics.ReasonCount{
		{Reason: "replayed", Count: s.replays.replayed.Load()},
		{Reason: "already_done", Count: s.replays.skipped.Load()},
		{Reason: "failed", Count: s.replays.failed.Load()},
	}
	st.FailoverLostBytes = s.replays.lostBytes.Load()
	g := s.mon.Guard()
	st.GuardActive = g.Active
	for _, k := range topology.GuardActionKinds {
		st.GuardActions = append(st.GuardActions, metrics.ReasonCount{Reason: k, Count: g.Actions[k]})
	}
	if snap := s.topo.Load(); snap != nil {
		st.Master = metrics.MasterInfo{Addr: snap.Master.Addr, Generation: snap.MasterGen}
		st.MasterReplOffset = snap.Master.Offset
		st.Nodes = append(st.Nodes, nodeMetric(&snap.Master, "master"))
		for i := range snap.Replicas {
			st.Nodes = append(st.Nodes, nodeMetric(&snap.Replicas[i], "replica"))
		}
	}
	if l := s.link; l != nil {
		ls := l.Stats()
		st.Stream = metrics.StreamStats{
			Connected: l.Connected(), Offset: l.Offset(),
			FullSyncs: int64(ls.FullSyncs), PartialSyncs: int64(ls.PartialSyncs), Reconnects: int64(ls.Reconnects),
			HistoryResets: int64(ls.HistoryResets), BytesReceived: int64(ls.BytesReceived),
		}
	} else {
		st.Stream.Offset = -1
	}
}

func nodeMetric(n *router.NodeState, role string) metrics.Node {
	m := metrics.Node{
		Addr: n.Addr, Role: role, Up: n.Reachable, Offset: n.Offset,
		LagBytes: n.LagBytes, LagSeconds: -1, PersistRDB: n.PersistRDB, PersistAOF: n.PersistAOF,
	}
	if role == "master" {
		m.Eligible = n.Reachable && n.Role == "master"
		if !m.Eligible {
			m.Reason = n.Reason
			if m.Reason == "" {
				m.Reason = fmt.Sprintf("role %q", n.Role)
			}
		}
		m.LagBytes = 0
		m.LagSeconds = 0
		return m
	}
	m.Eligible, m.Reason = n.Eligible, n.Reason
	m.Parent, m.Depth = n.Parent, n.Depth
	if n.LagMs >= 0 {
		m.LagSeconds = float64(n.LagMs) / 1000
	}
	return m
}

// Readiness reports whether the proxy can serve writes: the master is
// reachable, is a master, is not loading, and the write gate (when set)
// is open. For /readyz.
func (s *Server) Readiness() error {
	snap := s.topo.Load()
	switch {
	case snap == nil:
		return fmt.Errorf("no topology yet")
	case !snap.Master.Reachable:
		return fmt.Errorf("master %s unreachable", snap.Master.Addr)
	case snap.Master.Role != "master":
		return fmt.Errorf("%s is not a master (role %q)", snap.Master.Addr, snap.Master.Role)
	case snap.Master.Loading:
		return fmt.Errorf("master %s is loading its dataset", snap.Master.Addr)
	}
	if need := s.cfg.MinReplicasToWrite; need > 0 {
		good := 0
		maxLag := s.cfg.MinReplicasMaxLag.Milliseconds()
		for i := range snap.Replicas {
			r := &snap.Replicas[i]
			if r.Eligible && r.LagMs >= 0 && r.LagMs <= maxLag {
				good++
			}
		}
		if good < need {
			return fmt.Errorf("write gate closed: %d good replicas, %d required", good, need)
		}
	}
	return nil
}
