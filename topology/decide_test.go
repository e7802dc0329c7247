package topology

import (
	"testing"

	"github.com/replproxy/replproxy/router"
)

func TestContinuity(t *testing.T) {
	for _, tc := range []struct {
		name      string
		old       string
		node      router.NodeState
		continues bool
		split     int64
	}{
		{"first master: nothing to continue", "", router.NodeState{ReplID: "b"}, false, -1},
		{"promoted replica keeps the old ID as replid2", "a", router.NodeState{ReplID: "b", ReplID2: "a", SecondOffset: 1001, Offset: 1500}, true, 1000},
		// A node restarted empty has a fresh ID and replid2 all zeros: the
		// seed hazard's signature.
		{"fresh history", "a", router.NodeState{ReplID: "c", ReplID2: "0000000000000000000000000000000000000000", SecondOffset: -1}, false, -1},
		{"same history (a master that was already on it)", "a", router.NodeState{ReplID: "a", Offset: 700}, true, 700},
		{"replid2 of another history", "a", router.NodeState{ReplID: "b", ReplID2: "z", SecondOffset: 10}, false, -1},
		{"replid2 matches but no split offset", "a", router.NodeState{ReplID: "b", ReplID2: "a", SecondOffset: -1}, false, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s := continuity(tc.old, &tc.node)
			if c != tc.continues || s != tc.split {
				t.Fatalf("continuity = %v, %d; want %v, %d", c, s, tc.continues, tc.split)
			}
		})
	}
}

func TestParseSentinelEvent(t *testing.T) {
	for _, tc := range []struct {
		name, channel, payload string
		ok                     bool
		kind                   eventKind
		addr, master           string
	}{
		{"switch", "+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380", true, evSwitch, "127.0.0.1:6380", "127.0.0.1:6379"},
		{"reconf after the promotion names the old master", "+failover-state-reconf-slaves", "master mymaster 127.0.0.1 6379", true, evFailover, "127.0.0.1:6379", "127.0.0.1:6379"},
		{"switch of another master", "+switch-master", "other 127.0.0.1 6379 127.0.0.1 6380", false, 0, "", ""},
		{"switch malformed", "+switch-master", "mymaster 127.0.0.1 6379", false, 0, "", ""},
		{"promoted", "+promoted-slave", "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379", true, evPromoted, "127.0.0.1:6381", "127.0.0.1:6379"},
		{"promoted, other master", "+promoted-slave", "slave 127.0.0.1:6381 127.0.0.1 6381 @ other 127.0.0.1 6379", false, 0, "", ""},
		{"try-failover holds writes", "+try-failover", "master mymaster 127.0.0.1 6379", true, evFailover, "127.0.0.1:6379", "127.0.0.1:6379"},
		{"selected-slave holds writes", "+selected-slave", "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379", true, evFailover, "127.0.0.1:6381", "127.0.0.1:6379"},
		{"master sdown holds", "+sdown", "master mymaster 127.0.0.1 6379", true, evFailover, "127.0.0.1:6379", "127.0.0.1:6379"},
		{"replica sdown only re-asks", "+sdown", "slave 127.0.0.1:6381 127.0.0.1 6381 @ mymaster 127.0.0.1 6379", true, evChanged, "127.0.0.1:6381", "127.0.0.1:6379"},
		{"master back releases", "-sdown", "master mymaster 127.0.0.1 6379", true, evAbort, "127.0.0.1:6379", "127.0.0.1:6379"},
		{"abort releases", "-failover-abort-no-good-slave", "master mymaster 127.0.0.1 6379", true, evAbort, "127.0.0.1:6379", "127.0.0.1:6379"},
		{"sentinel sdown re-asks", "+sdown", "sentinel 127.0.0.1:26380 127.0.0.1 26380 @ mymaster 127.0.0.1 6379", true, evChanged, "127.0.0.1:26380", "127.0.0.1:6379"},
		{"unknown channel", "+new-epoch", "5", false, 0, "", ""},
		{"hello ignored", "__sentinel__:hello", "127.0.0.1,26379,abc,1,mymaster,127.0.0.1,6379,1", false, 0, "", ""},
		{"instance without @", "+selected-slave", "slave 127.0.0.1:6381 127.0.0.1 6381", false, 0, "", ""},
		{"empty payload", "+sdown", "", false, 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev, ok := parseSentinelEvent(tc.channel, tc.payload, "mymaster")
			if ok != tc.ok || (ok && (ev.kind != tc.kind || ev.addr != tc.addr || ev.master != tc.master)) {
				t.Fatalf("parseSentinelEvent = %+v, %v; want kind %d addr %q master %q ok %v", ev, ok, tc.kind, tc.addr, tc.master, tc.ok)
			}
		})
	}
}

func TestSentinelReplica(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    map[string]string
		addr string
		ok   bool
	}{
		{"healthy", map[string]string{"ip": "10.0.0.2", "port": "6380", "flags": "slave"}, "10.0.0.2:6380", true},
		{"s_down", map[string]string{"ip": "10.0.0.2", "port": "6380", "flags": "s_down,slave"}, "", false},
		{"disconnected", map[string]string{"ip": "10.0.0.2", "port": "6380", "flags": "slave,disconnected"}, "", false},
		{"port 0 (the proxy's own link)", map[string]string{"ip": "10.0.0.9", "port": "0", "flags": "slave"}, "", false},
		{"no address", map[string]string{"flags": "slave"}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr, ok := sentinelReplica(tc.r)
			if addr != tc.addr || ok != tc.ok {
				t.Fatalf("sentinelReplica = %q, %v; want %q, %v", addr, ok, tc.addr, tc.ok)
			}
		})
	}
}

