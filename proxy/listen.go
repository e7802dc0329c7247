package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// listenAddr is one plaintext address gnet listens on: TCP host:port, or a
// unix socket path.
type listenAddr struct {
	unix bool
	addr string // host:port, or the socket's path
}

// unixPrefix introduces a unix socket in Config.ListenAddrs ("unix:/path").
const unixPrefix = "unix:"

func parseListenAddr(a string) (listenAddr, error) {
	if p, ok := strings.CutPrefix(a, unixPrefix); ok {
		if p == "" {
			return listenAddr{}, fmt.Errorf("%w: listen %q: no socket path", ErrProxyBadConfig, a)
		}
		return listenAddr{unix: true, addr: p}, nil
	}
	if _, _, err := net.SplitHostPort(a); err != nil {
		return listenAddr{}, fmt.Errorf("%w: listen %q: want host:port or unix:/path", ErrProxyBadConfig, a)
	}
	return listenAddr{addr: a}, nil
}

// gnetAddr is the address in the scheme://address form gnet takes.
func (a listenAddr) gnetAddr() string {
	if a.unix {
		return "unix://" + a.addr
	}
	return "tcp://" + a.addr
}

// String is the address as the user wrote it.
func (a listenAddr) String() string {
	if a.unix {
		return unixPrefix + a.addr
	}
	return a.addr
}

// listenAddrs are the plaintext addresses of cfg: ListenAddrs, or Listen.
func listenAddrs(cfg *Config) ([]listenAddr, error) {
	in := cfg.ListenAddrs
	if len(in) == 0 {
		in = []string{cfg.Listen}
	}
	seen := map[string]bool{}
	out := make([]listenAddr, 0, len(in))
	for _, a := range in {
		la, err := parseListenAddr(a)
		if err != nil {
			return nil, err
		}
		if seen[la.String()] {
			return nil, fmt.Errorf("%w: listen %q given twice", ErrProxyBadConfig, a)
		}
		seen[la.String()] = true
		out = append(out, la)
	}
	return out, nil
}

