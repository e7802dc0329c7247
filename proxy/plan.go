package proxy

import "time"

// Read placement is one pure decision (planRead) over plain data
// (readInput), executed once by the session (session.sendRead). Nothing in
// this file touches a connection, a pool, an atomic or the clock.

// replicaFact is what planRead knows of one replica of the topology
// snapshot, in snapshot order: the monitor's view joined with this loop's
// (demotion, offsets its own ROLEs returned, reconnect backoff, requests in
// flight). Gathered by loop.gatherReplicas.
type replicaFact struct {
	eligible    bool // the snapshot says reads may go there at all
	usable      bool // eligible, and not demoted on this loop since the monitor last saw it (nodePool.usable)
	dialBlocked bool // in reconnect backoff (nodePool.mayDial); only set when usable
	connected   bool // has a shared connection for the session's protocol
	excluded    bool // retryRead: the replica the read just failed on
	// offset is the highest applied offset known: the monitor's or what a
	// ROLE on this loop's connection returned, whichever is higher.
	offset int64
	// lagMs is from the link's offset→time map (-1 unknown); filled only
	// when planRead asked for it (haveLags), and only when usable.
	lagMs       int64
	outstanding int           // requests in flight on that connection
	rtt         time.Duration // the monitor's round-trip average: the tie-break
	// batched: this loop has requests for that connection queued in the
	// current batch already (they go out in one write at its end).
	batched bool
}

// readNeed names facts planRead may ask for before it can decide: gathering
// them costs atomics shared by every loop, a map lookup per replica or a
// clock read, which the reads that do not need them (strong, pinned,
// pipelined behind the master, a replica already caught up) should not pay.
type readNeed uint8

const (
	haveFence    readNeed = 1 << iota // readInput.fenceTrusted and fence
	haveReplicas                      // readInput.replicas, current and the configuration
	haveLags                          // replicaFact.lagMs
)

// readInput is everything planRead decides from.
type readInput struct {
	mode consistency
	// What the session has in flight: a dedicated connection holding
	// server-side state (MULTI, WATCH...), or requests of its own on a
	// shared master connection (session.behindOwnOnMaster).
	pinned            bool
	behindOwnOnMaster bool
	// Linearizable: whether the session's master offset sample covers this
	// read (linCovered > 0) and the sample (linNoSample: it failed).
	linCovered  bool
	linRequired int64
	// The causal fence and whether it may be trusted (Server.fenceTrusted).
	fenceTrusted bool
	fence        int64
	// The connection's floor (monotonic reads). floorEpoch != 0: its last
	// master read is not settled yet; sampleEpoch and sampleOff are the
	// newest master ROLE answered that may settle it (on session.floorConn
	// when set, else on the loop), as session.settleFloor reads them.
	floor       int64
	floorEpoch  uint64
	sampleEpoch uint64
	sampleOff   int64
	// The loop's round-robin counter.
	rr int
	// have says which of the facts gathered on demand are filled in.
	have readNeed
	// replicas, one per snapshot replica; current is the index of the one
	// the session's reads are in flight on (-1: none). The configuration
	// that judges them comes with them.
	replicas   []replicaFact
	current    int
	maxLagMs   int64 // --max-lag
	nearMs     int64 // --poll-interval plus --causal-wait: see pickBehind
	roundRobin bool  // --read-balance round-robin
}

// toMaster is readPlan.replica for a read that goes to the master.
const toMaster = -1

// noFallback is readPlan.fallback when no fallback is counted.
const noFallback = fallbackCount

// readPlan is where a read runs and what goes with it.
type readPlan struct {
	// need: planRead cannot decide without these facts; gather them and
	// plan again. Nothing else is set.
	need readNeed
	// linearize: wait for a master offset sample (session.linearize), then
	// plan again.
	linearize bool
	// replica is the index in readInput.replicas of the replica to read
	// from, or toMaster: the session's pinned connection when it has one,
	// else its master connection.
	replica int
	// conditional: a ROLE goes before the read on the replica's connection
	// (backend.queueCheck) and the read counts only if it returned at least
	// required; otherwise it runs again (session.redoRead).
	conditional bool
	required    int64
	// fenced: the reply is held for the ROLE after it, whose offset raises
	// the floor before the client sees it. floorLater: a master read whose
	// floor a later master ROLE tells (session.floorEpoch).
	fenced     bool
	floorLater bool
	// settleFloor: the plan relied on the settled floor; the session folds
	// it in (session.settleFloor).
	settleFloor bool
	fallback    fallbackReason // noFallback: none counted
	rr          int            // the loop's round-robin counter afterwards
}

// tracksFloor: the mode keeps a per-connection floor (monotonic reads).
func (c consistency) tracksFloor() bool {
	return c == consistencyCausal || c == consistencyLinearizable
}

