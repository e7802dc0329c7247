package replstream

import "sync/atomic"

// backlog keeps the most recent stream bytes of one history, addressed by
// replication offset, for readers on other goroutines.
//
// Why segments and not one ring buffer: a ring rewrites bytes in place, so a
// reader copying out of it races with the writer (a data race even when the
// reader detects it afterwards and throws the copy away). Here the bytes are
// appended to fixed-size segments that are never written again once full and
// never reused: a full segment leaves the ring by having its slot pointed at a
// new one, and the garbage collector frees it when the last reader is done.
// Bytes of the segment being filled are read only below the committed end
// (end, published with an atomic store after the bytes are written), and the
// writer only writes above it, so readers never lock and never see a torn
// byte. The price is one segment allocation per segment-size of stream, on
// the link goroutine.
//
// Segment k holds offsets (base + k*segBytes, base + (k+1)*segBytes] and lives
// in slot k % len(slots); a reader that finds another k in the slot knows the
// bytes it wants are gone (or not there yet).
//
// The ring can be resized (resize) while readers read: the writer builds a
// new ring holding the newest segments of the old one and publishes it
// whole. A reader loads end, then the ring: a ring loaded after end holds
// every segment up to end that it has room for, since the segment of each
// committed byte was stored in the ring of that moment (or an older one,
// whose newest segments every later ring copies) before end was stored.
type backlog struct {
	base     int64 // offset just before the first byte this backlog can hold
	segBytes int64
	ring     atomic.Pointer[ring]
	end      atomic.Int64 // offset of the last committed byte

	// Writer-only (the link goroutine).
	written int64 // offset of the last written byte, committed or not
	cur     *segment
}

type ring struct{ slots []atomic.Pointer[segment] }

type segment struct {
	k   int64
	buf []byte // len segBytes; bytes below the committed end never change
}

const maxSegmentBytes = 64 << 10

// newBacklog returns a backlog keeping at least size bytes, whose first byte
// will be the one after offset base.
func newBacklog(size int, base int64) *backlog {
	seg := int64(min(maxSegmentBytes, max(size/4, 16)))
	b := &backlog{base: base, segBytes: seg, written: base}
	b.ring.Store(&ring{slots: make([]atomic.Pointer[segment], b.slotsFor(size))})
	b.end.Store(base)
	return b
}

// slotsFor is the ring size that keeps at least size bytes: +1 for the
// segment being filled.
func (b *backlog) slotsFor(size int) int {
	return int((int64(size)+b.segBytes-1)/b.segBytes + 1)
}

// capacity is how many bytes the backlog keeps at least.
func (b *backlog) capacity() int {
	return (len(b.ring.Load().slots) - 1) * int(b.segBytes)
}

// resize makes the backlog keep at least size bytes from now on (rounded
// up to whole segments). Growing keeps every byte held now; shrinking
// keeps the newest ones that fit. Link goroutine only.
func (b *backlog) resize(size int) {
	old := b.ring.Load()
	n := b.slotsFor(size)
	if n == len(old.slots) {
		return
	}
	nr := &ring{slots: make([]atomic.Pointer[segment], n)}
	// The newest min(n, old) segments: consecutive k, so distinct slots
	// in the new ring too.
	if b.cur != nil {
		for k := b.cur.k; k >= 0 && k > b.cur.k-int64(min(n, len(old.slots))); k-- {
			if seg := old.slots[k%int64(len(old.slots))].Load(); seg != nil && seg.k == k {
				nr.slots[k%int64(n)].Store(seg)
			}
		}
	}
	b.ring.Store(nr)
}

// write appends stream bytes; readers see them after publish. Link
// goroutine only.
func (b *backlog) write(p []byte) {
	for len(p) > 0 {
		rel := b.written - b.base
		k, i := rel/b.segBytes, rel%b.segBytes
		if b.cur == nil || b.cur.k != k {
			b.cur = &segment{k: k, buf: make([]byte, b.segBytes)}
			r := b.ring.Load()
			r.slots[k%int64(len(r.slots))].Store(b.cur)
		}
		c := copy(b.cur.buf[i:], p)
		p = p[c:]
		b.written += int64(c)
	}
}

// publish makes everything written so far visible to readers. Link
// goroutine only.
func (b *backlog) publish() { b.end.Store(b.written) }

// appendTo appends the committed bytes after offset from to dst. ok is false,
// and dst is returned unchanged, when some of them are no longer kept or when
// from is beyond the committed end. Safe for concurrent use with the writer
// and other readers.
func (b *backlog) appendTo(dst []byte, from int64) ([]byte, bool) {
	end := b.end.Load()
	if from < b.base || from > end {
		return dst, false
	}
	r := b.ring.Load() // after end: see the type's comment
	orig := len(dst)
	n := int64(len(r.slots))
	for pos := from; pos < end; {
		rel := pos - b.base
		k := rel / b.segBytes
		seg := r.slots[k%n].Load()
		if seg == nil || seg.k != k {
			return dst[:orig], false
		}
		i := rel - k*b.segBytes
		j := min(b.segBytes, end-b.base-k*b.segBytes)
		dst = append(dst, seg.buf[i:j]...)
		pos += j - i
	}
	return dst, true
}

// fork returns a backlog holding this one's bytes up to offset split (as
// far back as they are kept) and taking new bytes after split: the backlog
// of a history that continues this one from there (Link.forkAt). Full
// segments below the split never change, so they are shared; the segment
// the split falls inside is copied up to the split, since the two
// backlogs write different bytes after it. Link goroutine only (the
// writer of both).
func (b *backlog) fork(split int64) *backlog {
	r := b.ring.Load()
	n := int64(len(r.slots))
	nb := &backlog{base: b.base, segBytes: b.segBytes, written: split}
	nr := &ring{slots: make([]atomic.Pointer[segment], n)}
	rel := split - b.base
	if split < b.base || split > b.written {
		return newBacklog(b.capacity(), split)
	}
	k, i := rel/b.segBytes, rel%b.segBytes
	if i > 0 {
		seg := r.slots[k%n].Load()
		if seg == nil || seg.k != k {
			// The bytes before the split are gone already: nothing to
			// share.
			return newBacklog(b.capacity(), split)
		}
		cp := &segment{k: k, buf: make([]byte, b.segBytes)}
		copy(cp.buf, seg.buf[:i])
		nr.slots[k%n].Store(cp)
		nb.cur = cp
	}
	// The full segments before k, newest first, while the ring has them
	// (and room: one slot stays for the segment being filled).
	for j := k - 1; j >= 0 && j > k-n; j-- {
		seg := r.slots[j%n].Load()
		if seg == nil || seg.k != j {
			break
		}
		nr.slots[j%n].Store(seg)
	}
	nb.ring.Store(nr)
	nb.end.Store(split)
	return nb
}
