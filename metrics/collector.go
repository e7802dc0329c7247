package metrics

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

const namespace = "replproxy"

// kind is a family's Prometheus type.
type kind int

const (
	kindCounter kind = iota
	kindGauge
	kindHistogram
)

func (k kind) String() string {
	switch k {
	case kindCounter:
		return "counter"
	case kindGauge:
		return "gauge"
	default:
		return "histogram"
	}
}

// family is one replproxy_* metric family. The list below is the only place a
// family is declared: Describe, Collect, Names and the docs test all read it.
type family struct {
	name   string
	help   string
	kind   kind
	labels []string
	desc   *prometheus.Desc
}

// families is filled, in declaration order, by def as the package variables
// below are initialised.
var families []*family

func def(name string, k kind, help string, labels ...string) *family {
	f := &family{name: namespace + "_" + name, help: help, kind: k, labels: labels}
	f.desc = prometheus.NewDesc(f.name, help, labels, nil)
	families = append(families, f)
	return f
}

var (
	famCommands = def("commands_total", kindCounter,
		"Commands handled, by class (read, write, local, txn, blocking, subscribe, pinned, denied) and by where they were served (master, replica, proxy).",
		"class", "target")
	famCommandDuration = def("command_duration_seconds", kindHistogram,
		"Time from the proxy reading a complete command to its reply being ready for the client, by where it was served.",
		"target")
	famClientsConnected = def("clients_connected", kindGauge,
		"Client connections open now.")
	famClientsRejected = def("clients_rejected_total", kindCounter,
		"Client connections refused because maxclients was reached.")
	famBackendUp = def("backend_up", kindGauge,
		"1 if the backend node passes health checks, 0 if not.",
		"addr", "role")
	famBackendConnections = def("backend_connections", kindGauge,
		"Open connections to backends, by kind (shared: multiplexed across clients; dedicated: pinned to one client session).",
		"kind")
	famReplicaLagBytes = def("replica_lag_bytes", kindGauge,
		"Replication stream bytes the replica has not applied yet; absent while unknown.",
		"addr")
	famReplicaLagSeconds = def("replica_lag_seconds", kindGauge,
		"Age of the oldest write the replica has not applied yet, from the proxy's offset-to-time map; absent while unknown.",
		"addr")
	famReplicaEligible = def("replica_eligible", kindGauge,
		"1 if reads may be sent to the replica now, 0 if not.",
		"addr")
	famReplicaIneligible = def("replica_ineligible", kindGauge,
		"1 for the reason the replica is ineligible now; no series while it is eligible.",
		"addr", "reason")
	famReplicaDepth = def("replica_depth", kindGauge,
		"The replica's depth in the replication tree (1: a replica of the master, 2: a replica of one of those, ...; 0 unknown, -1 in a loop of REPLICAOFs), labelled with the node it replicates from (\"\" when unknown).",
		"addr", "parent")
	famMasterOffset = def("master_replication_offset_bytes", kindGauge,
		"The master's replication offset (master_repl_offset); absent while unknown.")
	famReplicaOffset = def("replica_replication_offset_bytes", kindGauge,
		"Replication offset the replica has applied; absent while unknown.",
		"addr")
	famReadFallbacks = def("read_fallbacks_total", kindCounter,
		"Reads sent to the master although replicas were wanted, by reason.",
		"reason")
	famReadRetries = def("read_retries_total", kindCounter,
		"Reads retried on another node without the client seeing the first reply, by reason.",
		"reason")
	famWriteGateRejections = def("write_gate_rejections_total", kindCounter,
		"Writes refused with -NOREPLICAS by the proxy's min-replicas gate.")
	famWaitCalls = def("wait_calls_total", kindCounter,
		"WAIT commands answered by the proxy, by outcome (satisfied, timeout).",
		"outcome")
	famTopologyChanges = def("topology_changes_total", kindCounter,
		"Topology snapshots published that changed the node set or replica eligibility.")
	famStreamConnected = def("stream_connected", kindGauge,
		"1 if the proxy's own replication link to the master is streaming, 0 if not.")
	famStreamOffset = def("stream_offset_bytes", kindGauge,
		"Replication offset the proxy's own link has received up to.")
	famStreamSyncs = def("stream_syncs_total", kindCounter,
		"Synchronisations of the proxy's own link with the master, by type (full, partial).",
		"type")
	famStreamReconnects = def("stream_reconnects_total", kindCounter,
		"Reconnections of the proxy's own replication link.")
	famStreamHistoryResets = def("stream_history_resets_total", kindCounter,
		"Times the master's replication history was reset (new replication ID without a failover the proxy followed, e.g. a master restarted empty).")
	famMasterInfo = def("master_info", kindGauge,
		"1 for the master the proxy follows now, labelled with its address and generation (which increases with every master switch).",
		"addr", "generation")
	famMasterSwitches = def("master_switches_total", kindCounter,
		"Master switches the proxy followed, by cause (sentinel, master_became_replica).",
		"cause")
	famMasterSwitchSeconds = def("master_switch_seconds", kindHistogram,
		"Time from the first sign that the master was failing (connection lost, Sentinel event, -READONLY) to the new master being used.")
	famWritesHeld = def("failover_writes_held_total", kindCounter,
		"Writes that waited for a failover in progress to finish instead of going to the master being replaced.")
	famWritesRedirected = def("failover_writes_redirected_total", kindCounter,
		"Writes a replaced master refused with -READONLY (never executed) that the proxy re-sent to the new master.")
	famNodePersistence = def("node_persistence", kindGauge,
		"1 if the node persists its data in this way (kind rdb or aof), 0 if not; absent while unknown (CONFIG refused).",
		"node", "kind")
	famGuardActive = def("guard_active", kindGauge,
		"1 while the empty-master guard is acting (the master was lost and its history is in doubt), 0 otherwise.")
	famGuardActions = def("guard_actions_total", kindCounter,
		"Actions of the empty-master guard, by kind (incident, park, unpark, promote, repoint, sentinel_failover).",
		"action")
	famWitnessWaited = def("witness_waits_total", kindCounter,
		"Write replies held until the proxy's replication link had received the write (the witness).")
	famWitnessTimeouts = def("witness_timeouts_total", kindCounter,
		"Write replies released after --witness-timeout although the link had not received the write: those writes are on the master alone.")
	famWitnessOff = def("witness_unwitnessed_total", kindCounter,
		"Write replies released without the witness: the replication link had been down for longer than --witness-timeout, or had just dropped and the master, asked after that, still answered as the master.")
	famWitnessFailed = def("witness_failed_total", kindCounter,
		"Writes the master ran but answered with an error because the master was lost (died, demoted) before the proxy's replication link received them: they may be missing after the failover.")
	famWitnessBacklogShort = def("witness_backlog_short", kindGauge,
		"1 if a replica lags the master by more bytes than the link's backlog holds: a failover to it could not be repaired; raise --replication-backlog.")
	famReplays = def("failover_replays_total", kindCounter,
		"Replays of the stream suffix a promoted master lacked, by outcome (replayed, already_done: another proxy did it, failed).",
		"outcome")
	famFailoverLostBytes = def("failover_lost_bytes", kindCounter,
		"Replication stream bytes of a replaced master that a failover could not replay onto the new one (backlog too short, link on another history, replay failed).")
	famStreamReceivedBytes = def("stream_received_bytes_total", kindCounter,
		"Replication stream bytes received by the proxy's own link, RDB payloads included.")
)

