package metrics

import (
	"errors"
	"math"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// observe returns per-bucket counts and the sum, as a per-loop recorder
// built on LatencyBucket would keep them.
func observe(ds ...time.Duration) ([]uint64, float64) {
	per := make([]uint64, len(LatencyBuckets)+1)
	var sum float64
	for _, d := range ds {
		per[LatencyBucket(d)]++
		sum += d.Seconds()
	}
	return per, sum
}

// fullStats fills every field of Stats, with repeated labels where the
// collector must sum (two "event loops").
func fullStats(s *Stats) {
	loop1, sum1 := observe(80*time.Microsecond, 3*time.Millisecond, 10*time.Second)
	loop2, sum2 := observe(50*time.Microsecond, 2*time.Millisecond)
	*s = Stats{
		Commands: []CommandCount{
			{Class: "read", Target: "replica", Count: 10},
			{Class: "write", Target: "master", Count: 7},
			{Class: "read", Target: "replica", Count: 5},
			{Class: "local", Target: "proxy", Count: 3},
		},
		Latency: []LatencyHist{
			NewLatencyHist("replica", loop1, sum1),
			NewLatencyHist("replica", loop2, sum2),
			{Target: "master", Buckets: []float64{0.001, 0.01}, Counts: []uint64{2, 3}, Count: 4, Sum: 0.5},
		},
		ClientsConnected: 12,
		ClientsRejected:  2,
		Nodes: []Node{
			{Addr: "10.0.0.1:6379", Role: "master", Up: true, Eligible: true, LagBytes: 0, LagSeconds: 0, Offset: 1000, PersistRDB: 1, PersistAOF: 0},
			{Addr: "10.0.0.2:6379", Role: "replica", Up: true, Eligible: true, Reason: "ignored when eligible", LagBytes: 10, LagSeconds: 0.002, Offset: 990, PersistRDB: -1, PersistAOF: -1, Parent: "10.0.0.1:6379", Depth: 1},
			{Addr: "10.0.0.3:6379", Role: "replica", Up: false, Eligible: false, Reason: "link_down", LagBytes: -1, LagSeconds: -1, Offset: -1, PersistRDB: -1, PersistAOF: -1},
			{Addr: "10.0.0.4:6379", Role: "", Up: true, Eligible: false, Reason: "", LagBytes: 5, LagSeconds: math.NaN(), Offset: 995, PersistRDB: -1, PersistAOF: -1, Parent: "10.0.0.2:6379", Depth: 2},
		},
		MasterReplOffset: 1000,
		ReadFallbacks: []ReasonCount{
			{Reason: "no_eligible_replica", Count: 4},
			{Reason: "causal_wait_expired", Count: 0},
			{Reason: "bounded_lag", Count: 1},
		},
		ReadRetries:         []ReasonCount{{Reason: "loading", Count: 2}, {Reason: "masterdown", Count: 0}},
		WriteGateRejections: 9,
		WaitCalls:           []ReasonCount{{Reason: "satisfied", Count: 6}, {Reason: "timeout", Count: 1}},
		TopologyChanges:     3,
		Stream: StreamStats{
			Connected: true, Offset: 998, FullSyncs: 1, PartialSyncs: 2,
			Reconnects: 3, HistoryResets: 1, BytesReceived: 4096,
		},
		BackendConnections: []ReasonCount{
			{Reason: "shared", Count: 4}, {Reason: "dedicated", Count: 1}, {Reason: "shared", Count: 4},
		},
		Master:              MasterInfo{Addr: "10.0.0.1:6379", Generation: 2},
		MasterSwitches:      []ReasonCount{{Reason: "sentinel", Count: 1}, {Reason: "master_became_replica", Count: 0}},
		SwitchDuration:      NewHist(SwitchBuckets, []uint64{0, 0, 0, 0, 0, 1}, 0.8),
		WritesHeld:          5,
		WritesRedirected:    2,
		WitnessWaited:       3,
		WitnessTimeouts:     1,
		WitnessOff:          4,
		WitnessFailed:       6,
		WitnessBacklogShort: true,
		Replays:             []ReasonCount{{Reason: "replayed", Count: 1}},
		FailoverLostBytes:   100,
		GuardActive:         true,
		GuardActions:        []ReasonCount{{Reason: "park", Count: 2}},
	}
}

// seriesKey renders name{l1="v1",l2="v2"} with labels in the dto's (sorted) order.
func seriesKey(name string, m *dto.Metric) string {
	var b strings.Builder
	b.WriteString(name)
	if len(m.GetLabel()) > 0 {
		b.WriteString("{")
		for i, lp := range m.GetLabel() {
			if i > 0 {
				b.WriteString(",")
			}
			b.WriteString(lp.GetName() + "=\"" + lp.GetValue() + "\"")
		}
		b.WriteString("}")
	}
	return b.String()
}

func gatherReplproxy(t *testing.T, reg prometheus.Gatherer) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), namespace+"_") {
			out[mf.GetName()] = mf
		}
	}
	return out
}

