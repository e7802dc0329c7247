package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/replproxy/replproxy/resp"
)

// Client TLS inside the event loop. A connection accepted on a TLS
// listener is wrapped in a tlsConn, which the session uses as its
// gnet.Conn: Peek, Discard and InboundBuffered see decrypted bytes, Write
// encrypts. The session code is the same for TLS and plaintext.
//
// crypto/tls is a blocking library, used here without blocking:
//   - the handshake runs on a goroutine of its own (started by the first
//     bytes, so a silent connection costs none), reading ciphertext the loop
//     hands over and giving back what to send through Execute, in order;
//   - afterwards everything happens on the loop: the ciphertext of a
//     callback is given to tls.Conn.Read through tlsMem, whose Read says
//     "temporarily nothing" when it is used up. crypto/tls keeps a partial
//     record for the next call and does not make that error sticky
//     (conn.go, readRecordOrCCS: net.Error with Temporary()).
//
// Measured before this design was chosen (GET, 50 clients, pipeline 16,
// proxy and client sharing one CPU): a relay that terminated TLS on two
// goroutines and handed plaintext to the loop over a socketpair spent
// 2.2× the proxy's plaintext CPU per request, two thirds of it in the four
// extra syscalls per batch; AES-GCM itself was under 1%.

// tlsState is where a client TLS connection stands.
type tlsState uint8

const (
	tlsAwaitingHello tlsState = iota // no byte yet: no goroutine either
	tlsHandshaking                   // the handshake goroutine runs
	tlsEstablished                   // loop-owned from here on
	tlsFailed
)

// tlsConn is a client connection of a TLS listener, seen as a plaintext
// gnet.Conn. Owned by its event loop, but for tlsMem, which the handshake
// goroutine shares.
type tlsConn struct {
	gnet.Conn // the TCP connection
	srv       *Server
	state     tlsState
	tc        *tls.Conn
	mem       tlsMem
	// in holds decrypted bytes; in[inOff:] are not consumed yet.
	in    []byte
	inOff int
	lent  *[]byte // in's buffer when borrowed from tlsInBufs for a callback
	spare []byte  // the other half of tlsMem's double-buffered output
}

// errTLSWouldBlock is tlsMem's "nothing buffered now": a net.Error that is
// Temporary, so crypto/tls returns it without recording it.
var errTLSWouldBlock = wouldBlockError{}

type wouldBlockError struct{}

func (wouldBlockError) Error() string   { return "proxy: no TLS input buffered" }
func (wouldBlockError) Timeout() bool   { return true }
func (wouldBlockError) Temporary() bool { return true }

var _ net.Error = wouldBlockError{}

// tlsMem is the net.Conn crypto/tls reads from and writes to: ciphertext
// in (from the loop), ciphertext out (to the loop). While blocking (the
// handshake), Read waits for input and writes are handed to the loop by
// flush; afterwards Read never waits. Safe for concurrent use until owned.
type tlsMem struct {
	mu       sync.Mutex
	cond     sync.Cond
	rbuf     []byte // ciphertext not read yet
	roff     int
	wbuf     []byte // ciphertext crypto/tls wrote, not sent yet
	blocking bool
	closed   bool
	// owned: the handshake goroutine has ended and the loop alone uses
	// tlsMem, without the lock (set by handshakeDone, which the goroutine
	// queues with Execute as its last act, after HandshakeContext returned
	// and crypto/tls's own context watcher with it: what the goroutine did
	// happens before). The lock was a tenth of the TLS path's own CPU at
	// GET pipeline 16.
	owned bool
	// flush, while blocking, asks the loop to send wbuf; flushQueued: it
	// has been asked and has not run yet.
	flush       func()
	flushQueued bool
	local       net.Addr
	remote      net.Addr
}

var _ net.Conn = (*tlsMem)(nil)

func (m *tlsMem) lock() {
	if !m.owned {
		m.mu.Lock()
	}
}

func (m *tlsMem) unlock() {
	if !m.owned {
		m.mu.Unlock()
	}
}

