package clientlibs

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestRedisCLIInteractive: redis-cli's interactive mode, on a terminal (a
// pty), prints the same session through the proxy as against a plain
// Redis: its prompt (with the database and the transaction marker), the
// command hints it builds from COMMAND DOCS, replies of every type, an
// error, MULTI/EXEC, HELP from its own tables. Only the port in the prompt
// differs.
func TestRedisCLIInteractive(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("redis-cli not found: install redis-tools (make deps does)")
	}
	e := start(t)
	lines := []string{
		"SELECT 8", "FLUSHDB", "SET a 1", "GET a", "GET nothing", "INCR a", "RPUSH l x y z",
		"LRANGE l 0 -1", "HSET h f v", "HGETALL h", "LPUSH a oops", "MULTI", "INCR n", "GET a",
		"EXEC", "PING", "ECHO hello", "DBSIZE", "HELP GET", "TYPE l",
	}
	var out [2]string
	for i, tg := range []target{e.plain, e.proxied} {
		out[i] = interactiveSession(t, cli, tg.addr, lines)
	}
	if out[0] != out[1] {
		t.Errorf("interactive redis-cli differs:\n--- redis\n%s\n--- replproxy\n%s", out[0], out[1])
	}
	for _, want := range []string{"[8]> ", "[8](TX)> ", `"1"`, "(nil)", "(error) WRONGTYPE", "QUEUED", "PONG", "GET key"} {
		if !strings.Contains(out[1], want) {
			t.Errorf("the proxied session lacks %q:\n%s", want, out[1])
		}
	}
}

// interactiveSession types lines into redis-cli on a pty, one after each
// prompt, and returns what the terminal showed, escapes removed and the
// port replaced.
func interactiveSession(t *testing.T, cli, addr string, lines []string) string {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, cli, "-h", host, "-p", port)
	cmd.Env = append(os.Environ(), "REDISCLI_AUTH="+password, "REDISCLI_HISTFILE=/dev/null", "TERM=dumb")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 200})
	if err != nil {
		t.Fatalf("redis-cli on a pty: %v", err)
	}
	defer f.Close()
	reads := make(chan []byte, 64)
	go func() {
		defer close(reads)
		buf := make([]byte, 4096)
		for {
			n, err := f.Read(buf)
			if n > 0 {
				reads <- append([]byte(nil), buf[:n]...)
			}
			if err != nil {
				return
			}
		}
	}()
	var screen bytes.Buffer
	prompt := regexp.MustCompile(`\d+\.\d+\.\d+\.\d+:\d+(\[\d+\])?(\(TX\))?> $`)
	// waitPrompt reads until the screen ends in a prompt, answering
	// linenoise's cursor-position queries as a terminal would.
	waitPrompt := func(what string) {
		from := screen.Len() // a new prompt, after the reply to what was typed
		deadline := time.After(20 * time.Second)
		for {
			s := stripEscapes(screen.String())
			if fresh := screen.String()[from:]; strings.Contains(fresh, "\n") || from == 0 {
				if prompt.MatchString(s) {
					return
				}
			}
			select {
			case b, ok := <-reads:
				if !ok {
					t.Fatalf("redis-cli exited waiting for the prompt after %s:\n%s", what, s)
				}
				for bytes.Contains(b, []byte("\x1b[6n")) {
					b = bytes.Replace(b, []byte("\x1b[6n"), nil, 1)
					_, _ = io.WriteString(f, "\x1b[1;1R")
				}
				screen.Write(b)
			case <-deadline:
				t.Fatalf("no prompt after %s:\n%q", what, s)
			}
		}
	}
	waitPrompt("start")
	for _, l := range lines {
		if _, err := io.WriteString(f, l+"\r"); err != nil {
			t.Fatal(err)
		}
		waitPrompt(l)
	}
	_, _ = io.WriteString(f, "quit\r")
	_ = cmd.Wait()
	s := stripEscapes(screen.String())
	s = strings.ReplaceAll(s, addr, "ADDR")
	return s
}

var escapes = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// stripEscapes keeps what a reader of the terminal sees line by line:
// escapes out, carriage returns folded (linenoise redraws the line being
// typed, with its hint, on every key).
func stripEscapes(s string) string {
	s = escapes.ReplaceAllString(s, "")
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if i := strings.LastIndex(strings.TrimRight(line, "\r"), "\r"); i >= 0 {
			line = line[i+1:]
		}
		out = append(out, strings.TrimRight(line, "\r"))
	}
	return fmt.Sprint(strings.Join(out, "\n"))
}
