package proxy

import (
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/replproxy/replproxy/resp"
)

// session is one client connection: its parser, its per-connection Redis
// state (db, protocol, name, auth) and the queue that keeps its replies in
// request order. Owned by its event loop; not safe for concurrent use.
type session struct {
	l   *loop
	srv *Server
	c   gnet.Conn
	id  int64

	parser  *resp.RequestParser
	replies replyQueue
	out     []byte // replies ready for the client, written at the end of the callback
	scratch []byte // local replies and re-encoded inline commands are built here

	db          int
	proto       int
	consistency consistency
	// floor is the highest offset this connection's reads have observed
	// (monotonic reads); writeFence the fence of its latest write (WAIT).
	floor      int64
	writeFence int64
	// floorEpoch: the session's last read ran on the master without holding
	// its reply; the floor it sets is the offset of the first master ROLE of
	// a later epoch (settleFloor): on floorConn, or on any connection when
	// floorConn is nil. 0: none pending.
	floorEpoch uint64
	floorConn  *backend
	// linRequired is the master offset sampled after this connection's
	// linearizable reads arrived; it covers the next linCovered input bytes.
	linRequired int64
	linCovered  int
	linWaiting  bool
	// next carries the flags dispatch chose for the request being sent.
	next pending
	// routed is where the request being dispatched went, for the counters.
	routed target
	// waiting is the WAIT this session is blocked in, if any.
	waiting *waitState
	// gateDeadline: the session's next write waits at the write gate until
	// then (--write-gate wait). multiWrites: the open MULTI queued writes.
	gateDeadline time.Time
	multiWrites  bool
	// holdDeadline: the session's next write waits for a failover in
	// progress until then (gate). fenceUnproven: since the last master
	// switch, the session's write fence is not provably in the new
	// master's history, so WAIT counts no replica for it.
	holdDeadline  time.Time
	fenceUnproven bool
	// procOff is how much of the input process has consumed but not yet
	// discarded, while it dispatches.
	procOff int
	name    []byte
	authed  bool

	// target is the backend this session's outstanding requests went to.
	// Requests are only ever outstanding on one backend at a time, so that a
	// command never overtakes an earlier one of the same client by taking
	// another connection (see dispatch).
	target            *backend
	targetOutstanding int
	// retryOutstanding counts reads re-sent elsewhere after a replica
	// failed them; they are waited for like targetOutstanding.
	retryOutstanding int

	// pinned is the dedicated connection holding state that cannot be
	// multiplexed; the flags say why it is held.
	pinned       *backend
	inMulti      bool
	watching     bool
	subscribed   bool
	tracking     bool
	blockingCall bool
	multiSelect  int // db SELECTed inside MULTI, applied at EXEC; -1 if none

	stalled       bool // waiting for outstanding requests before switching backend
	wakePending   bool // resume woke the connection; its OnTraffic has not run yet
	pipelineFull  bool // MaxPipeline requests in flight; reading paused
	closeWhenDone bool // QUIT or protocol error: close once replies are out
	closed        bool
	dirty         bool
	lastActive    time.Time

	// --- Transparency (issue 13): clientcmd.go, multi.go, monitorcmd.go ---
	// created and lastCmd feed CLIENT LIST/INFO (age=, cmd=); user is who
	// the client authenticated as.
	created time.Time
	lastCmd string
	user    string
	noEvict bool
	// replyMode is CLIENT REPLY's state; the replies it suppresses are
	// dropped from the reply queue (replyQueue.mute).
	replyMode replyMode
	// multiLocals are the proxy-answered commands queued in the open
	// MULTI; multiQueued counts every command queued in it.
	multiLocals []multiLocal
	multiQueued int
	// execQueue: the proxy-answered slots of each EXEC in flight.
	execQueue []execSlots
	// capture, when set, receives the session's local replies instead of
	// the reply queue: answers computed for a slot of EXEC's array.
	capture *[]byte
	// asyncOutstanding counts local replies still being computed on other
	// loops (CLIENT LIST, KILL, UNBLOCK).
	asyncOutstanding int
	// heldOutstanding counts write replies the backend gave that wait for
	// the witness or for --sync-replicas: answered, not yet released, so
	// the session is not idle (what runs next must come after them).
	heldOutstanding int
	monitoring      bool
	subs            subCounts // subcount.go

	guard sessionGuard // auth timeout, output buffer limits (limits.go)
}

func newSession(l *loop, c gnet.Conn, id int64) *session {
	lv := l.srv.live()
	s := &session{l: l, srv: l.srv, c: c, id: id, proto: 2, multiSelect: -1, consistency: lv.consistency}
	s.created, s.user = time.Now(), "default"
	l.srv.sessByID.Store(id, s)
	s.authed = !lv.authRequired
	if s.authed {
		s.parser = resp.NewRequestParser(lv.limits)
	} else {
		s.parser = resp.NewRequestParser(lv.unauthLimit)
	}
	s.lastActive = time.Now()
	s.guard.openedAt = s.lastActive
	l.sessions[s] = struct{}{}
	return s
}

func (s *session) exemptFromIdle() bool {
	// Redis never times out subscribers or clients blocked in a command.
	return s.subscribed || s.blockingCall
}

func (s *session) needsPin() bool {
	return s.inMulti || s.watching || s.subscribed || s.tracking || s.blockingCall
}

func (s *session) onTraffic() gnet.Action {
	s.wakePending = false
	s.lastActive = s.l.now // the idle timeout (a reload may turn it on) and CLIENT LIST's idle=
	s.process()
	if len(s.out) > 0 {
		s.l.markSession(s) // replies held back for this callback (holdOutput)
	}
	s.l.flush()
	return gnet.None
}

// process parses and dispatches every complete request buffered for the
// client, stopping early when the session must wait (stall, full pipeline).
func (s *session) process() {
	c := s.c
	if s.closed || s.stalled || s.closeWhenDone || s.srv.draining.Load() {
		return
	}
	lv := s.srv.live()
	avail := c.InboundBuffered()
	if avail > lv.queryBufferLimit {
		s.srv.log.Warn("closing client that reached the query buffer limit", "client", s.id, "bytes", avail)
		_ = c.Close()
		return
	}
	// A frame that is still arriving is not looked at again until all of it
	// is here: Peek would copy the whole buffer each time.
	if avail == 0 || avail < s.parser.Need() {
		return
	}
	buf, err := c.Peek(avail)
	if err != nil {
		return
	}
	maxPipe := lv.maxPipeline
	off := 0
	for off < len(buf) && !s.stalled && !s.closeWhenDone {
		if s.replies.outstanding() >= maxPipe {
			s.pipelineFull = true
			break
		}
		cmd, n, err := s.parser.Parse(buf[off:])
		if err != nil {
			s.localError("ERR " + err.Error())
			s.closeWhenDone = true
			off = len(buf)
			break
		}
		if n == 0 {
			break
		}
		s.procOff = off
		if len(cmd.Args) > 0 && !s.dispatch(cmd, buf[off:off+n]) {
			break // not consumed: it runs once the session may go on
		}
		s.consumed(n)
		off += n
	}
	if off > 0 {
		_, _ = c.Discard(off)
	}
}

// resume continues a session that waited for its outstanding requests. It
// goes through Wake so the session's input is read from its own callback.
func (s *session) resume() {
	if s.closed {
		return
	}
	s.stalled = false
	s.pipelineFull = false
	s.wakePending = s.c.Wake(nil) == nil
}

// idle reports whether the session has no request in flight on any backend.
func (s *session) idle() bool {
	return s.targetOutstanding == 0 && s.retryOutstanding == 0 && s.asyncOutstanding == 0 && s.heldOutstanding == 0
}

// account records that request p, sent on b, is no longer in flight there.
func (s *session) account(b *backend, p *pending) {
	if p.retried {
		s.retryOutstanding--
	} else if b == s.target {
		s.targetOutstanding--
	}
}

// complete takes the reply to request p, which b answered.
func (s *session) complete(b *backend, p pending, reply []byte) {
	if p.sent != 0 {
		t := targetMaster
		if b.pool.replica {
			t = targetReplica
		}
		s.l.stats.observe(t, p.sent, s.l.nowNs)
	}
	s.account(b, &p)
	if p.floorLater && (s.floorConn != b || s.floorEpoch == 0) {
		// No ROLE followed the read on its connection: any master ROLE
		// queued from now on ran after it. (A fence ROLE pending on this
		// same connection for a later read of the session covers it too.)
		s.floorEpoch, s.floorConn = s.l.nextEpoch(), nil
	}
	if p.info {
		reply = s.appendProxyInfoSection(reply)
	}
	if p.exec {
		s.execReply(b, p.seq, reply) // delivers, maybe later
		return
	}
	s.deliver(b, p.seq, reply)
}

// maxReadAttempts bounds how many replicas one read is tried on before it
// goes to the master.
const maxReadAttempts = 2

// retryRead re-sends a read that replica backend from failed (LOADING,
// MASTERDOWN, BUSY, lost or hung connection) to another replica or, as a
// last resort, the master. It keeps the read's sequence number, database and
// protocol, so the client sees one ordinary reply.
func (s *session) retryRead(from *backend, p pending, req []byte) bool {
	if s.closed || len(req) == 0 {
		return false
	}
	s.account(from, &p)
	p.retried = true
	p.attempt++
	var pool *nodePool
	// Reads with a consistency requirement (fenced) go to the master: a
	// retry is rare, and the master satisfies every requirement.
	if p.attempt < maxReadAttempts && !p.fenced {
		pool = s.l.pickReplica(from.proto, from.pool)
	}
	p.conditional = false
	var b *backend
	if pool != nil {
		b, _ = s.l.sharedBackend(pool, from.proto)
	}
	var why string
	if b == nil {
		b, why = s.l.sharedBackend(s.l.master, from.proto)
	}
	if b == nil {
		var buf [512]byte
		s.deliver(from, p.seq, resp.AppendError(buf[:0], errBackendDown+why))
		return true
	}
	s.retryOutstanding++
	b.send(p, req, true)
	return true
}

// deliver queues the reply of request seq and, when the session has nothing
// left in flight, ends a finished pin and resumes a stalled session.
func (s *session) deliver(b *backend, seq uint64, reply []byte) {
	if s.closed {
		return
	}
	s.out = s.replies.complete(s.out, seq, reply)
	s.l.markSession(s)
	if s.idle() {
		if s.blockingCall && !s.inMulti {
			s.blockingCall = false
		}
		if s.pinned != nil && s.pinned == b && !s.needsPin() {
			s.pinned = nil
			s.target = nil
			s.l.releaseDedicated(b)
		}
		if s.stalled {
			s.resume()
		}
	}
	if s.pipelineFull && s.replies.outstanding() <= s.srv.live().maxPipeline/2 {
		s.resume()
	}
}

// deliverOutOfBand passes on a frame that answers no request: a pub/sub
// message or a RESP2 subscribe confirmation.
func (s *session) deliverOutOfBand(frame []byte) {
	if s.closed {
		return
	}
	s.out = append(s.out, frame...)
	s.l.markSession(s)
}

// localReply queues a reply the proxy produced itself, in request order.
func (s *session) localReply(reply []byte) {
	if s.capture != nil {
		*s.capture = append(*s.capture, reply...)
		return
	}
	seq := s.reserve()
	s.out = s.replies.complete(s.out, seq, reply)
	s.l.markSession(s)
}

func (s *session) localError(msg string) {
	s.scratch = resp.AppendError(s.scratch[:0], msg)
	s.localReply(s.scratch)
}

func (s *session) localOK() { s.localReply(okReply) }

var (
	okReply    = []byte("+OK\r\n")
	pongReply  = []byte("+PONG\r\n")
	resetReply = []byte("+RESET\r\n")
)

// maxRetainedClientOut bounds the output buffer an idle session keeps.
const maxRetainedClientOut = 64 << 10

// maxCoalescedReplyBytes bounds the replies holdOutput keeps back.
const maxCoalescedReplyBytes = 64 << 10

// holdOutput reports whether the replies ready for the client may wait for
// the rest of its pipeline: a pipeline that alternates reads (on a replica)
// and writes (on the master) completes in several segments, and a write
// per segment cost more CPU than the proxy's whole work for the requests
// (writes are the priciest syscall here). Replies are held only while more
// of this client's requests are being answered by a server without delay,
// and at most 64 KiB of them: never behind a blocking call, a WAIT, the
// write gate or a synchronous write, which may take long.
func (s *session) holdOutput() bool {
	if len(s.out) >= maxCoalescedReplyBytes || s.closeWhenDone {
		return false
	}
	if s.wakePending {
		return true // its own callback comes next, and flushes again
	}
	return s.replies.outstanding() > 0 && s.pinned == nil && !s.blockingCall && s.waiting == nil &&
		s.gateDeadline.IsZero() && s.srv.cfg.SyncReplicas == 0
}

func (s *session) flush() {
	if s.closed {
		return
	}
	if len(s.out) > 0 && !s.holdOutput() {
		_, _ = s.c.Write(s.out)
		if s.closed {
			return
		}
		if cap(s.out) > maxRetainedClientOut {
			s.out = nil
		} else {
			s.out = s.out[:0]
		}
		if s.outputOverLimit(s.l.now) {
			s.closeNow()
			return
		}
	}
	if s.closeWhenDone && s.replies.outstanding() == 0 {
		s.closeNow()
	}
}

func (s *session) closeNow() {
	if !s.closed {
		_ = s.c.Close()
	}
}

func (s *session) onClose() {
	s.closed = true
	delete(s.l.sessions, s)
	s.srv.sessByID.Delete(s.id)
	if s.monitoring {
		s.srv.removeMonitor(s)
	}
	if b := s.pinned; b != nil {
		s.pinned = nil
		b.owner = nil
		b.close()
	}
}
