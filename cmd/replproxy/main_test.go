package main

import (
	"bufio"
	"bytes"
	"net"
	"os"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
)

// lockedBuffer collects logs written by the proxy's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestRunServesAndStopsOnSIGTERM is the whole command against a real
// redis-server: flags in, a proxy that answers, and SIGTERM ending it with
// exit code 0.
func TestRunServesAndStopsOnSIGTERM(t *testing.T) {
	// run sets this process's GOMAXPROCS (proxy.Procs): put it back.
	prevProcs := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(prevProcs) })
	master := redistest.StartServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()

	var stdout, stderr lockedBuffer
	code := make(chan int, 1)
	go func() {
		code <- run([]string{"--master", master.Addr(), "--listen", listen,
			"--metrics-listen", "", "--discover-replicas=false", "--log-format", "json"}, &stdout, &stderr)
	}()

	deadline := time.Now().Add(10 * time.Second)
	for {
		reply, err := roundTrip(listen, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n")
		if err == nil {
			if reply != "+OK\r\n" {
				t.Fatalf("SET through the proxy answered %q", reply)
			}
			break
		}
		select {
		case c := <-code:
			t.Fatalf("run returned %d before serving; stderr:\n%s", c, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("proxy on %s did not answer: %v; stderr:\n%s", listen, err, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := master.Client().Get(t.Context(), "k").Val(); got != "v" {
		t.Errorf("master has k=%q, want the value written through the proxy", got)
	}

	// Safe only now: the proxy answered, so run has installed its handler
	// and SIGTERM cannot kill the test binary.
	terminateRun(t, code, &stderr)
	logs := stderr.String()
	for _, want := range []string{`"msg":"starting replproxy"`, `"version":"dev"`, `"msg":"ready"`, `"addr":"` + listen + `"`} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	// A P per loop and a spare, unless the environment says otherwise.
	m := regexp.MustCompile(`"msg":"event loops","loops":(\d+),"gomaxprocs":(\d+)`).FindStringSubmatch(logs)
	if m == nil {
		t.Fatalf("no event loops line in the logs:\n%s", logs)
	}
	loops, _ := strconv.Atoi(m[1])
	procs, _ := strconv.Atoi(m[2])
	want := loops + 1
	if os.Getenv("GOMAXPROCS") != "" {
		want = prevProcs
	}
	if loops < 1 || procs != want {
		t.Errorf("%d loops ran with GOMAXPROCS %d, want %d", loops, procs, want)
	}
}

func roundTrip(addr, request string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte(request)); err != nil {
		return "", err
	}
	return bufio.NewReader(c).ReadString('\n')
}

// terminateRun sends this process SIGTERM, which a running run handles,
// and waits for run to return 0. Call it only once run is serving.
func terminateRun(t *testing.T, code <-chan int, stderr *lockedBuffer) {
	t.Helper()
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case c := <-code:
		if c != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0; stderr:\n%s", c, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("run did not return after SIGTERM; stderr:\n%s", stderr.String())
	}
}
