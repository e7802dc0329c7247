package topology

import (
	"strings"
	"testing"
	"time"

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

// A double failover: the first promoted replica (history b, continuing a
// up to 1000) is replaced by the other replica.
func TestSwitchContinuity(t *testing.T) {
	old := router.NodeState{ReplID: "b", ReplID2: "a", SecondOffset: 1001, Offset: 5000}
	for _, tc := range []struct {
		name      string
		node      router.NodeState
		continues bool
		split     int64
		held      string
		diverged  bool
	}{
		{"it replicated from the first promoted one", router.NodeState{ReplID: "c", ReplID2: "b", SecondOffset: 3001}, true, 3000, "b", false},
		{"still on the first master's history, behind the first split", router.NodeState{ReplID: "c", ReplID2: "a", SecondOffset: 801}, true, 800, "a", false},
		{"still on the first master's history, at the first split", router.NodeState{ReplID: "c", ReplID2: "a", SecondOffset: 1001}, true, 1000, "a", false},
		{"still on the first master's history, ahead of the first split", router.NodeState{ReplID: "c", ReplID2: "a", SecondOffset: 1201}, true, 1000, "a", true},
		{"not promoted yet, on the first master's history", router.NodeState{ReplID: "a", Offset: 900}, true, 900, "a", false},
		{"a fresh history", router.NodeState{ReplID: "d", ReplID2: "0000000000000000000000000000000000000000", SecondOffset: -1}, false, -1, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, s, held, _, div := switchContinuity(old.ReplID, &old, &tc.node)
			if c != tc.continues || s != tc.split || held != tc.held || div != tc.diverged {
				t.Fatalf("switchContinuity = %v, %d, %q, diverged %v; want %v, %d, %q, %v", c, s, held, div, tc.continues, tc.split, tc.held, tc.diverged)
			}
		})
	}
	// Diverged: held up to its own split, beyond the old one.
	if _, _, _, to, div := switchContinuity(old.ReplID, &old, &router.NodeState{ReplID: "c", ReplID2: "a", SecondOffset: 1201}); !div || to != 1200 {
		t.Fatalf("diverged heldTo = %d (%v), want 1200", to, div)
	}
	// The guard's case: the history in question is the incident's, not the
	// old master's own, and its replid2 says nothing about it.
	if c, s, _, _, _ := switchContinuity("z", &old, &router.NodeState{ReplID: "c", ReplID2: "a", SecondOffset: 801}); c || s != -1 {
		t.Fatalf("switchContinuity with another history = %v, %d; want false, -1", c, s)
	}
	// The incident's history continued by the promoted replica: held under
	// that ID.
	if c, s, held, _, _ := switchContinuity("z", &old, &router.NodeState{ReplID: "c", ReplID2: "z", SecondOffset: 801}); !c || s != 800 || held != "z" {
		t.Fatalf("switchContinuity of the incident's history = %v, %d, %q; want true, 800, z", c, s, held)
	}
}

func TestPromotionStalled(t *testing.T) {
	asked := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	wait := 10 * time.Second
	for _, tc := range []struct {
		name   string
		phase  guardPhase
		sent   bool
		asked  time.Time
		now    time.Time
		stalls bool
	}{
		{"Sentinel still has time", phasePromoting, true, asked, asked.Add(wait - time.Millisecond), false},
		{"no switch within the wait", phasePromoting, true, asked, asked.Add(wait), true},
		{"the guard promotes by itself (no Sentinel asked)", phasePromoting, false, time.Time{}, asked.Add(time.Hour), false},
		{"parked: judged at every poll anyway", phaseParked, true, asked, asked.Add(time.Hour), false},
		{"done", phaseDone, true, asked, asked.Add(time.Hour), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := promotionStalled(tc.phase, tc.sent, tc.asked, tc.now, wait); got != tc.stalls {
				t.Fatalf("promotionStalled = %v, want %v", got, tc.stalls)
			}
		})
	}
}

func TestHistoryGone(t *testing.T) {
	restarted := &router.NodeState{Reachable: true, ReplID: "fresh", ReplID2: "0000000000000000000000000000000000000000"}
	for _, tc := range []struct {
		name  string
		nodes []*router.NodeState
		gone  bool
	}{
		{"every parked replica restarted empty", []*router.NodeState{restarted, restarted}, true},
		{"one still parked on the old history", []*router.NodeState{restarted, {Reachable: true, ReplID: "old"}}, false},
		{"one promoted meanwhile (replid2 is the old history)", []*router.NodeState{restarted, {Reachable: true, ReplID: "new", ReplID2: "old"}}, false},
		{"one unreachable (paused: it may hold the data)", []*router.NodeState{restarted, {ReplID: "fresh"}}, false},
		{"one out of view", []*router.NodeState{restarted, nil}, false},
		{"one not polled yet", []*router.NodeState{restarted, {Reachable: true}}, false},
		{"none", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := historyGone("old", tc.nodes); got != tc.gone {
				t.Fatalf("historyGone = %v, want %v", got, tc.gone)
			}
		})
	}
}