func (m *tlsMem) Read(p []byte) (int, error) {
	m.lock()
	defer m.unlock()
	for m.blocking && m.roff == len(m.rbuf) && !m.closed {
		m.cond.Wait()
	}
	if m.roff == len(m.rbuf) {
		if m.closed {
			return 0, io.EOF
		}
		return 0, errTLSWouldBlock
	}
	n := copy(p, m.rbuf[m.roff:])
	m.roff += n
	if m.roff == len(m.rbuf) {
		m.rbuf, m.roff = m.rbuf[:0], 0
	}
	return n, nil
}

func (m *tlsMem) Write(p []byte) (int, error) {
	m.lock()
	if m.closed {
		m.unlock()
		return 0, net.ErrClosed
	}
	m.wbuf = append(m.wbuf, p...)
	var flush func()
	if m.blocking && !m.flushQueued {
		m.flushQueued, flush = true, m.flush
	}
	m.unlock()
	if flush != nil {
		flush()
	}
	return len(p), nil
}

// feed appends ciphertext for the handshake goroutine.
func (m *tlsMem) feed(b []byte) {
	m.lock()
	m.rbuf = append(m.rbuf, b...)
	m.unlock()
	m.cond.Signal()
}

// swapOut returns the pending ciphertext and takes spare as the buffer for
// what comes next, so output never allocates in the steady state.
func (m *tlsMem) swapOut(spare []byte) []byte {
	m.lock()
	out := m.wbuf
	m.wbuf = spare[:0]
	m.flushQueued = false
	m.unlock()
	return out
}

func (m *tlsMem) Close() error {
	m.lock()
	m.closed = true
	m.unlock()
	m.cond.Broadcast()
	return nil
}

func (m *tlsMem) LocalAddr() net.Addr                { return m.local }
func (m *tlsMem) RemoteAddr() net.Addr               { return m.remote }
func (m *tlsMem) SetDeadline(t time.Time) error      { return nil }
func (m *tlsMem) SetReadDeadline(t time.Time) error  { return nil }
func (m *tlsMem) SetWriteDeadline(t time.Time) error { return nil }

// clientConn is OnOpen's hook: the connection a session reads and writes,
// which for a TLS listener's connection is its tlsConn.
func (s *Server) clientConn(c gnet.Conn) gnet.Conn {
	if !s.acceptedOnTLS(c) {
		return c
	}
	t := &tlsConn{Conn: c, srv: s}
	t.mem.cond.L = &t.mem.mu
	t.mem.local, t.mem.remote = c.LocalAddr(), c.RemoteAddr()
	return t
}

// refusal is what OnOpen answers a client it turns away: Redis's error,
// except on a TLS connection, where plaintext would only garble the
// handshake.
func (s *Server) refusal(c gnet.Conn, msg string) []byte {
	if s.acceptedOnTLS(c) {
		return nil
	}
	return resp.AppendError(nil, msg)
}

// acceptedOnTLS reports whether c came in on a TLS listener.
func (s *Server) acceptedOnTLS(c gnet.Conn) bool {
	if len(s.hard.tlsBound) == 0 {
		return false
	}
	// gnet's LocalAddr is the listener's address as configured (port 0
	// included), so ask the socket, once per connection.
	sa, err := syscall.Getsockname(c.Fd())
	if err != nil {
		return false
	}
	var ip net.IP
	var port int
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		ip, port = net.IP(sa.Addr[:]), sa.Port
	case *syscall.SockaddrInet6:
		ip, port = net.IP(sa.Addr[:]), sa.Port
	default:
		return false
	}
	for _, b := range s.hard.tlsBound {
		if b.Port == port && (b.IP.IsUnspecified() || b.IP.Equal(ip)) {
			return true
		}
	}
	return false
}

// traffic is OnTraffic for a session: on a TLS connection the callback's
// ciphertext is decrypted first (nothing reaches the session during the
// handshake), and the plaintext buffer is given back afterwards.
func (s *session) traffic() gnet.Action {
	t, ok := s.c.(*tlsConn)
	if !ok {
		return s.onTraffic()
	}
	if !t.pull(s) {
		return gnet.None
	}
	a := s.onTraffic()
	t.release()
	return a
}

// sessionClosed is OnClose's hook: a handshake still waiting for input
// learns that none will come.
func (s *session) sessionClosed() {
	if t, ok := s.c.(*tlsConn); ok {
		t.mem.Close()
	}
}