func TestCollectorFullStats(t *testing.T) {
	reg := NewRegistry(fullStats)
	got := gatherReplproxy(t, reg)

	want := map[string]float64{
		`replproxy_commands_total{class="read",target="replica"}`:               15,
		`replproxy_commands_total{class="write",target="master"}`:               7,
		`replproxy_commands_total{class="local",target="proxy"}`:                3,
		`replproxy_clients_connected`:                                           12,
		`replproxy_clients_rejected_total`:                                      2,
		`replproxy_backend_up{addr="10.0.0.1:6379",role="master"}`:              1,
		`replproxy_backend_up{addr="10.0.0.2:6379",role="replica"}`:             1,
		`replproxy_backend_up{addr="10.0.0.3:6379",role="replica"}`:             0,
		`replproxy_backend_up{addr="10.0.0.4:6379",role="unknown"}`:             1,
		`replproxy_backend_connections{kind="shared"}`:                          8,
		`replproxy_backend_connections{kind="dedicated"}`:                       1,
		`replproxy_replica_lag_bytes{addr="10.0.0.2:6379"}`:                     10,
		`replproxy_replica_lag_bytes{addr="10.0.0.4:6379"}`:                     5,
		`replproxy_replica_lag_seconds{addr="10.0.0.2:6379"}`:                   0.002,
		`replproxy_replica_eligible{addr="10.0.0.2:6379"}`:                      1,
		`replproxy_replica_eligible{addr="10.0.0.3:6379"}`:                      0,
		`replproxy_replica_eligible{addr="10.0.0.4:6379"}`:                      0,
		`replproxy_replica_ineligible{addr="10.0.0.3:6379",reason="link_down"}`: 1,
		`replproxy_replica_ineligible{addr="10.0.0.4:6379",reason="unknown"}`:   1,
		`replproxy_replica_depth{addr="10.0.0.2:6379",parent="10.0.0.1:6379"}`:  1,
		`replproxy_replica_depth{addr="10.0.0.3:6379",parent=""}`:               0,
		`replproxy_replica_depth{addr="10.0.0.4:6379",parent="10.0.0.2:6379"}`:  2,
		`replproxy_master_replication_offset_bytes`:                             1000,
		`replproxy_replica_replication_offset_bytes{addr="10.0.0.2:6379"}`:      990,
		`replproxy_replica_replication_offset_bytes{addr="10.0.0.4:6379"}`:      995,
		`replproxy_read_fallbacks_total{reason="no_eligible_replica"}`:          4,
		`replproxy_read_fallbacks_total{reason="causal_wait_expired"}`:          0,
		`replproxy_read_fallbacks_total{reason="bounded_lag"}`:                  1,
		`replproxy_read_retries_total{reason="loading"}`:                        2,
		`replproxy_read_retries_total{reason="masterdown"}`:                     0,
		`replproxy_write_gate_rejections_total`:                                 9,
		`replproxy_wait_calls_total{outcome="satisfied"}`:                       6,
		`replproxy_wait_calls_total{outcome="timeout"}`:                         1,
		`replproxy_topology_changes_total`:                                      3,
		`replproxy_stream_connected`:                                            1,
		`replproxy_stream_offset_bytes`:                                         998,
		`replproxy_stream_syncs_total{type="full"}`:                             1,
		`replproxy_stream_syncs_total{type="partial"}`:                          2,
		`replproxy_stream_reconnects_total`:                                     3,
		`replproxy_stream_history_resets_total`:                                 1,
		`replproxy_stream_received_bytes_total`:                                 4096,
		`replproxy_master_info{addr="10.0.0.1:6379",generation="2"}`:            1,
		`replproxy_master_switches_total{cause="sentinel"}`:                     1,
		`replproxy_master_switches_total{cause="master_became_replica"}`:        0,
		`replproxy_failover_writes_held_total`:                                  5,
		`replproxy_failover_writes_redirected_total`:                            2,
		`replproxy_guard_active`:                                                1,
		`replproxy_witness_waits_total`:                                         3,
		`replproxy_witness_timeouts_total`:                                      1,
		`replproxy_witness_unwitnessed_total`:                                   4,
		`replproxy_witness_failed_total`:                                        6,
		`replproxy_witness_backlog_short`:                                       1,
		`replproxy_failover_replays_total{outcome="replayed"}`:                  1,
		`replproxy_failover_lost_bytes`:                                         100,
		`replproxy_guard_actions_total{action="park"}`:                          2,
		`replproxy_node_persistence{kind="aof",node="10.0.0.1:6379"}`:           0,
		`replproxy_node_persistence{kind="rdb",node="10.0.0.1:6379"}`:           1,
	}

	seen := map[string]float64{}
	for name, mf := range got {
		f := familyByName(name)
		if f == nil {
			t.Errorf("gathered undeclared family %s", name)
			continue
		}
		wantType := map[kind]dto.MetricType{
			kindCounter: dto.MetricType_COUNTER, kindGauge: dto.MetricType_GAUGE, kindHistogram: dto.MetricType_HISTOGRAM,
		}[f.kind]
		if mf.GetType() != wantType {
			t.Errorf("%s: type %v, want %v", name, mf.GetType(), wantType)
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help", name)
		}
		for _, m := range mf.GetMetric() {
			var names []string
			for _, lp := range m.GetLabel() {
				names = append(names, lp.GetName())
			}
			wantLabels := slices.Sorted(slices.Values(f.labels))
			if !slices.Equal(names, wantLabels) {
				t.Errorf("%s: labels %v, want %v", name, names, wantLabels)
			}
			if f.kind == kindHistogram {
				continue
			}
			v := m.GetCounter().GetValue()
			if f.kind == kindGauge {
				v = m.GetGauge().GetValue()
			}
			seen[seriesKey(name, m)] = v
		}
	}
	for k, w := range want {
		g, ok := seen[k]
		switch {
		case !ok:
			t.Errorf("missing series %s", k)
		case math.Abs(g-w) > 1e-12:
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
	for k, g := range seen {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected series %s = %v", k, g)
		}
	}

	// Every declared family is emitted by a full Stats: the declarations
	// (and so Names and the docs) are the real output, not a wish list.
	for _, f := range families {
		if _, ok := got[f.name]; !ok {
			t.Errorf("declared family %s not emitted by a full Stats", f.name)
		}
	}

	if n, err := testutil.GatherAndCount(reg, "replproxy_replica_ineligible"); err != nil || n != 2 {
		t.Errorf("GatherAndCount(replica_ineligible) = %d, %v; want 2 (current reasons only)", n, err)
	}
}

func familyByName(name string) *family {
	for _, f := range families {
		if f.name == name {
			return f
		}
	}
	return nil
}

type bucket struct {
	le    float64
	count uint64
}

func histogramOf(t *testing.T, mf *dto.MetricFamily, target string) *dto.Histogram {
	t.Helper()
	for _, m := range mf.GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "target" && lp.GetValue() == target {
				return m.GetHistogram()
			}
		}
	}
	t.Fatalf("no histogram for target %q", target)
	return nil
}

