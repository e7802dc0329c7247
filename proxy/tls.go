package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// TLS, both sides, by relay: gnet has no TLS, so a TLS connection is
// terminated by crypto/tls on two goroutines that copy plaintext to and
// from one end of a socketpair; the other end is an ordinary connection of
// an event loop. The loops never see TLS: sessions, backends, limits and
// ordering work unchanged. Measured against an in-loop engine's best case
// (see README "TLS"), the relay costs two socketpair syscalls per
// direction per batch, which pipelining amortizes.

// tlsPeer is the context a relayed client connection is registered with,
// until OnOpen replaces it with the session: who is at the other end of
// the socketpair.
type tlsPeer struct {
	remote net.Addr
	state  tls.ConnectionState
}

// relayBufBytes sizes each copy. A TLS record carries at most 16 KiB of
// plaintext, so a bigger buffer would rarely fill from the TLS side; the
// plaintext side's buffers are pooled and held only while data moves (see
// copyToTLS), so an idle client costs no plaintext buffer on that side.
const relayBufBytes = 16 << 10

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufBytes); return &b }}

// socketPair returns two connected unix stream sockets: the proxy's side
// (Go's netpoller) and the loop's side (registered with gnet, which dups
// its descriptor and closes this copy).
func socketPair() (ours, theirs *net.UnixConn, err error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	conns := [2]*net.UnixConn{}
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "relay")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			if i == 1 {
				conns[0].Close()
			} else {
				syscall.Close(fds[1])
			}
			return nil, nil, err
		}
		conns[i] = c.(*net.UnixConn)
	}
	return conns[0], conns[1], nil
}

// relay copies between the TLS connection and the proxy's end of a
// socketpair until either side ends, then closes both. It returns at once.
func relay(tc *tls.Conn, plain *net.UnixConn) {
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			plain.Close()
			tc.Close()
		})
	}
	go func() {
		defer closeBoth()
		buf := relayBufs.Get().(*[]byte)
		defer relayBufs.Put(buf)
		// TLS → plaintext: requests to the loop, or replies from a node.
		for {
			n, err := tc.Read(*buf)
			if n > 0 {
				if _, werr := plain.Write((*buf)[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		defer closeBoth()
		copyToTLS(tc, plain)
	}()
}

// copyToTLS copies plaintext from the socketpair to the TLS connection.
// It waits for the socket to be readable without holding a buffer (an idle
// client's relay then costs two goroutines and crypto/tls's own buffers),
// takes a pooled one for each read, and gives it back after the write.
func copyToTLS(tc *tls.Conn, plain *net.UnixConn) {
	rc, err := plain.SyscallConn()
	if err != nil {
		return
	}
	for {
		var buf *[]byte
		var n int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			b := relayBufs.Get().(*[]byte)
			n, rerr = syscall.Read(int(fd), *b)
			if rerr == syscall.EAGAIN {
				relayBufs.Put(b)
				return false
			}
			buf = b
			return true
		})
		if err != nil || rerr != nil || n <= 0 {
			if buf != nil {
				relayBufs.Put(buf)
			}
			return
		}
		_, werr := tc.Write((*buf)[:n])
		relayBufs.Put(buf)
		if werr != nil {
			return
		}
	}
}

// dialUpstreamTLS runs the TLS handshake on conn, a fresh connection to a
// Redis node at addr, and returns the loop's end of a relay to it.
// ServerName defaults to addr's host, as a TLS client should check.
func dialUpstreamTLS(ctx context.Context, conn net.Conn, addr string, cfg *tls.Config) (net.Conn, error) {
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
	}
	ours, theirs, err := socketPair()
	if err != nil {
		tc.Close()
		return nil, err
	}
	relay(tc, ours)
	return theirs, nil
}

// tlsFront accepts the clients of Config.TLSListen. Its listeners are bound
// by start (so a busy port fails Serve) and accept once the loops run.
type tlsFront struct {
	srv *Server
	lns []net.Listener
	// handshaking bounds the handshakes in progress: each holds a goroutine
	// and a socket until AuthTimeout, so a flood of silent connections
	// fills this and is refused instead of growing without bound.
	handshaking chan struct{}
	wg          sync.WaitGroup
	closed      chan struct{}
}

// startTLS binds the TLS listeners; stop closes them and waits for the
// accept loops. Handshakes in progress end by their deadline or fail.
func (s *Server) startTLS() (stop func(), err error) {
	if len(s.cfg.TLSListen) == 0 {
		return func() {}, nil
	}
	f := &tlsFront{srv: s, handshaking: make(chan struct{}, s.cfg.MaxClients), closed: make(chan struct{})}
	for _, a := range s.cfg.TLSListen {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range f.lns {
				l.Close()
			}
			return nil, fmt.Errorf("proxy: tls listen %s: %w", a, err)
		}
		f.lns = append(f.lns, ln)
	}
	addrs := make([]string, len(f.lns))
	for i, ln := range f.lns {
		addrs[i] = ln.Addr().String()
		f.wg.Add(1)
		go f.accept(ln)
	}
	s.hard.tlsAddrs.Store(&addrs)
	return func() {
		close(f.closed)
		for _, ln := range f.lns {
			ln.Close()
		}
		f.wg.Wait()
	}, nil
}

// TLSAddrs are the addresses the proxy accepts TLS clients on, with their
// bound ports, once Serve has started. Safe for concurrent use.
func (s *Server) TLSAddrs() []string {
	if p := s.hard.tlsAddrs.Load(); p != nil {
		return *p
	}
	return nil
}

func (f *tlsFront) accept(ln net.Listener) {
	defer f.wg.Done()
	backoff := time.Millisecond
	for {
		conn, err := ln.Accept()
		if err != nil {
			select {
			case <-f.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// EMFILE and the like: wait a little, as net/http does.
			f.srv.log.Warn("TLS accept", "err", err)
			time.Sleep(backoff)
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = time.Millisecond
		select {
		case f.handshaking <- struct{}{}:
		default:
			f.srv.log.Warn("refusing a TLS client: too many handshakes in progress", "remote", conn.RemoteAddr())
			conn.Close()
			continue
		}
		go f.serve(conn)
	}
}

// serve handshakes one client, within the auth timeout, and hands its
// plaintext to a loop.
func (f *tlsFront) serve(conn net.Conn) {
	s := f.srv
	cfg := s.hard.serverTLS.Load()
	tc := tls.Server(conn, cfg)
	ctx := context.Background()
	if t := s.live().authTimeout; t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	err := tc.HandshakeContext(ctx)
	<-f.handshaking
	if err != nil {
		s.log.Debug("TLS handshake failed", "remote", conn.RemoteAddr(), "err", err)
		conn.Close()
		return
	}
	select {
	case <-s.hard.loopsUp:
	case <-f.closed:
		tc.Close()
		return
	}
	ours, theirs, err := socketPair()
	if err != nil {
		s.log.Warn("TLS client: no socketpair", "err", err)
		tc.Close()
		return
	}
	peer := &tlsPeer{remote: conn.RemoteAddr(), state: tc.ConnectionState()}
	ch, err := s.eng.Register(gnet.NewContext(gnet.NewNetConnContext(context.Background(), theirs), peer))
	if err == nil {
		if res := <-ch; res.Err != nil {
			err = res.Err
		}
	}
	if err != nil {
		s.log.Debug("TLS client not registered", "err", err)
		theirs.Close()
		ours.Close()
		tc.Close()
		return
	}
	relay(tc, ours)
}