// handshakeExpired reports a TLS connection still handshaking past the
// auth timeout (the goroutine has its own deadline; a connection that
// never sent a byte has no goroutine).
func (s *session) handshakeExpired(now time.Time, timeout time.Duration) bool {
	t, ok := s.c.(*tlsConn)
	return ok && timeout > 0 && t.state < tlsEstablished && now.Sub(s.guard.openedAt) > timeout
}

// pull runs on the loop for each callback of the connection.
func (t *tlsConn) pull(sess *session) bool {
	raw := t.Conn
	switch t.state {
	case tlsAwaitingHello, tlsHandshaking:
		if n := raw.InboundBuffered(); n > 0 {
			b, _ := raw.Next(n)
			t.mem.feed(b)
			if t.state == tlsAwaitingHello {
				t.startHandshake(sess)
			}
		}
		return false
	case tlsFailed:
		if n := raw.InboundBuffered(); n > 0 {
			_, _ = raw.Discard(n)
		}
		return false
	}
	if n := raw.InboundBuffered(); n > 0 {
		b, _ := raw.Peek(n)
		t.mem.rbuf, t.mem.roff = b, 0 // read in place: crypto/tls copies what it keeps
		t.decrypt()
		// Whatever crypto/tls did not take in (it always takes all) would
		// alias gnet's buffer past Discard: keep a copy.
		t.mem.rbuf = append([]byte(nil), t.mem.rbuf[t.mem.roff:]...)
		t.mem.roff = 0
		_, _ = raw.Discard(n)
	} else {
		t.decrypt() // a resume, or records buffered by crypto/tls
	}
	t.sendOut()
	if t.state == tlsFailed {
		_ = raw.Close()
		return false
	}
	return true
}

// tlsReadBytes is the room decrypt makes in the plaintext buffer before
// each Read: a TLS record's largest plaintext.
const tlsReadBytes = 16 << 10

// tlsInBufs lend plaintext buffers for one callback: a session usually
// consumes all its input in the callback that brought it, so an idle TLS
// client keeps none (it kept 16 KiB each: 40 kB per idle TLS client, 1.6
// kB over plaintext, measured with 3,000 clients).
var tlsInBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2*tlsReadBytes); return &b }}

// release gives the lent buffer back once the session is done with this
// callback's input, keeping a copy of what it left (a frame still
// arriving, or input a stalled session will read later).
func (t *tlsConn) release() {
	left := t.in[t.inOff:]
	if t.lent == nil {
		if len(left) == 0 {
			t.in, t.inOff = nil, 0 // its own buffer, emptied: not kept either
		}
		return
	}
	var own []byte
	if len(left) > 0 {
		own = append(make([]byte, 0, len(left)+tlsReadBytes), left...)
	}
	t.giveBack()
	t.in, t.inOff = own, 0
}

func (t *tlsConn) giveBack() {
	*t.lent = (*t.lent)[:0]
	tlsInBufs.Put(t.lent)
	t.lent = nil
}

// decrypt reads every complete record out of crypto/tls into t.in.
func (t *tlsConn) decrypt() {
	if t.in == nil {
		t.lent = tlsInBufs.Get().(*[]byte)
		t.in, t.inOff = (*t.lent)[:0], 0
	}
	for {
		if t.inOff > 0 && t.inOff == len(t.in) {
			t.in, t.inOff = t.in[:0], 0
		}
		if cap(t.in)-len(t.in) < tlsReadBytes {
			if t.inOff > 0 {
				n := copy(t.in, t.in[t.inOff:])
				t.in, t.inOff = t.in[:n], 0
			}
			if cap(t.in)-len(t.in) < tlsReadBytes {
				grown := make([]byte, len(t.in), 2*cap(t.in)+tlsReadBytes)
				copy(grown, t.in)
				t.in = grown
				if t.lent != nil {
					t.giveBack() // a big input: t.in is its own from here
				}
			}
		}
		n, err := t.tc.Read(t.in[len(t.in):cap(t.in)])
		t.in = t.in[:len(t.in)+n]
		if err == nil {
			continue
		}
		if !errors.Is(err, errTLSWouldBlock) {
			// close_notify, a bad record or an alert: the client is done
			// or hostile, and the connection is closed.
			if !errors.Is(err, io.EOF) {
				t.srv.log.Debug("TLS client connection failed", "remote", t.RemoteAddr(), "err", err)
			}
			t.state = tlsFailed
		}
		return
	}
}