func TestCollectorHistogram(t *testing.T) {
	got := gatherReplproxy(t, NewRegistry(fullStats))
	mf := got["replproxy_command_duration_seconds"]
	if mf == nil || len(mf.GetMetric()) != 2 {
		t.Fatalf("want 2 duration histograms (master, replica), got %v", mf)
	}

	tests := []struct {
		target  string
		buckets []bucket
		count   uint64
		sum     float64
	}{
		{
			// Two loops merged: 50µs (on a bound: le is inclusive), 80µs,
			// 2ms, 3ms and 10s (above the last bound: only in Count).
			target: "replica",
			buckets: []bucket{
				{50e-6, 1}, {100e-6, 2}, {250e-6, 2}, {500e-6, 2},
				{0.001, 2}, {0.0025, 3}, {0.005, 4},
				{0.01, 4}, {0.025, 4}, {0.05, 4},
				{0.1, 4}, {0.25, 4}, {0.5, 4},
				{1, 4}, {2.5, 4}, {5, 4},
			},
			count: 5,
			sum:   50e-6 + 80e-6 + 0.002 + 0.003 + 10,
		},
		{target: "master", buckets: []bucket{{0.001, 2}, {0.01, 3}}, count: 4, sum: 0.5},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			h := histogramOf(t, mf, tt.target)
			var gotB []bucket
			for _, b := range h.GetBucket() {
				gotB = append(gotB, bucket{b.GetUpperBound(), b.GetCumulativeCount()})
			}
			if !slices.Equal(gotB, tt.buckets) {
				t.Errorf("buckets\n got %v\nwant %v", gotB, tt.buckets)
			}
			if h.GetSampleCount() != tt.count {
				t.Errorf("count %d, want %d", h.GetSampleCount(), tt.count)
			}
			if math.Abs(h.GetSampleSum()-tt.sum) > 1e-9 {
				t.Errorf("sum %v, want %v", h.GetSampleSum(), tt.sum)
			}
			// Consistency as Prometheus requires it: ascending bounds,
			// cumulative counts, none above the +Inf count.
			for i := 1; i < len(gotB); i++ {
				if gotB[i].le <= gotB[i-1].le || gotB[i].count < gotB[i-1].count {
					t.Errorf("not cumulative/ascending at %d: %v", i, gotB)
				}
			}
			if n := len(gotB); n > 0 && gotB[n-1].count > h.GetSampleCount() {
				t.Errorf("last bucket %d above count %d", gotB[n-1].count, h.GetSampleCount())
			}
		})
	}
}

