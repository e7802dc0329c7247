package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/replproxy/replproxy/resp"
)

type backendState uint8

const (
	stateConnecting backendState = iota
	stateOpen
	stateClosed
)

// backend is one connection from the proxy to the master, registered on the
// event loop of the clients that use it. A shared backend multiplexes every
// client of its loop speaking its protocol; a dedicated one (owner != nil)
// carries one client's connection state (MULTI, WATCH, subscriptions,
// blocking calls). Owned by its loop; not safe for concurrent use.
type backend struct {
	l     *loop
	pool  *nodePool
	proto int
	owner *session // nil for shared connections
	slot  **backend
	// dedicated: counted in Server.dedicated until closed; counted: in
	// Server.sharedConns.
	dedicated bool
	counted   bool

	state          backendState
	closeRequested bool
	c              gnet.Conn

	// db is the database the server connection has selected, as far as the
	// proxy knows; -1 forces a SELECT before the next command.
	db int
	// relay: the connection is in subscribe mode; replies that answer no
	// pending request (messages, RESP2 subscribe confirmations) go straight
	// to the owner.
	relay bool

	out     []byte
	pend    ring[pending]
	scanner *resp.ReplyScanner
	dirty   bool

	// reqLog keeps a copy of the read requests in flight on a replica, so a
	// read that meets LOADING or a dead replica can be re-sent elsewhere.
	// Entries are consumed in FIFO order; offsets are absolute (reqBase is
	// the absolute offset of reqLog[0], reqHead the next unconsumed byte).
	reqLog  []byte
	reqBase int64
	reqHead int64
	// lastProgress is when the replica last answered (or first got a request
	// after being idle): the read timeout is measured from it.
	lastProgress time.Time

	// needFence: fenced requests were queued since the last ROLE; flush
	// appends one (a single ROLE fences a whole batch).
	needFence bool
	// held are fenced replies waiting for their ROLE; their bytes are in
	// holdBuf.
	held    []heldReply
	holdBuf []byte
	// checkedOff is what the last pendCheck ROLE returned (-1: it failed):
	// every read queued after that ROLE observed at least this offset.
	// checkQueued: a pendCheck is in the batch not yet written, so the
	// conditional reads queued after it need no other.
	checkedOff  int64
	checkQueued bool
	// refreshing: a pendRefresh ROLE is in flight.
	refreshing bool
	// sampleEpoch and sampleOff: the epoch and offset of the newest fence
	// ROLE answered on this master connection (see session.settleFloor).
	sampleEpoch uint64
	sampleOff   int64
	// timedOut: the sweep closed this replica connection for the read timeout.
	timedOut bool
	// closedByUs: the proxy closed it (close), the server did not.
	closedByUs bool

	// redisID is the server's CLIENT ID of this connection, asked for
	// before a blocking call on it so CLIENT UNBLOCK can name it; 0 unknown.
	redisID int64
}

// heldReply is a fenced reply waiting for its fence.
type heldReply struct {
	p      pending
	off, n int
}

func newBackend(l *loop, pool *nodePool, proto int, owner *session) *backend {
	b := &backend{
		l:       l,
		pool:    pool,
		proto:   proto,
		owner:   owner,
		scanner: resp.NewReplyScanner(resp.DefaultLimits()),
	}
	cfg := &l.srv.cfg
	go b.connect(pool.addr, cfg.UpstreamUser, cfg.UpstreamPassword, cfg.ConnectTimeout)
	return b
}

// connect runs on its own goroutine: it dials and authenticates with plain
// blocking I/O, then hands the socket to the event loop. Nothing of b but its
// immutable fields is touched here; results go back through Execute.
func (b *backend) connect(addr, user, pass string, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := dialBackend(ctx, addr, user, pass, b.proto, timeout, b.l.srv.cfg.UpstreamTLS)
	if err == nil && b.pool.replica {
		if err = verifyReplica(conn, timeout); err != nil {
			conn.Close()
		}
	}
	if err == nil {
		var ch <-chan gnet.RegisteredResult
		ch, err = b.l.el.Enroll(gnet.NewContext(context.Background(), b), conn)
		if err == nil {
			if res := <-ch; res.Err != nil {
				err = res.Err
			}
		} else {
			conn.Close()
		}
	}
	if err != nil {
		_ = b.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			b.l.tick()
			b.dialFailed(err)
			return nil
		}))
	}
}

func (b *backend) home() *loop { return b.l }

