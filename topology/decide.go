package topology

import (
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/replproxy/replproxy/router"
)

// The pure half of the control plane: what INFO and Sentinel say, turned
// into facts and verdicts, with no I/O and no state. Table-tested in
// decide_test.go.

// keyspaceSeen is set by parseInfo when the reply had a Keyspace section.
const keyspaceSeen = "#keyspace"

// parseInfo splits an INFO reply into its field:value lines.
func parseInfo(info string) map[string]string {
	f := make(map[string]string, 64)
	if strings.Contains(info, "# Keyspace") {
		f[keyspaceSeen] = "1"
	}
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

func roleName(r string) string {
	switch r {
	case "master":
		return "master"
	case "slave", "replica":
		return "replica"
	}
	return ""
}

// applyInfo fills st from one INFO replication+persistence+server reply.
func applyInfo(st *router.NodeState, f map[string]string) {
	st.Role = roleName(f["role"])
	st.RunID = f["run_id"]
	st.Loading = f["loading"] == "1" || f["async_loading"] == "1"
	st.ReplID = f["master_replid"]
	st.ReplID2 = f["master_replid2"]
	st.SecondOffset = atoi64(f["second_repl_offset"], -1)
	if _, ok := f["aof_enabled"]; ok {
		st.PersistAOF = 0
		if f["aof_enabled"] == "1" {
			st.PersistAOF = 1
		}
	}
	if f[keyspaceSeen] != "" {
		// INFO keyspace lists only the databases that hold keys: the
		// section present with no db line means 0.
		st.Keys = keyCount(f)
	}
	if st.Role == "master" {
		st.Offset = atoi64(f["master_repl_offset"], -1)
		st.LinkUp, st.Syncing = false, false
		return
	}
	st.LinkUp = f["master_link_status"] == "up"
	st.Syncing = f["master_sync_in_progress"] == "1"
	st.Offset = atoi64(f["slave_repl_offset"], -1)
}

// keyCount sums the keys=N of every dbN line of INFO keyspace.
func keyCount(f map[string]string) int64 {
	var n int64
	for k, v := range f {
		if !strings.HasPrefix(k, "db") {
			continue
		}
		if _, err := strconv.Atoi(k[2:]); err != nil {
			continue
		}
		for _, kv := range strings.Split(v, ",") {
			if x, ok := strings.CutPrefix(kv, "keys="); ok {
				n += atoi64(x, 0)
			}
		}
	}
	return n
}

// parentOf is the master a replica's INFO names, "" when none.
func parentOf(f map[string]string) string {
	if roleName(f["role"]) != "replica" || f["master_host"] == "" || f["master_port"] == "" {
		return ""
	}
	return net.JoinHostPort(f["master_host"], f["master_port"])
}

// listedReplicas returns the replicas a master's INFO lists (slaveN
// lines), skipping entries that announce no address (port 0, as the
// proxy's own link does).
func listedReplicas(f map[string]string) []string {
	var out []string
	n := int(atoi64(f["connected_slaves"], 0))
	for i := 0; i < n; i++ {
		var ip, port string
		for _, kv := range strings.Split(f["slave"+strconv.Itoa(i)], ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "ip":
				ip = v
			case "port":
				port = v
			}
		}
		if ip == "" || port == "" || port == "0" {
			continue
		}
		out = append(out, net.JoinHostPort(ip, port))
	}
	return out
}

// resolveParent names the node a replica's INFO calls named (master_host
// and master_port, as configured on the replica) by the address the
// monitor knows that node by, when one of known is the same host and port
// ("localhost:6379" vs "127.0.0.1:6379"); otherwise named itself. known is
// searched in order, so the answer is the same on every poll.
func resolveParent(named string, known []string, same func(a, b string) bool) string {
	if named == "" {
		return ""
	}
	for _, k := range known {
		if k == named {
			return k
		}
	}
	for _, k := range known {
		if same(named, k) {
			return k
		}
	}
	return named
}

