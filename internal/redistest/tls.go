package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// TLS is a throwaway PKI made for one test: a CA, a server certificate for
// 127.0.0.1, ::1 and localhost, and a client certificate, all signed by the
// CA, as PEM files in a temp dir (for redis-server and replproxy's flags)
// and as crypto/tls values (for Go clients and servers). Nothing of it is
// trusted outside the test.
type TLS struct {
	Dir            string
	CAFile         string // the CA certificate
	CertFile       string // server certificate
	KeyFile        string
	ClientCertFile string
	ClientKeyFile  string

	CAPool     *x509.CertPool
	Cert       tls.Certificate // server
	ClientCert tls.Certificate

	caCert *x509.Certificate
	caKey  *ecdsa.PrivateKey
}

// NewTLS generates a PKI (ECDSA P-256: quick to make) valid for a day.
func NewTLS(tb TB) *TLS {
	tb.Helper()
	x := &TLS{Dir: tb.TempDir()}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("redistest: TLS: %v", err)
		return nil
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "redistest CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		tb.Fatalf("redistest: TLS: CA: %v", err)
		return nil
	}
	x.caCert, _ = x509.ParseCertificate(der)
	x.caKey = caKey
	x.CAPool = x509.NewCertPool()
	x.CAPool.AddCert(x.caCert)
	x.CAFile = filepath.Join(x.Dir, "ca.crt")
	if err := writePEM(x.CAFile, "CERTIFICATE", der); err != nil {
		tb.Fatalf("redistest: TLS: %v", err)
		return nil
	}
	x.CertFile, x.KeyFile = filepath.Join(x.Dir, "server.crt"), filepath.Join(x.Dir, "server.key")
	if x.Cert, err = x.Issue("localhost", x.CertFile, x.KeyFile); err != nil {
		tb.Fatalf("redistest: TLS: server certificate: %v", err)
		return nil
	}
	x.ClientCertFile, x.ClientKeyFile = filepath.Join(x.Dir, "client.crt"), filepath.Join(x.Dir, "client.key")
	if x.ClientCert, err = x.Issue("redistest client", x.ClientCertFile, x.ClientKeyFile); err != nil {
		tb.Fatalf("redistest: TLS: client certificate: %v", err)
		return nil
	}
	return x
}

// Issue signs a new certificate named cn (valid for servers on 127.0.0.1,
// ::1 and localhost, and for clients) and writes it and its key as PEM.
func (x *TLS) Issue(cn, certFile, keyFile string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, x.caCert, &key.PublicKey, x.caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, err
	}
	if err := writePEM(certFile, "CERTIFICATE", der); err != nil {
		return tls.Certificate{}, err
	}
	if err := writePEM(keyFile, "PRIVATE KEY", keyDER); err != nil {
		return tls.Certificate{}, err
	}
	return tls.LoadX509KeyPair(certFile, keyFile)
}

// ServerConfig is a TLS server configuration with the server certificate,
// verifying client certificates against the CA as auth says.
func (x *TLS) ServerConfig(auth tls.ClientAuthType) *tls.Config {
	return &tls.Config{Certificates: []tls.Certificate{x.Cert}, ClientCAs: x.CAPool, ClientAuth: auth}
}

// ClientConfig trusts the CA and, withCert, presents the client certificate.
func (x *TLS) ClientConfig(withCert bool) *tls.Config {
	c := &tls.Config{RootCAs: x.CAPool, ServerName: "localhost"}
	if withCert {
		c.Certificates = []tls.Certificate{x.ClientCert}
	}
	return c
}

// RedisArgs makes a redis-server also serve TLS on tlsPort with the server
// certificate, asking clients for a certificate only optionally, and use
// TLS for replication (its link to a master, when it is a replica, goes to
// the master's TLS port and presents the same certificate).
func (x *TLS) RedisArgs(tlsPort int) []string {
	return []string{
		"--tls-port", strconv.Itoa(tlsPort),
		"--tls-cert-file", x.CertFile,
		"--tls-key-file", x.KeyFile,
		"--tls-ca-cert-file", x.CAFile,
		"--tls-auth-clients", "optional",
		"--tls-replication", "yes",
	}
}

// FreePort reserves a free loopback port for a second listener of a node
// (a TLS port), released at tb's cleanup.
func FreePort(tb TB) int {
	tb.Helper()
	port, err := pickPort()
	if err != nil {
		tb.Fatalf("redistest: %v", err)
		return 0
	}
	tb.Cleanup(func() { releasePort(port) })
	return port
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	return n
}

func writePEM(path, kind string, der []byte) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600)
}

// StartSentinel starts a redis-sentinel monitoring the master whose TLS
// port is masterTLSPort (quorum 1), reaching nodes over TLS
// (tls-replication) and serving clients on a TLS port of its own besides
// its plain one (which the harness's own client uses). It returns the node
// and the TLS address.
func (x *TLS) StartSentinel(tb TB, masterTLSPort int) (*Node, string) {
	tb.Helper()
	server := RedisServerPath(tb)
	if server == "" {
		return nil, ""
	}
	tlsPort := FreePort(tb)
	n := newNode(tb, nodeSpec{
		name: "sentinel",
		bin:  []string{server},
		args: func(port int, dir string) []string {
			return []string{filepath.Join(dir, "sentinel.conf"), "--sentinel"}
		},
		setup: func(port int, dir string) error {
			conf := sentinelConf(port, dir, masterTLSPort, 1, "")
			conf = fmt.Sprintf("tls-port %d\ntls-cert-file %s\ntls-key-file %s\ntls-ca-cert-file %s\ntls-auth-clients optional\ntls-replication yes\n",
				tlsPort, quoteConf(x.CertFile), quoteConf(x.KeyFile), quoteConf(x.CAFile)) + conf
			return os.WriteFile(filepath.Join(dir, "sentinel.conf"), []byte(conf), 0o644)
		},
	})
	return n, net.JoinHostPort("127.0.0.1", strconv.Itoa(tlsPort))
}
