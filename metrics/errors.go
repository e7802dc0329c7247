package metrics

import "errors"

var (
	// ErrMetricsHistogram reports a LatencyHist that is not a valid cumulative
	// histogram; only that series is dropped from the scrape.
	ErrMetricsHistogram = errors.New("metrics: invalid histogram")
	// ErrMetricsSource reports a panic in the Stats source; the scrape keeps
	// what was collected before it.
	ErrMetricsSource = errors.New("metrics: stats source panicked")
	// ErrMetricsListen wraps the error of binding the HTTP listener.
	ErrMetricsListen = errors.New("metrics: listen")
)
