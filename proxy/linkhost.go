package proxy

import (
	"context"
	"errors"
	"net"
	"slices"

	"github.com/panjf2000/gnet/v2"

	"github.com/replproxy/replproxy/replstream"
)

// linkHost reads the replication link's stream on the first event loop
// (replstream.Host says why). The witness then mostly settles in the
// batch that read the stream: onLinkAdvance runs on that loop, and wakes
// it through its own batch end instead of an eventfd.
type linkHost struct{ s *Server }

// Attach enrolls conn on the first loop, or declines while there is none
// or conn is not plain TCP (TLS: gnet reads raw bytes).
func (h linkHost) Attach(conn net.Conn, f *replstream.Feed) (replstream.Hosted, error) {
	if _, ok := conn.(*net.TCPConn); !ok {
		return nil, nil
	}
	loops := *h.s.loopLst.Load()
	if len(loops) == 0 || h.s.draining.Load() {
		return nil, nil
	}
	l := loops[0]
	lc := &linkConn{l: l, feed: f, done: make(chan error, 1)}
	ch, err := l.el.Enroll(gnet.NewContext(context.Background(), lc), conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	// gnet's Enroll answers once the loop has run the registration: a loop
	// that stopped first never does (a CI run's shutdown hung here, the
	// link's Run in this wait).
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, res.Err
		}
		return lc, nil
	case <-h.s.stopping:
		return nil, errEngineStopping
	}
}

// errEngineStopping: the engine stopped before it took the link's
// connection (closed with it, if it did).
var errEngineStopping = errors.New("the proxy's engine is stopping")

// linkConn is the link's connection on a loop. c, err, closed and
// closeAsked are the loop's; the rest is set before the loop sees it.
type linkConn struct {
	l          *loop
	feed       *replstream.Feed
	done       chan error // one send, from onClose
	c          gnet.Conn
	err        error // why the loop closed it
	closed     bool
	closeAsked bool // Close ran before onOpen
}

func (lc *linkConn) home() *loop { return lc.l }

func (lc *linkConn) onOpen(c gnet.Conn) {
	lc.c = c
	if lc.closeAsked {
		_ = c.Close()
		return
	}
	lc.l.srv.linkLoop.Store(lc.l)
}

// onTraffic feeds the link everything read. A stream the link refuses
// closes the connection, as on its own goroutine.
func (lc *linkConn) onTraffic() {
	data, _ := lc.c.Next(-1)
	out, err := lc.feed.Feed(data)
	if len(out) > 0 {
		_, _ = lc.c.Write(out)
	}
	if err != nil && lc.err == nil {
		lc.err = err
		_ = lc.c.Close()
	}
}

func (lc *linkConn) onClose(err error) {
	lc.closed = true
	lc.l.srv.linkLoop.CompareAndSwap(lc.l, nil)
	if lc.err != nil {
		err = lc.err
	}
	lc.done <- err
}

// Write queues p to the master on the loop (the periodic ack: once a
// second).
func (lc *linkConn) Write(p []byte) {
	p = slices.Clone(p)
	_ = lc.onLoop(func() {
		if lc.c != nil && !lc.closed {
			_, _ = lc.c.Write(p)
		}
	})
}

// Close closes the connection on the loop. When the engine has stopped,
// it closed the connection itself (and onClose ran).
func (lc *linkConn) Close() error {
	return lc.onLoop(func() {
		lc.closeAsked = true
		if lc.c != nil && !lc.closed {
			_ = lc.c.Close()
		}
	})
}

// onLoop runs f on the connection's loop, where its state lives.
func (lc *linkConn) onLoop(f func()) error {
	return lc.l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		f()
		return nil
	}))
}

func (lc *linkConn) Done() <-chan error { return lc.done }
