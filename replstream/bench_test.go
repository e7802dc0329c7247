package replstream

import (
	"fmt"
	"testing"
	"time"
)

// benchLink returns a Link whose history holds a full time index (one sample
// per 100 bytes) without a server: the query path is all that is measured.
func benchLink(tb testing.TB) (*Link, int64) {
	l, err := New(Config{Master: "127.0.0.1:1"})
	if err != nil {
		tb.Fatal(err)
	}
	h := &history{
		replid:  testReplID,
		times:   newTimeIndex(l.cfg.TimeIndexSize),
		backlog: newBacklog(l.cfg.BacklogBytes, 0),
	}
	var end int64
	for i := range int64(l.cfg.TimeIndexSize) {
		end = 100 * i
		h.times.push(end, i*int64(time.Millisecond))
	}
	h.offset.Store(end)
	l.hist.Store(h)
	return l, end
}

func TestQueriesDoNotAllocate(t *testing.T) {
	l, end := benchLink(t)
	now := time.Now()
	off := end / 2
	for name, f := range map[string]func(){
		"TimeAt":    func() { l.TimeAt(off) },
		"LagMs":     func() { l.LagMs(off, now) },
		"Offset":    func() { l.Offset() },
		"Connected": func() { l.Connected() },
		"Position":  func() { l.Position() },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
	}
	if _, ok := l.TimeAt(off); !ok {
		t.Fatal("TimeAt unknown")
	}
	// Byte end-149 came with the sample ending at end-100, the second to
	// last, at (TimeIndexSize-2) ms.
	now = l.epoch.Add(time.Duration(l.cfg.TimeIndexSize) * time.Millisecond)
	if lag := l.LagMs(end-150, now); lag != 2 {
		t.Errorf("LagMs = %d, want 2", lag)
	}
}

func BenchmarkTimeAt(b *testing.B) {
	l, end := benchLink(b)
	b.ReportAllocs()
	var off int64
	for b.Loop() {
		off = (off + 7919) % end
		if _, ok := l.TimeAt(off); !ok && off >= 100 {
			b.Fatalf("TimeAt(%d) unknown", off)
		}
	}
}

func BenchmarkLagMs(b *testing.B) {
	l, end := benchLink(b)
	now := time.Now()
	b.ReportAllocs()
	var off int64
	for b.Loop() {
		off = (off + 7919) % end
		l.LagMs(off, now)
	}
}

// BenchmarkLagMsRecent: the common case, a replica a few writes behind.
func BenchmarkLagMsRecent(b *testing.B) {
	l, end := benchLink(b)
	now := time.Now()
	b.ReportAllocs()
	var off int64
	for b.Loop() {
		off = (off + 7) % 1000
		l.LagMs(end-off-1, now)
	}
}

// BenchmarkLagMsParallel: readers on every CPU while nothing writes.
func BenchmarkLagMsParallel(b *testing.B) {
	l, end := benchLink(b)
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var off int64
		for pb.Next() {
			off = (off + 7919) % end
			l.LagMs(off, now)
		}
	})
}

// BenchmarkConsume is the link's cost per streamed command in the steady
// state: a read of 180 redis-benchmark SETs (about what one read carries
// at SET P16 with 50 clients) consumed into the history.
func BenchmarkConsume(b *testing.B) {
	l, err := New(Config{Master: "127.0.0.1:1"})
	if err != nil {
		b.Fatal(err)
	}
	var chunk []byte
	for i := range 180 {
		chunk = fmt.Appendf(chunk, "*3\r\n$3\r\nSET\r\n$16\r\nkey:%012d\r\n$3\r\nxxx\r\n", i)
	}
	h := &history{
		replid:  testReplID,
		times:   newTimeIndex(l.cfg.TimeIndexSize),
		backlog: newBacklog(l.cfg.BacklogBytes, 0),
		marks:   &marks{},
	}
	l.hist.Store(h)
	r := &l.r
	r.hist = h
	r.buf = make([]byte, len(chunk))
	now := time.Now()
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		copy(r.buf, chunk)
		r.rd, r.w = 0, len(chunk)
		if err := r.consume(now); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/180, "ns/command")
}
