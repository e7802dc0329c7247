// Package metrics exposes replproxy's numbers to Prometheus and serves the
// operational HTTP endpoints (/metrics, /healthz, /readyz, /debug/pprof/).
//
// What flows through it: nothing on the request path. The proxy keeps its own
// counters (plain per-event-loop atomics it owns, so the hot path pays no
// shared cache line and no label lookup) and hands this package a callback.
// At scrape time the collector calls it once to fill a [Stats], turns that into
// constant metrics (prometheus.NewConstMetric / NewConstHistogram) and lets the
// registry encode them. The cost of metrics is therefore paid per scrape, by
// the scraping goroutine, not per command.
//
// Because Stats is plain data, entries may repeat: entries of the counter
// slices, of BackendConnections and of Latency with the same labels are
// summed, so the proxy may pass one entry per event loop instead of
// aggregating first. Nodes must not repeat (one [Node] per address).
//
// The package imports only client_golang and the standard library; the proxy
// imports it, never the other way round.
//
// Every replproxy_* metric family is declared once, in collector.go; [Names],
// Describe and the documentation test (docs/metrics.md) all derive from that
// one list.
package metrics
