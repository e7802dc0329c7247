package proxy

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// loop is the proxy state of one gnet event loop: its backend connections
// and the work left to flush at the end of the current callback. Owned by
// that loop; only inflight is read from other goroutines.
type loop struct {
	srv *Server
	el  gnet.EventLoop

	// shared[proto-2][i] are the multiplexed master connections; a nil entry
	// is (re)created on demand, subject to the backoff in dial.
	shared [2][]*backend
	dial   dialState
	// idle dedicated connections, kept for the next session that pins one.
	idleDedicated [2][]*backend

	sessions map[*session]struct{}

	dirtySessions []*session
	dirtyBackends []*backend

	// inflight counts requests forwarded and not yet answered, for shutdown.
	inflight atomic.Int64

	sweeper gnet.Runnable
	rr      int
}

// dialState is the reconnect backoff toward one backend address.
type dialState struct {
	retryAt time.Time
	backoff time.Duration
	lastErr string
}

const (
	initialBackoff   = 25 * time.Millisecond
	maxIdleDedicated = 8
)

func newLoop(s *Server, el gnet.EventLoop) *loop {
	l := &loop{srv: s, el: el, sessions: make(map[*session]struct{})}
	for p := range l.shared {
		l.shared[p] = make([]*backend, s.cfg.BackendConns)
	}
	l.sweeper = gnet.RunnableFunc(func(context.Context) error {
		l.sweep(time.Now())
		return nil
	})
	return l
}

// sharedBackend returns the master connection a session with protocol proto
// multiplexes onto, creating it if needed. It returns nil with the reason
// while the master is in reconnect backoff.
func (l *loop) sharedBackend(proto int) (*backend, string) {
	conns := l.shared[proto-2]
	i := 0
	if len(conns) > 1 {
		l.rr++
		i = l.rr % len(conns)
	}
	if b := conns[i]; b != nil {
		return b, ""
	}
	if why := l.mayDial(); why != "" {
		return nil, why
	}
	b := newBackend(l, proto, nil)
	conns[i] = b
	b.slot = &conns[i]
	return b, ""
}

// dedicatedBackend returns a connection for sess alone.
func (l *loop) dedicatedBackend(sess *session) (*backend, string) {
	idle := &l.idleDedicated[sess.proto-2]
	for len(*idle) > 0 {
		b := (*idle)[len(*idle)-1]
		*idle = (*idle)[:len(*idle)-1]
		if b.state != stateClosed {
			b.owner = sess
			return b, ""
		}
	}
	if why := l.mayDial(); why != "" {
		return nil, why
	}
	return newBackend(l, sess.proto, sess), ""
}

// releaseDedicated takes back a connection whose session state ended.
func (l *loop) releaseDedicated(b *backend) {
	b.owner = nil
	idle := &l.idleDedicated[b.proto-2]
	if b.state == stateOpen && !b.relay && b.pend.len() == 0 && len(*idle) < maxIdleDedicated {
		*idle = append(*idle, b)
		return
	}
	b.close()
}

func (l *loop) mayDial() string {
	if time.Now().Before(l.dial.retryAt) {
		return l.dial.lastErr
	}
	return ""
}

func (l *loop) dialFailed(err error) {
	if l.dial.backoff == 0 {
		l.dial.backoff = initialBackoff
	} else if l.dial.backoff *= 2; l.dial.backoff > l.srv.cfg.ReconnectBackoffMax {
		l.dial.backoff = l.srv.cfg.ReconnectBackoffMax
	}
	l.dial.retryAt = time.Now().Add(l.dial.backoff)
	l.dial.lastErr = err.Error()
}

func (l *loop) dialSucceeded() { l.dial = dialState{} }

func (l *loop) markSession(s *session) {
	if !s.dirty {
		s.dirty = true
		l.dirtySessions = append(l.dirtySessions, s)
	}
}

func (l *loop) markBackend(b *backend) {
	if !b.dirty {
		b.dirty = true
		l.dirtyBackends = append(l.dirtyBackends, b)
	}
}

// flush writes everything the current callback produced: requests first, so
// the backends start working while replies go out.
func (l *loop) flush() {
	for i, b := range l.dirtyBackends {
		b.dirty = false
		b.flush()
		l.dirtyBackends[i] = nil
	}
	l.dirtyBackends = l.dirtyBackends[:0]
	for i, s := range l.dirtySessions {
		s.dirty = false
		s.flush()
		l.dirtySessions[i] = nil
	}
	l.dirtySessions = l.dirtySessions[:0]
}

// sweep enforces idle timeouts and, during shutdown, closes clients that
// have nothing left in flight.
func (l *loop) sweep(now time.Time) {
	idle := l.srv.cfg.IdleTimeout
	draining := l.srv.draining.Load()
	for s := range l.sessions {
		switch {
		case draining && s.replies.outstanding() == 0:
			s.c.Close()
		case idle > 0 && s.replies.outstanding() == 0 && !s.exemptFromIdle() && now.Sub(s.lastActive) > idle:
			s.c.Close()
		}
	}
	l.flush()
}
