package proxy

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/replproxy/replproxy/router"
)

// up is a replica fact as gatherReplicas makes it for a healthy replica
// this loop has a connection to: applied offset off, no lag, idle.
func up(off int64) replicaFact {
	return replicaFact{eligible: true, usable: true, connected: true, offset: off, lagMs: 0, rtt: time.Millisecond}
}

func (f replicaFact) withLag(ms int64) replicaFact { f.lagMs = ms; return f }
func (f replicaFact) withBusy(n int) replicaFact   { f.outstanding = n; return f }
func (f replicaFact) withRTT(d time.Duration) replicaFact {
	f.rtt = d
	return f
}

// demoted: eligible in the snapshot, but a read failed there on this loop
// since the monitor last saw it.
func (f replicaFact) demoted() replicaFact { f.usable, f.lagMs = false, -1; return f }

// backoff: dialing it is in backoff and there is no connection to reuse.
func (f replicaFact) inBatch() replicaFact { f.batched = true; return f }
func (f replicaFact) backoff() replicaFact { f.dialBlocked, f.connected = true, false; return f }

// ineligible is what gatherReplicas makes of a replica the snapshot rules out.
func ineligible() replicaFact { return replicaFact{offset: -1, lagMs: -1} }

// rowInput is the input every row starts from: fence 100, floor settled
// at 0, a linearizable sample covering the read, --max-lag 100ms, close
// behind meaning within 110 ms, least-outstanding, nothing in flight.
func rowInput(mode consistency, rs []replicaFact) readInput {
	return readInput{
		mode: mode, linCovered: true, fenceTrusted: true, fence: 100,
		maxLagMs: 100, nearMs: 110, rr: 7, current: -1,
		have: haveFence | haveReplicas | haveLags, replicas: rs,
	}
}

// describe renders every field of a plan, so a row's want says all of it.
func describe(p readPlan, in *readInput) string {
	var b strings.Builder
	switch {
	case p.need != 0:
		fmt.Fprintf(&b, "need:%s", needNames(p.need))
	case p.linearize:
		b.WriteString("linearize")
	case p.replica == toMaster:
		b.WriteString("master")
	default:
		fmt.Fprintf(&b, "r%d", p.replica)
	}
	if p.linearize && p.replica != toMaster {
		fmt.Fprintf(&b, " r%d", p.replica)
	}
	if p.conditional {
		fmt.Fprintf(&b, " conditional@%d", p.required)
	} else if p.required != 0 {
		fmt.Fprintf(&b, " required=%d", p.required)
	}
	if p.fenced {
		b.WriteString(" fenced")
	}
	if p.floorLater {
		b.WriteString(" floorLater")
	}
	if p.settleFloor {
		b.WriteString(" settle")
	}
	if p.fallback != noFallback {
		b.WriteString(" fallback=" + fallbackNames[p.fallback])
	}
	if p.need == 0 && p.rr != in.rr {
		fmt.Fprintf(&b, " rr%+d", p.rr-in.rr)
	}
	return b.String()
}

func needNames(n readNeed) string {
	var s []string
	for _, x := range []struct {
		bit  readNeed
		name string
	}{{haveFence, "fence"}, {haveReplicas, "replicas"}, {haveLags, "lags"}} {
		if n&x.bit != 0 {
			s = append(s, x.name)
		}
	}
	return strings.Join(s, " ")
}

