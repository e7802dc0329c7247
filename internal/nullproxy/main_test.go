package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/resp"
)

// The floor frames only what redis-benchmark sends and Redis answers it
// over RESP2; where it frames, it must agree with the proxy's parsers, or
// it would hand replies to the wrong clients and its figures would mean
// nothing.
var framingSeeds = []string{
	"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n",
	"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$3\r\nxxx\r\n*1\r\n$4\r\nPING\r\n",
	"*2\r\n$3\r\nGET\r\n$3\r\nke",
	"*2\r",
	"$3\r\nxxx\r\n",
	"$-1\r\n+OK\r\n",
	"+OK\r\n",
	"-ERR unknown command\r\n",
	":1000\r\n",
	"*2\r\n$1\r\na\r\n*1\r\n:1\r\n",
	"*-1\r\n",
	"$10\r\nabc",
}

func TestFraming(t *testing.T) {
	for _, tc := range []struct {
		in         string
		req, reply int // -1: not checked
	}{
		{"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", 22, 22},
		{"*2\r\n$3\r\nGET\r\n$3\r\nke", 0, 0},
		{"$3\r\nxxx\r\n+OK\r\n", 0, 9},
		{"$-1\r\n", 0, 5},
		{"+OK\r\n", 0, 5},
		{":12\r\n", 0, 5},
		{"*2\r\n$1\r\na\r\n*1\r\n:1\r\n", -1, 19}, // a reply, not a request
		{"*1\r\n", 0, 0},
		{"", 0, 0},
	} {
		if tc.in != "" && tc.in[0] == '*' && tc.req >= 0 {
			if got := requestLen([]byte(tc.in)); got != tc.req {
				t.Errorf("requestLen(%q) = %d, want %d", tc.in, got, tc.req)
			}
		}
		if got := replyLen([]byte(tc.in)); got != tc.reply {
			t.Errorf("replyLen(%q) = %d, want %d", tc.in, got, tc.reply)
		}
	}
}

// FuzzRequestLenAgreesWithParse: on every multibulk request the proxy's
// parser takes whole, the floor finds the same end; on every one it waits
// for, the floor waits too.
func FuzzRequestLenAgreesWithParse(f *testing.F) {
	for _, s := range framingSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != '*' {
			return
		}
		_, n, err := resp.NewRequestParser(resp.DefaultLimits()).Parse(b)
		if err != nil {
			return
		}
		if got := requestLen(b); got != n {
			t.Fatalf("requestLen(%q) = %d, the parser %d", b, got, n)
		}
	})
}

// FuzzReplyLenAgreesWithScan: the same for RESP2 replies and the proxy's
// reply scanner (inputs with a RESP3 type byte anywhere are left out).
func FuzzReplyLenAgreesWithScan(f *testing.F) {
	for _, s := range framingSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if bytes.ContainsAny(b, "%~_,#!=(|>") {
			return
		}
		n, err := resp.NewReplyScanner(resp.DefaultLimits()).Scan(b)
		if err != nil {
			return
		}
		if got := replyLen(b); got != n {
			t.Fatalf("replyLen(%q) = %d, the scanner %d", b, got, n)
		}
	})
}

// TestServes: clients pipelining through the floor in parallel each get
// their own replies, in order, from a real Redis. A floor that mixed them
// up would measure a proxy that does not work.
func TestServes(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(redistest.FreePort(t)))
	// It serves until the test binary exits (it ends when the test's
	// Redis stops): only an end during the test is a failure.
	ended := make(chan error, 1)
	go func() { ended <- run(addr, topo.Master.Addr()) }()
	var c *redis.Client
	deadline := time.Now().Add(10 * time.Second)
	for {
		c = redis.NewClient(&redis.Options{Addr: addr, Protocol: 2, DisableIdentity: true, PoolSize: 8})
		if c.Ping(context.Background()).Err() == nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the floor does not serve")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() { c.Close() })
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			for round := range 50 {
				pipe := c.Pipeline()
				var gets []*redis.StringCmd
				for i := range 16 {
					k := fmt.Sprintf("k:%d:%d:%d", g, round, i)
					pipe.Set(ctx, k, k, 0)
					gets = append(gets, pipe.Get(ctx, k))
				}
				if _, err := pipe.Exec(ctx); err != nil {
					t.Errorf("pipeline: %v", err)
					return
				}
				for i, cmd := range gets {
					if want := fmt.Sprintf("k:%d:%d:%d", g, round, i); cmd.Val() != want {
						t.Errorf("GET %s = %q", want, cmd.Val())
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-ended:
		t.Fatalf("run ended: %v", err)
	default:
	}
}