func TestSuccessorCandidates(t *testing.T) {
	parked := func(addr string, off int64) *router.NodeState {
		return &router.NodeState{Addr: addr, Reachable: true, Role: "replica", ReplID: "old", Offset: off, Parked: true}
	}
	halfPromoted := &router.NodeState{Addr: "r1", Reachable: true, Role: "master", ReplID: "new", ReplID2: "old", SecondOffset: 901, Offset: 950}
	for _, tc := range []struct {
		name  string
		nodes []*router.NodeState
		best  string
		ready bool
	}{
		{"the most advanced parked replica", []*router.NodeState{parked("r1", 900), parked("r2", 800)}, "r1", true},
		{"equal offsets: the lowest address", []*router.NodeState{parked("r2", 900), parked("r1", 900)}, "r1", true},
		{"one not seen parked yet", []*router.NodeState{parked("r1", 900), {Addr: "r2", Reachable: true, Role: "replica", ReplID: "old", Offset: 950}}, "", false},
		{"a restarted one (new history) is passed over", []*router.NodeState{parked("r2", 800), {Addr: "r1", Reachable: true, Role: "replica", ReplID: "fresh"}}, "r2", true},
		{"an unreachable one is passed over", []*router.NodeState{parked("r2", 800), {Addr: "r1", ReplID: "old", Offset: 900}}, "r2", true},
		{"one Sentinel half promoted holds the data", []*router.NodeState{halfPromoted, parked("r2", 800)}, "r1", true},
		{"a half promoted one behind a parked one", []*router.NodeState{halfPromoted, parked("r2", 1000)}, "r2", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cands, ready := successorCandidates("old", tc.nodes)
			best := ""
			if ready {
				best, _ = chooseSuccessor(cands)
			}
			if best != tc.best || ready != tc.ready {
				t.Fatalf("successor %q ready=%v; want %q ready=%v", best, ready, tc.best, tc.ready)
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
		// master -> R1 -> R2: R2 is judged by its own link and history,
		// whoever its parent is, and whether or not the proxy polls it.
		{"replica of a replica", with(func(r *router.NodeState) { r.Parent, r.Depth = "r1:6379", 2 }), master, false, ""},
		{"replica of a node not polled", with(func(r *router.NodeState) { r.Parent, r.Depth = "r1:6379", 0 }), master, false, ""},
		{"replica in a loop of REPLICAOFs", with(func(r *router.NodeState) { r.Parent, r.Depth = "r1:6379", loopDepth }), master, false, "replication loop"},
		{"replica of a replica whose parent died", with(func(r *router.NodeState) { r.Parent, r.Depth, r.LinkUp = "r1:6379", 2, false }), master, false, "link down"},
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

func TestTreeDepths(t *testing.T) {
	for _, tc := range []struct {
		name    string
		master  string
		parents map[string]string
		want    map[string]int
	}{
		{"none", "m", nil, map[string]int{}},
		{"direct replicas", "m", map[string]string{"a": "m", "b": "m"}, map[string]int{"a": 1, "b": 1}},
		// master -> R1 -> R2 -> R4, master -> R3: the layout, one deeper.
		{"chain", "m", map[string]string{"r1": "m", "r2": "r1", "r3": "m", "r4": "r2"}, map[string]int{"r1": 1, "r2": 2, "r3": 1, "r4": 3}},
		// R1 not polled (--replica R2 --discover-replicas=false): R2's
		// depth is unknown, which does not make it ineligible.
		{"parent not polled", "m", map[string]string{"r2": "r1", "r3": "m"}, map[string]int{"r2": 0, "r3": 1}},
		{"below an unknown chain", "m", map[string]string{"r2": "r1", "r4": "r2"}, map[string]int{"r2": 0, "r4": 0}},
		{"no parent named", "m", map[string]string{"a": ""}, map[string]int{"a": 0}},
		// R1 REPLICAOF R2 while R2 replicates from R1: Redis 7.0.15 accepts
		// both PSYNCs, links up, offsets frozen. The walk must end, and mark
		// the loop and what hangs below it.
		{"loop", "m", map[string]string{"a": "b", "b": "a", "c": "a", "d": "c", "e": "m"}, map[string]int{"a": loopDepth, "b": loopDepth, "c": loopDepth, "d": loopDepth, "e": 1}},
		{"self loop", "m", map[string]string{"a": "a", "b": "m"}, map[string]int{"a": loopDepth, "b": 1}},
		{"deep chain", "m", map[string]string{"r5": "r4", "r4": "r3", "r3": "r2", "r2": "r1", "r1": "m"}, map[string]int{"r1": 1, "r2": 2, "r3": 3, "r4": 4, "r5": 5}},
		{"parked on the guard's address", "m", map[string]string{"a": "127.0.0.1:1", "b": "a"}, map[string]int{"a": 0, "b": 0}},
		{"no master known", "", map[string]string{"a": "", "b": "a"}, map[string]int{"a": 0, "b": 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Map order varies between runs: the answer must not.
			for range 20 {
				got := treeDepths(tc.master, tc.parents)
				if len(got) != len(tc.want) {
					t.Fatalf("treeDepths = %v, want %v", got, tc.want)
				}
				for k, v := range tc.want {
					if got[k] != v {
						t.Fatalf("treeDepths = %v, want %v", got, tc.want)
					}
				}
			}
		})
	}
}

func TestResolveParent(t *testing.T) {
	// Stands in for sameHostPort's DNS lookup: "localhost" is 127.0.0.1.
	same := func(a, b string) bool {
		norm := func(s string) string { return strings.Replace(s, "localhost", "127.0.0.1", 1) }
		return norm(a) == norm(b)
	}
	known := []string{"127.0.0.1:6379", "127.0.0.1:6381", "localhost:6382"}
	for _, tc := range []struct{ named, want string }{
		{"", ""},
		{"127.0.0.1:6381", "127.0.0.1:6381"},
		{"localhost:6379", "127.0.0.1:6379"},
		{"127.0.0.1:6382", "localhost:6382"},
		{"10.0.0.9:6379", "10.0.0.9:6379"}, // not ours: kept as named
	} {
		if got := resolveParent(tc.named, known, same); got != tc.want {
			t.Errorf("resolveParent(%q) = %q, want %q", tc.named, got, tc.want)
		}
	}
}

func TestStaleReplicas(t *testing.T) {
	up := &router.NodeState{Reachable: true, Seen: time.Now()}
	down := &router.NodeState{Seen: time.Now()}
	unpolled := &router.NodeState{}
	none := func(string) bool { return false }
	for _, tc := range []struct {
		name     string
		replicas map[string]*router.NodeState
		static   map[string]bool
		lists    map[string][]string
		sentinel func(string) bool
		want     []string
	}{
		{"answering replicas stay", map[string]*router.NodeState{"a": up, "b": up}, nil, nil, none, nil},
		{"unreachable and unlisted goes", map[string]*router.NodeState{"a": down, "b": up}, nil, nil, none, []string{"a"}},
		{"named by the operator stays", map[string]*router.NodeState{"a": down}, map[string]bool{"a": true}, nil, none, nil},
		{"listed by the master stays", map[string]*router.NodeState{"a": down}, nil, map[string][]string{"m": {"a"}}, none, nil},
		// master -> R1 -> R2: R2 down but R1 still lists it (its link to
		// R2 has not timed out yet).
		{"listed by its parent stays", map[string]*router.NodeState{"r1": up, "r2": down}, nil, map[string][]string{"r1": {"r2"}}, none, nil},
		{"listed by Sentinel stays", map[string]*router.NodeState{"a": down}, nil, nil, func(a string) bool { return a == "a" }, nil},
		// The old master right after a switch, before its first poll as a
		// replica: the new master does not list it yet.
		{"not polled yet stays", map[string]*router.NodeState{"a": unpolled}, nil, nil, none, nil},
		{"sorted", map[string]*router.NodeState{"c": down, "a": down, "b": down}, nil, nil, none, []string{"a", "b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := staleReplicas(tc.replicas, tc.static, tc.lists, tc.sentinel)
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("staleReplicas = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNeedsRepark(t *testing.T) {
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	back := router.NodeState{Reachable: true, Role: "replica", ReplID: "old", Offset: 900}
	with := func(f func(*router.NodeState)) *router.NodeState { st := back; f(&st); return &st }
	for _, tc := range []struct {
		name  string
		phase guardPhase
		ours  bool
		st    *router.NodeState
		last  time.Time
		want  bool
	}{
		{"restarted from its RDB, pointed at the master again", phaseParked, true, &back, time.Time{}, true},
		{"still parked", phaseParked, true, with(func(s *router.NodeState) { s.Parked = true }), time.Time{}, false},
		{"restarted empty: a new history, nothing to keep", phaseParked, true, with(func(s *router.NodeState) { s.ReplID = "fresh" }), time.Time{}, false},
		{"loading its RDB: not judged yet", phaseParked, true, with(func(s *router.NodeState) { s.Loading = true }), time.Time{}, false},
		{"not one the incident parked", phaseParked, false, &back, time.Time{}, false},
		{"unreachable", phaseParked, true, with(func(s *router.NodeState) { s.Reachable = false }), time.Time{}, false},
		{"promoting: the guard repoints replicas itself", phasePromoting, true, &back, time.Time{}, false},
		{"parked again within the second", phaseParked, true, &back, now.Add(-500 * time.Millisecond), false},
		{"parked again a second ago", phaseParked, true, &back, now.Add(-time.Second), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := needsRepark(tc.phase, tc.ours, tc.st, tc.last, now, "old"); got != tc.want {
				t.Fatalf("needsRepark = %v, want %v", got, tc.want)
			}
		})
	}
}