func TestCollectorZeroStats(t *testing.T) {
	for name, source := range map[string]func(*Stats){
		"nil source":  nil,
		"no-op fill":  func(*Stats) {},
		"empty slice": func(s *Stats) { s.Nodes = []Node{}; s.Latency = []LatencyHist{} },
	} {
		t.Run(name, func(t *testing.T) {
			got := gatherReplproxy(t, NewRegistry(source))
			for _, absent := range []string{
				"replproxy_commands_total", "replproxy_command_duration_seconds",
				"replproxy_backend_up", "replproxy_replica_eligible", "replproxy_read_fallbacks_total",
			} {
				if _, ok := got[absent]; ok {
					t.Errorf("%s emitted from empty input", absent)
				}
			}
			for _, present := range []string{
				"replproxy_clients_connected", "replproxy_write_gate_rejections_total",
				"replproxy_stream_connected", "replproxy_master_replication_offset_bytes",
			} {
				mf, ok := got[present]
				if !ok {
					t.Errorf("%s missing", present)
					continue
				}
				m := mf.GetMetric()[0]
				if v := m.GetGauge().GetValue() + m.GetCounter().GetValue(); v != 0 {
					t.Errorf("%s = %v, want 0", present, v)
				}
			}
			if mf := got["replproxy_stream_syncs_total"]; len(mf.GetMetric()) != 2 {
				t.Errorf("stream_syncs_total: want full and partial series from zero, got %v", mf)
			}
		})
	}
}

func TestCollectorUnknownOffsets(t *testing.T) {
	got := gatherReplproxy(t, NewRegistry(func(s *Stats) {
		s.MasterReplOffset = -1
		s.Nodes = []Node{{Addr: "r:1", Role: "replica", LagBytes: -1, LagSeconds: -1, Offset: -1}}
	}))
	for _, absent := range []string{
		"replproxy_master_replication_offset_bytes", "replproxy_replica_lag_bytes",
		"replproxy_replica_lag_seconds", "replproxy_replica_replication_offset_bytes",
	} {
		if _, ok := got[absent]; ok {
			t.Errorf("%s emitted although unknown", absent)
		}
	}
}