// treeDepths returns every replica's depth below master in the
// replication tree parents describes (replica -> the node it replicates
// from, as resolveParent names it): 1 for a replica of master, n+1 for a
// replica of a replica at depth n; 0 when its chain reaches a node that is
// neither master nor in parents (one the proxy does not poll, or none);
// loopDepth when its chain runs in a circle (in the circle or below it).
// Each node is decided once per call: a walk stops at a node already
// decided, and a node met twice on one walk closes a loop.
func treeDepths(master string, parents map[string]string) map[string]int {
	depth := make(map[string]int, len(parents))
	const onPath = -2
	var path []string
	for start := range parents {
		if _, done := depth[start]; done {
			continue
		}
		path = path[:0]
		base := 0 // the depth of the node the walk ended at
		for n := start; ; {
			if n == "" {
				break // no parent named: unknown
			}
			if n == master {
				base = masterBase
				break
			}
			d, seen := depth[n]
			if seen {
				base = d
				if d == onPath {
					base = loopDepth
				}
				break
			}
			p, polled := parents[n]
			if !polled {
				break // not a node we poll: unknown
			}
			depth[n] = onPath
			path = append(path, n)
			n = p
		}
		for i := len(path) - 1; i >= 0; i-- {
			switch base {
			case loopDepth, 0:
				depth[path[i]] = base
			case masterBase:
				base = 1
				depth[path[i]] = base
			default:
				base++
				depth[path[i]] = base
			}
		}
	}
	return depth
}

// loopDepth is treeDepths' answer for a replica in or below a loop of
// REPLICAOFs (R1 -> R2 -> R1): Redis lets one form with every link up, on
// the master's replication ID, each node accepting the other's PSYNC, and
// no data source: offsets frozen for ever.
const loopDepth = -1

// masterBase marks a walk that ended at the master (its depth is 0, which
// already means unknown).
const masterBase = -3

// staleReplicas returns, sorted, the discovered replicas to stop polling:
// polled and found unreachable, not named by the operator (static), not listed by Sentinel
// (sentinelListed), and listed by no node's last answer (lists: node ->
// the replicas its INFO listed; a node that stopped answering has no
// entry, so the replicas only it listed go once they stop answering too).
func staleReplicas(replicas map[string]*router.NodeState, static map[string]bool, lists map[string][]string, sentinelListed func(string) bool) []string {
	listed := make(map[string]bool)
	for _, l := range lists {
		for _, a := range l {
			listed[a] = true
		}
	}
	var out []string
	for addr, st := range replicas {
		// Seen zero: not polled yet (just discovered, or the old master
		// just switched from), so not known to be gone.
		if !st.Reachable && !st.Seen.IsZero() && !static[addr] && !listed[addr] && !sentinelListed(addr) {
			out = append(out, addr)
		}
	}
	sort.Strings(out)
	return out
}

// eligibility decides whether reads may go to replica r of master m, and
// says why not. demoted: a loop saw a read fail there since r was polled.
//
// Who r replicates from does not enter into it: a replica of a replica
// (master -> R1 -> R2) follows the master's history byte for byte (PSYNC2:
// R1 passes the master's stream on unchanged, and R2 takes R1's
// replication ID, which is the master's), so R2 at offset X has applied
// every write whose stream end is <= X, exactly as a direct replica at X
// would. Its parent's troubles reach it only through its own state: a
// paused R1 freezes R2's offset (fences and lag see it), a dead R1 takes
// R2's link down, an R1 that full-resyncs onto another history first
// disconnects R2 (which then syncs or follows the other ID). Test:
// proxy.TestCascadeCausalWhileParentPaused and TestCascadeParentKilled.
func eligibility(r, m *router.NodeState, demoted bool) (bool, string) {
	switch {
	case r.Reason != "":
		return false, r.Reason
	case demoted:
		return false, "failed a read; awaiting the next poll"
	case !r.LinkUp:
		return false, "link down"
	case r.Syncing:
		return false, "syncing"
	case r.Loading:
		return false, "loading"
	case r.Depth == loopDepth:
		// Linked, on the master's history, and never to advance again:
		// only eventual reads would go there, and read stale data
		// forever.
		return false, "replication loop"
	case m.Role != "master" || m.ReplID == "" || r.ReplID != m.ReplID:
		// A master that stopped answering keeps its last known history:
		// a replica on it still holds every write it has applied, and
		// reads there stay correct (causal fences are the proxy's own),
		// so reads go on through a failover. A master that answers as a
		// replica has no history of its own to follow.
		return false, "other history"
	case r.Offset < 0:
		return false, "offset unknown"
	}
	return true, ""
}