// planRead decides where a read runs (DESIGN.md, "Consistency model"):
// strong reads go to the master; eventual reads to any usable replica;
// bounded reads to one within --max-lag; causal and linearizable reads to
// a replica that has applied the offset they require, or, with an offset
// check before them, to one close behind; everything else to the master.
// It is a pure function of in; it asks for costly facts (in.have) only on
// the paths that use them.
//
// Why a causal read sent where this plan says observes every write the
// proxy acknowledged before the read arrived, and everything its
// connection read before (monotonic reads):
//
//  1. A write's reply is held until the ROLE queued after it, on the same
//     master connection, has answered and raised Server.fence to the
//     offset it returned (fence.go). The master ran that ROLE after the
//     write, so the offset covers the write. Every write acknowledged
//     before this read arrived therefore has its end at or below in.fence,
//     which is loaded while the read is dispatched, after it arrived.
//  2. A write acknowledged without a fence (its ROLE failed, or its
//     connection died first) makes the fence untrusted for fenceGrace, and
//     the plan sends causal reads to the master meanwhile. That a fence
//     taken after such a write exists once the grace is over is fence.go's
//     assumption (a later write, or a causal master read's fence ROLE),
//     not something this function can check.
//  3. in.floor is at or past everything the connection's reads observed: a
//     replica read's reply is held (fenced) until a ROLE after it on that
//     replica raised the floor; a master read's floor is known only once a
//     master ROLE that ran after it has answered (floorEpoch; settleFloor),
//     and until then the plan sends the connection's reads to the master.
//  4. The read requires max(in.fence, settled floor, in.linRequired) and
//     goes to a replica only (a) when its known applied offset is at least
//     that, from the monitor's poll or a ROLE on this loop's connection:
//     applied offsets only move back through a restart or a resync, which
//     make the replica ineligible or unusable (demotion on a lost
//     connection until the monitor has polled again; verifyReplica on a
//     new one); or (b) conditional: the ROLE before it on the same
//     connection runs before it, and the read counts only if that ROLE
//     returned the required offset (backend.onReply, else redoRead).
//  5. Pinned reads, reads pipelined behind the connection's own master
//     requests, and every fallback go to the master, which has applied
//     every write it acknowledged.
//
// Linearizable reads add in.linRequired: a master offset sampled by a ROLE
// sent after the read arrived (session.linearize), so writes made through
// other proxies or directly are covered too.
//
// A plan that breaks this is caught by TestCausalReadsSeeAcknowledgedWrites,
// TestMonotonicReadsAcrossMasterAndReplicas and
// TestLinearizableReadsSeeDirectWrites; TestPlanRead pins each step.
func planRead(in *readInput) readPlan {
	p := readPlan{replica: toMaster, fallback: noFallback, rr: in.rr}
	if in.pinned {
		return p // inside MULTI, WATCH...: in order on the master
	}
	if in.mode.tracksFloor() && in.behindOwnOnMaster {
		// Pipelined behind requests of its own still in flight on the
		// master (a write, typically): no replica can have that write yet,
		// and the master runs this read after it, in order. Waiting to
		// switch to a replica would cost the pipeline a round trip, and an
		// offset check that fails (the replica not there yet) another.
		p.master(in, fallbackPipelined)
		return p
	}
	var required int64
	switch in.mode {
	case consistencyStrong:
		return p
	case consistencyEventual, consistencyBounded:
		want, reason, need := replicaWant{minOffset: -1}, fallbackNoReplica, haveReplicas
		if in.mode == consistencyBounded {
			want.lagBound, want.maxLagMs = true, in.maxLagMs
			reason, need = fallbackBoundedLag, haveReplicas|haveLags
		}
		if in.have&need != need {
			return readPlan{need: need &^ in.have}
		}
		if i := p.pickFor(in, want); i >= 0 {
			p.onReplica(in, i)
			return p
		}
		p.fallback = reason
		return p
	case consistencyLinearizable:
		if !in.linCovered {
			p.linearize = true
			return p
		}
		if in.linRequired == linNoSample {
			p.master(in, noFallback)
			return p
		}
		required = in.linRequired
	}
	// The replicas are needed from here on but for a lost fence, a rare
	// fallback: ask for both at once.
	if need := haveFence | haveReplicas; in.have&need != need {
		return readPlan{need: need &^ in.have}
	}
	if !in.fenceTrusted {
		p.master(in, fallbackFenceLost)
		return p
	}
	known, floor := in.settledFloor()
	p.settleFloor = true
	if !known {
		reason := fallbackNoReplica
		if in.anyEligible() {
			reason = fallbackFloorUnknown
		}
		p.master(in, reason)
		return p
	}
	required = max(required, in.fence, floor)
	p.fenced = true // the reply sets the floor
	if i := p.pickFor(in, replicaWant{minOffset: required}); i >= 0 {
		p.onReplica(in, i)
		return p
	}
	if in.have&haveLags == 0 {
		return readPlan{need: haveLags}
	}
	i, rr := pickBehind(in.replicas, in.nearMs, in.roundRobin, p.rr)
	p.rr = rr
	if i >= 0 {
		p.conditional, p.required = true, required
		p.onReplica(in, i)
		return p
	}
	p.master(in, fallbackNoReplica)
	return p
}

