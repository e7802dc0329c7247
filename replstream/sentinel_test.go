package replstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
)

// sentinelTimeout bounds each phase of the Sentinel tests; the whole of
// both tests (run in parallel) stays around 15 s.
const sentinelTimeout = 15 * time.Second

// linkReplicaEntry is how Sentinel names the link: the master's INFO shows
// it at port 0.
func isLinkEntry(r map[string]string) bool { return r["port"] == "0" }

// sentinelsSeeLink makes every Sentinel forget what it learned before the
// link existed (SENTINEL RESET: otherwise it re-reads the master's INFO only
// every 10 s) and waits until each one knows the master, the other
// Sentinels, the real replicas as healthy and the link.
func sentinelsSeeLink(t *testing.T, ctx context.Context, topo *redistest.Topology) {
	t.Helper()
	for _, s := range topo.Sentinels {
		if err := s.Client().Do(ctx, "SENTINEL", "RESET", redistest.SentinelMasterName).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range topo.Sentinels {
		waitFor(t, sentinelTimeout, s.String()+" sees the link", func() error {
			m, err := sentinelMaster(ctx, s)
			if err != nil {
				return err
			}
			if m["flags"] != "master" || m["num-other-sentinels"] != fmt.Sprint(len(topo.Sentinels)-1) || m["num-slaves"] != fmt.Sprint(len(topo.Replicas)+1) {
				return fmt.Errorf("SENTINEL MASTER %v", m)
			}
			reps, err := sentinelReplicas(ctx, s)
			if err != nil {
				return err
			}
			sawLink := false
			for _, r := range reps {
				if isLinkEntry(r) {
					sawLink = true
					continue
				}
				if r["flags"] != "slave" || r["master-link-status"] != "ok" {
					return fmt.Errorf("real replica %s: flags %q link %q", r["name"], r["flags"], r["master-link-status"])
				}
			}
			if !sawLink {
				return errors.New("no port-0 entry")
			}
			return nil
		})
	}
}

// checkLinkNeverSelected: no Sentinel picked the link, and each one that
// lists it lists it as unreachable.
func checkLinkNeverSelected(t *testing.T, ctx context.Context, topo *redistest.Topology) {
	t.Helper()
	for _, s := range topo.Sentinels {
		if logContains(t, s, "+selected-slave slave 127.0.0.1:0 ") || logContains(t, s, "+promoted-slave slave 127.0.0.1:0 ") {
			t.Errorf("%s selected the link for promotion", s)
		}
		reps, err := sentinelReplicas(ctx, s)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reps {
			if isLinkEntry(r) && !strings.Contains(r["flags"], "disconnected") && !strings.Contains(r["flags"], "s_down") {
				t.Errorf("%s lists the link as reachable: %v", s, r)
			}
		}
	}
}

// TestSentinelPromotesRealReplicaNotLink: master + 1 replica + 3 Sentinels +
// the link; the master dies; Sentinel promotes the replica.
func TestSentinelPromotesRealReplicaNotLink(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := redistest.Start(t, redistest.Options{Replicas: 1, Sentinels: 3})
	link, _ := startLink(t, topo.Master.Addr(), nil)
	waitConnected(t, link)
	sentinelsSeeLink(t, ctx, topo)
	for _, s := range topo.Sentinels {
		reps, _ := sentinelReplicas(ctx, s)
		for _, r := range reps {
			if isLinkEntry(r) {
				t.Logf("%s lists the link as %s flags=%s slave-priority=%s", s, r["name"], r["flags"], r["slave-priority"])
			}
		}
	}

	topo.Master.Kill()
	want := topo.Replicas[0].Addr()
	for _, s := range topo.Sentinels {
		waitFor(t, sentinelTimeout, s.String()+" reports the replica as master", func() error {
			addr, err := sentinelMasterAddr(ctx, s)
			if err != nil {
				return err
			}
			if addr != want {
				return fmt.Errorf("master %s", addr)
			}
			return nil
		})
	}
	checkLinkNeverSelected(t, ctx, topo)
	if link.Connected() {
		t.Error("link still streaming from a killed master")
	}
}

// TestSentinelNoFailoverToLink: master + the link as its only replica + 3
// Sentinels; the master dies; Sentinel finds no replica to promote.
func TestSentinelNoFailoverToLink(t *testing.T) {
	t.Parallel()
	ctx := ctxT(t)
	topo := redistest.Start(t, redistest.Options{Sentinels: 3})
	link, _ := startLink(t, topo.Master.Addr(), nil)
	waitConnected(t, link)
	sentinelsSeeLink(t, ctx, topo)

	old := topo.Master.Addr()
	topo.Master.Kill()
	waitFor(t, sentinelTimeout, "a Sentinel gives up the failover", func() error {
		for _, s := range topo.Sentinels {
			if logContains(t, s, "-failover-abort-no-good-slave") {
				return nil
			}
		}
		return errors.New("no -failover-abort-no-good-slave yet")
	})
	for _, s := range topo.Sentinels {
		if addr, err := sentinelMasterAddr(ctx, s); err != nil || addr != old {
			t.Errorf("%s: master %s, %v; want the dead master %s", s, addr, err, old)
		}
	}
	checkLinkNeverSelected(t, ctx, topo)
}