func TestEligibility(t *testing.T) {
	master := router.NodeState{Reachable: true, Role: "master", ReplID: "a", Offset: 100}
	good := router.NodeState{Role: "replica", Reachable: true, LinkUp: true, ReplID: "a", Offset: 90}
	with := func(f func(*router.NodeState)) router.NodeState { r := good; f(&r); return r }
	for _, tc := range []struct {
		name    string
		r, m    router.NodeState
		demoted bool
		reason  string
	}{
		{"eligible", good, master, false, ""},
		{"poll reason wins", with(func(r *router.NodeState) { r.Reason = "unreachable" }), master, false, "unreachable"},
		{"demoted by a loop", good, master, true, "failed a read; awaiting the next poll"},
		{"link down", with(func(r *router.NodeState) { r.LinkUp = false }), master, false, "link down"},
		{"syncing", with(func(r *router.NodeState) { r.Syncing = true }), master, false, "syncing"},
		{"loading", with(func(r *router.NodeState) { r.Loading = true }), master, false, "loading"},
		{"other history", with(func(r *router.NodeState) { r.ReplID = "b" }), master, false, "other history"},
		// After a switch the old master's replicas still follow it until
		// Sentinel points them at the new one.
		{"master demoted: no history to follow", good, with(func(r *router.NodeState) { *r = master; r.Role = "replica" }), false, "other history"},
		// Reads go on from replicas while the master is down (failover).
		{"master unreachable: its history is still known", good, with(func(r *router.NodeState) { *r = master; r.Reachable = false }), false, ""},
		{"master never seen", good, router.NodeState{}, false, "other history"},
		{"offset unknown", with(func(r *router.NodeState) { r.Offset = -1 }), master, false, "offset unknown"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, reason := eligibility(&tc.r, &tc.m, tc.demoted)
			if ok != (tc.reason == "") || reason != tc.reason {
				t.Fatalf("eligibility = %v, %q; want reason %q", ok, reason, tc.reason)
			}
		})
	}
}

func TestPickAnswer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		answers []sentinelAnswer
		want    []string
	}{
		{"none", nil, nil},
		{"agreement", []sentinelAnswer{{"a:1", 1}, {"a:1", 1}, {"a:1", 1}}, []string{"a:1"}},
		// The leader of a failover has the new epoch before its peers.
		{"newest epoch wins over the first answer", []sentinelAnswer{{"old:1", 1}, {"new:1", 2}, {"old:1", 1}}, []string{"new:1", "old:1"}},
		{"ties keep the order asked", []sentinelAnswer{{"b:1", 3}, {"a:1", 3}}, []string{"b:1", "a:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := pickAnswer(tc.answers)
			if len(got) != len(tc.want) {
				t.Fatalf("pickAnswer = %v, want %v", got, tc.want)
			}
			for i := range got {
				if got[i] != tc.want[i] {
					t.Fatalf("pickAnswer = %v, want %v", got, tc.want)
				}
			}
		})
	}
}

func TestPredecessor(t *testing.T) {
	promoted := router.NodeState{ReplID: "b", ReplID2: "a", SecondOffset: 100}
	for _, tc := range []struct {
		name string
		n    router.NodeState
		want bool
	}{
		{"old master still on the forked history", router.NodeState{ReplID: "a"}, true},
		{"old master once it replicates from the new one", router.NodeState{ReplID: "b"}, false},
		{"unrelated node", router.NodeState{ReplID: "z"}, false},
		{"unknown history", router.NodeState{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := predecessor(&tc.n, &promoted); got != tc.want {
				t.Fatalf("predecessor = %v, want %v", got, tc.want)
			}
		})
	}
	if predecessor(&router.NodeState{ReplID: "a"}, &router.NodeState{ReplID: "a"}) {
		t.Fatal("a master with no replid2 has no predecessor")
	}
}

func TestListedReplicas(t *testing.T) {
	f := parseInfo("# Replication\r\nrole:master\r\nconnected_slaves:3\r\n" +
		"slave0:ip=127.0.0.1,port=6381,state=online,offset=10,lag=0\r\n" +
		"slave1:ip=127.0.0.1,port=0,state=online,offset=0,lag=0\r\n" +
		"slave2:ip=10.0.0.3,port=6382,state=wait_bgsave,offset=0,lag=0\r\n")
	got := listedReplicas(f)
	want := []string{"127.0.0.1:6381", "10.0.0.3:6382"}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("listedReplicas = %v, want %v", got, want)
	}
	if p := parentOf(parseInfo("role:slave\r\nmaster_host:10.0.0.1\r\nmaster_port:6379\r\n")); p != "10.0.0.1:6379" {
		t.Fatalf("parentOf = %q", p)
	}
	if p := parentOf(f); p != "" {
		t.Fatalf("parentOf(master) = %q", p)
	}
}