// master sends the read to the master. Under causal and linearizable it
// leaves the connection's floor to a later master ROLE.
func (p *readPlan) master(in *readInput, reason fallbackReason) {
	p.replica, p.conditional, p.required, p.fenced = toMaster, false, 0, false
	p.floorLater = in.mode.tracksFloor()
	if reason != noFallback {
		p.fallback = reason
	}
}

// onReplica sends the read to replica i, unless a connection to it can
// neither be reused nor dialed (backoff): then to the master, uncounted.
// Only the session's current replica can be chosen in that state.
func (p *readPlan) onReplica(in *readInput, i int) {
	if f := &in.replicas[i]; !f.connected && f.dialBlocked {
		p.master(in, noFallback)
		return
	}
	p.replica = i
}

// pickFor chooses a replica satisfying w. The session's current replica
// wins while it qualifies, so pipelined reads need not wait to switch.
func (p *readPlan) pickFor(in *readInput, w replicaWant) int {
	if c := in.current; c >= 0 && in.replicas[c].qualifies(w) {
		return c
	}
	i, rr := chooseReplica(in.replicas, w, in.roundRobin, p.rr)
	p.rr = rr
	return i
}

// settledFloor is what session.settleFloor would make of the floor: known,
// and its value.
func (in *readInput) settledFloor() (bool, int64) {
	switch {
	case in.floorEpoch == 0:
		return true, in.floor
	case in.sampleEpoch <= in.floorEpoch:
		return false, in.floor
	}
	return true, max(in.floor, in.sampleOff)
}

// anyEligible reports whether any replica could serve reads now
// (loop.replicaEligible).
func (in *readInput) anyEligible() bool {
	for i := range in.replicas {
		if in.replicas[i].eligible {
			return true
		}
	}
	return false
}

// replicaWant is what a read asks of a replica: an applied offset of at
// least minOffset (-1: any) and, with lagBound, a known lag of at most
// maxLagMs.
type replicaWant struct {
	minOffset int64
	lagBound  bool
	maxLagMs  int64
}

func (f *replicaFact) qualifies(w replicaWant) bool {
	if !f.usable || (w.minOffset >= 0 && f.offset < w.minOffset) {
		return false
	}
	return !w.lagBound || (f.lagMs >= 0 && f.lagMs <= w.maxLagMs)
}

// batchSlack is how many more requests in flight a replica already
// written in this batch may have and still win over a less busy one:
// reads of one batch then share one write and one read of one connection
// instead of spreading them one by one over every replica (least
// outstanding alternates within a batch, since each pick makes its replica
// the busier one). Across batches the load still evens out: the next
// batch starts with no replica written, and the least busy wins. At GET
// pipeline 1 with 50 clients a batch is ~36 reads, which least-outstanding
// split over 2 replicas: 2 writes and 2 reads per batch where one of each
// does (issue 14: syscalls per request).
const batchSlack = 32

// chooseReplica returns the index of the replica a read goes to among those
// that satisfy w and may be dialed, or -1, and the round-robin counter
// afterwards. Least outstanding requests wins, counting a replica already
// written in this batch batchSlack less busy; the monitor's round-trip
// average breaks ties. Round-robin takes the first one from the next
// starting point instead.
func chooseReplica(rs []replicaFact, w replicaWant, roundRobin bool, rr int) (int, int) {
	n := len(rs)
	if roundRobin && n > 0 {
		rr++
	}
	best, bestOut, bestRTT := -1, 0, time.Duration(0)
	for i := 0; i < n; i++ {
		j := i
		if roundRobin {
			j = (i + rr) % n
		}
		f := &rs[j]
		if f.excluded || f.dialBlocked || !f.qualifies(w) {
			continue
		}
		if roundRobin {
			return j, rr
		}
		out := f.outstanding
		if f.batched {
			out -= batchSlack
		}
		if best < 0 || out < bestOut || (out == bestOut && f.rtt < bestRTT) {
			best, bestOut, bestRTT = j, out, f.rtt
		}
	}
	return best, rr
}

// pickBehind chooses a replica for a conditional read: the least busy of
// those that are close behind (lag within nearMs: what an up-to-date
// replica looks like between two polls), else the most advanced one. The
// check before the read decides whether it counts; the choice only spreads
// the load and avoids replicas that stopped. rs must have lags.
func pickBehind(rs []replicaFact, nearMs int64, roundRobin bool, rr int) (int, int) {
	best, bestOff, near := -1, int64(-1), 0
	for i := range rs {
		f := &rs[i]
		if !f.usable || f.dialBlocked {
			continue
		}
		if f.offset > bestOff {
			best, bestOff = i, f.offset
		}
		if f.lagMs >= 0 && f.lagMs <= nearMs {
			near++
		}
	}
	if near < 2 {
		return best, rr
	}
	return chooseReplica(rs, replicaWant{minOffset: -1, lagBound: true, maxLagMs: nearMs}, roundRobin, rr)
}