// isLoopbackHost reports whether every address host names is a loopback
// one. An empty host, 0.0.0.0 and :: listen on every interface.
func isLoopbackHost(host string) bool {
	if host == "" {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	if ip := net.ParseIP(strings.Trim(host, "[]")); ip != nil {
		return ip.IsLoopback()
	}
	// A name: loopback only if it resolves, and only to loopback addresses.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return false
	}
	for _, ip := range ips {
		if !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// checkProtectedMode is Redis's protected mode, moved to startup: Redis
// refuses each non-loopback client of a server with no password; the proxy
// refuses to listen where such clients could reach it at all, so the
// mistake shows when it is made, not when the first remote client fails.
// A TLS listener that requires client certificates is authenticated by them.
func checkProtectedMode(cfg *Config, lv *liveConfig, plain []listenAddr) error {
	if (cfg.ProtectedMode != nil && !*cfg.ProtectedMode) || lv.authRequired {
		return nil
	}
	exposed := []string{}
	for _, a := range plain {
		if a.unix {
			continue
		}
		host, _, _ := net.SplitHostPort(a.addr)
		if !isLoopbackHost(host) {
			exposed = append(exposed, a.addr)
		}
	}
	if cfg.TLS == nil || cfg.TLS.ClientAuth != tls.RequireAndVerifyClientCert {
		for _, a := range cfg.TLSListen {
			host, _, _ := net.SplitHostPort(a)
			if !isLoopbackHost(host) {
				exposed = append(exposed, a)
			}
		}
	}
	if len(exposed) == 0 {
		return nil
	}
	return fmt.Errorf("%w: protected mode: refusing to listen on %s, which is not a loopback address, "+
		"with no password set: anyone who can reach it could read and change every key. "+
		"Set a password (--requirepass, or --user name:password), listen on 127.0.0.1 or a unix socket, "+
		"require client certificates (--tls-auth-clients yes), or, if every client that can reach that address "+
		"may use the data, start with --protected-mode no",
		ErrProxyBadConfig, strings.Join(exposed, ", "))
}

// prepareUnixSocket removes a socket file left behind by an earlier run, as
// Redis does before it binds: the old process is gone (or the bind would
// fail anyway). Anything that is not a socket is left alone and reported.
func prepareUnixSocket(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSocket == 0 {
		return fmt.Errorf("%w: listen unix:%s: the path exists and is not a socket", ErrProxyBadConfig, path)
	}
	return os.Remove(path)
}

// runEngine runs gnet on every plaintext address until the engine stops.
func (s *Server) runEngine() error {
	addrs := make([]string, 0, len(s.hard.plain)+len(s.cfg.TLSListen))
	keys := map[string]bool{}
	for _, a := range s.hard.plain {
		if a.unix {
			if err := prepareUnixSocket(a.addr); err != nil {
				return err
			}
			addrs = append(addrs, a.gnetAddr())
			continue
		}
		k := uniqueKey(keys, a.addr)
		addrs = append(addrs, "tcp://"+k)
		s.hard.plainKeys = append(s.hard.plainKeys, k)
	}
	for _, a := range s.cfg.TLSListen {
		k := uniqueKey(keys, a)
		addrs = append(addrs, "tcp://"+k)
		s.hard.tlsKeys = append(s.hard.tlsKeys, k)
	}
	return gnet.Rotate(s, addrs,
		gnet.WithMulticore(true),
		gnet.WithNumEventLoop(s.cfg.Loops),
		gnet.WithTicker(true),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithReuseAddr(true),
		gnet.WithLogger(gnetLogger{s.log}),
	)
}

// bootListeners records the bound addresses (a port may have been 0) and
// sets the unix sockets' mode. It runs in OnBoot, once every listener is
// bound and before any connection is accepted.
func (s *Server) bootListeners(eng gnet.Engine) {
	bound := make([]string, 0, len(s.hard.plain))
	tcp := 0
	for _, a := range s.hard.plain {
		if a.unix {
			if perm := s.cfg.UnixSocketPerm; perm != 0 {
				if err := os.Chmod(a.addr, perm); err != nil {
					s.log.Warn("cannot set the unix socket's mode", "path", a.addr, "err", err)
				}
			}
			bound = append(bound, a.String())
			continue
		}
		bound = append(bound, boundTCP(eng, s.hard.plainKeys[tcp]).String())
		tcp++
	}
	s.hard.addrs.Store(&bound)
	if len(bound) > 0 {
		s.addr.Store(&bound[0])
	}
	tlsAddrs := make([]string, 0, len(s.cfg.TLSListen))
	for _, k := range s.hard.tlsKeys {
		ta := boundTCP(eng, k)
		s.hard.tlsBound = append(s.hard.tlsBound, ta)
		tlsAddrs = append(tlsAddrs, ta.String())
	}
	s.hard.tlsAddrs.Store(&tlsAddrs)
}

// boundTCP is the address a TCP listener of eng, given as addr, is bound
// to (its port chosen when addr's was 0).
func boundTCP(eng gnet.Engine, addr string) *net.TCPAddr {
	ta, _ := net.ResolveTCPAddr("tcp", addr)
	if ta == nil {
		ta = &net.TCPAddr{}
	}
	if fd, err := eng.DupListener("tcp", addr); err == nil {
		if sa, err := syscall.Getsockname(fd); err == nil {
			switch sa := sa.(type) {
			case *syscall.SockaddrInet4:
				ta = &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
			case *syscall.SockaddrInet6:
				ta = &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
			}
		}
		syscall.Close(fd)
	}
	return ta
}

// TLSAddrs are the addresses the proxy accepts TLS clients on, with their
// bound ports, once Ready is closed. Safe for concurrent use.
func (s *Server) TLSAddrs() []string {
	if p := s.hard.tlsAddrs.Load(); p != nil {
		return *p
	}
	return nil
}

// Addrs are every plaintext address the proxy listens on, once Ready is
// closed: host:port with the port bound, or unix:/path. Safe for
// concurrent use.
func (s *Server) Addrs() []string {
	if p := s.hard.addrs.Load(); p != nil {
		return *p
	}
	return nil
}

// uniqueKey is how a TCP address is given to gnet, which names listeners
// by the address string (Engine.DupListener): two listeners on port 0 of
// the same host would share one name, and the proxy could not tell which
// port each got, nor which is the TLS one. A second "127.0.0.1:0" becomes
// "127.0.0.1:00", which binds the same way (a port number may have
// leading zeros).
func uniqueKey(used map[string]bool, addr string) string {
	k := addr
	for used[k] {
		host, port, err := net.SplitHostPort(k)
		if err != nil {
			break
		}
		k = net.JoinHostPort(host, "0"+port)
	}
	used[k] = true
	return k
}