// sendOut writes what crypto/tls produced (records, alerts, key updates).
// gnet copies what the socket does not take at once, so the buffer is
// reused at once.
func (t *tlsConn) sendOut() {
	out := t.mem.swapOut(t.spare)
	if len(out) > 0 {
		_, _ = t.Conn.Write(out)
	}
	t.spare = out[:0]
}

// startHandshake runs the handshake on a goroutine, bounded by the auth
// timeout; its result comes back to the loop through Execute, after every
// flush it asked for (one queue, in order).
func (t *tlsConn) startHandshake(sess *session) {
	t.state = tlsHandshaking
	t.mem.blocking = true
	el := t.EventLoop()
	t.mem.flush = func() {
		_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if !sess.closed {
				t.sendOut()
			}
			return nil
		}))
	}
	cfg := t.srv.hard.serverTLS.Load()
	t.tc = tls.Server(&t.mem, cfg)
	timeout := t.srv.live().authTimeout
	go func() {
		ctx := context.Background()
		if timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, timeout)
			defer cancel()
		}
		err := t.tc.HandshakeContext(ctx)
		_ = el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			t.handshakeDone(sess, err)
			return nil
		}))
	}()
}

// handshakeDone switches the connection to the loop, or closes it.
func (t *tlsConn) handshakeDone(sess *session, err error) {
	if sess.closed {
		return
	}
	t.mem.mu.Lock()
	t.mem.blocking = false
	t.mem.owned = true
	t.mem.mu.Unlock()
	t.sendOut() // the handshake's last flight, an alert on failure
	if err != nil {
		t.state = tlsFailed
		t.srv.log.Debug("TLS handshake failed", "remote", t.RemoteAddr(), "err", err)
		_ = t.Conn.Close()
		return
	}
	t.state = tlsEstablished
	// The client may have sent requests right behind its Finished: they
	// are in crypto/tls or in tlsMem already.
	sess.l.tick()
	_ = sess.traffic()
}

// The plaintext view of the connection, for the session.

func (t *tlsConn) InboundBuffered() int { return len(t.in) - t.inOff }

func (t *tlsConn) Peek(n int) ([]byte, error) {
	avail := len(t.in) - t.inOff
	if n < 0 {
		n = avail
	}
	if n > avail {
		return nil, io.ErrShortBuffer
	}
	return t.in[t.inOff : t.inOff+n], nil
}

func (t *tlsConn) Next(n int) ([]byte, error) {
	b, err := t.Peek(n)
	if err == nil {
		t.inOff += len(b)
	}
	return b, err
}

func (t *tlsConn) Discard(n int) (int, error) {
	if avail := len(t.in) - t.inOff; n < 0 || n > avail {
		n = avail
	}
	t.inOff += n
	return n, nil
}

func (t *tlsConn) Read(p []byte) (int, error) {
	n := copy(p, t.in[t.inOff:])
	t.inOff += n
	return n, nil
}

// Write encrypts p and writes the records with one write.
func (t *tlsConn) Write(p []byte) (int, error) {
	if t.state != tlsEstablished {
		return 0, net.ErrClosed
	}
	n, err := t.tc.Write(p)
	t.sendOut()
	return n, err
}

func (t *tlsConn) Writev(bs [][]byte) (int, error) {
	total := 0
	for _, b := range bs {
		n, err := t.Write(b)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// AsyncWrite encrypts on the loop, where crypto/tls's state lives.
func (t *tlsConn) AsyncWrite(p []byte, cb gnet.AsyncCallback) error {
	return t.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		_, err := t.Write(p)
		if cb != nil {
			return cb(t, err)
		}
		return nil
	}))
}

func (t *tlsConn) AsyncWritev(bs [][]byte, cb gnet.AsyncCallback) error {
	return t.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		_, err := t.Writev(bs)
		if cb != nil {
			return cb(t, err)
		}
		return nil
	}))
}
