package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/replproxy/replproxy/resp"
)

// manyClientsEnv makes the test binary, re-executed, the client side of
// TestTenThousandPipeliningClients: 10,000 sockets on each side do not fit
// one process's descriptor limit (20,000 here), and the clients must not
// share the proxy's.
const manyClientsEnv = "REPLPROXY_MANY_CLIENTS_ADDR"

// 10,000 clients connected at once, each with a pipeline in flight, each
// get exactly their own replies, in their own order.
func TestTenThousandPipeliningClients(t *testing.T) {
	const clients = 10000
	_, srv := newTopology(t, 0, Config{MaxClients: clients})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe, "-test.run=^TestManyClientsHelper$", "-test.v")
	cmd.Env = append(os.Environ(), manyClientsEnv+"="+srv.Addr(), "REPLPROXY_MANY_CLIENTS_N="+strconv.Itoa(clients))
	out, err := cmd.CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("many clients: ok")) {
		t.Fatalf("client process: %v\n%s", err, out)
	}
	t.Logf("%s", bytes.TrimSpace(out))
}

// TestManyClientsHelper is the client side of TestTenThousandPipeliningClients;
// run on its own it does nothing.
func TestManyClientsHelper(t *testing.T) {
	addr := os.Getenv(manyClientsEnv)
	if addr == "" {
		return
	}
	n, _ := strconv.Atoi(os.Getenv("REPLPROXY_MANY_CLIENTS_N"))
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	// Connect everyone first (a bounded number of dials at a time: the
	// listen backlog), so every client is connected while all pipeline.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256)
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, 30*time.Second)
			if err != nil {
				errs <- err
				return
			}
			conns[i] = c
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatalf("dial: %v", err)
	default:
	}
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := pipelineOwnReplies(conns[i], i); err != nil {
				errs <- fmt.Errorf("client %d: %w", i, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 10 {
			t.Error(err)
		}
		failed++
	}
	if failed > 0 {
		t.Fatalf("%d of %d clients failed", failed, n)
	}
	fmt.Printf("many clients: ok (%d clients)\n", n)
}

// pipelineOwnReplies sends one pipeline of writes, reads and local
// commands, every value naming the client, and checks each reply.
func pipelineOwnReplies(c net.Conn, id int) error {
	const rounds = 4
	var req []byte
	var want []string
	for j := range rounds {
		key := fmt.Sprintf("mc:%d:%d", id, j)
		val := fmt.Sprintf("v%d-%d", id, j)
		req = resp.AppendCommandStrings(req, "SET", key, val)
		req = resp.AppendCommandStrings(req, "GET", key)
		req = resp.AppendCommandStrings(req, "ECHO", val)
		req = resp.AppendCommandStrings(req, "PING", val)
		bulk := fmt.Sprintf("$%d\r\n%s\r\n", len(val), val)
		want = append(want, "+OK\r\n", bulk, bulk, bulk)
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := c.Write(req); err != nil {
		return err
	}
	r := bufio.NewReader(c)
	for k, w := range want {
		got := make([]byte, len(w))
		if _, err := io.ReadFull(r, got); err != nil {
			return fmt.Errorf("reply %d: %w", k, err)
		}
		if string(got) != w {
			return fmt.Errorf("reply %d = %q, want %q", k, got, w)
		}
	}
	// Nothing more may arrive: a stray reply would be someone else's.
	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if b, err := r.ReadByte(); err == nil {
		return fmt.Errorf("unexpected extra byte %q", b)
	} else if !strings.Contains(err.Error(), "timeout") {
		return err
	}
	return nil
}