// continuity says whether a node that is now master continues the history
// oldReplID named, and up to which offset. Redis's promotion
// (shiftReplicationId) keeps the old ID as master_replid2, valid up to
// second_repl_offset-1. A node that was already a master on oldReplID (the
// same node, or one whose history is oldReplID itself) continues it whole.
func continuity(oldReplID string, n *router.NodeState) (continues bool, split int64) {
	switch {
	case oldReplID == "":
		return false, -1
	case n.ReplID == oldReplID:
		return true, n.Offset
	case n.ReplID2 == oldReplID && n.SecondOffset > 0:
		return true, n.SecondOffset - 1
	}
	return false, -1
}

// switchContinuity is continuity for a master switch, where the old
// master may itself be a promoted replica: its own history (old.ReplID)
// continues the one before it (old.ReplID2) up to old.SecondOffset-1. A
// node promoted after it that never replicated from it (a double failover:
// the second replica still on the first master's history) continues the
// old master's history up to the lower of the two splits: below both, the
// offsets name the same writes on all three. held is the ID under which n
// holds the history up to split (what the link's PSYNC must name: n knows
// its own ID and its replid2, not the old master's). diverged: n holds
// more of the first master's history than the old master did (its split
// lies beyond the old one's), so past the old split the two hold
// different writes: the old master's replay of the first master's suffix
// and n's own copy of part of it; the old master's stream from there on
// cannot be replayed onto n as it is without running some writes twice.
//
// heldTo is how far n holds history held: split, but for a diverged n its
// own split on the first master's history.
func switchContinuity(oldID string, old *router.NodeState, n *router.NodeState) (cont bool, split int64, held string, heldTo int64, diverged bool) {
	if c, s := continuity(oldID, n); c || oldID != old.ReplID {
		if !c {
			return false, -1, "", -1, false
		}
		return true, s, oldID, s, false
	}
	if old.ReplID2 == "" || old.SecondOffset <= 0 {
		return false, -1, "", -1, false
	}
	c, s := continuity(old.ReplID2, n)
	if !c {
		return false, -1, "", -1, false
	}
	return true, min(s, old.SecondOffset-1), old.ReplID2, s, s > old.SecondOffset-1
}

// sentinelEvent is one Sentinel Pub/Sub message about our master.
type sentinelEvent struct {
	kind eventKind
	// addr is the node the event names: the new master of a
	// +switch-master, the promoted replica of +promoted-slave, the instance
	// otherwise.
	addr string
	// instance is "master", "slave" or "sentinel".
	instance string
	// master is the address of the master the event is about, as the
	// Sentinel knows it: during a failover, the master being replaced.
	master string
}

type eventKind uint8

const (
	evIgnore eventKind = iota
	// evSwitch: +switch-master, the failover is done.
	evSwitch
	// evPromoted: +promoted-slave, the chosen replica runs as master.
	evPromoted
	// evFailover: a failover of our master is under way (or its master is
	// judged down): writes are held for the next master.
	evFailover
	// evAbort: the failover ended without a new master, or the master is
	// back: writes are no longer held.
	evAbort
	// evChanged: a replica's or Sentinel's state changed: ask again now.
	evChanged
)