func (f *family) valueType() prometheus.ValueType {
	if f.kind == kindCounter {
		return prometheus.CounterValue
	}
	return prometheus.GaugeValue
}

// Collector turns one [Stats] per scrape into replproxy_* metrics.
// Safe for concurrent use: each Collect gets its own Stats.
type Collector struct {
	source func(*Stats)
}

var _ prometheus.Collector = (*Collector)(nil)

// NewCollector returns the replproxy_* collector. source is called once per
// scrape, from the scraping goroutine, with a zeroed Stats to fill; nil
// means every scrape sees a zero Stats. source must not block for long (a
// scrape waits for it) and must be safe to call concurrently with itself,
// since two scrapes may overlap.
func NewCollector(source func(*Stats)) *Collector {
	return &Collector{source: source}
}

// Describe sends the descriptor of every replproxy_* family.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- f.desc
	}
}

// Collect calls the source and sends the resulting metrics. Bad input (an
// invalid histogram, a label value that is not UTF-8) becomes an invalid
// metric for that series, which the registry reports as a scrape error; it
// never panics, and neither does a panicking source bring the process down.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	var s Stats
	if c.source != nil {
		// The registry runs collectors on their own goroutines: a panic here
		// would kill the proxy for the sake of a scrape.
		ok := func() (ok bool) {
			defer func() {
				if r := recover(); r != nil {
					ch <- prometheus.NewInvalidMetric(famCommands.desc, fmt.Errorf("%w: %v", ErrMetricsSource, r))
				}
			}()
			c.source(&s)
			return true
		}()
		if !ok {
			return
		}
	}
	e := emitter{ch: ch}

	type classTarget struct{ class, target string }
	var cmdOrder []classTarget
	cmds := map[classTarget]int64{}
	for _, cc := range s.Commands {
		k := classTarget{cc.Class, cc.Target}
		if _, seen := cmds[k]; !seen {
			cmdOrder = append(cmdOrder, k)
		}
		cmds[k] += cc.Count
	}
	for _, k := range cmdOrder {
		e.emit(famCommands, float64(cmds[k]), k.class, k.target)
	}

	for _, h := range mergeHists(s.Latency) {
		e.histogram(famCommandDuration, h)
	}

	e.emit(famClientsConnected, float64(s.ClientsConnected))
	e.emit(famClientsRejected, float64(s.ClientsRejected))

	for _, n := range s.Nodes {
		role := orUnknown(n.Role)
		e.emit(famBackendUp, b2f(n.Up), n.Addr, role)
		if role == "master" {
			continue
		}
		e.emit(famReplicaEligible, b2f(n.Eligible), n.Addr)
		if !n.Eligible {
			e.emit(famReplicaIneligible, 1, n.Addr, orUnknown(n.Reason))
		}
		if n.LagBytes >= 0 {
			e.emit(famReplicaLagBytes, float64(n.LagBytes), n.Addr)
		}
		if n.LagSeconds >= 0 { // false for NaN too
			e.emit(famReplicaLagSeconds, n.LagSeconds, n.Addr)
		}
		if n.Offset >= 0 {
			e.emit(famReplicaOffset, float64(n.Offset), n.Addr)
		}
		e.emit(famReplicaDepth, float64(n.Depth), n.Addr, n.Parent)
	}
	if s.MasterReplOffset >= 0 {
		e.emit(famMasterOffset, float64(s.MasterReplOffset))
	}

	e.reasons(famBackendConnections, s.BackendConnections)
	e.reasons(famReadFallbacks, s.ReadFallbacks)
	e.reasons(famReadRetries, s.ReadRetries)
	e.emit(famWriteGateRejections, float64(s.WriteGateRejections))
	e.reasons(famWaitCalls, s.WaitCalls)
	e.emit(famTopologyChanges, float64(s.TopologyChanges))

	st := s.Stream
	e.emit(famStreamConnected, b2f(st.Connected))
	e.emit(famStreamOffset, float64(st.Offset))
	e.emit(famStreamSyncs, float64(st.FullSyncs), "full")
	e.emit(famStreamSyncs, float64(st.PartialSyncs), "partial")
	e.emit(famStreamReconnects, float64(st.Reconnects))
	e.emit(famStreamHistoryResets, float64(st.HistoryResets))
	e.emit(famStreamReceivedBytes, float64(st.BytesReceived))

	if s.Master.Addr != "" {
		e.emit(famMasterInfo, 1, s.Master.Addr, strconv.FormatUint(s.Master.Generation, 10))
	}
	e.reasons(famMasterSwitches, s.MasterSwitches)
	if h := s.SwitchDuration; h != nil {
		if err := validateHist(*h); err != nil {
			e.ch <- prometheus.NewInvalidMetric(famMasterSwitchSeconds.desc, err)
		} else {
			buckets := make(map[float64]uint64, len(h.Buckets))
			for i, b := range h.Buckets {
				buckets[b] = h.Counts[i]
			}
			m, err := prometheus.NewConstHistogram(famMasterSwitchSeconds.desc, h.Count, h.Sum, buckets)
			if err != nil {
				m = prometheus.NewInvalidMetric(famMasterSwitchSeconds.desc, err)
			}
			e.ch <- m
		}
	}
	for _, n := range s.Nodes {
		if n.PersistRDB >= 0 {
			e.emit(famNodePersistence, float64(n.PersistRDB), n.Addr, "rdb")
		}
		if n.PersistAOF >= 0 {
			e.emit(famNodePersistence, float64(n.PersistAOF), n.Addr, "aof")
		}
	}
	e.emit(famWitnessWaited, float64(s.WitnessWaited))
	e.emit(famWitnessTimeouts, float64(s.WitnessTimeouts))
	e.emit(famWitnessOff, float64(s.WitnessOff))
	e.emit(famWitnessFailed, float64(s.WitnessFailed))
	e.emit(famWitnessBacklogShort, b2f(s.WitnessBacklogShort))
	e.reasons(famReplays, s.Replays)
	e.emit(famFailoverLostBytes, float64(s.FailoverLostBytes))
	e.emit(famGuardActive, b2f(s.GuardActive))
	e.reasons(famGuardActions, s.GuardActions)
	e.emit(famWritesHeld, float64(s.WritesHeld))
	e.emit(famWritesRedirected, float64(s.WritesRedirected))
}

