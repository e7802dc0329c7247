package replstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Host reads a streaming link's connection on the caller's event loop.
//
// Why: on the link's own goroutine every read of the stream is a wake-up
// of another thread (the runtime's netpoller hands it the goroutine, which
// reads, parses and parks again), and every write reply the proxy holds
// for the witness is released by waking the proxy's loop back (an eventfd
// write). At SET pipeline 1 through the proxy those wake-ups cost more
// than the link's parsing; read on the loop that also reads the master's
// replies, the stream's bytes often come in the same epoll_wait as the
// replies they witness, and nothing needs waking.
//
// Attach takes conn over, or declines. It returns:
//   - (nil, nil): declined (no loop yet, not a connection it can take);
//     conn is untouched and the link streams on its own goroutine, and
//     offers again at its next ack;
//   - (h, nil): hosted. From then on the Host calls f.Feed with the bytes
//     as they arrive, one call at a time, and writes to the master what
//     Feed returns; it closes the connection when Feed fails. The link's
//     goroutine touches nothing Feed does until h.Done has received.
//   - (nil, err): conn could not be taken and is closed: the link
//     reconnects.
type Host interface {
	Attach(conn net.Conn, f *Feed) (Hosted, error)
}

// Hosted is a connection a Host took. Its methods are safe for concurrent
// use.
type Hosted interface {
	// Write queues p (not retained after the call returns) to the master.
	Write(p []byte)
	// Close closes the connection; Done then receives.
	io.Closer
	// Done receives once the connection has closed (err: why), after the
	// last Feed call has returned.
	Done() <-chan error
}

// Feed is the stream's input while a Host reads it.
type Feed struct{ r *runner }

// Feed consumes p, stream bytes just read (copied: p may be reused once
// Feed returns), as the link's own read would. out is what to write to the
// master now (a REPLCONF GETACK's ack), valid until the next call; err
// ends the connection (a malformed stream).
func (f *Feed) Feed(p []byte) (out []byte, err error) {
	r := f.r
	now := time.Now()
	r.received(len(p), now)
	r.hostOut = r.hostOut[:0]
	for len(p) > 0 {
		r.makeRoom()
		n := copy(r.buf[r.w:], p)
		r.w += n
		p = p[n:]
		if err := r.consume(now); err != nil {
			return r.hostOut, err
		}
	}
	return r.hostOut, nil
}

// errHostClosed: the hosted connection closed without saying why.
var errHostClosed = errors.New("replstream: hosted connection closed")

// hostWaitMax bounds how long the link waits for a Host to confirm a
// close it asked for (its loop closes the connection and calls back):
// only a Host that stopped running takes longer.
const hostWaitMax = 10 * time.Second

// tryHost offers the connection to the Host. It reports whether the
// Host took it; then streamHosted follows the stream until the
// connection ends.
func (r *runner) tryHost() (Hosted, error) {
	host := r.l.cfg.Host
	if host == nil {
		return nil, nil
	}
	r.hosted = true // before Attach: Feed may run before it returns
	h, err := host.Attach(r.conn, &Feed{r})
	if h == nil {
		r.hosted = false
	}
	return h, err
}

// streamHosted waits while the Host reads the stream: it sends the
// periodic ack through it, ends the connection when nothing arrived for
// ReadTimeout or ctx is done, and returns why the connection ended. The
// runner's stream state is the Host's until Done receives.
func (r *runner) streamHosted(ctx context.Context, h Hosted) error {
	l := r.l
	cfg := &l.cfg
	l.connMu.Lock()
	l.masterConn = h
	moved := l.Master() != r.addr
	l.connMu.Unlock()
	if moved {
		h.Close()
	}
	r.log.Info("replstream: the stream is read on the proxy's event loop")
	period := min(cfg.AckInterval, cfg.ReadTimeout/4)
	tick := time.NewTicker(period)
	defer tick.Stop()
	nextAck := time.Now().Add(cfg.AckInterval)
	end := func(why error) error {
		h.Close()
		select {
		case err := <-h.Done():
			if why == nil {
				why = err
			}
		case <-time.After(hostWaitMax):
			// The Host stopped running: nothing calls Feed any more.
			r.log.Warn("replstream: the hosted connection did not confirm its close", "waited", hostWaitMax)
		}
		r.hosted = false
		return why
	}
	for {
		select {
		case err := <-h.Done():
			r.hosted = false
			if err == nil {
				err = errHostClosed
			}
			return err
		case <-ctx.Done():
			return end(ctx.Err())
		case now := <-tick.C:
			if idle := now.Sub(time.Unix(0, l.lastRecvNs.Load())); idle >= cfg.ReadTimeout {
				return end(fmt.Errorf("%w (%v)", ErrReadTimeout, cfg.ReadTimeout))
			}
			if !now.Before(nextAck) {
				h.Write(ackCommand)
				nextAck = now.Add(cfg.AckInterval)
			}
		}
	}
}