func (b *backend) onOpen(c gnet.Conn) {
	b.c = c
	if b.closeRequested {
		b.state = stateOpen
		b.close()
		return
	}
	b.state = stateOpen
	b.pool.dialSucceeded()
	if !b.dedicated {
		b.counted = true
		b.l.srv.sharedConns.Add(1)
	}
	b.flush()
}

func (b *backend) dialFailed(err error) {
	b.l.srv.log.Warn("cannot connect", "node", b.pool.addr, "err", err)
	b.pool.dialFailed(err, b.l.srv.cfg.ReconnectBackoffMax)
	if b.pool.replica {
		b.l.demote(b.pool, "connect failed")
	}
	b.detach()
	b.failPending(errBackendDown + err.Error())
	b.l.flush()
}

func (b *backend) onClose(err error) {
	if err != nil && b.owner == nil {
		b.l.srv.log.Info("backend connection closed", "node", b.pool.addr, "err", err)
	}
	// Whatever closed it (a crash, a restart into a full resync, our read
	// timeout), the replica must not be read from again until the monitor
	// has looked at it since: a restarted replica serves an empty dataset
	// before its link is even up.
	if b.pool.replica {
		b.l.demote(b.pool, "connection lost")
	} else if b.pool == b.l.master && !b.closedByUs {
		if *b.l.srv.cfg.EmptyMasterGuard {
			b.l.masterLostAt, b.l.masterLostAddr = time.Now(), b.pool.addr
		}
		go b.l.srv.mon.Suspect(b.pool.addr, false) // takes the monitor's lock: not on the loop
	}
	b.detach()
	b.failPending(errBackendLost)
	b.l.flush()
}

// detach marks b closed and forgets it everywhere the loop could hand it out.
func (b *backend) detach() {
	if b.dedicated {
		b.dedicated = false
		b.l.srv.dedicated.Add(-1)
	}
	if b.counted {
		b.counted = false
		b.l.srv.sharedConns.Add(-1)
	}
	b.state = stateClosed
	if b.slot != nil && *b.slot == b {
		*b.slot = nil
	}
	if o := b.owner; o != nil && o.pinned == b {
		// The client's server-side state (MULTI, WATCH, subscriptions) is gone
		// with this connection; closing the client is the honest signal, as a
		// client library then reconnects and re-subscribes.
		o.pinned = nil
		o.closeWhenDone = true
		b.l.markSession(o)
	}
}

// failPending answers every request still waiting on b with msg; reads
// waiting on a replica are re-sent elsewhere instead, since nothing a client
// can see has happened to them yet.
func (b *backend) failPending(msg string) {
	var buf [512]byte
	reply := resp.AppendError(buf[:0], msg)
	b.releaseHeld(0, fenceConnLost)
	b.refreshing = false
	for b.pend.len() > 0 {
		p := b.pend.pop()
		req := b.takeReq(&p)
		switch p.kind {
		case pendLinearize:
			b.l.linearized(0, false)
		case pendWitnessProbe:
			b.l.witnessProbed(b.pool, 0, false)
		}
		if p.kind != pendClient {
			continue
		}
		b.l.inflight.Add(-1)
		if b.pool.replica && p.sess.retryRead(b, p, req) {
			if b.timedOut {
				b.l.stats.retry(retryReadTimeout)
			} else {
				b.l.stats.retry(retryConnectionLost)
			}
			continue
		}
		p.sess.complete(b, p, reply)
	}
	b.reqLog, b.reqBase, b.reqHead = b.reqLog[:0], 0, 0
}

// takeReq returns the logged request bytes of p, which was just popped. The
// slice is valid until the next forward on b.
func (b *backend) takeReq(p *pending) []byte {
	if p.reqEnd == 0 || p.reqEnd < b.reqHead {
		return nil
	}
	req := b.reqLog[b.reqHead-b.reqBase : p.reqEnd-b.reqBase]
	b.reqHead = p.reqEnd
	return req
}

// close asks gnet to close the connection; onClose does the rest.
func (b *backend) close() {
	switch b.state {
	case stateConnecting:
		b.closeRequested = true
	case stateOpen:
		b.state = stateClosed
		b.closedByUs = true
		_ = b.c.Close()
	}
}

