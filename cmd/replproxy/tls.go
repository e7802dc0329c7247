package main

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"

	"github.com/replproxy/replproxy/proxy"
)

// loadTLS reads the certificate files the settings name and fills in
// cfg.TLS (clients), cfg.UpstreamTLS and cfg.SentinelTLS. It reads through
// read, as buildConfig does, so it stays testable without files.
func (s *settings) loadTLS(cfg *proxy.Config, opts *options, read func(string) ([]byte, error)) error {
	if len(s.TLSListen) > 0 {
		cert, err := loadKeyPair(read, s.TLSCertFile, s.TLSKeyFile, "--tls-cert-file", "--tls-key-file")
		if err != nil {
			return err
		}
		var pool *x509.CertPool
		if s.TLSCACertFile != "" {
			if pool, err = loadPool(read, s.TLSCACertFile, "--tls-ca-cert-file"); err != nil {
				return err
			}
		}
		cfg.TLS = &tls.Config{
			Certificates: []tls.Certificate{cert},
			ClientCAs:    pool,
			ClientAuth:   clientAuth[s.TLSAuthClients],
			MinVersion:   tls.VersionTLS12, // Redis's tls-protocols default: TLSv1.2 TLSv1.3
		}
	}
	if !s.UpstreamTLS && !s.SentinelTLS {
		return nil
	}
	u := &upstreamTLS{serverName: s.UpstreamTLSServerName}
	if s.UpstreamTLSCertFile != "" {
		cert, err := loadKeyPair(read, s.UpstreamTLSCertFile, s.UpstreamTLSKeyFile, "--upstream-tls-cert-file", "--upstream-tls-key-file")
		if err != nil {
			return err
		}
		u.cert.Store(&cert)
	}
	if s.UpstreamTLSCACertFile != "" {
		pool, err := loadPool(read, s.UpstreamTLSCACertFile, "--upstream-tls-ca-cert-file")
		if err != nil {
			return err
		}
		u.roots = pool
	}
	opts.upstreamTLS = u
	if s.UpstreamTLS {
		cfg.UpstreamTLS = u.config()
	}
	if s.SentinelTLS {
		cfg.SentinelTLS = u.config()
	}
	return nil
}

var clientAuth = map[string]tls.ClientAuthType{
	"yes":      tls.RequireAndVerifyClientCert,
	"optional": tls.VerifyClientCertIfGiven,
	"no":       tls.NoClientCert,
}

func loadKeyPair(read func(string) ([]byte, error), certFile, keyFile, certFlag, keyFlag string) (tls.Certificate, error) {
	certPEM, err := read(certFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %v", certFlag, err)
	}
	keyPEM, err := read(keyFile)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s: %v", keyFlag, err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("%s %s with %s %s: %v", certFlag, certFile, keyFlag, keyFile, err)
	}
	return cert, nil
}

func loadPool(read func(string) ([]byte, error), file, flagName string) (*x509.CertPool, error) {
	data, err := read(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", flagName, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flagName, file)
	}
	return pool, nil
}

// upstreamTLS is the certificate material of the proxy's TLS connections
// to Redis nodes and Sentinels. The *tls.Config it makes is built once and
// given to clients that keep it (go-redis, the replication link, the data
// path's dialer). Its client certificate is read at each handshake, so a
// reload renews it for every new connection without rebuilding those
// clients. The CAs are fixed at start: crypto/tls checks the node's name
// only against the Config's own RootCAs (a callback cannot learn the
// address dialed when it is an IP), and skipping that check to redo it
// by hand would lose it for IP addresses. Safe for concurrent use.
type upstreamTLS struct {
	serverName string
	roots      *x509.CertPool                  // nil: the system's roots
	cert       atomic.Pointer[tls.Certificate] // nil: none presented
	cfg        atomic.Pointer[tls.Config]
}

func (u *upstreamTLS) config() *tls.Config {
	if c := u.cfg.Load(); c != nil {
		return c
	}
	c := &tls.Config{
		ServerName: u.serverName,
		RootCAs:    u.roots,
		MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := u.cert.Load(); c != nil {
				return c, nil
			}
			return &tls.Certificate{}, nil // none: the server decides
		},
	}
	if u.cfg.CompareAndSwap(nil, c) {
		return c
	}
	return u.cfg.Load()
}

// adopt takes the client certificate of next, freshly loaded, for the
// connections made from now on. It reports whether next's CAs differ from
// the ones in use (those need a restart).
func (u *upstreamTLS) adopt(next *upstreamTLS) (casChanged bool) {
	u.cert.Store(next.cert.Load())
	if u.roots == nil || next.roots == nil {
		return (u.roots == nil) != (next.roots == nil)
	}
	return !u.roots.Equal(next.roots)
}
