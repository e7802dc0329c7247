// Command nullproxy is the floor a Redis proxy on this kernel cannot go
// under: one thread, one epoll, one backend connection, and per wake-up
// only the socket calls any proxy makes (a read per ready client, one
// write of everything read to Redis, a read of Redis's replies, a write per
// client of its replies). It does no routing, no consistency and no
// checking beyond framing: requests are counted, replies split by RESP
// framing and handed back in order. make bench runs it beside replproxy
// and twemproxy, so the CPU a real proxy spends above it is its own code
// and its own calls.
//
// Not for use: a malformed request or reply stops it, a slow client's
// replies are buffered without bound, and it supports plain TCP only.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

type client struct {
	fd  int
	in  []byte // an incomplete request carried to the next read
	out []byte // replies to write
}

type proxy struct {
	ep      int
	backend int
	clients map[int]*client
	// order is the client of each request sent to Redis, oldest first.
	order []*client
	head  int
	// toRedis is what this wake-up read from clients; fromRedis an
	// incomplete reply carried over.
	toRedis   []byte
	fromRedis []byte
	dirty     []*client
	buf       []byte
}

func main() {
	listen := flag.String("listen", "127.0.0.1:17380", "address to listen on")
	backend := flag.String("backend", "127.0.0.1:6379", "the Redis to forward to")
	flag.Parse()
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	if err := run(*listen, *backend); err != nil {
		fmt.Fprintln(os.Stderr, "nullproxy:", err)
		os.Exit(1)
	}
}

func sockaddr(addr string) (unix.Sockaddr, error) {
	a, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, err
	}
	sa := &unix.SockaddrInet4{Port: a.Port}
	copy(sa.Addr[:], a.IP.To4())
	return sa, nil
}

func run(listen, backend string) error {
	lsa, err := sockaddr(listen)
	if err != nil {
		return err
	}
	bsa, err := sockaddr(backend)
	if err != nil {
		return err
	}
	lfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return err
	}
	unix.SetsockoptInt(lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(lfd, lsa); err != nil {
		return err
	}
	if err := unix.Listen(lfd, 1024); err != nil {
		return err
	}
	bfd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		return err
	}
	if err := unix.Connect(bfd, bsa); err != nil {
		return err
	}
	unix.SetsockoptInt(bfd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	unix.SetNonblock(bfd, true)
	ep, err := unix.EpollCreate1(0)
	if err != nil {
		return err
	}
	for _, fd := range []int{lfd, bfd} {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return err
		}
	}
	p := &proxy{ep: ep, backend: bfd, clients: map[int]*client{}, buf: make([]byte, 64<<10)}
	events := make([]unix.EpollEvent, 256)
	for {
		n, err := unix.EpollWait(ep, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			switch {
			case fd == lfd:
				if err := p.accept(lfd); err != nil {
					return err
				}
			case fd == bfd:
				if err := p.readBackend(); err != nil {
					return err
				}
			default:
				p.readClient(p.clients[fd])
			}
		}
		if len(p.toRedis) > 0 {
			if err := writeAll(bfd, p.toRedis); err != nil {
				return err
			}
			p.toRedis = p.toRedis[:0]
		}
		for _, c := range p.dirty {
			if c.fd >= 0 && len(c.out) > 0 {
				writeAll(c.fd, c.out)
			}
			c.out = c.out[:0]
		}
		p.dirty = p.dirty[:0]
	}
}

func (p *proxy) accept(lfd int) error {
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK)
		if errors.Is(err, unix.EAGAIN) {
			return nil
		}
		if err != nil {
			return err
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		p.clients[fd] = &client{fd: fd}
		if err := unix.EpollCtl(p.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return err
		}
	}
}

// readClient reads once (level-triggered: what is left comes next
// wake-up), queues the whole requests for Redis and notes their client.
func (p *proxy) readClient(c *client) {
	n, err := unix.Read(c.fd, p.buf)
	if n <= 0 || err != nil {
		if errors.Is(err, unix.EAGAIN) {
			return
		}
		unix.Close(c.fd)
		delete(p.clients, c.fd)
		c.fd = -1 // replies still due are dropped
		return
	}
	data := append(c.in, p.buf[:n]...)
	used := 0
	for {
		m := requestLen(data[used:])
		if m <= 0 {
			break
		}
		p.order = append(p.order, c)
		used += m
	}
	p.toRedis = append(p.toRedis, data[:used]...)
	c.in = append(c.in[:0], data[used:]...)
}

func (p *proxy) readBackend() error {
	n, err := unix.Read(p.backend, p.buf)
	if errors.Is(err, unix.EAGAIN) {
		return nil
	}
	if n <= 0 {
		return fmt.Errorf("backend closed: %v", err)
	}
	data := append(p.fromRedis, p.buf[:n]...)
	used := 0
	for {
		m := replyLen(data[used:])
		if m <= 0 {
			break
		}
		c := p.order[p.head]
		p.order[p.head] = nil
		p.head++
		if len(c.out) == 0 {
			p.dirty = append(p.dirty, c)
		}
		c.out = append(c.out, data[used:used+m]...)
		used += m
	}
	p.fromRedis = append(p.fromRedis[:0], data[used:]...)
	if p.head == len(p.order) {
		p.order, p.head = p.order[:0], 0
	}
	return nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if errors.Is(err, unix.EAGAIN) {
			continue // the floor's one shortcut: spin
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// line returns the integer of a RESP header line at b (after its type
// byte) and the header's length, or -1 when incomplete.
func line(b []byte) (v, n int) {
	neg := false
	i := 1
	if i < len(b) && b[i] == '-' {
		neg, i = true, i+1
	}
	for ; i < len(b) && b[i] != '\r'; i++ {
		v = v*10 + int(b[i]-'0')
	}
	if i+1 >= len(b) {
		return 0, -1
	}
	if neg {
		v = -v
	}
	return v, i + 2
}

// requestLen is the length of the multibulk request at b's start (0: not
// whole yet).
func requestLen(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	argc, n := line(b)
	if n < 0 {
		return 0
	}
	for range argc {
		l, h := line(b[n:])
		if h < 0 || n+h+l+2 > len(b) {
			return 0
		}
		n += h + l + 2
	}
	return n
}

// replyLen is the length of the reply at b's start (0: not whole yet).
func replyLen(b []byte) int {
	if len(b) == 0 {
		return 0
	}
	v, n := line(b)
	if n < 0 {
		return 0
	}
	switch b[0] {
	case '$':
		if v < 0 {
			return n
		}
		if n+v+2 > len(b) {
			return 0
		}
		return n + v + 2
	case '*':
		for range max(v, 0) {
			m := replyLen(b[n:])
			if m == 0 {
				return 0
			}
			n += m
		}
		return n
	default: // + - :
		return n
	}
}
