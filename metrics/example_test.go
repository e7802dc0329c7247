package metrics_test

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/replproxy/replproxy/metrics"
)

// The proxy keeps per-loop counters and hands the metrics package a source
// that reads them at scrape time.
func ExampleServe() {
	type loopCounters struct {
		reads   atomic.Int64
		latency [17]atomic.Uint64 // len(metrics.LatencyBuckets)+1
		sumNs   atomic.Int64
	}
	loops := make([]loopCounters, 4)

	// On the hot path, in loop i: no lock, no label lookup.
	record := func(i int, d time.Duration) {
		loops[i].reads.Add(1)
		loops[i].latency[metrics.LatencyBucket(d)].Add(1)
		loops[i].sumNs.Add(int64(d))
	}
	record(0, 300*time.Microsecond)

	source := func(s *metrics.Stats) {
		s.MasterReplOffset = -1 // not known yet
		for i := range loops {
			l := &loops[i]
			s.Commands = append(s.Commands, metrics.CommandCount{Class: "read", Target: "replica", Count: l.reads.Load()})
			per := make([]uint64, len(l.latency))
			for b := range per {
				per[b] = l.latency[b].Load()
			}
			s.Latency = append(s.Latency, metrics.NewLatencyHist("replica", per, float64(l.sumNs.Load())/1e9))
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_ = metrics.Serve(ctx, metrics.ServerConfig{
		Addr:     "127.0.0.1:9121",
		Registry: metrics.NewRegistry(source),
		Ready:    func() error { return nil },
		Logger:   slog.Default(),
	})
}
