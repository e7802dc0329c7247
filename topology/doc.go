// Package topology is replproxy's control plane: it owns every go-redis
// client to the data nodes and to the Sentinels, and every decision about
// roles. The event loops (package proxy) only read what it publishes.
//
// # What flows through it
//
// In: INFO replication, persistence and server from every node, every
// PollInterval, one goroutine per node; with Sentinels, SENTINEL
// get-master-addr-by-name / replicas / sentinels every PollInterval and
// every Pub/Sub event of every Sentinel (sentinel.go); hints from the data
// plane (Demote: a replica failed a read; Suspect: the master's connection
// was lost or it answered -READONLY).
//
// Out: an immutable router.Snapshot per change, through Config.Publish: the
// master (address, offset, history) and its generation MasterGen, the
// replicas with their offsets, lag and eligibility, the last master
// switch, and whether writes are held for a failover in progress. And the
// Switched hook, called in order after each master switch (the proxy moves
// its replication link and wakes its loops).
//
// # What it may do to nodes
//
// It reads (INFO, CONFIG GET save, SENTINEL queries) and follows. Only the
// empty-master guard (guard.go) acts, and only for a master that cannot
// reload its data (no AOF, no RDB, as far as the audit knows), when the
// master's process is gone (its idle connection ended) or came back on a
// new history:
//   - REPLICAOF <park address> on the replicas of the master's history
//     (park), and REPLICAOF <master> to undo it when the master's history
//     turns out intact;
//   - when the master came back empty: with Sentinel, SENTINEL FAILOVER
//     (Sentinel chooses and reconfigures) and REPLICAOF <new master> on
//     nodes still parked and on the empty node; without Sentinel,
//     REPLICAOF NO ONE on the most advanced replica and REPLICAOF <it> on
//     the others and the empty node.
//
// Every one of them is idempotent, logged, counted and listed in PROXY
// GUARD. It never sends CONFIG SET.
//
// # Who the master is
//
// Without Sentinels the master is the configured one, followed to another
// node only when it says so itself: it answers INFO as a replica of a node
// that answers as a master (an operator's REPLICAOF, Redis's FAILOVER).
//
// With Sentinels, Sentinel decides and the proxy follows, as Sentinel's
// client guidelines ask: the first Sentinel that answers
// get-master-addr-by-name with a node that itself answers role:master is
// followed; a Sentinel that is down is skipped, and one that names a node
// answering as a replica (stale, partitioned or misconfigured) is passed
// over for the next. Pub/Sub speeds this up (+switch-master, and
// +promoted-slave, which comes first: the leader answers with the promoted
// replica as soon as it has been promoted), the poll is the backstop for a
// lost message.
//
// # Why no write reaches a replaced master
//
// A switch is published as a snapshot with a new MasterGen before anything
// else happens. A loop compares MasterGen with its own before it dispatches
// any request; on a difference the request waits for the loop's switch task,
// which closes every connection to the old master first. So a request
// dispatched after the snapshot is visible never goes to the old master.
// What was in flight there is answered by it, refused with -READONLY (not
// executed: re-sent to the new master), or fails with its connection
// ("may or may not have been executed": never re-sent). Test:
// proxy.TestFailoverMasterKilled and TestFailoverManual (no number pushed
// twice, no -READONLY seen by a client).
//
// # Why a manual failover loses no acknowledged write
//
// Sentinel promotes a replica with REPLICAOF NO ONE while the old master
// still accepts writes, and demotes the old master only seconds later: a
// write it acknowledges after the promotion is lost. Sentinel announces
// the failover before promoting (+try-failover, +elected-leader,
// +failover-state-select-slave, +selected-slave, then
// +failover-state-send-slaveof-noone); from the first of them writes are
// held (Snapshot.HoldWrites, at most HoldMax each) and the ones already sent
// replicate while Sentinel moves through its states (one per 100 ms timer
// tick at least). Held writes go to the new master once it is published.
// Test: proxy.TestFailoverManual (0 acknowledged writes lost).
//
// A killed master is different: writes it acknowledged but had not yet
// sent to the replica that gets promoted are lost, whatever the proxy
// does, unless it kept them (the witness, a later step).
//
// # Offsets across a switch
//
// A promoted replica continues its old master's history (PSYNC2): its
// master_replid2 is the old ID, valid up to second_repl_offset-1
// (continuity). Then offsets up to that split mean the same writes on both
// sides and the proxy's fences and floors stay valid; beyond it they do
// not, and when the new master does not continue the history at all the
// fences start over (Switch.Continues, SplitOffset).
//
// # Replicas of replicas
//
// Redis lets a replica replicate from another (master -> R1 -> R2). With
// DiscoverReplicas the monitor reads every replica's own slaveN lines as
// well as the master's, to any depth; each address is polled once, however
// many nodes list it, so a loop of REPLICAOFs cannot make discovery go
// round. A discovered replica is forgotten once it stops answering and no
// node that answers lists it (staleReplicas). Each published replica
// carries its Parent and its Depth in the tree (treeDepths).
//
// Why a replica of a replica may serve reads, count for WAIT and for the
// write gate exactly like a replica of the master: R1 passes the master's
// replication stream on byte for byte (PSYNC2), and R2 takes R1's
// replication ID, which is the master's; so R2 following the master's
// history at offset X has applied every write whose stream end is <= X,
// and every offset rule (causal fences, linearizable ROLE reads, lag in
// bytes and in milliseconds, WAIT's count) holds for it unchanged. Its
// parent can only hurt it through R2's own state, which eligibility reads:
// a paused R1 freezes R2's offset (fences hold reads back, lag grows), a
// dead R1 takes R2's link down (at once when R1's socket closes, after
// repl-timeout when R1 is cut off), and an R1 that changes history
// disconnects R2 before it applies anything of the new one (Redis 7.0 does
// so when +CONTINUE brings a new ID, and before loading a full resync's
// RDB), so R2 is link down, then syncing, then on the other ID — never on
// the master's ID with data that is not the master's.
//
// The one layout the link does not give away is a loop of REPLICAOFs
// (R1 -> R2 -> R1): Redis 7.0.15 accepts both PSYNCs, every link is up, the
// ID is still the master's and the offsets never move again. The walk that
// computes depths finds it (treeDepths, Depth -1) and such a replica is
// ineligible, "replication loop" (in eventual mode it would serve
// ever-staler reads; causal fences and lag bounds exclude it anyway).
// Tests: proxy.TestCascadeReadsSpread, TestCascadeCausalWhileParentPaused
// (0 stale reads), TestCascadeParentKilled, TestCascadeWaitCountsChained;
// topology.TestTreeDepths.
//
// Failover: Sentinel knows only the master's direct replicas and never
// reconfigures R2. When R1 is promoted, R2 reconnects (promotion
// disconnects R1's replicas) and continues with +CONTINUE on R1's new ID,
// which is the new master's: eligible again as a direct replica. When
// another replica is promoted, Sentinel points R1 at it, R1 continues with
// +CONTINUE and disconnects R2, which continues from R1 on the new ID.
// Test: proxy.TestCascadeFailover.
//
// Ownership: Monitor's state is guarded by its mutex; the follower's lists
// by its own. Publish and Switched are called with the monitor's lock held,
// in order; they must not block or call back.
package topology