// emitter sends metrics, turning construction errors into invalid metrics.
type emitter struct {
	ch chan<- prometheus.Metric
}

func (e emitter) emit(f *family, v float64, labelValues ...string) {
	m, err := prometheus.NewConstMetric(f.desc, f.valueType(), v, labelValues...)
	if err != nil {
		m = prometheus.NewInvalidMetric(f.desc, fmt.Errorf("%s: %w", f.name, err))
	}
	e.ch <- m
}

// reasons emits a single-label family, summing entries with the same label.
func (e emitter) reasons(f *family, rs []ReasonCount) {
	var order []string
	sums := map[string]int64{}
	for _, r := range rs {
		if _, seen := sums[r.Reason]; !seen {
			order = append(order, r.Reason)
		}
		sums[r.Reason] += r.Count
	}
	for _, r := range order {
		e.emit(f, float64(sums[r]), r)
	}
}

func (e emitter) histogram(f *family, h *mergedHist) {
	if h.err != nil {
		e.ch <- prometheus.NewInvalidMetric(f.desc, fmt.Errorf("%s{target=%q}: %w", f.name, h.target, h.err))
		return
	}
	buckets := make(map[float64]uint64, len(h.bounds))
	for i, b := range h.bounds {
		buckets[b] = h.counts[i]
	}
	m, err := prometheus.NewConstHistogram(f.desc, h.count, h.sum, buckets, h.target)
	if err != nil {
		m = prometheus.NewInvalidMetric(f.desc, fmt.Errorf("%s: %w", f.name, err))
	}
	e.ch <- m
}

