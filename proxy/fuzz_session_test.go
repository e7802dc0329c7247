package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/resp"
)

// FuzzSession drives a whole client session with arbitrary bytes, against
// a real master, while another client (the victim) pipelines around it.
// Inputs take turns: plaintext, the same bytes inside a TLS session (the
// in-loop TLS engine), and the bytes raw on the TLS port (a handshake fed
// garbage).
// It checks that the proxy never panics (a panic in a loop would end the
// test binary), that the fuzzed connection ends once its client is done
// (no session is left behind), that the victim only ever gets its own
// replies, in order, and that the proxy keeps serving.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"PING\r\n",
		"*1\r\n$4\r\nPING\r\n",
		"SET k v\r\nGET k\r\nDEL k\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
		"MULTI\r\nINCR n\r\nEXEC\r\n",
		"WATCH k\r\nMULTI\r\nSET k 1\r\nDISCARD\r\nUNWATCH\r\n",
		"SUBSCRIBE ch\r\nPING\r\nUNSUBSCRIBE ch\r\nPING\r\n",
		"PSUBSCRIBE *\r\nRESET\r\nPING\r\n",
		"HELLO 3\r\nGET k\r\nHELLO 2\r\n",
		"HELLO 3 SETNAME x\r\nCLIENT GETNAME\r\nCLIENT ID\r\n",
		"SELECT 3\r\nSET k v\r\nSELECT 0\r\nGET k\r\n",
		"BLPOP nothing 0.01\r\nPING\r\n",
		"WAIT 0 10\r\nPROXY INFO\r\nPROXY CONSISTENCY eventual\r\nGET k\r\n",
		"EVAL \"return 1\" 0\r\nSCRIPT LOAD \"return 2\"\r\n",
		"CLIENT TRACKING on\r\nGET k\r\n",
		"AUTH x\r\nAUTH a b\r\n",
		"QUIT\r\nPING\r\n",
		"*-1\r\n*0\r\n$-1\r\n",
		"*2\r\n$3\r\nGET\r\n$536870912\r\n",
		"*1\r\n$-5\r\n",
		"*abc\r\n",
		"\"unbalanced\r\n",
		"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nab",
		strings.Repeat("GET k\r\n", 200),
		"PROXY RELOAD\r\nDEBUG SLEEP 1\r\nSHUTDOWN\r\nCLIENT KILL TYPE normal\r\nMONITOR\r\n",
		"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", // a TLS ClientHello on the plaintext port
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	topo := redistest.Start(f, redistest.Options{})
	pki := redistest.NewTLS(f)
	srv := startProxyTB(f, Config{Master: topo.Master.Addr(), MaxClients: 100000,
		TLSListen: []string{"127.0.0.1:0"}, TLS: pki.ServerConfig(tls.NoClientCert)})
	tlsAddr := srv.TLSAddrs()[0]
	var round atomic.Int64

	f.Fuzz(func(t *testing.T, data []byte) {
		n := round.Add(1)
		token := []byte(fmt.Sprintf("victim-%d-%x", n, time.Now().UnixNano()))
		if bytes.Contains(data, token) {
			return
		}
		// A victim per input: a failed input (and the fuzzer's re-runs of
		// it) must not leave replies for the next.
		victim, err := net.Dial("tcp", srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer victim.Close()
		var c net.Conn
		var closeWrite func() error
		switch n % 3 {
		case 0, 2:
			addr := srv.Addr()
			if n%3 == 2 {
				addr = tlsAddr
			}
			tc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			c, closeWrite = tc, tc.(*net.TCPConn).CloseWrite
		case 1:
			tc, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", tlsAddr, pki.ClientConfig(false))
			if err != nil {
				t.Fatal(err)
			}
			c, closeWrite = tc, tc.CloseWrite // close_notify
		}
		defer c.Close()
		// The victim's first request is in flight while the fuzzed bytes
		// arrive, the second after.
		sendEcho(t, victim, token, 1)
		if _, err := c.Write(data); err != nil {
			t.Fatalf("write: %v", err)
		}
		sendEcho(t, victim, token, 2)
		closeWrite()
		c.SetReadDeadline(time.Now().Add(20 * time.Second))
		out, err := io.ReadAll(c)
		if err != nil && !isTimeout(err) {
			// A reset is an end too: closing a socket with unread input
			// (after a protocol error, a refused handshake) sends RST.
			err = nil
		}
		if err != nil {
			t.Fatalf("fuzzed connection not closed after its client finished: %v (read %d bytes)", err, len(out))
		}
		if bytes.Contains(out, token) {
			t.Fatalf("the fuzzed client got the victim's reply: %q", out)
		}
		// CLIENT KILL (TYPE normal, ADDR, ...) may end the victim, as it
		// would on Redis: then the victim may see its connection close,
		// still never another's reply.
		killable := bytes.Contains(bytes.ToLower(data), []byte("kill"))
		expectEchoes(t, victim, token, killable, 1, 2)
	})
}

func sendEcho(t *testing.T, c net.Conn, token []byte, i int) {
	t.Helper()
	if _, err := c.Write(resp.AppendCommand(nil, []byte("ECHO"), fmt.Appendf(nil, "%s-%d", token, i))); err != nil {
		t.Fatalf("victim write: %v", err)
	}
}

// expectEchoes reads one reply per ECHO sent: its own value, or an error
// (a server may say BUSY or LOADING to anyone), never anything else; when
// killable, the connection may end instead (a fuzzed CLIENT KILL).
func expectEchoes(t *testing.T, c net.Conn, token []byte, killable bool, ids ...int) {
	t.Helper()
	sc := resp.NewReplyScanner(resp.DefaultLimits())
	var buf []byte
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for _, i := range ids {
		var reply []byte
		for reply == nil {
			n, err := sc.Scan(buf)
			if err != nil {
				t.Fatalf("victim got a malformed reply: %v in %q", err, buf)
			}
			if n > 0 {
				reply, buf = buf[:n], buf[n:]
				break
			}
			tmp := make([]byte, 4096)
			m, err := c.Read(tmp)
			buf = append(buf, tmp[:m]...)
			if err != nil && m == 0 {
				if killable && len(buf) == 0 && !isTimeout(err) {
					t.Logf("victim's connection ended (%v): the input kills clients", err)
					return
				}
				t.Fatalf("victim read: %v (have %q)", err, buf)
			}
		}
		want := fmt.Sprintf("%s-%d", token, i)
		if reply[0] == '-' {
			t.Logf("victim's ECHO %d answered %q", i, reply)
			continue
		}
		if string(reply) != fmt.Sprintf("$%d\r\n%s\r\n", len(want), want) {
			t.Fatalf("victim's ECHO %d got %q", i, reply)
		}
	}
	if len(buf) > 0 {
		t.Fatalf("victim got more than its replies: %q", buf)
	}
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }
