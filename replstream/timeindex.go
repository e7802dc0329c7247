package replstream

import "sync/atomic"

// timeIndex maps stream offsets to the time the link received them: one
// sample (end, at) per read from the master's socket, meaning "the bytes up
// to offset end had all arrived at time at, and the ones after the previous
// sample's end arrived then". Samples are kept in a fixed ring; ends strictly
// increase within one index (a new history gets a new index).
//
// Concurrency: one writer (the link goroutine), any number of readers on the
// proxy's event loops, which must never block or allocate. This is a
// seqlock with the global sample count as its sequence: every field is an
// atomic, the writer stores a sample's fields and then head = count; a reader
// loads head, reads samples, loads head again and trusts what it read only if
// none of the samples it touched could have been overwritten in between.
// The writer overwrites sample i-len(slots) while publishing sample i, i.e.
// while head == i, so a sample with index >= head-(len(slots)-1) is stable;
// slots therefore has one more entry than the samples it promises to keep.
// Compared with an RWMutex, readers never wait for the writer (nor it for
// them) and no cache line is written by readers; compared with publishing an
// immutable copy per sample, nothing is allocated. A reader that loses the
// race (only possible when the writer laps the ring during one binary search)
// retries a few times and then answers "unknown".
type timeIndex struct {
	slots []timeSample
	head  atomic.Uint64 // samples ever pushed

	lastEnd int64 // writer-only
}

type timeSample struct {
	end atomic.Int64 // stream offset: every byte up to here had arrived...
	at  atomic.Int64 // ...at this time (ns since the Link's epoch)
}

// lookupRetries bounds a reader's retries when the writer laps it.
const lookupRetries = 4

// newTimeIndex keeps the last n samples.
func newTimeIndex(n int) *timeIndex {
	return &timeIndex{slots: make([]timeSample, n+1)}
}

// push records that the stream up to offset end had arrived at time at. A
// sample that does not advance the end is dropped. Link goroutine only.
func (x *timeIndex) push(end, at int64) {
	h := x.head.Load()
	if h > 0 && end <= x.lastEnd {
		return
	}
	s := &x.slots[h%uint64(len(x.slots))]
	s.end.Store(end)
	s.at.Store(at)
	x.head.Store(h + 1)
	x.lastEnd = end
}

// lookup returns when the stream byte at offset off+1 arrived: the time of
// the first sample whose end is > off. It needs an older sample with end <=
// off to know the byte did not arrive earlier, so the oldest sample kept only
// bounds the window. Safe for concurrent use; never allocates.
func (x *timeIndex) lookup(off int64) (at int64, ok bool) {
	size := uint64(len(x.slots))
	for range lookupRetries {
		h := x.head.Load()
		if h < 2 {
			return 0, false
		}
		lo := uint64(0)
		if h > size-1 {
			lo = h - (size - 1)
		}
		hi := h - 1
		if x.slots[lo%size].end.Load() > off || x.slots[hi%size].end.Load() <= off {
			// Older than the window, or not arrived yet; either answer is
			// only trustworthy if lo was not being overwritten.
			if x.stable(lo) {
				return 0, false
			}
			continue
		}
		// end(lo) <= off < end(hi): find the first end > off. Callers
		// mostly ask about recent offsets (replicas a few writes behind),
		// so gallop back from the newest sample before bisecting: O(log
		// distance from the head) probes instead of O(log size).
		a, b := lo+1, hi
		for step := uint64(1); b-lo > step; step *= 2 {
			if x.slots[(b-step)%size].end.Load() <= off {
				a = b - step + 1
				break
			}
			b -= step
		}
		for a < b {
			m := a + (b-a)/2
			if x.slots[m%size].end.Load() > off {
				b = m
			} else {
				a = m + 1
			}
		}
		at = x.slots[a%size].at.Load()
		if x.stable(lo) {
			return at, true
		}
	}
	return 0, false
}

// stable reports whether sample i has not been overwritten (or started to
// be) up to now.
func (x *timeIndex) stable(i uint64) bool {
	h := x.head.Load()
	keep := uint64(len(x.slots)) - 1
	return h <= keep || i >= h-keep
}

// fork returns an index holding this one's samples up to offset split,
// for a history that continues this one from there (Link.forkAt): the
// split's own time is that of the first sample past it (the bytes up to
// the split had all arrived then), or now when there is none. Link
// goroutine only (the writer).
func (x *timeIndex) fork(split, now int64) *timeIndex {
	nx := newTimeIndex(len(x.slots) - 1)
	h := x.head.Load()
	size := uint64(len(x.slots))
	lo := uint64(0)
	if h > size-1 {
		lo = h - (size - 1)
	}
	at := now
	for i := lo; i < h; i++ {
		s := &x.slots[i%size]
		if e := s.end.Load(); e <= split {
			nx.push(e, s.at.Load())
		} else {
			at = s.at.Load()
			break
		}
	}
	nx.push(split, at)
	return nx
}