// planLazily plans as session.placeRead does: from the session's own facts
// and those in pre (what usualNeeds gathers up front), handing planRead
// each other costly fact when it asks. Facts not yet asked
// for are wrong on purpose (fence untrusted, lags unknown, configuration
// inverted), so a plan that used one before asking differs from the plan
// made with everything.
func planLazily(t *testing.T, full readInput, pre readNeed) (readPlan, readNeed) {
	t.Helper()
	in := full
	in.have, in.fenceTrusted, in.fence, in.replicas, in.current = 0, false, 0, nil, -1
	in.maxLagMs, in.nearMs, in.roundRobin = -1, -1, !full.roundRobin
	rs := make([]replicaFact, len(full.replicas))
	for i, f := range full.replicas {
		f.lagMs = -1
		rs[i] = f
	}
	give := func(need readNeed) {
		if need&haveFence != 0 {
			in.fenceTrusted, in.fence = full.fenceTrusted, full.fence
		}
		if need&haveReplicas != 0 {
			in.replicas, in.current = rs, full.current
			in.maxLagMs, in.nearMs, in.roundRobin = full.maxLagMs, full.nearMs, full.roundRobin
		}
		if need&haveLags != 0 {
			for i := range rs {
				rs[i].lagMs = full.replicas[i].lagMs
			}
		}
		in.have |= need
	}
	give(pre)
	var asked readNeed
	for {
		p := planRead(&in)
		if p.need == 0 {
			return p, asked
		}
		if p.need&in.have != 0 {
			t.Fatalf("planRead asked again for %s", needNames(p.need&in.have))
		}
		asked |= p.need
		give(p.need)
	}
}