// Bad input costs the bad series and an error in the scrape log, never a
// panic, and never the rest of the scrape.
func TestCollectorBadInput(t *testing.T) {
	okHist := LatencyHist{Target: "master", Buckets: []float64{0.1, 1}, Counts: []uint64{1, 2}, Count: 2}
	tests := []struct {
		name    string
		fill    func(*Stats)
		wantErr string
	}{
		{"counts shorter than bounds", func(s *Stats) {
			s.Latency = []LatencyHist{{Target: "m", Buckets: []float64{1, 2}, Counts: []uint64{1}, Count: 1}}
		}, "2 bounds but 1 counts"},
		{"bounds not ascending", func(s *Stats) {
			s.Latency = []LatencyHist{{Target: "m", Buckets: []float64{2, 1}, Counts: []uint64{1, 1}, Count: 1}}
		}, "not strictly ascending"},
		{"bounds repeated", func(s *Stats) {
			s.Latency = []LatencyHist{{Target: "m", Buckets: []float64{1, 1}, Counts: []uint64{1, 1}, Count: 1}}
		}, "not strictly ascending"},
		{"counts not cumulative", func(s *Stats) {
			s.Latency = []LatencyHist{{Target: "m", Buckets: []float64{1, 2}, Counts: []uint64{3, 1}, Count: 3}}
		}, "not cumulative"},
		{"count below last bucket", func(s *Stats) {
			s.Latency = []LatencyHist{{Target: "m", Buckets: []float64{1}, Counts: []uint64{3}, Count: 2}}
		}, "count 2 below"},
		{"+Inf bound", func(s *Stats) {
			s.Latency = []LatencyHist{{Target: "m", Buckets: []float64{1, math.Inf(1)}, Counts: []uint64{1, 2}, Count: 2}}
		}, "+Inf bucket is implicit"},
		{"NaN bound", func(s *Stats) {
			s.Latency = []LatencyHist{{Target: "m", Buckets: []float64{math.NaN()}, Counts: []uint64{1}, Count: 2}}
		}, "bound NaN"},
		{"merge with different bounds", func(s *Stats) {
			other := okHist
			other.Buckets = []float64{0.2, 1}
			s.Latency = []LatencyHist{okHist, other}
		}, "different bounds"},
		{"label value not UTF-8", func(s *Stats) {
			s.ReadRetries = []ReasonCount{{Reason: "\xff", Count: 1}}
		}, "UTF-8"},
		{"duplicate node", func(s *Stats) {
			s.Nodes = []Node{{Addr: "a:1", Role: "master"}, {Addr: "a:1", Role: "master"}}
		}, "collected before"},
		{"source panics", func(s *Stats) {
			s.ClientsConnected = 1
			panic("boom")
		}, "stats source panicked: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := NewRegistry(tt.fill)
			mfs, err := reg.Gather()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Gather error = %v, want one containing %q", err, tt.wantErr)
			}
			var names []string
			for _, mf := range mfs {
				names = append(names, mf.GetName())
			}
			// The runtime collectors are unaffected; so is the rest of ours
			// unless the source itself failed.
			if !slices.Contains(names, "go_goroutines") {
				t.Errorf("go_goroutines missing after a bad series: %v", names)
			}
			if tt.name != "source panics" && !slices.Contains(names, "replproxy_stream_connected") {
				t.Errorf("replproxy_stream_connected missing after a bad series")
			}
		})
	}

	// The sentinel survives wrapping for callers that inspect errors.
	m := mergeHists([]LatencyHist{{Target: "x", Buckets: []float64{1}, Counts: nil}})
	if !errors.Is(m[0].err, ErrMetricsHistogram) {
		t.Errorf("err %v does not wrap ErrMetricsHistogram", m[0].err)
	}
}