// mergedHist is the sum of the LatencyHists of one target.
type mergedHist struct {
	target string
	bounds []float64
	counts []uint64
	count  uint64
	sum    float64
	err    error
}

// mergeHists validates the histograms and sums those of the same target
// (the proxy may pass one per event loop). It never modifies its input.
func mergeHists(hs []LatencyHist) []*mergedHist {
	var out []*mergedHist
	byTarget := map[string]*mergedHist{}
	for _, h := range hs {
		m, seen := byTarget[h.Target]
		if !seen {
			m = &mergedHist{target: h.Target}
			byTarget[h.Target] = m
			out = append(out, m)
		}
		if m.err != nil {
			continue
		}
		if err := validateHist(h); err != nil {
			m.err = err
			continue
		}
		if !seen {
			m.bounds = h.Buckets
			m.counts = slices.Clone(h.Counts)
			m.count, m.sum = h.Count, h.Sum
			continue
		}
		if !slices.Equal(m.bounds, h.Buckets) {
			m.err = fmt.Errorf("%w: entries for one target have different bounds", ErrMetricsHistogram)
			continue
		}
		for i, c := range h.Counts {
			m.counts[i] += c
		}
		m.count += h.Count
		m.sum += h.Sum
	}
	return out
}

func validateHist(h LatencyHist) error {
	if len(h.Counts) != len(h.Buckets) {
		return fmt.Errorf("%w: %d bounds but %d counts", ErrMetricsHistogram, len(h.Buckets), len(h.Counts))
	}
	for i, b := range h.Buckets {
		if math.IsNaN(b) || math.IsInf(b, 0) {
			return fmt.Errorf("%w: bound %v (the +Inf bucket is implicit: it is Count)", ErrMetricsHistogram, b)
		}
		if i > 0 && b <= h.Buckets[i-1] {
			return fmt.Errorf("%w: bounds not strictly ascending at %v", ErrMetricsHistogram, b)
		}
		if i > 0 && h.Counts[i] < h.Counts[i-1] {
			return fmt.Errorf("%w: counts not cumulative at bound %v", ErrMetricsHistogram, b)
		}
	}
	if n := len(h.Counts); n > 0 && h.Count < h.Counts[n-1] {
		return fmt.Errorf("%w: count %d below the last bucket's %d", ErrMetricsHistogram, h.Count, h.Counts[n-1])
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// runtimeCollectors are the standard go_* and process_* collectors. Process
// collection errors are not reported: those metrics are nice to have and
// must not fail a scrape (e.g. where /proc is not readable).
func runtimeCollectors() []prometheus.Collector {
	return []prometheus.Collector{
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	}
}

// NewRegistry returns a registry holding the replproxy_* collector over
// source (see [NewCollector]) plus the standard Go and process collectors.
func NewRegistry(source func(*Stats)) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(source))
	reg.MustRegister(runtimeCollectors()...)
	return reg
}

// Names returns, sorted, every metric family name a [NewRegistry] registry
// can expose: the replproxy_* families from the collector's own declarations,
// and the go_* and process_* families the standard collectors expose on this
// platform (gathered from them, so it follows the client_golang version).
func Names() []string {
	var names []string
	for _, f := range families {
		names = append(names, f.name)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(runtimeCollectors()...)
	// Gather returns what it could alongside an error; a partial list of
	// runtime families is still the right answer for this platform.
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	slices.Sort(names)
	return slices.Compact(names)
}