// parseSentinelEvent reads a Sentinel event published on channel with
// payload (Sentinel's "%@" format: "<type> <name> <ip> <port> @ <master>
// <ip> <port>", the part after "@" only for non-master instances), keeping
// those about the master called name.
func parseSentinelEvent(channel, payload, name string) (sentinelEvent, bool) {
	f := strings.Fields(payload)
	if channel == "+switch-master" {
		// "<master> <oldip> <oldport> <newip> <newport>"
		if len(f) != 5 || f[0] != name {
			return sentinelEvent{}, false
		}
		return sentinelEvent{kind: evSwitch, addr: net.JoinHostPort(f[3], f[4]), instance: "master", master: net.JoinHostPort(f[1], f[2])}, true
	}
	if len(f) < 4 {
		return sentinelEvent{}, false
	}
	ev := sentinelEvent{instance: f[0], addr: net.JoinHostPort(f[2], f[3])}
	master := f[1]
	ev.master = ev.addr
	if ev.instance != "master" {
		if len(f) < 8 || f[4] != "@" {
			return sentinelEvent{}, false
		}
		master = f[5]
		ev.master = net.JoinHostPort(f[6], f[7])
	}
	if master != name {
		return sentinelEvent{}, false
	}
	switch channel {
	case "+promoted-slave":
		ev.kind = evPromoted
	case "+try-failover", "+elected-leader", "+failover-state-select-slave", "+selected-slave",
		"+failover-state-send-slaveof-noone", "+failover-state-wait-promotion",
		"+failover-state-reconf-slaves", "+odown":
		ev.kind = evFailover
	case "+sdown":
		if ev.instance == "master" {
			ev.kind = evFailover
		} else {
			ev.kind = evChanged
		}
	case "-odown", "-failover-abort-not-elected", "-failover-abort-no-good-slave",
		"-failover-abort-slave-timeout", "+failover-end-for-timeout":
		ev.kind = evAbort
	case "-sdown":
		if ev.instance == "master" {
			ev.kind = evAbort
		} else {
			ev.kind = evChanged
		}
	case "+role-change", "+slave", "+sentinel", "+convert-to-slave", "+slave-reconf-done", "+failover-end", "+reboot":
		ev.kind = evChanged
	default:
		return sentinelEvent{}, false
	}
	return ev, true
}

// predecessor reports whether n is the master that master was promoted
// away from: still on the history master forked from (its replication ID
// is master's replid2). During a manual failover the old master keeps
// answering as a master until Sentinel demotes it, and a Sentinel that has
// not heard of the failover yet still names it: following it would send
// writes to a node whose history is about to be discarded.
func predecessor(n, master *router.NodeState) bool {
	return n.ReplID != "" && master.ReplID2 != "" && n.ReplID == master.ReplID2
}

// sentinelAnswer is one Sentinel's SENTINEL MASTER reply, reduced.
type sentinelAnswer struct {
	addr  string
	epoch int64
}

// pickAnswer orders Sentinels' answers as Sentinel itself settles a
// disagreement: the configuration with the highest config-epoch wins (it
// was produced by the latest failover); among equal epochs, the order the
// Sentinels were asked in. It returns the distinct addresses, best first.
func pickAnswer(answers []sentinelAnswer) []string {
	best := make([]sentinelAnswer, 0, len(answers))
	for _, a := range answers {
		i := 0
		for i < len(best) && best[i].epoch >= a.epoch {
			i++
		}
		best = append(best, sentinelAnswer{})
		copy(best[i+1:], best[i:])
		best[i] = a
	}
	var out []string
	for _, a := range best {
		dup := false
		for _, o := range out {
			dup = dup || o == a.addr
		}
		if !dup {
			out = append(out, a.addr)
		}
	}
	return out
}

// sentinelReplica decides whether a replica SENTINEL REPLICAS lists may be
// used: not down, connected, with a real port.
func sentinelReplica(r map[string]string) (string, bool) {
	if r["ip"] == "" || r["port"] == "" || r["port"] == "0" {
		return "", false
	}
	for _, flag := range strings.Split(r["flags"], ",") {
		switch flag {
		case "s_down", "o_down", "disconnected":
			return "", false
		}
	}
	return net.JoinHostPort(r["ip"], r["port"]), true
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
