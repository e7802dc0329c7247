package clientlibs

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestRedisCLI: redis-cli's own features, non-interactively, print the same
// through the proxy as against a plain Redis: --pipe (mass insertion, which
// ends with an ECHO the proxy answers), --scan --pattern, --bigkeys, -r,
// --eval, -x and --csv. They run in db 9, which the library scripts do not
// use, so --bigkeys sees the same keyspace on both sides.
func TestRedisCLI(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found: install redis-tools (make deps does)")
	}
	e := start(t)
	script := filepath.Join(t.TempDir(), "s.lua")
	if err := os.WriteFile(script, []byte("return {KEYS[1], ARGV[1], redis.call('INCR', KEYS[1])}"), 0o600); err != nil {
		t.Fatal(err)
	}
	var mass bytes.Buffer
	for i := 0; i < 300; i++ {
		fmt.Fprint(&mass, respCmd("SET", "cli:k:"+strconv.Itoa(i), strings.Repeat("v", i%17+1)))
	}
	fmt.Fprint(&mass, respCmd("SET", "cli:big", strings.Repeat("b", 10000)))
	for i := 0; i < 40; i++ {
		fmt.Fprint(&mass, respCmd("RPUSH", "cli:list", "e"+strconv.Itoa(i)))
		fmt.Fprint(&mass, respCmd("HSET", "cli:hash", "f"+strconv.Itoa(i), "x"))
		fmt.Fprint(&mass, respCmd("SADD", "cli:set", "m"+strconv.Itoa(i)))
		fmt.Fprint(&mass, respCmd("ZADD", "cli:zset", strconv.Itoa(i), "z"+strconv.Itoa(i)))
	}
	fmt.Fprint(&mass, respCmd("XADD", "cli:stream", "1-1", "a", "b"))
	fmt.Fprint(&mass, respCmd("LPUSH", "cli:big", "wrongtype")) // one error reply
	steps := []struct {
		name  string
		args  []string
		stdin []byte
		norm  func(string) string
	}{
		{"pipe", []string{"--pipe"}, mass.Bytes(), nil},
		{"scan", []string{"--scan", "--pattern", "cli:k:1*"}, nil, sortLines},
		{"bigkeys", []string{"--bigkeys"}, nil, bigkeysSummary},
		{"repeat", []string{"-r", "5", "INCR", "cli:counter"}, nil, nil},
		{"repeat-interval", []string{"-r", "3", "-i", "0.01", "LLEN", "cli:list"}, nil, nil},
		{"eval", []string{"--eval", script, "cli:evalkey", ",", "arg"}, nil, nil},
		{"stdin-arg", []string{"-x", "SET", "cli:fromstdin"}, []byte("from stdin\n"), nil},
		{"get-stdin", []string{"GET", "cli:fromstdin"}, nil, nil},
		{"csv", []string{"--csv", "LRANGE", "cli:list", "0", "4"}, nil, nil},
		{"error", []string{"LPUSH", "cli:big", "x"}, nil, nil},
	}
	for _, st := range steps {
		var out [2]string
		for i, tg := range []target{e.plain, e.proxied} {
			host, port, _ := strings.Cut(tg.addr, ":")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			cmd := exec.CommandContext(ctx, cli, append([]string{"-h", host, "-p", port, "-n", "9"}, st.args...)...)
			cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+password)
			if st.stdin != nil {
				cmd.Stdin = bytes.NewReader(st.stdin)
			}
			b, err := cmd.CombinedOutput()
			cancel()
			if err != nil && st.name != "pipe" { // --pipe exits 1 when a reply was an error
				t.Fatalf("%s against %s: %v\n%s", st.name, tg.name, err, b)
			}
			out[i] = string(b)
			if st.norm != nil {
				out[i] = st.norm(out[i])
			}
			if st.name == "pipe" && tg.name == "replproxy" {
				waitReplicated(t, tg.addr)
			}
		}
		if out[0] != out[1] {
			t.Errorf("redis-cli %s differs:\n  redis:\n%s\n  replproxy:\n%s", strings.Join(st.args, " "), trunc(out[0]), trunc(out[1]))
		}
		if strings.TrimSpace(out[0]) == "" {
			t.Errorf("redis-cli %s printed nothing against a plain Redis", strings.Join(st.args, " "))
		}
	}
}

// waitReplicated waits until both replicas have what --pipe wrote, so that
// later reads on other connections see it whatever the mode.
func waitReplicated(t *testing.T, addr string) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, DB: 9, Protocol: 2})
	defer c.Close()
	if err := c.Set(context.Background(), "cli:fence", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Do(context.Background(), "WAIT", 2, 10000).Int(); err != nil || n != 2 {
		t.Fatalf("WAIT 2 after --pipe: %d, %v", n, err)
	}
	if err := c.Del(context.Background(), "cli:fence").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Do(context.Background(), "WAIT", 2, 10000).Int(); err != nil {
		t.Fatal(err)
	}
}

func respCmd(args ...string) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return b.String()
}

func sortLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// bigkeysSummary keeps --bigkeys' summary: the progress lines before it
// follow SCAN's order, which a process's hash seed decides.
func bigkeysSummary(s string) string {
	if i := strings.Index(s, "-------- summary -------"); i >= 0 {
		return s[i:]
	}
	return s
}
