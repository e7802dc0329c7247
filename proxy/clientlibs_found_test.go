package proxy

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
)

// Differences found by running ioredis and node-redis against the proxy
// (internal/clientlibs). Each subtest compares the proxy with the master
// itself, and fails without its fix.
func TestClientLibFindings(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	srv := startProxy(t, Config{Master: topo.Master.Addr()})
	waitReplicas(t, srv, 2)
	direct, proxied := topo.Master.Addr(), srv.Addr()

	t.Run("CLIENT LIST counts subscriptions", func(t *testing.T) {
		// sub/psub/ssub were always 0, and P stayed after the last
		// UNSUBSCRIBE (Redis clears it; the proxy keeps the connection).
		for _, proto := range []string{"2", "3"} {
			want := subscriberLines(t, direct, proto)
			got := subscriberLines(t, proxied, proto)
			for i := range want {
				if got[i] != want[i] {
					t.Errorf("RESP%s step %d: proxy %q, redis %q", proto, i, got[i], want[i])
				}
			}
		}
	})

	t.Run("RESP3 tracking invalidations reach the client", func(t *testing.T) {
		// The invalidation push of CLIENT TRACKING was taken for the next
		// request's reply: node-redis 5's client-side cache served stale
		// values for ever.
		for i, addr := range []string{direct, proxied} {
			key := "tracked" + strconv.Itoa(i) // both sides share one dataset
			r := dialRaw(t, addr)
			r.send(cmdString("HELLO", "3"))
			readReply(t, r)
			r.send(cmdString("CLIENT", "TRACKING", "on") + cmdString("GET", key))
			r.expect("+OK\r\n_\r\n")
			writer := client(t, addr, nil)
			if err := writer.Set(context.Background(), key, "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if got := readReply(t, r); got != ">2\r\n$10\r\ninvalidate\r\n*1\r\n"+cmdString(key)[4:] {
				t.Fatalf("%s: got %q, want the invalidate push", addr, got)
			}
			r.send(cmdString("GET", key))
			r.expect("$1\r\nv\r\n")
		}
	})

	t.Run("HELLO NOAUTH in the master's words", func(t *testing.T) {
		// The proxy answered with Redis 7.2's text; a 7.0 master says
		// "HELLO AUTH", and node-redis 5 fails connect with the text.
		plain := redistest.Start(t, redistest.Options{Password: "pw"})
		authed := startProxy(t, Config{Master: topo.Master.Addr(), RequirePass: "pw"})
		req := cmdString("HELLO", "3")
		if want, got := rawRoundTrip(t, plain.Master.Addr(), req, 1), rawRoundTrip(t, authed.Addr(), req, 1); got != want {
			t.Fatalf("proxy %q, redis %q", got, want)
		}
	})

	t.Run("CLIENT UNBLOCK reaches the proxy's WAIT", func(t *testing.T) {
		ctx := context.Background()
		for _, tc := range []struct {
			reason, want string
		}{{"TIMEOUT", ":2\r\n"}, {"ERROR", "-UNBLOCKED client unblocked via CLIENT UNBLOCK\r\n"}} {
			r := dialRaw(t, proxied)
			r.send(cmdString("CLIENT", "ID") + cmdString("SET", "waited", "1"))
			id := strings.Trim(readReply(t, r), ":\r\n")
			r.expect("+OK\r\n")
			r.send(cmdString("WAIT", "3", "0")) // one more replica than there are
			other := client(t, proxied, nil)
			deadline := time.Now().Add(10 * time.Second)
			for {
				n, err := other.Do(ctx, "CLIENT", "UNBLOCK", id, tc.reason).Int()
				if err != nil {
					t.Fatal(err)
				}
				if n == 1 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s: CLIENT UNBLOCK never found the client in WAIT", tc.reason)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if tc.reason == "TIMEOUT" {
				// WAIT answers what it knows when unblocked: as many
				// replicas as have acknowledged the write by then, which
				// under load may still be none (a CI run saw 0).
				if got := readReply(t, r); got != ":2\r\n" && got != ":1\r\n" && got != ":0\r\n" {
					t.Fatalf("WAIT after CLIENT UNBLOCK TIMEOUT = %q", got)
				}
			} else {
				r.expect(tc.want)
			}
			r.send(cmdString("PING"))
			r.expect("+PONG\r\n") // the client runs commands again
			if n, err := other.Do(ctx, "CLIENT", "UNBLOCK", id).Int(); err != nil || n != 0 {
				t.Fatalf("CLIENT UNBLOCK of a client no longer blocked = %d, %v", n, err)
			}
		}
	})
}

var reSubFields = regexp.MustCompile(`flags=\S+|sub=\d+|psub=\d+|ssub=\d+`)

// subscriberLines subscribes a client on addr step by step and returns,
// after each step, its CLIENT LIST fields as another client sees them and
// how many clients CLIENT LIST TYPE pubsub lists.
func subscriberLines(t *testing.T, addr, proto string) []string {
	t.Helper()
	ctx := context.Background()
	sub := dialRaw(t, addr)
	if proto == "3" {
		sub.send(cmdString("HELLO", "3"))
		readReply(t, sub)
	}
	sub.send(cmdString("CLIENT", "SETNAME", "counted"))
	readReply(t, sub)
	other := client(t, addr, nil)
	var out []string
	look := func() {
		list, err := other.ClientList(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		line := ""
		for _, l := range strings.Split(list, "\n") {
			if strings.Contains(l, " name=counted ") {
				line = strings.Join(reSubFields.FindAllString(l, -1), " ")
			}
		}
		pubsub, err := other.Do(ctx, "CLIENT", "LIST", "TYPE", "pubsub").Text()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, line+" pubsub-clients="+strconv.Itoa(strings.Count(pubsub, "name=counted ")))
	}
	steps := [][]string{
		{"SUBSCRIBE", "a", "b"}, {"PSUBSCRIBE", "p*"}, {"SSUBSCRIBE", "s"}, {"SUBSCRIBE", "a"},
		{"UNSUBSCRIBE", "a"}, {"SUNSUBSCRIBE"}, {"PUNSUBSCRIBE"}, {"UNSUBSCRIBE"},
	}
	replies := []int{2, 1, 1, 1, 1, 1, 1, 1}
	for i, st := range steps {
		sub.send(cmdString(st...))
		for range replies[i] {
			readReply(t, sub)
		}
		look()
	}
	return out
}
