package proxy

// ring is a FIFO that reuses its storage: after warm-up, push and pop do not
// allocate. Owned by one event loop; not safe for concurrent use.
type ring[T any] struct {
	buf        []T // len is a power of two
	head, size int
}

func (r *ring[T]) len() int { return r.size }

func (r *ring[T]) push(v T) {
	if r.size == len(r.buf) {
		r.grow()
	}
	r.buf[(r.head+r.size)&(len(r.buf)-1)] = v
	r.size++
}

func (r *ring[T]) peek() *T { return &r.buf[r.head] }

func (r *ring[T]) pop() T {
	var zero T
	v := r.buf[r.head]
	r.buf[r.head] = zero // drop references so closed sessions can be collected
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.size--
	return v
}

func (r *ring[T]) grow() {
	n := len(r.buf) * 2
	if n == 0 {
		n = 8
	}
	nb := make([]T, n)
	for i := 0; i < r.size; i++ {
		nb[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
	}
	r.buf, r.head = nb, 0
}

// pendingKind says what to do with a backend reply.
type pendingKind uint8

const (
	pendClient       pendingKind = iota // the reply belongs to sess, in slot seq
	pendSwallow                         // the proxy's own SELECT/SCRIPT LOAD: drop the reply
	pendFence                           // ROLE after fenced requests: releases the held replies
	pendCheck                           // ROLE before a conditional read: did it see `required`?
	pendRefresh                         // ROLE asked for fresh replica offsets (WAIT, write gate)
	pendLinearize                       // ROLE on the master sampling the offset linearizable reads need
	pendClientID                        // CLIENT ID before a blocking call: backend.redisID
	pendQuiet                           // the proxy's stand-in in a MULTI (multi.go): dropped silently
	pendWitnessProbe                    // ROLE on the master deciding writes the link dropped under (witness.go)
)

// pending is one request in flight on a backend connection.
type pending struct {
	sess *session
	seq  uint64
	// reqEnd is the absolute end offset of the request's copy in the
	// replica backend's request log (0: not logged).
	reqEnd int64
	// db the request runs in: a retry elsewhere must use it, whatever the
	// session has SELECTed since.
	db   int32
	kind pendingKind
	// attempt counts re-sends of a read; retried marks a re-sent read, which
	// no longer counts as outstanding on the session's target.
	attempt uint8
	retried bool
	// fenced: the reply is held until the ROLE queued after it answers, so
	// the offset it tells becomes the write's fence or the read's floor
	// before the client can act on the reply. write: the request is a write.
	fenced bool
	write  bool
	// conditional: a read sent to a replica not known to have reached
	// required; it counts only if the pendCheck queued before it in its
	// batch returned at least required (backend.checkedOff). since is when
	// it was first sent (unix ns), for --causal-wait.
	conditional bool
	required    int64
	since       int64
	// sent is when the request was forwarded (unix ns), for the latency
	// histogram.
	sent int64
	// epoch orders a ROLE on the master against the master reads whose
	// floor it settles (see loop.epoch).
	epoch uint64
	// floorLater: a causal or linearizable read on the master, not fenced;
	// its completion leaves the session's floor to the next master offset
	// sample (session.floorEpoch).
	floorLater bool
	// info: an INFO reply, which gets the proxy's own section appended.
	info bool
	// exec: an EXEC whose array holds slots of proxy-answered commands
	// (multi.go).
	exec bool
	// script: a read-only script or function call, which may run on its
	// replica as long as it likes (loop.sweep: scriptHangTimeout).
	script bool
}

// replySlot holds a reply that completed before an earlier one of the same
// client: it waits here until the client's head reply is released.
type replySlot struct {
	ready bool
	// mute: the client asked not to get this reply (CLIENT REPLY OFF or
	// SKIP); it is dropped when it completes.
	mute bool
	data []byte
}

// maxRetainedSlotBytes bounds what an idle slot keeps of a large reply.
const maxRetainedSlotBytes = 64 << 10

// replyQueue releases one client's replies in request order. Sequence numbers
// are handed out per request; a reply for the head sequence goes straight to
// the output, later ones wait in their slot. Owned by the session's loop.
type replyQueue struct {
	slots         []replySlot // len is a power of two
	headSeq, next uint64
}

func (q *replyQueue) outstanding() int { return int(q.next - q.headSeq) }

// reserve hands out the sequence number for the next request.
func (q *replyQueue) reserve() uint64 { return q.reserveMute(false) }

// reserveMute is reserve; mute drops the reply when it completes.
func (q *replyQueue) reserveMute(mute bool) uint64 {
	if q.outstanding() == len(q.slots) {
		q.grow()
	}
	seq := q.next
	q.next++
	q.slots[seq&uint64(len(q.slots)-1)].mute = mute
	return seq
}

func (q *replyQueue) grow() {
	n := len(q.slots) * 2
	if n == 0 {
		n = 8
	}
	ns := make([]replySlot, n)
	for s := q.headSeq; s < q.next; s++ {
		ns[s&uint64(n-1)] = q.slots[s&uint64(len(q.slots)-1)]
	}
	q.slots = ns
}

// complete records seq's reply and appends every reply that is now in order
// to out. It copies data only when the reply must wait for an earlier one.
func (q *replyQueue) complete(out []byte, seq uint64, data []byte) []byte {
	mask := uint64(len(q.slots) - 1)
	if seq != q.headSeq {
		sl := &q.slots[seq&mask]
		if !sl.mute {
			sl.data = append(sl.data[:0], data...)
		}
		sl.ready = true
		return out
	}
	if sl := &q.slots[seq&mask]; sl.mute {
		sl.mute = false
	} else {
		out = append(out, data...)
	}
	q.headSeq++
	for q.headSeq < q.next {
		sl := &q.slots[q.headSeq&mask]
		if !sl.ready {
			break
		}
		if !sl.mute {
			out = append(out, sl.data...)
		}
		sl.ready, sl.mute = false, false
		if cap(sl.data) > maxRetainedSlotBytes {
			sl.data = nil
		} else {
			sl.data = sl.data[:0]
		}
		q.headSeq++
	}
	return out
}