func TestPlanRead(t *testing.T) {
	fresh := []replicaFact{up(200), up(200)}
	for _, tc := range []struct {
		name string // what the row catches
		mode consistency
		rs   []replicaFact
		mod  func(*readInput)
		want string
		asks string // facts planRead asks for, in order of cost
	}{
		// strong
		{name: "strong reads never leave the master", mode: consistencyStrong, rs: fresh,
			want: "master"},
		{name: "strong pinned: the pinned connection", mode: consistencyStrong, rs: fresh,
			mod: func(in *readInput) { in.pinned = true }, want: "master"},

		// pinned: MULTI, WATCH... (every mode)
		{name: "causal pinned: in order on the dedicated connection, no floor bookkeeping", mode: consistencyCausal, rs: fresh,
			mod: func(in *readInput) { in.pinned = true }, want: "master"},
		{name: "eventual pinned: not to a replica", mode: consistencyEventual, rs: fresh,
			mod: func(in *readInput) { in.pinned = true }, want: "master"},
		{name: "bounded pinned: not to a replica", mode: consistencyBounded, rs: fresh,
			mod: func(in *readInput) { in.pinned = true }, want: "master"},
		{name: "linearizable pinned: no sample waited for", mode: consistencyLinearizable, rs: fresh,
			mod: func(in *readInput) { in.pinned, in.linCovered = true, false }, want: "master"},

		// causal
		{name: "causal, no replicas: master, floor later, counted", mode: consistencyCausal,
			want: "master floorLater settle fallback=no_eligible_replica", asks: "fence replicas lags"},
		{name: "causal: a replica past the fence, reply fenced", mode: consistencyCausal, rs: fresh,
			want: "r0 fenced settle", asks: "fence replicas"},
		{name: "causal: least outstanding wins", mode: consistencyCausal, rs: []replicaFact{up(200).withBusy(3), up(200)},
			want: "r1 fenced settle", asks: "fence replicas"},
		{name: "causal: the replica written in this batch wins within the slack", mode: consistencyCausal, rs: []replicaFact{up(200).withBusy(batchSlack).inBatch(), up(200)},
			want: "r0 fenced settle", asks: "fence replicas"},
		{name: "causal: past the slack, least outstanding again", mode: consistencyCausal, rs: []replicaFact{up(200).withBusy(batchSlack + 1).inBatch(), up(200)},
			want: "r1 fenced settle", asks: "fence replicas"},
		{name: "causal: equal outstanding, lower RTT wins", mode: consistencyCausal,
			rs:   []replicaFact{up(200).withRTT(2 * time.Millisecond), up(200).withRTT(time.Millisecond)},
			want: "r1 fenced settle", asks: "fence replicas"},
		{name: "causal: a replica behind the fence is skipped, not waited for", mode: consistencyCausal, rs: []replicaFact{up(50), up(200).withBusy(9)},
			want: "r1 fenced settle", asks: "fence replicas"},
		{name: "causal: all behind, two close: the least busy of them, checked", mode: consistencyCausal,
			rs:   []replicaFact{up(60).withLag(5).withBusy(2), up(50).withLag(5)},
			want: "r1 conditional@100 fenced settle", asks: "fence replicas lags"},
		{name: "causal: all behind, one close: the most advanced, checked", mode: consistencyCausal,
			rs:   []replicaFact{up(60).withLag(5).withBusy(2), up(50).withLag(500)},
			want: "r0 conditional@100 fenced settle", asks: "fence replicas lags"},
		{name: "causal: unknown lag is not close", mode: consistencyCausal,
			rs:   []replicaFact{up(50).withLag(-1), up(60).withLag(-1).withBusy(2)},
			want: "r1 conditional@100 fenced settle", asks: "fence replicas lags"},
		{name: "causal: behind replicas in backoff are not tried", mode: consistencyCausal,
			rs:   []replicaFact{up(50).backoff(), up(60).backoff()},
			want: "master floorLater settle fallback=no_eligible_replica", asks: "fence replicas lags"},
		{name: "causal: a demoted replica past the fence is not read", mode: consistencyCausal,
			rs:   []replicaFact{up(200).demoted(), up(50).withLag(5)},
			want: "r1 conditional@100 fenced settle", asks: "fence replicas lags"},
		{name: "causal: the floor above the fence is required (monotonic reads)", mode: consistencyCausal,
			rs:   []replicaFact{up(250), up(200)},
			mod:  func(in *readInput) { in.floor = 300 },
			want: "r0 conditional@300 fenced settle", asks: "fence replicas lags"},
		{name: "causal: floor unknown with replicas eligible: master, floor_unknown", mode: consistencyCausal, rs: fresh,
			mod:  func(in *readInput) { in.floorEpoch, in.sampleEpoch = 10, 9 },
			want: "master floorLater settle fallback=floor_unknown", asks: "fence replicas"},
		{name: "causal: floor unknown, a demoted replica still counts as eligible for the reason", mode: consistencyCausal,
			rs:   []replicaFact{up(200).demoted()},
			mod:  func(in *readInput) { in.floorEpoch, in.sampleEpoch = 10, 10 },
			want: "master floorLater settle fallback=floor_unknown", asks: "fence replicas"},
		{name: "causal: floor unknown, nothing eligible: no_eligible_replica", mode: consistencyCausal,
			rs:   []replicaFact{ineligible()},
			mod:  func(in *readInput) { in.floorEpoch, in.sampleEpoch = 10, 9 },
			want: "master floorLater settle fallback=no_eligible_replica", asks: "fence replicas"},
		{name: "causal: a later master sample settles the floor and raises what is required", mode: consistencyCausal,
			rs:   []replicaFact{up(200), up(450).withBusy(3)},
			mod:  func(in *readInput) { in.floor, in.floorEpoch, in.sampleEpoch, in.sampleOff = 20, 10, 11, 400 },
			want: "r1 fenced settle", asks: "fence replicas"},
		{name: "causal: a settled floor below the fence leaves the fence required", mode: consistencyCausal, rs: fresh,
			mod:  func(in *readInput) { in.floorEpoch, in.sampleEpoch, in.sampleOff = 10, 11, 50 },
			want: "r0 fenced settle", asks: "fence replicas"},
		{name: "causal: fence lost: master, floor not settled", mode: consistencyCausal, rs: fresh,
			mod:  func(in *readInput) { in.fenceTrusted = false },
			want: "master floorLater fallback=fence_lost", asks: "fence replicas"},
		{name: "causal: pipelined behind its own master requests: stays there, asks nothing", mode: consistencyCausal, rs: fresh,
			mod:  func(in *readInput) { in.behindOwnOnMaster = true },
			want: "master floorLater fallback=pipelined_behind_master"},
		{name: "causal: the current replica is kept while it qualifies", mode: consistencyCausal,
			rs:   []replicaFact{up(200).withBusy(5), up(200)},
			mod:  func(in *readInput) { in.current = 0 },
			want: "r0 fenced settle", asks: "fence replicas"},
		{name: "causal: the current replica behind the fence is left", mode: consistencyCausal,
			rs:   []replicaFact{up(50).withBusy(5), up(200).withBusy(6)},
			mod:  func(in *readInput) { in.current = 0 },
			want: "r1 fenced settle", asks: "fence replicas"},
		{name: "causal: the current replica, demoted, is left", mode: consistencyCausal,
			rs:   []replicaFact{up(200).demoted(), up(200).withBusy(6)},
			mod:  func(in *readInput) { in.current = 0 },
			want: "r1 fenced settle", asks: "fence replicas"},
		{name: "causal: the current replica is kept in backoff while its connection lives", mode: consistencyCausal,
			rs: func() []replicaFact {
				f := up(200).withBusy(5)
				f.dialBlocked = true
				return []replicaFact{f, up(200)}
			}(),
			mod:  func(in *readInput) { in.current = 0 },
			want: "r0 fenced settle", asks: "fence replicas"},
		{name: "causal: the current replica in backoff with no connection for the protocol: master, uncounted", mode: consistencyCausal,
			rs:   []replicaFact{up(200).backoff(), up(200)},
			mod:  func(in *readInput) { in.current = 0 },
			want: "master floorLater settle", asks: "fence replicas"},
		{name: "causal round-robin: starts one past the counter", mode: consistencyCausal, rs: fresh,
			mod:  func(in *readInput) { in.roundRobin, in.rr = true, 0 },
			want: "r1 fenced settle rr+1", asks: "fence replicas"},
		{name: "causal round-robin: and wraps", mode: consistencyCausal, rs: fresh,
			mod:  func(in *readInput) { in.roundRobin, in.rr = true, 1 },
			want: "r0 fenced settle rr+1", asks: "fence replicas"},
		{name: "causal round-robin: skips a replica in backoff", mode: consistencyCausal, rs: []replicaFact{up(200), up(200).backoff()},
			mod:  func(in *readInput) { in.roundRobin, in.rr = true, 0 },
			want: "r0 fenced settle rr+1", asks: "fence replicas"},
		{name: "causal round-robin: a checked read advances the counter twice (ahead, then behind)", mode: consistencyCausal,
			rs:   []replicaFact{up(50).withLag(5), up(60).withLag(5)},
			mod:  func(in *readInput) { in.roundRobin, in.rr = true, 0 },
			want: "r0 conditional@100 fenced settle rr+2", asks: "fence replicas lags"},
		{name: "causal round-robin: no replica in the snapshot leaves the counter", mode: consistencyCausal,
			mod:  func(in *readInput) { in.roundRobin = true },
			want: "master floorLater settle fallback=no_eligible_replica", asks: "fence replicas lags"},

		// linearizable
		{name: "linearizable: no sample covers the read: wait for one", mode: consistencyLinearizable, rs: fresh,
			mod: func(in *readInput) { in.linCovered = false }, want: "linearize"},
		{name: "linearizable: the sample failed: master, uncounted", mode: consistencyLinearizable, rs: fresh,
			mod: func(in *readInput) { in.linRequired = linNoSample }, want: "master floorLater"},
		{name: "linearizable: sample ahead of every replica: checked against the sample", mode: consistencyLinearizable,
			rs:   []replicaFact{up(200).withLag(5), up(300).withLag(5).withBusy(1)},
			mod:  func(in *readInput) { in.linRequired = 500 },
			want: "r0 conditional@500 fenced settle", asks: "fence replicas lags"},
		{name: "linearizable: sample below the fence: the fence is required", mode: consistencyLinearizable,
			rs:   []replicaFact{up(80), up(200).withBusy(4)},
			mod:  func(in *readInput) { in.linRequired = 50 },
			want: "r1 fenced settle", asks: "fence replicas"},
		{name: "linearizable: a replica past the sample", mode: consistencyLinearizable, rs: fresh,
			mod:  func(in *readInput) { in.linRequired = 150 },
			want: "r0 fenced settle", asks: "fence replicas"},
		{name: "linearizable: pipelined behind the master: no sample waited for", mode: consistencyLinearizable, rs: fresh,
			mod:  func(in *readInput) { in.behindOwnOnMaster, in.linCovered = true, false },
			want: "master floorLater fallback=pipelined_behind_master"},
		{name: "linearizable: fence lost", mode: consistencyLinearizable, rs: fresh,
			mod:  func(in *readInput) { in.fenceTrusted, in.linRequired = false, 150 },
			want: "master floorLater fallback=fence_lost", asks: "fence replicas"},
		{name: "linearizable: floor unknown", mode: consistencyLinearizable, rs: fresh,
			mod:  func(in *readInput) { in.floorEpoch, in.linRequired = 3, 150 },
			want: "master floorLater settle fallback=floor_unknown", asks: "fence replicas"},

		// bounded
		{name: "bounded: a replica within --max-lag, nothing held", mode: consistencyBounded,
			rs: []replicaFact{up(50).withLag(50), up(50).withLag(60)}, want: "r0", asks: "replicas lags"},
		{name: "bounded: the bound is inclusive", mode: consistencyBounded,
			rs: []replicaFact{up(50).withLag(150), up(50).withLag(100).withBusy(3)}, want: "r1", asks: "replicas lags"},
		{name: "bounded: all over --max-lag: master, bounded_lag, no floor", mode: consistencyBounded,
			rs: []replicaFact{up(50).withLag(150), up(50).withLag(101)}, want: "master fallback=bounded_lag", asks: "replicas lags"},
		{name: "bounded: unknown lag is not within", mode: consistencyBounded,
			rs: []replicaFact{up(50).withLag(-1), up(50).withLag(-1)}, want: "master fallback=bounded_lag", asks: "replicas lags"},
		{name: "bounded: no replicas: bounded_lag", mode: consistencyBounded,
			want: "master fallback=bounded_lag", asks: "replicas lags"},
		{name: "bounded: the current replica is kept while within", mode: consistencyBounded,
			rs:   []replicaFact{up(50), up(50).withLag(90).withBusy(4)},
			mod:  func(in *readInput) { in.current = 1 },
			want: "r1", asks: "replicas lags"},
		{name: "bounded: the current replica over the bound is left", mode: consistencyBounded,
			rs:   []replicaFact{up(50).withBusy(4), up(50).withLag(150)},
			mod:  func(in *readInput) { in.current = 1 },
			want: "r0", asks: "replicas lags"},
		{name: "bounded: the current replica in backoff with no connection: master, uncounted, no floor", mode: consistencyBounded,
			rs:   []replicaFact{up(50).backoff(), up(50)},
			mod:  func(in *readInput) { in.current = 0 },
			want: "master", asks: "replicas lags"},
		{name: "bounded: pipelined behind the master still reads replicas", mode: consistencyBounded, rs: fresh,
			mod: func(in *readInput) { in.behindOwnOnMaster = true }, want: "r0", asks: "replicas lags"},

		// eventual
		{name: "eventual: any usable replica, least outstanding", mode: consistencyEventual,
			rs: []replicaFact{up(200).withBusy(2), up(200).withBusy(1)}, want: "r1", asks: "replicas"},
		{name: "eventual: ignores the fence and the lag", mode: consistencyEventual,
			rs: []replicaFact{up(0).withLag(-1)}, want: "r0", asks: "replicas"},
		{name: "eventual: all demoted: master, no_eligible_replica, no floor", mode: consistencyEventual,
			rs: []replicaFact{up(200).demoted(), up(200).demoted()}, want: "master fallback=no_eligible_replica", asks: "replicas"},
		{name: "eventual: all in backoff: master", mode: consistencyEventual,
			rs: []replicaFact{up(200).backoff(), up(200).backoff()}, want: "master fallback=no_eligible_replica", asks: "replicas"},
		{name: "eventual: one in backoff: the other", mode: consistencyEventual,
			rs: []replicaFact{up(200).backoff(), up(200).withBusy(9)}, want: "r1", asks: "replicas"},
		{name: "eventual: ineligible replicas: master", mode: consistencyEventual,
			rs: []replicaFact{ineligible(), ineligible()}, want: "master fallback=no_eligible_replica", asks: "replicas"},
		{name: "eventual: no replicas: master", mode: consistencyEventual,
			want: "master fallback=no_eligible_replica", asks: "replicas"},
		{name: "eventual: pipelined behind the master still reads replicas", mode: consistencyEventual, rs: fresh,
			mod: func(in *readInput) { in.behindOwnOnMaster = true }, want: "r0", asks: "replicas"},
		{name: "eventual: the current replica is kept while usable", mode: consistencyEventual,
			rs:   []replicaFact{up(200), up(200).withBusy(5)},
			mod:  func(in *readInput) { in.current = 1 },
			want: "r1", asks: "replicas"},
		{name: "eventual: the current replica in backoff with no connection: master, uncounted, no floor", mode: consistencyEventual,
			rs:   []replicaFact{up(200).backoff(), up(200)},
			mod:  func(in *readInput) { in.current = 0 },
			want: "master", asks: "replicas"},
		{name: "eventual: an excluded replica is never chosen", mode: consistencyEventual,
			rs: func() []replicaFact {
				f := up(200)
				f.excluded = true
				return []replicaFact{f, up(200).withBusy(5)}
			}(),
			want: "r1", asks: "replicas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := rowInput(tc.mode, tc.rs)
			if tc.mod != nil {
				tc.mod(&in)
			}
			full := in
			p := planRead(&full)
			if got := describe(p, &in); got != tc.want {
				t.Errorf("planRead = %q, want %q", got, tc.want)
			}
			// Whatever is gathered up front (usualNeeds), the plan is the same.
			for pre := readNeed(0); pre <= haveFence|haveReplicas|haveLags; pre++ {
				lazy, asked := planLazily(t, in, pre)
				if lazy != p {
					t.Errorf("planned on demand with %q gathered first: %q, with every fact: %q", needNames(pre), describe(lazy, &in), describe(p, &in))
				}
				if got := needNames(asked); pre == 0 && got != tc.asks {
					t.Errorf("asked for %q, want %q", got, tc.asks)
				}
			}
		})
	}
}

