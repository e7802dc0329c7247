package replstream

import (
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/replproxy/replproxy/internal/redistest"
)

// The link follows a master over TLS (Redis's tls-port with
// tls-replication): full sync, then the stream, with exact offsets; a
// master it cannot verify is refused, never followed.
func TestLinkOverTLS(t *testing.T) {
	pki := redistest.NewTLS(t)
	port := redistest.FreePort(t)
	master := redistest.StartServer(t, pki.RedisArgs(port)...)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx := ctxT(t)
	for i := range 100 {
		if err := master.Client().Set(ctx, "k"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	l, _ := startLink(t, addr, func(c *Config) {
		c.TLS = &tls.Config{RootCAs: pki.CAPool, Certificates: []tls.Certificate{pki.ClientCert}}
	})
	waitConnected(t, l)
	from := waitOffsetEqual(t, l, master)
	if err := master.Client().Set(ctx, "after", "sync", 0).Err(); err != nil {
		t.Fatal(err)
	}
	waitOffsetEqual(t, l, master)
	b, ok := l.Backlog(nil, from)
	if !ok || !strings.Contains(string(b), "after") {
		t.Fatalf("backlog near the head = %q, %v; want the last SET", b, ok)
	}

	other := redistest.NewTLS(t)
	bad, _ := startLink(t, addr, func(c *Config) { c.TLS = &tls.Config{RootCAs: other.CAPool} })
	waitFor(t, testTimeout, "a certificate error", func() error {
		if e := bad.Stats().LastError; !strings.Contains(e, "certificate") {
			return errString("last error " + e)
		}
		return nil
	})
	if bad.Connected() {
		t.Fatal("link to an unverified master connected")
	}
}

type errString string

func (e errString) Error() string { return string(e) }