// forward queues one request of s. raw is sent unchanged.
func (b *backend) forward(s *session, raw []byte, expectReply bool) {
	p := s.next // the flags dispatch chose for this request
	p.sess, p.db = s, int32(s.db)
	if b.relay || (b.owner != nil && b.owner.inMulti) {
		// Nothing runs inside MULTI before EXEC, and ROLE is not allowed
		// in RESP2 subscribe mode: no fence there.
		p.fenced = false
	}
	if expectReply {
		p.seq = s.reserve()
		p.sent = b.l.nowNs
	}
	if p.floorLater && b.owner == nil && b.l.replicaEligible() {
		// A read on the master whose floor may soon matter (a replica could
		// serve the session's next read): the fence ROLE after this batch
		// tells it, and the reply need not wait for it.
		b.needFence = true
		s.floorEpoch, s.floorConn = b.l.nextEpoch(), b
		p.floorLater = false
	}
	b.send(p, raw, expectReply)
}

// send queues request raw for pending entry p, selecting p's database first
// when the connection is on another one.
func (b *backend) send(p pending, raw []byte, expectReply bool) {
	if int(p.db) != b.db && !b.relay {
		b.out = appendSelect(b.out, int(p.db))
		b.pend.push(pending{kind: pendSwallow, reqEnd: b.reqEnd()})
		b.db = int(p.db)
	}
	b.out = append(b.out, raw...)
	if expectReply {
		p.reqEnd = 0 // a re-sent read carries the offset of the log it came from
		if b.pool.replica {
			if b.pend.len() == 0 {
				b.lastProgress = b.l.now
			}
			b.logReq(raw)
			p.reqEnd = b.reqEnd()
		} else if p.write && b.owner == nil && len(raw) <= maxRedirectBytes {
			// Kept until answered: a master demoted under us answers
			// -READONLY, and the write is re-sent to the next one.
			b.logReq(raw)
			p.reqEnd = b.reqEnd()
		}
		b.pend.push(p)
		b.l.inflight.Add(1)
	}
	if p.fenced && expectReply {
		b.needFence = true
		if b.owner != nil {
			// A dedicated connection may enter MULTI with its next request,
			// where a batched ROLE would be queued: fence each request.
			b.appendFence()
		}
	}
	b.l.markBackend(b)
}

func (b *backend) reqEnd() int64 { return b.reqBase + int64(len(b.reqLog)) }

// maxReqLogSlack is how much consumed space the request log may carry
// before it is compacted.
const maxReqLogSlack = 32 << 10

func (b *backend) logReq(raw []byte) {
	if consumed := b.reqHead - b.reqBase; consumed > maxReqLogSlack && consumed > int64(len(b.reqLog)/2) {
		n := copy(b.reqLog, b.reqLog[consumed:])
		b.reqLog = b.reqLog[:n]
		b.reqBase = b.reqHead
	}
	b.reqLog = append(b.reqLog, raw...)
}

