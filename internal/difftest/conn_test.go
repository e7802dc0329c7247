package difftest

import (
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replproxy/replproxy/resp"
)

// conn is a raw RESP client: requests go out as written, replies come
// back as the exact bytes the server (or the proxy) sent.
type conn struct {
	t   *testing.T
	c   net.Conn
	buf []byte
	sc  *resp.ReplyScanner
}

func dial(t *testing.T, addr string) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &conn{t: t, c: c, sc: resp.NewReplyScanner(resp.DefaultLimits())}
}

func encode(args []string) []byte {
	var b []byte
	bs := make([][]byte, len(args))
	for i, a := range args {
		bs[i] = []byte(a)
	}
	return resp.AppendCommand(b, bs...)
}

func (c *conn) send(cmds ...[]string) {
	c.t.Helper()
	var out []byte
	for _, a := range cmds {
		out = append(out, encode(a)...)
	}
	c.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.c.Write(out); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read returns one reply, or "" with ok false after timeout.
func (c *conn) read(timeout time.Duration) (string, bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if len(c.buf) > 0 {
			n, err := c.sc.Scan(c.buf)
			if err != nil {
				c.t.Fatalf("malformed reply %q: %v", trunc(string(c.buf)), err)
			}
			if n > 0 {
				r := string(c.buf[:n])
				c.buf = c.buf[n:]
				return r, true
			}
		}
		c.c.SetReadDeadline(deadline)
		tmp := make([]byte, 256<<10)
		m, err := c.c.Read(tmp)
		c.buf = append(c.buf, tmp[:m]...)
		if err != nil {
			return "", false
		}
	}
}

func (c *conn) mustRead() string {
	c.t.Helper()
	r, ok := c.read(10 * time.Second)
	if !ok {
		c.t.Fatalf("no reply (have %q)", trunc(string(c.buf)))
	}
	return r
}

// do sends cmds pipelined and returns their replies.
func (c *conn) do(cmds ...[]string) []string {
	c.t.Helper()
	c.send(cmds...)
	out := make([]string, len(cmds))
	for i := range cmds {
		r, ok := c.read(30 * time.Second)
		if !ok {
			c.t.Fatalf("no reply to %q within 30s (have %q)", cmds[i], trunc(string(c.buf)))
		}
		out[i] = r
	}
	return out
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "...(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}

var (
	reAddr  = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	reRunID = regexp.MustCompile(`[0-9a-f]{40}`)
	reKV    = regexp.MustCompile(`\b(id|fd|age|idle|qbuf|qbuf-free|argv-mem|multi-mem|rbs|rbp|obl|oll|omem|tot-mem)=\d+`)
	reInt   = regexp.MustCompile(`(?m)^:\d+\r$`)
	reBulkN = regexp.MustCompile(`(?m)^\$\d+\r$`)
	reVerbN = regexp.MustCompile(`(?m)^=\d+\r$`)
)

// normalize replaces what must differ between two servers: addresses,
// run ids, client ids and connection figures of CLIENT LIST lines, and
// (times=true) every integer, for replies that carry times. Bulk lengths
// are normalised too since a normalised body changes its length.
func normalize(r string, times bool) string {
	r = reAddr.ReplaceAllString(r, "ADDR")
	r = reRunID.ReplaceAllString(r, "RUNID")
	r = reKV.ReplaceAllStringFunc(r, func(m string) string { return m[:strings.IndexByte(m, '=')] + "=N" })
	if times {
		r = reInt.ReplaceAllString(r, ":N\r")
	}
	r = reBulkN.ReplaceAllString(r, "$L\r")
	r = reVerbN.ReplaceAllString(r, "=L\r")
	return r
}