// The floor planRead assumes (readInput.settledFloor over what
// session.readInput gathers) is the one session.settleFloor then folds in,
// in every state settleFloor distinguishes.
func TestSettledFloorMatchesSettleFloor(t *testing.T) {
	const readEpoch = 10
	for _, floorEpoch := range []uint64{0, readEpoch} {
		for _, onConn := range []bool{false, true} {
			for _, closed := range []bool{false, true} {
				for _, loopEpoch := range []uint64{readEpoch - 1, readEpoch, readEpoch + 1} {
					for _, connEpoch := range []uint64{readEpoch - 1, readEpoch, readEpoch + 1} {
						if !onConn && (closed || connEpoch != readEpoch-1) {
							continue
						}
						name := fmt.Sprintf("epoch%d/conn=%v/closed=%v/loop%d/conn%d", floorEpoch, onConn, closed, loopEpoch, connEpoch)
						t.Run(name, func(t *testing.T) {
							l := &loop{srv: &Server{}, epoch: 20, sampleEpoch: loopEpoch, sampleOff: 500}
							s := &session{l: l, srv: l.srv, floor: 5, floorEpoch: floorEpoch}
							if onConn {
								b := &backend{l: l, state: stateOpen, sampleEpoch: connEpoch, sampleOff: 400}
								if closed {
									b.state = stateClosed
								}
								s.floorConn = b
							}
							var in readInput
							s.readInput(&in)
							known, floor := in.settledFloor()
							if got := s.settleFloor(); got != known || s.floor != floor {
								t.Fatalf("planned known=%v floor=%d; settleFloor made %v, %d", known, floor, got, s.floor)
							}
						})
					}
				}
			}
		}
	}
}