func appendSelect(dst []byte, db int) []byte {
	var num [20]byte
	n := strconv.AppendInt(num[:0], int64(db), 10)
	dst = append(dst, "*2\r\n$6\r\nSELECT\r\n$"...)
	dst = strconv.AppendInt(dst, int64(len(n)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, n...)
	return append(dst, '\r', '\n')
}

// maxRetainedOutBytes bounds the output buffer an idle backend keeps.
const maxRetainedOutBytes = 1 << 20

func (b *backend) flush() {
	if b.needFence {
		b.appendFence()
	}
	if b.state != stateOpen || len(b.out) == 0 {
		return
	}
	b.checkQueued = false
	_, _ = b.c.Write(b.out)
	if cap(b.out) > maxRetainedOutBytes {
		b.out = nil
	} else {
		b.out = b.out[:0]
	}
}

func (b *backend) onTraffic() {
	c := b.c
	avail := c.InboundBuffered()
	if avail == 0 || avail < b.scanner.Need() {
		return
	}
	buf, err := c.Peek(avail)
	if err != nil {
		return
	}
	off := 0
	for off < len(buf) {
		n, err := b.scanner.Scan(buf[off:])
		if err != nil {
			b.l.srv.log.Error("malformed reply from master; closing that connection", "err", err)
			b.scanner.Reset()
			_, _ = c.Discard(len(buf))
			b.close()
			return
		}
		if n == 0 {
			break
		}
		b.onReply(buf[off : off+n])
		off += n
	}
	if off > 0 {
		_, _ = c.Discard(off)
		if b.pool.replica {
			b.lastProgress = b.l.now
		}
	}
	b.l.flush()
}

func (b *backend) onReply(frame []byte) {
	// A RESP3 push is never a reply, on any connection a client owns: in
	// subscribe mode, and the invalidations of CLIENT TRACKING (they were
	// taken for the reply of the next request, which client-side caches
	// in node-redis 5 never saw).
	if b.owner != nil && (frame[0] == '>' || (b.relay && b.proto == 2 && b.pend.len() == 0)) {
		if b.relay {
			b.owner.subs.notePubSub(frame)
		}
		b.owner.deliverOutOfBand(frame)
		return
	}
	if b.pend.len() == 0 {
		// Only subscribe mode and client tracking send unasked frames, and
		// both live on dedicated connections; anything else is a bug or a
		// server we do not understand.
		b.l.srv.log.Warn("unexpected reply from master dropped", "type", string(frame[:1]))
		return
	}
	p := b.pend.pop()
	req := b.takeReq(&p)
	if b.pend.len() == 0 && b.reqHead == b.reqEnd() {
		b.reqLog, b.reqBase = b.reqLog[:0], b.reqHead
	}
	switch p.kind {
	case pendClientID:
		b.redisID, _ = resp.ParseInt(frame[1 : len(frame)-2])
		return
	case pendQuiet:
		return
	case pendSwallow:
		if frame[0] == '-' {
			b.l.srv.log.Warn("proxy-issued command failed", "node", b.pool.addr, "reply", string(frame))
		}
		return
	case pendFence:
		b.onFence(&p, frame)
		return
	case pendCheck:
		off, _, ok := roleOffset(frame)
		b.checkedOff = -1
		if ok {
			b.pool.learnOffset(off)
			b.checkedOff = off
		}
		return
	case pendRefresh:
		b.refreshing = false
		if off, _, ok := roleOffset(frame); ok {
			b.pool.learnOffset(off)
		}
		b.l.checkParked()
		return
	case pendLinearize:
		off, master, ok := roleOffset(frame)
		if ok && master {
			b.l.masterSampled(p.epoch, off)
		}
		b.l.linearized(off, ok)
		return
	case pendWitnessProbe:
		off, master, ok := roleOffset(frame)
		b.l.witnessProbed(b.pool, off, ok && master)
		return
	}
	b.l.inflight.Add(-1)
	if !b.pool.replica && p.write && frame[0] == '-' && b.owner == nil && b.redirect(p, req, frame) {
		return
	}
	if p.conditional && b.checkedOff < p.required {
		// The replica had not reached what the read needs when it ran it:
		// its reply may be stale. Nobody sees it; the read runs again.
		if p.sess.redoRead(b, p, req) {
			return
		}
	}
	if b.pool.replica && frame[0] == '-' && bytes.HasPrefix(frame, []byte("-NOSCRIPT")) && b.reloadScript(p, req) {
		return
	}
	if b.pool.replica && frame[0] == '-' && bytes.HasPrefix(frame, []byte("-READONLY ")) && p.sess.redoOnMaster(b, p, req) {
		// A read a replica refused as a write (FCALL_RO of a function
		// with writes, EVAL_RO of one declaring them): the master gives
		// the answer a single Redis would (issue 13).
		return
	}
	if b.pool.replica && frame[0] == '-' && retryableError(frame) {
		b.l.stats.retry(retryReasonOf(frame))
		b.l.demote(b.pool, string(frame[1:len(frame)-2]))
		if p.sess.retryRead(b, p, req) {
			return
		}
	}
	if p.fenced && !p.sess.closed {
		b.held = append(b.held, heldReply{p: p, off: len(b.holdBuf), n: len(frame)})
		b.holdBuf = append(b.holdBuf, frame...)
		return
	}
	p.sess.complete(b, p, frame)
}

// reloadScript handles NOSCRIPT from a replica for an EVALSHA the proxy
// knows the body of: scripts loaded with SCRIPT LOAD through the proxy exist
// on the master only, so the body is loaded on this replica and the call is
// sent again, once.
func (b *backend) reloadScript(p pending, req []byte) bool {
	if p.attempt >= maxReadAttempts || len(req) == 0 || p.sess.closed {
		return false
	}
	parser := resp.NewRequestParser(resp.DefaultLimits())
	cmd, n, err := parser.Parse(req)
	if err != nil || n == 0 || len(cmd.Args) < 2 ||
		!(resp.EqualFold(cmd.Args[0], "evalsha") || resp.EqualFold(cmd.Args[0], "evalsha_ro")) {
		return false
	}
	body, _, ok := b.l.srv.scripts.Lookup(cmd.Args[1])
	if !ok {
		return false
	}
	req = append([]byte(nil), req...) // req aliases the log send appends to
	b.out = resp.AppendCommand(b.out, []byte("SCRIPT"), []byte("LOAD"), body)
	b.pend.push(pending{kind: pendSwallow, reqEnd: b.reqEnd()})
	p.attempt++
	b.l.stats.retry(retryNoScript)
	b.send(p, req, true)
	return true
}

func retryReasonOf(frame []byte) retryReason {
	switch {
	case bytes.HasPrefix(frame, []byte("-LOADING")):
		return retryLoading
	case bytes.HasPrefix(frame, []byte("-MASTERDOWN")):
		return retryMasterDown
	}
	return retryBusy
}

// retryableError reports replica errors that say "not now, not here": the
// read is re-sent elsewhere and the client never sees them.
func retryableError(frame []byte) bool {
	return bytes.HasPrefix(frame, []byte("-LOADING")) ||
		bytes.HasPrefix(frame, []byte("-MASTERDOWN")) ||
		bytes.HasPrefix(frame, []byte("-BUSY "))
}

// dialBackend connects and authenticates a connection to a Redis node, and
// switches it to RESP3 when proto is 3. With tlsCfg the connection is TLS,
// and what it returns is the loop's end of a relay (tls.go).
func dialBackend(ctx context.Context, addr, user, pass string, proto int, timeout time.Duration, tlsCfg *tls.Config) (net.Conn, error) {
	d := net.Dialer{Timeout: timeout, KeepAlive: 15 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsCfg != nil {
		if conn, err = dialUpstreamTLS(ctx, conn, addr, tlsCfg); err != nil {
			return nil, err
		}
	}
	if err := handshake(conn, user, pass, proto, timeout); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

func handshake(conn net.Conn, user, pass string, proto int, timeout time.Duration) error {
	var req []byte
	switch {
	case proto == 3 && pass != "":
		if user == "" {
			user = "default"
		}
		req = resp.AppendCommandStrings(req, "HELLO", "3", "AUTH", user, pass)
	case proto == 3:
		req = resp.AppendCommandStrings(req, "HELLO", "3")
	case pass != "" && user != "":
		req = resp.AppendCommandStrings(req, "AUTH", user, pass)
	case pass != "":
		req = resp.AppendCommandStrings(req, "AUTH", pass)
	default:
		return nil
	}
	reply, err := roundTrip(conn, req, timeout)
	if err != nil {
		return err
	}
	if reply[0] == '-' {
		return fmt.Errorf("%w: %s", errHandshake, reply[1:len(reply)-2])
	}
	return nil
}

// roundTrip sends req on a plain blocking connection and reads exactly one
// reply, before the connection is handed to an event loop.
func roundTrip(conn net.Conn, req []byte, timeout time.Duration) ([]byte, error) {
	if err := conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	if _, err := conn.Write(req); err != nil {
		return nil, err
	}
	sc := resp.NewReplyScanner(resp.DefaultLimits())
	buf := make([]byte, 0, 4096)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := conn.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if m, serr := sc.Scan(buf); serr != nil {
			return nil, serr
		} else if m > 0 {
			if m != len(buf) {
				return nil, fmt.Errorf("%w: unexpected extra bytes", errHandshake)
			}
			return buf, conn.SetDeadline(time.Time{})
		}
		if err != nil {
			return nil, err
		}
	}
}

var errHandshake = errors.New("backend handshake refused")

// errReplicaNotReady: a new connection found the replica unable to serve.
var errReplicaNotReady = errors.New("replica not ready")

// verifyReplica checks, before a new replica connection carries any read,
// that the replica is in sync with its master right now. The monitor's
// snapshot can be up to a poll interval old; a replica restarted in that
// time (empty, link down, about to full-sync) must not be read from.
func verifyReplica(conn net.Conn, timeout time.Duration) error {
	reply, err := roundTrip(conn, resp.AppendCommandStrings(nil, "INFO", "replication", "persistence"), timeout)
	if err != nil {
		return err
	}
	if reply[0] == '-' {
		return fmt.Errorf("%w: %s", errReplicaNotReady, reply[1:len(reply)-2])
	}
	text := string(reply)
	for _, want := range []string{"role:slave", "master_link_status:up", "master_sync_in_progress:0", "loading:0"} {
		if !strings.Contains(text, want+"\r\n") {
			return fmt.Errorf("%w: no %q", errReplicaNotReady, want)
		}
	}
	return nil
}
