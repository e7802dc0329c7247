package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/replproxy/replproxy/internal/redistest"
)

// getCalls is how many GETs the master and the replicas (together) have
// served, from INFO commandstats. The servers count what they execute, so
// the share needs no help from the proxy: its metrics may be off, and would
// be its own word for where reads went.
type getCalls struct {
	master, replicas int64
}

// readGetCalls reads cmdstat_get from every data node of topo.
func readGetCalls(h *harness, topo *redistest.Topology) getCalls {
	count := func(n *redistest.Node) int64 {
		calls, err := parseCmdstatCalls(n.Info(h, "commandstats")["cmdstat_get"])
		if err != nil {
			h.Fatalf("%s: INFO commandstats: %v", n, err)
		}
		return calls
	}
	g := getCalls{master: count(topo.Master)}
	for _, r := range topo.Replicas {
		g.replicas += count(r)
	}
	return g
}

// parseCmdstatCalls reads calls= from an INFO commandstats value such as
// "calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0".
// An empty value is 0 calls: redis lists a command only once it has run.
func parseCmdstatCalls(v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	for f := range strings.SplitSeq(v, ",") {
		if n, ok := strings.CutPrefix(f, "calls="); ok {
			return strconv.ParseInt(n, 10, 64)
		}
	}
	return 0, fmt.Errorf("no calls= in %q", v)
}

// replicaShareSince is the replicas' share of the GETs served between
// before and g, NaN if there were none.
func (g getCalls) replicaShareSince(before getCalls) float64 {
	replicas := g.replicas - before.replicas
	all := replicas + g.master - before.master
	if all <= 0 {
		return math.NaN()
	}
	return float64(replicas) / float64(all)
}
