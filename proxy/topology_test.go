package proxy

import (
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/router"
)

// waitSnapshot polls the published topology until ok accepts it.
func waitSnapshot(t *testing.T, srv *Server, what string, ok func(*router.Snapshot) bool) *router.Snapshot {
	t.Helper()
	return waitSnapshotFor(t, srv, 15*time.Second, what, ok)
}

func replicaState(snap *router.Snapshot, addr string) *router.NodeState {
	for i := range snap.Replicas {
		if snap.Replicas[i].Addr == addr {
			return &snap.Replicas[i]
		}
	}
	return nil
}

func TestTopologyDiscoveryAndEligibility(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	srv := startProxy(t, Config{Master: topo.Master.Addr()})
	_, replicas := topo.Addrs()
	waitSnapshot(t, srv, "both discovered replicas eligible", func(s *router.Snapshot) bool {
		for _, r := range replicas {
			st := replicaState(s, r)
			if st == nil || !st.Eligible || st.LagBytes < 0 || st.RTT <= 0 {
				return false
			}
		}
		return s.Master.Reachable && s.Master.Role == "master" && len(s.Replicas) == 2
	})

	topo.Replicas[0].Pause()
	snap := waitSnapshot(t, srv, "paused replica unreachable", func(s *router.Snapshot) bool {
		st := replicaState(s, replicas[0])
		return st != nil && !st.Eligible && st.Reason == "unreachable"
	})
	if st := replicaState(snap, replicas[1]); st == nil || !st.Eligible {
		t.Fatalf("other replica not eligible: %+v", st)
	}
	topo.Replicas[0].Resume()
	waitSnapshot(t, srv, "resumed replica eligible again", func(s *router.Snapshot) bool {
		st := replicaState(s, replicas[0])
		return st != nil && st.Eligible
	})

	// A replica that follows another master is never eligible.
	other := redistest.StartServer(t)
	if err := topo.Replicas[1].Client().Do(t.Context(), "REPLICAOF", "127.0.0.1", other.Port()).Err(); err != nil {
		t.Fatal(err)
	}
	waitSnapshot(t, srv, "replica of another master ineligible", func(s *router.Snapshot) bool {
		st := replicaState(s, replicas[1])
		return st == nil || (!st.Eligible && st.Reason != "")
	})
}

func TestTopologyStaticReplicaWithoutDiscovery(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	off := false
	_, replicas := topo.Addrs()
	srv := startProxy(t, Config{Master: topo.Master.Addr(), Replicas: replicas[:1], DiscoverReplicas: &off})
	snap := waitSnapshot(t, srv, "the named replica eligible", func(s *router.Snapshot) bool {
		st := replicaState(s, replicas[0])
		return st != nil && st.Eligible
	})
	if len(snap.Replicas) != 1 {
		t.Fatalf("discovery off but topology has %d replicas", len(snap.Replicas))
	}
}
