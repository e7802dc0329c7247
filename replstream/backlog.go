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
type backlog struct {
	base     int64 // offset just before the first byte this backlog can hold
	segBytes int64
	slots    []atomic.Pointer[segment]
	end      atomic.Int64 // offset of the last committed byte

	// Writer-only (the link goroutine).
	written int64 // offset of the last written byte, committed or not
	cur     *segment
}

type segment struct {
	k   int64
	buf []byte // len segBytes; bytes below the committed end never change
}

const maxSegmentBytes = 64 << 10

// newBacklog returns a backlog keeping at least size bytes, whose first byte
// will be the one after offset base.
func newBacklog(size int, base int64) *backlog {
	seg := int64(min(maxSegmentBytes, max(size/4, 16)))
	n := (int64(size)+seg-1)/seg + 1 // +1: the segment being filled
	b := &backlog{
		base:     base,
		segBytes: seg,
		slots:    make([]atomic.Pointer[segment], n),
		written:  base,
	}
	b.end.Store(base)
	return b
}

// write appends stream bytes; readers see them after publish. Link
// goroutine only.
func (b *backlog) write(p []byte) {
	for len(p) > 0 {
		rel := b.written - b.base
		k, i := rel/b.segBytes, rel%b.segBytes
		if b.cur == nil || b.cur.k != k {
			b.cur = &segment{k: k, buf: make([]byte, b.segBytes)}
			b.slots[k%int64(len(b.slots))].Store(b.cur)
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
	orig := len(dst)
	n := int64(len(b.slots))
	for pos := from; pos < end; {
		rel := pos - b.base
		k := rel / b.segBytes
		seg := b.slots[k%n].Load()
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
