package proxy

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/resp"
)

// Issue 13: through the proxy every command behaves as on one Redis. Each
// subtest is one difference that was seen, and fails without its fix.
func TestTransparency(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	srv := startProxy(t, Config{Master: topo.Master.Addr(), AllowCommands: []string{"monitor"}})
	addr := srv.Addr()
	ctx := context.Background()
	waitReplicas(t, srv, 2)

	t.Run("deep script reply", func(t *testing.T) {
		// Redis nests a recursive table ~8000 deep before "reached lua
		// stack limit"; the old scanner's 64-level cap dropped the master
		// connection ("connection lost") and later replies came out of step.
		const script = "local a = {} local b = {a} a[1] = b return a"
		req := cmdString("EVAL", script, "0") + cmdString("PING")
		want := rawRoundTrip(t, topo.Master.Addr(), req, 2)
		got := rawRoundTrip(t, addr, req, 2)
		if got != want {
			t.Fatalf("through the proxy %d bytes (tail %q), direct %d bytes (tail %q)", len(got), tail(got), len(want), tail(want))
		}
		if !strings.HasSuffix(got, "-ERR reached lua stack limit\r\n+PONG\r\n") {
			t.Fatalf("tail %q", tail(got))
		}
	})

	t.Run("negative multibulk count is skipped", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send("*-10\r\n*1\r\n$4\r\nPING\r\n")
		r.expect("+PONG\r\n")
	})

	t.Run("local commands queue in MULTI", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send(cmdString("CLIENT", "ID"))
		idLine := readLine(t, r)
		r.send(cmdString("MULTI") + cmdString("PING") + cmdString("CLIENT", "SETNAME", "tx") +
			cmdString("CLIENT", "GETNAME") + cmdString("CLIENT", "ID") + cmdString("ECHO", "e") + cmdString("EXEC"))
		r.expect("+OK\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n+QUEUED\r\n")
		r.expect("*5\r\n+PONG\r\n+OK\r\n$2\r\ntx\r\n" + idLine + "$1\r\ne\r\n")
		// Run-time errors land in EXEC's array; a queue-time error aborts,
		// as on Redis.
		r.send(cmdString("MULTI") + cmdString("PING", "a", "b") + cmdString("CLIENT", "SETNAME", "a b") + cmdString("EXEC"))
		r.expect("+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n-ERR wrong number of arguments for 'ping' command\r\n-ERR Client names cannot contain spaces, newlines or special characters.\r\n")
		r.send(cmdString("MULTI") + cmdString("CLIENT", "SETNAME") + cmdString("SHUTDOWN") + cmdString("EXEC"))
		r.expect("+OK\r\n-ERR wrong number of arguments for 'client|setname' command\r\n")
		readReply(t, r) // the proxy's refusal of SHUTDOWN
		r.expect("-EXECABORT Transaction discarded because of previous errors.\r\n")
		r.send(cmdString("CLIENT", "GETNAME"))
		r.expect("$2\r\ntx\r\n")
	})

	t.Run("client ids work across clients", func(t *testing.T) {
		blocked := client(t, addr, &redis.Options{ClientName: "blocker"})
		id, err := blocked.ClientID(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		other := client(t, addr, nil)
		bystander := client(t, addr, nil)
		if err := bystander.Ping(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		list, err := other.ClientList(ctx).Result()
		if err != nil || !strings.Contains(list, "id="+strconv.FormatInt(id, 10)+" ") || !strings.Contains(list, "name=blocker ") {
			t.Fatalf("CLIENT LIST does not show the proxy's client %d: %v\n%s", id, err, list)
		}
		res := make(chan error, 1)
		go func() {
			_, err := blocked.BLPop(ctx, 0, "never-pushed").Result()
			res <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for {
			n, err := other.ClientUnblock(ctx, id).Result()
			if err != nil {
				t.Fatal(err)
			}
			if n == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("CLIENT UNBLOCK never found the client blocked")
			}
			time.Sleep(10 * time.Millisecond)
		}
		select {
		case err := <-res:
			if err != redis.Nil {
				t.Fatalf("BLPOP after CLIENT UNBLOCK: %v, want a nil reply", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("BLPOP still blocked after CLIENT UNBLOCK")
		}
		// CLIENT KILL ID kills that client only; the proxy's shared
		// connections, which carry everyone's requests, are untouched.
		if n, err := other.ClientKillByFilter(ctx, "ID", strconv.FormatInt(id, 10)).Result(); err != nil || n != 1 {
			t.Fatalf("CLIENT KILL ID: %d, %v", n, err)
		}
		if n, err := other.ClientKillByFilter(ctx, "TYPE", "normal").Result(); err != nil || n < 1 {
			t.Fatalf("CLIENT KILL TYPE normal: %d, %v", n, err)
		}
		if err := other.Set(ctx, "after-kill", "1", 0).Err(); err != nil {
			t.Fatalf("the killer's own requests: %v", err)
		}
		info, err := other.Do(ctx, "CLIENT", "INFO").Text()
		if err != nil || !strings.Contains(info, "cmd=client|info ") {
			t.Fatalf("CLIENT INFO: %q, %v", info, err)
		}
	})

	t.Run("client reply", func(t *testing.T) {
		r := dialRaw(t, addr)
		r.send(cmdString("CLIENT", "REPLY", "OFF") + cmdString("SET", "cr", "1") + cmdString("GET", "cr") +
			cmdString("CLIENT", "REPLY", "ON") + cmdString("CLIENT", "REPLY", "SKIP") + cmdString("PING") + cmdString("ECHO", "x"))
		r.expect("+OK\r\n$1\r\nx\r\n")
	})

	t.Run("unsubscribe without arguments", func(t *testing.T) {
		for _, proto := range []int{2, 3} {
			sub := dialRaw(t, addr)
			if proto == 3 {
				sub.send(cmdString("HELLO", "3"))
				readReply(t, sub)
			}
			sub.send(cmdString("SUBSCRIBE", "ua", "ub"))
			readReply(t, sub)
			readReply(t, sub)
			pub := client(t, addr, nil)
			if n, err := pub.Publish(ctx, "ua", "x").Result(); err != nil || n != 1 {
				t.Fatalf("RESP%d: PUBLISH to a subscriber: %d, %v", proto, n, err)
			}
			readReply(t, sub) // the message
			sub.send(cmdString("UNSUBSCRIBE"))
			readReply(t, sub)
			readReply(t, sub)
			sub.send(cmdString("PING"))
			if got := readReply(t, sub); got != "+PONG\r\n" {
				t.Fatalf("RESP%d: PING after UNSUBSCRIBE: %q", proto, got)
			}
			if n, err := pub.Publish(ctx, "ua", "x").Result(); err != nil || n != 0 {
				t.Fatalf("RESP%d: PUBLISH after UNSUBSCRIBE counts %d subscribers (%v), want 0", proto, n, err)
			}
		}
	})

	t.Run("monitor sees every command", func(t *testing.T) {
		mon := dialRaw(t, addr)
		mon.send(cmdString("MONITOR"))
		mon.expect("+OK\r\n")
		c := client(t, addr, nil)
		c.Do(ctx, "PROXY", "CONSISTENCY", "eventual")
		c.Get(ctx, "monitored-read")
		line := readLine(t, mon)
		for !strings.Contains(line, `"get" "monitored-read"`) && !strings.Contains(line, `"GET" "monitored-read"`) {
			line = readLine(t, mon)
		}
		if !strings.HasPrefix(line, "+") || !strings.Contains(line, " [0 127.0.0.1:") {
			t.Fatalf("monitor line %q", line)
		}
	})

	t.Run("FCALL_RO of a write function", func(t *testing.T) {
		c := client(t, addr, nil)
		lib := "#!lua name=wlib\nredis.register_function('wfn', function(keys, args) return redis.call('SET', keys[1], '1') end)"
		if err := c.FunctionLoadReplace(ctx, lib).Err(); err != nil {
			t.Fatal(err)
		}
		want := topo.Master.Client().Do(ctx, "FCALL_RO", "wfn", "1", "fk").Err()
		if want == nil || !strings.Contains(want.Error(), "write flag") {
			t.Fatalf("master: %v", want)
		}
		c.Do(ctx, "PROXY", "CONSISTENCY", "eventual")
		for i := 0; i < 20; i++ { // replicas and the master alike
			if got := c.Do(ctx, "FCALL_RO", "wfn", "1", "fk").Err(); got == nil || got.Error() != want.Error() {
				t.Fatalf("through the proxy: %v, want %v", got, want)
			}
		}
	})

	t.Run("consumer group state from the master", func(t *testing.T) {
		c := client(t, addr, nil)
		c.Do(ctx, "PROXY", "CONSISTENCY", "eventual")
		c.XAdd(ctx, &redis.XAddArgs{Stream: "xs", ID: "1-1", Values: []string{"f", "v"}})
		c.XGroupCreate(ctx, "xs", "g", "0")
		c.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "c", Streams: []string{"xs", ">"}})
		want := rawRoundTrip(t, topo.Master.Addr(), cmdString("XINFO", "GROUPS", "xs"), 1)
		for i := 0; i < 10; i++ {
			if got := rawRoundTrip(t, addr, cmdString("PROXY", "CONSISTENCY", "eventual")+cmdString("XINFO", "GROUPS", "xs"), 2); got != "+OK\r\n"+want {
				t.Fatalf("XINFO GROUPS through the proxy %q, master %q", got, want)
			}
		}
	})

	t.Run("script kill waits for the master's busy threshold", func(t *testing.T) {
		// On the master, sent before the script has run
		// busy-reply-threshold (5 s): Redis answers once it has, and kills.
		killSlowScript(t, addr, "EVAL", &redis.Options{ReadTimeout: 20 * time.Second})
	})

	t.Run("script kill reaches a replica", func(t *testing.T) {
		killSlowScript(t, addr, "EVAL_RO", nil)
	})
}

// killSlowScript runs a 20-second script (cmd: EVAL goes to the master,
// EVAL_RO with eventual consistency to a replica) and SCRIPT KILLs it
// through the proxy: the kill must answer +OK (NOTBUSY only until the
// script has started) and the script's caller must see it killed.
func killSlowScript(t *testing.T, addr, cmd string, killerOpt *redis.Options) {
	t.Helper()
	ctx := context.Background()
	slow := client(t, addr, &redis.Options{ReadTimeout: 30 * time.Second})
	slow.Do(ctx, "PROXY", "CONSISTENCY", "eventual")
	res := make(chan error, 1)
	go func() {
		res <- slow.Do(ctx, cmd, "local t = redis.call('TIME')[1] while redis.call('TIME')[1] - t < 20 do end return 1", "0").Err()
	}()
	killer := client(t, addr, killerOpt)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := killer.ScriptKill(ctx).Err()
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "NOTBUSY") || time.Now().After(deadline) {
			t.Fatalf("SCRIPT KILL: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-res:
		if err == nil || !strings.Contains(err.Error(), "killed by user") {
			t.Fatalf("the slow script: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the slow script was not killed")
	}
}

// waitReplicas polls until the proxy sees n eligible replicas.
func waitReplicas(t *testing.T, srv *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if snap := srv.topo.Load(); snap != nil {
			k := 0
			for _, r := range snap.Replicas {
				if r.Eligible {
					k++
				}
			}
			if k >= n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fewer than %d eligible replicas", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func cmdString(args ...string) string {
	var b strings.Builder
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n")
	}
	return b.String()
}

func tail(s string) string {
	if len(s) > 60 {
		return s[len(s)-60:]
	}
	return s
}

// readReply reads one whole reply from r.
func readReply(t *testing.T, r *rawConn) string {
	t.Helper()
	sc := newScanner()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if len(r.buf) > 0 {
			if n, err := sc.Scan(r.buf); err != nil {
				t.Fatalf("bad reply %q: %v", r.buf, err)
			} else if n > 0 {
				out := string(r.buf[:n])
				r.buf = r.buf[n:]
				return out
			}
		}
		r.SetReadDeadline(deadline)
		tmp := make([]byte, 64<<10)
		m, err := r.Read(tmp)
		r.buf = append(r.buf, tmp[:m]...)
		if err != nil {
			t.Fatalf("read: %v (have %q)", err, r.buf)
		}
	}
}

func readLine(t *testing.T, r *rawConn) string { return readReply(t, r) }

// rawRoundTrip sends req to addr on a new connection and reads n replies.
func rawRoundTrip(t *testing.T, addr, req string, n int) string {
	t.Helper()
	r := dialRaw(t, addr)
	r.send(req)
	var out strings.Builder
	for i := 0; i < n; i++ {
		out.WriteString(readReply(t, r))
	}
	return out.String()
}

func newScanner() *resp.ReplyScanner { return resp.NewReplyScanner(resp.DefaultLimits()) }