// gatherReplicas turns the snapshot and this loop's pools into facts as
// the old per-read checks saw them.
func TestGatherReplicas(t *testing.T) {
	now := time.Now()
	pend := func(n int) *backend {
		b := &backend{}
		for range n {
			b.pend.push(pending{})
		}
		return b
	}
	for _, tc := range []struct {
		name string // what the row catches
		st   router.NodeState
		pool func(*nodePool)
		cur  bool // the pool is the session's current one
		excl bool // the pool is excluded (retry)
		want replicaFact
		at   int // index of current, -1 when not
	}{
		{name: "eligible and fresh",
			st:   router.NodeState{Eligible: true, Offset: 300, Seen: now, RTT: 3 * time.Millisecond},
			want: replicaFact{eligible: true, usable: true, offset: 300, lagMs: -1, rtt: 3 * time.Millisecond}, at: -1},
		{name: "ineligible: nothing else looked at",
			st:   router.NodeState{Offset: 300, Seen: now},
			pool: func(p *nodePool) { p.knownOffset = 900 },
			want: replicaFact{offset: -1, lagMs: -1}, at: -1},
		{name: "demoted after the monitor last saw it: not usable",
			st:   router.NodeState{Eligible: true, Offset: 300, Seen: now},
			pool: func(p *nodePool) { p.demotedAt = now.Add(time.Millisecond) },
			want: replicaFact{eligible: true, offset: 300, lagMs: -1}, at: -1},
		{name: "demoted before the monitor saw it again: usable",
			st:   router.NodeState{Eligible: true, Offset: 300, Seen: now},
			pool: func(p *nodePool) { p.demotedAt = now.Add(-time.Millisecond) },
			want: replicaFact{eligible: true, usable: true, offset: 300, lagMs: -1}, at: -1},
		{name: "an offset a ROLE on this loop returned beats the poll's",
			st:   router.NodeState{Eligible: true, Offset: 300, Seen: now},
			pool: func(p *nodePool) { p.knownOffset = 450 },
			want: replicaFact{eligible: true, usable: true, offset: 450, lagMs: -1}, at: -1},
		{name: "in reconnect backoff",
			st:   router.NodeState{Eligible: true, Offset: 300, Seen: now},
			pool: func(p *nodePool) { p.dial = dialState{retryAt: now.Add(time.Hour), lastErr: "refused"} },
			want: replicaFact{eligible: true, usable: true, dialBlocked: true, offset: 300, lagMs: -1}, at: -1},
		{name: "backoff over",
			st:   router.NodeState{Eligible: true, Offset: 300, Seen: now},
			pool: func(p *nodePool) { p.dial = dialState{retryAt: now.Add(-time.Hour), lastErr: "refused"} },
			want: replicaFact{eligible: true, usable: true, offset: 300, lagMs: -1}, at: -1},
		{name: "outstanding requests on the connection of the session's protocol",
			st:   router.NodeState{Eligible: true, Offset: 300, Seen: now},
			pool: func(p *nodePool) { p.shared[0][0], p.shared[1][0] = pend(4), pend(1) },
			want: replicaFact{eligible: true, usable: true, connected: true, outstanding: 4, offset: 300, lagMs: -1}, at: -1},
		{name: "the session's current replica is found by address",
			st: router.NodeState{Eligible: true, Offset: 300, Seen: now}, cur: true,
			want: replicaFact{eligible: true, usable: true, offset: 300, lagMs: -1}, at: 1},
		{name: "the current replica ineligible is still found, and not usable",
			st: router.NodeState{Offset: 300, Seen: now}, cur: true,
			want: replicaFact{offset: -1, lagMs: -1}, at: 1},
		{name: "excluded",
			st: router.NodeState{Eligible: true, Offset: 300, Seen: now}, excl: true,
			want: replicaFact{eligible: true, usable: true, excluded: true, offset: 300, lagMs: -1}, at: -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &Server{cfg: Config{BackendConns: 1}}
			l := &loop{srv: srv, replicas: map[string]*nodePool{}}
			other := router.NodeState{Addr: "other:1", Eligible: true, Offset: 1, Seen: now}
			tc.st.Addr = "r:1"
			srv.topo.Store(&router.Snapshot{Replicas: []router.NodeState{other, tc.st}})
			p := l.replicaPool("r:1")
			if tc.pool != nil {
				tc.pool(p)
			}
			var cur, excl *nodePool
			if tc.cur {
				cur = p
			}
			if tc.excl {
				excl = p
			}
			rs, at := l.gatherReplicas(2, cur, excl)
			if len(rs) != 2 || at != tc.at {
				t.Fatalf("got %d facts, current %d; want 2, %d", len(rs), at, tc.at)
			}
			if rs[1] != tc.want {
				t.Errorf("fact = %+v\nwant   %+v", rs[1], tc.want)
			}
			if (rs[1].eligible) != (l.readPools[1] == p) {
				t.Errorf("pool handed to the executor: %p, want %p only when eligible", l.readPools[1], p)
			}
		})
	}
}

