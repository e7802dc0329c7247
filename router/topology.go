package router

import "time"

// NodeState is what the topology monitor last saw of one Redis node.
// Values are copied into immutable Snapshots; never mutate one after publishing.
type NodeState struct {
	Addr      string // host:port the proxy connects to
	Role      string // "master", "replica" or "" when unknown
	Reachable bool
	// Replica fields: the link to its master and what it has applied.
	LinkUp  bool // master_link_status:up
	Syncing bool // master_sync_in_progress:1
	Loading bool // loading:1 or async_loading:1
	// ReplID is the replication history the node is on: master_replid on the
	// master, and on a replica the master_replid it follows.
	ReplID string
	// Offset is master_repl_offset on the master and slave_repl_offset
	// (applied) on a replica; -1 when unknown.
	Offset int64
	// LagBytes is the master's offset minus the replica's, >= 0; -1 unknown.
	LagBytes int64
	// LagMs is how far behind the replica is in milliseconds, from the
	// replication stream's offset→time map; -1 unknown.
	LagMs int64
	// Eligible says whether reads may go to this replica at all; Reason says
	// why not ("" when eligible): "unreachable", "link down", "syncing",
	// "loading", "replication loop", "other history", "offset unknown",
	// "not a replica".
	// A replica of a replica is judged like any other: by its own link and
	// the history it follows, never by who its master is (issue 16).
	Eligible bool
	Reason   string
	// Parent is the node a replica replicates from, as the monitor knows
	// that node (its address in this snapshot when it is one of ours),
	// "" when the replica names none. Depth is the replica's distance from
	// the master in the replication tree: 1 for a replica of the master, 2
	// for a replica of one of those, ...; 0 when unknown (its chain leads to
	// a node the proxy does not poll, or is broken); -1 when its chain runs
	// in a circle of REPLICAOFs (it then never advances: ineligible).
	Parent string
	Depth  int
	// ReplID2 and SecondOffset are master_replid2 and second_repl_offset:
	// the history a promoted node held before, valid up to SecondOffset-1.
	ReplID2      string
	SecondOffset int64
	// RunID is the node's process (INFO server run_id).
	RunID string
	// Keys is the number of keys in all databases (INFO keyspace); -1
	// when unknown.
	Keys int64
	// PersistRDB and PersistAOF say whether the node can reload its data
	// after a restart: 1 yes, 0 no, -1 unknown (CONFIG refused, not
	// audited yet).
	PersistRDB, PersistAOF int8
	// Parked: the node replicates from the empty-master guard's parking
	// address, keeping its data while the master's history is in doubt.
	Parked bool
	// Seen is when the monitor last heard from the node.
	Seen time.Time
	// RTT is a moving average of the monitor's round trips to the node: the
	// tie-break between replicas with equal outstanding requests.
	RTT time.Duration
}

// Snapshot is one consistent view of the deployment, published by the
// topology monitor through an atomic.Pointer and read by every event loop.
// Immutable once published: safe for concurrent use.
type Snapshot struct {
	Gen      uint64 // increases with every published snapshot
	Taken    time.Time
	Master   NodeState
	Replicas []NodeState

	// MasterGen numbers the masters the proxy has followed: it increases
	// with every master switch. A loop that sees a new MasterGen stops
	// using its connections to the previous master at once.
	MasterGen uint64
	// Switch describes the last master switch (zero before the first).
	Switch Switch
	// HoldWrites: a failover is in progress (Sentinel said so, or the
	// master answered -READONLY): writes wait, up to HoldUntil, for the
	// next master instead of going to one that is about to be replaced.
	HoldWrites bool
	HoldUntil  time.Time
	// Guarding: the empty-master guard is acting (the master's history is
	// in doubt): nothing may run on the master; writes wait, then get
	// -TRYAGAIN; reads go to the replicas that hold the data.
	Guarding bool
}

// Switch is one master switch as the control plane saw it.
type Switch struct {
	From, To string
	Cause    string
	At       time.Time
	// Continues: the new master continues the old one's history
	// (master_replid2 is the old replication ID), so offsets up to
	// SplitOffset mean the same writes on both; fences and floors taken
	// before the switch stay valid up to there. Writes beyond SplitOffset
	// on the old master are not in the new one's history.
	Continues   bool
	SplitOffset int64
	// OldReplID is the replication ID of the master switched from.
	OldReplID string
	// HeldID is the replication ID under which the new master holds the
	// history up to HeldTo (its master_replid2, usually OldReplID; the
	// first master's after a double failover), "" unless Continues.
	// HeldTo is SplitOffset but when Diverged.
	HeldID string
	HeldTo int64
	// Diverged: the new master holds more of an earlier history (HeldID,
	// up to HeldTo) than the old master did (a double failover where the
	// second promoted replica was ahead of the first on the first master's
	// history). Past SplitOffset the two hold different writes: the old
	// master's stream there is its replay of the first master's suffix,
	// part of which the new master has already, then its own writes.
	Diverged bool
	// Took is how long the switch took from the first sign of trouble
	// (the master unreachable, a failover event, -READONLY), 0 if unknown.
	Took time.Duration
}