// mergeHists must not write into the proxy's slices.
func TestMergeHistsKeepsInput(t *testing.T) {
	a := LatencyHist{Target: "t", Buckets: []float64{1}, Counts: []uint64{1}, Count: 1}
	b := LatencyHist{Target: "t", Buckets: []float64{1}, Counts: []uint64{2}, Count: 2}
	m := mergeHists([]LatencyHist{a, b})
	if len(m) != 1 || m[0].counts[0] != 3 || m[0].count != 3 {
		t.Fatalf("merged %+v", m[0])
	}
	if a.Counts[0] != 1 || b.Counts[0] != 2 {
		t.Errorf("input modified: %v %v", a.Counts, b.Counts)
	}
}

func TestLatencyBuckets(t *testing.T) {
	if len(LatencyBuckets) != 16 || LatencyBuckets[0] != 50e-6 || LatencyBuckets[len(LatencyBuckets)-1] != 5 {
		t.Fatalf("LatencyBuckets = %v, want 16 bounds 50µs..5s", LatencyBuckets)
	}
	for i := 1; i < len(LatencyBuckets); i++ {
		r := LatencyBuckets[i] / LatencyBuckets[i-1]
		if r < 2 || r > 2.5+1e-9 {
			t.Errorf("step %v -> %v is x%.2f, want 2..2.5", LatencyBuckets[i-1], LatencyBuckets[i], r)
		}
	}
	tests := []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{-time.Second, 0},
		{50 * time.Microsecond, 0},
		{50*time.Microsecond + 1, 1},
		{time.Millisecond, 4},
		{time.Millisecond + 1, 5},
		{5 * time.Second, 15},
		{5*time.Second + 1, 16},
		{time.Hour, 16},
	}
	for _, tt := range tests {
		if got := LatencyBucket(tt.d); got != tt.want {
			t.Errorf("LatencyBucket(%v) = %d, want %d", tt.d, got, tt.want)
		}
		// Agrees with the float bounds the histogram is exposed with.
		if i := LatencyBucket(tt.d); i < len(LatencyBuckets) && tt.d.Seconds() > LatencyBuckets[i] {
			t.Errorf("%v above bound %v of bucket %d", tt.d, LatencyBuckets[i], i)
		}
	}
	if a := testing.AllocsPerRun(100, func() { _ = LatencyBucket(3 * time.Millisecond) }); a != 0 {
		t.Errorf("LatencyBucket allocates %v times", a)
	}
}

func TestNewLatencyHist(t *testing.T) {
	n := len(LatencyBuckets)
	tests := []struct {
		name      string
		perBucket []uint64
		wantCount uint64
		wantLast  uint64
	}{
		{"empty", nil, 0, 0},
		{"short: missing buckets are zero", []uint64{1, 2}, 3, 3},
		{"with +Inf", append(make([]uint64, n), 7), 7, 0},
		{"extra entries ignored", append(append(make([]uint64, n), 1), 100, 100), 1, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewLatencyHist("t", tt.perBucket, 0)
			if err := validateHist(h); err != nil {
				t.Fatal(err)
			}
			if h.Count != tt.wantCount || h.Counts[n-1] != tt.wantLast {
				t.Errorf("count %d last %d, want %d %d", h.Count, h.Counts[n-1], tt.wantCount, tt.wantLast)
			}
		})
	}
}

func TestNames(t *testing.T) {
	names := Names()
	if !sort.StringsAreSorted(names) || len(slices.Compact(slices.Clone(names))) != len(names) {
		t.Errorf("Names not sorted and unique: %v", names)
	}
	for _, f := range families {
		if !slices.Contains(names, f.name) {
			t.Errorf("Names lacks %s", f.name)
		}
	}
	for _, std := range []string{"go_goroutines", "go_memstats_alloc_bytes", "process_start_time_seconds"} {
		if !slices.Contains(names, std) {
			t.Errorf("Names lacks %s", std)
		}
	}
	// Everything a registry with a full Stats exposes is named.
	mfs, err := NewRegistry(fullStats).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if !slices.Contains(names, mf.GetName()) {
			t.Errorf("registry exposes %s, Names does not list it", mf.GetName())
		}
	}
}

// Scrapes may overlap; the source gets its own Stats each time.
func TestCollectorConcurrentScrapes(t *testing.T) {
	reg := NewRegistry(fullStats)
	done := make(chan error)
	for range 8 {
		go func() {
			_, err := reg.Gather()
			done <- err
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}