// Placing a read allocates nothing once the loop's scratch has grown, on
// every path: a replica ahead, behind (lags gathered), bounded, eventual.
func TestPlaceReadAllocs(t *testing.T) {
	now := time.Now()
	srv := &Server{cfg: Config{BackendConns: 1, MaxLag: 100 * time.Millisecond, PollInterval: 100 * time.Millisecond, CausalWait: 2 * time.Millisecond}}
	srv.topo.Store(&router.Snapshot{Replicas: []router.NodeState{
		{Addr: "a:1", Eligible: true, Offset: 500, Seen: now},
		{Addr: "b:1", Eligible: true, Offset: 50, Seen: now},
		{Addr: "c:1", Offset: -1},
	}})
	l := &loop{srv: srv, replicas: map[string]*nodePool{}, nowNs: now.UnixNano()}
	s := &session{l: l, srv: srv, proto: 2}
	for _, tc := range []struct {
		mode  consistency
		fence int64
		want  string
	}{
		{consistencyCausal, 100, "r0 fenced settle"},
		{consistencyCausal, 1000, "r0 conditional@1000 fenced settle"},
		{consistencyLinearizable, 100, "r0 fenced settle"},
		{consistencyBounded, 0, "master fallback=bounded_lag"}, // no link: lag unknown
		{consistencyEventual, 0, "r0"},
		{consistencyStrong, 0, "master"},
	} {
		s.consistency, s.linCovered = tc.mode, 1
		srv.fence.Store(tc.fence)
		var in readInput
		s.readInput(&in)
		if got := describe(s.placeRead(), &in); got != tc.want {
			t.Fatalf("%v, fence %d: placed %q, want %q", tc.mode, tc.fence, got, tc.want)
		}
		if n := testing.AllocsPerRun(100, func() { s.placeRead() }); n != 0 {
			t.Errorf("%v, fence %d: %v allocations per read placed", tc.mode, tc.fence, n)
		}
	}
}
