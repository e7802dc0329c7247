package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
)

// Upstream TLS by relay: a TLS connection to a Redis node is terminated by
// crypto/tls on two goroutines that copy plaintext to and from one end of
// a socketpair; the other end is an ordinary backend connection of an event
// loop, so backends work unchanged. A backend connection carries the
// batches of every client of its loop, so the relay's two extra syscalls
// per direction are shared by all of them; client connections, one per
// client, use the in-loop engine of tlsconn.go instead.

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
