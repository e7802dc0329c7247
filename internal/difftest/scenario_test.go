package difftest

import (
	"strings"
	"testing"
	"time"
)

// TestScenarios compares fixed sequences the generated run cannot make:
// scripts and functions with nested and huge replies, transactions with
// the commands the proxy answers, pub/sub in RESP2 and RESP3, blocking
// calls, CLIENT subcommands, RESET and keys with TTLs.
func TestScenarios(t *testing.T) {
	e := start(t)
	big := strings.Repeat("x", 1<<20)
	lib := "#!lua name=dlib\nredis.register_function('nest', function(keys, args) local t = {} for i = 1, 100 do t = {t, i} end return t end)\n" +
		"redis.register_function{function_name='ro', callback=function(keys, args) return redis.call('GET', keys[1]) end, flags={'no-writes'}}\n" +
		"redis.register_function('w', function(keys, args) return redis.call('SET', keys[1], 'w') end)"
	scenarios := []struct {
		name  string
		proto int
		cmds  [][]string
	}{
		{"scripts", 2, [][]string{
			{"EVAL", "local a = {} local b = {a} a[1] = b return a", "0"},
			{"EVAL", "local t = {} for i = 1, 100000 do t[i] = i end return t", "0"},
			{"EVAL", "return ARGV[1]", "0", big},
			{"EVAL", "return {1, {2, {3, {'x', {err='nested error'}}}}, redis.status_reply('OK')}", "0"},
			{"EVAL", "return redis.call('SET', KEYS[1], 'v')", "1", "sk"},
			{"EVAL_RO", "return redis.call('GET', KEYS[1])", "1", "sk"},
			{"EVAL_RO", "return redis.call('SET', KEYS[1], 'v')", "1", "sk"},
			{"EVAL", "#!lua flags=no-writes\nreturn redis.call('GET', KEYS[1])", "1", "sk"},
			{"EVAL", "return redis.pcall('INCR', KEYS[1])", "1", "sk"},
			{"EVAL", "syntax error here", "0"},
			{"SCRIPT", "LOAD", "return 7"},
			{"EVALSHA", "2fa2b029f72572e803ff55a09b1282699aecae6a", "0"},
			{"EVALSHA_RO", "2fa2b029f72572e803ff55a09b1282699aecae6a", "0"},
			{"EVALSHA", "0000000000000000000000000000000000000000", "0"},
			{"FUNCTION", "LOAD", "REPLACE", lib},
			{"FCALL", "nest", "0"},
			{"FCALL_RO", "ro", "1", "sk"},
			{"FCALL_RO", "w", "1", "sk"},
			{"FCALL", "w", "1", "sk"},
			{"FCALL_RO", "nope", "0"},
			{"SCRIPT", "KILL"}, {"FUNCTION", "KILL"},
		}},
		{"scripts resp3", 3, [][]string{
			{"FLUSHALL"},
			{"EVAL", "redis.setresp(3) return redis.call('HGETALL', KEYS[1])", "1", "h3"},
			{"HSET", "h3", "a", "1"},
			{"EVAL", "redis.setresp(3) return {map={a=1}, double=1.5}", "0"},
			{"EVAL", "local a = {} local b = {a} a[1] = b return a", "0"},
			{"FCALL", "nest", "0"},
		}},
		{"transactions", 2, [][]string{
			{"MULTI"}, {"PING"}, {"PING", "hi"}, {"ECHO", "e"}, {"CLIENT", "SETNAME", "tx"}, {"CLIENT", "GETNAME"},
			{"SELECT", "1"}, {"SET", "t", "1"}, {"SELECT", "0"}, {"CLIENT", "NO-EVICT", "on"},
			{"SCRIPT", "KILL"}, {"CLIENT", "UNBLOCK", "999999"}, {"EXEC"},
			{"MULTI"}, {"CLIENT", "SETNAME"}, {"PING"}, {"EXEC"},
			{"MULTI"}, {"INCR", "t"}, {"DISCARD"},
			{"WATCH", "t"}, {"MULTI"}, {"GET", "t"}, {"EXEC"},
			{"MULTI"}, {"MULTI"}, {"EXEC"}, {"EXEC"}, {"DISCARD"},
			{"CLIENT", "GETNAME"},
		}},
		{"stream pubsub resp2", 2, [][]string{
			{"SUBSCRIBE", "c1", "c2"}, {"PSUBSCRIBE", "p*"}, {"PING"}, {"PING", "x"},
			{"UNSUBSCRIBE", "c1"}, {"UNSUBSCRIBE"}, {"PUNSUBSCRIBE"}, {"PING"},
			{"PUBLISH", "c2", "m"}, {"PUBSUB", "NUMSUB", "c1", "c2"},
		}},
		{"stream pubsub resp3", 3, [][]string{
			{"SUBSCRIBE", "c1", "c2"}, {"GET", "nokey"}, {"UNSUBSCRIBE", "c1"}, {"UNSUBSCRIBE"}, {"PUBLISH", "c1", "m"},
		}},
		{"blocking", 2, [][]string{
			{"DEL", "bl"}, {"BLPOP", "bl", "0.05"}, {"RPUSH", "bl", "a"}, {"BLPOP", "bl", "0.05"},
			{"BLMOVE", "bl", "bl2", "LEFT", "RIGHT", "0.05"}, {"XREAD", "BLOCK", "20", "STREAMS", "nostream", "$"},
			{"BZPOPMIN", "nozset", "0.05"}, {"BLPOP", "bl", "notatimeout"},
		}},
		{"client", 2, [][]string{
			{"CLIENT", "GETNAME"}, {"CLIENT", "SETNAME", "me"}, {"CLIENT", "GETNAME"}, {"CLIENT", "SETNAME", "a b"},
			{"CLIENT", "INFO"}, {"CLIENT", "NO-EVICT", "maybe"}, {"CLIENT", "UNBLOCK", "abc"},
			{"CLIENT", "UNBLOCK", "1", "foo"}, {"CLIENT", "UNBLOCK", "99999"},
			{"CLIENT", "KILL", "1.2.3.4:5"}, {"CLIENT", "KILL", "ID", "99999"}, {"CLIENT", "KILL", "foo", "bar"},
			{"CLIENT", "KILL", "TYPE", "foo"}, {"CLIENT", "KILL", "ID", "abc"}, {"CLIENT", "KILL", "SKIPME", "maybe"},
			{"CLIENT", "KILL", "USER", "nobody"}, {"CLIENT", "LIST", "TYPE", "foo"}, {"CLIENT", "LIST", "ID", "abc"},
			{"CLIENT", "REPLY", "maybe"}, {"CLIENT", "NOPE"}, {"CLIENT"},
			{"RESET"}, {"CLIENT", "GETNAME"},
		}},
		{"stream client reply", 2, [][]string{
			{"CLIENT", "REPLY", "OFF"}, {"SET", "cr", "1"}, {"PING"}, {"CLIENT", "REPLY", "ON"},
			{"CLIENT", "REPLY", "SKIP"}, {"GET", "cr"}, {"GET", "cr"},
		}},
		{"ttl", 2, [][]string{
			{"SET", "tk", "v", "PX", "50"}, {"SET", "tk2", "v", "EX", "1000"}, {"TTL", "tk2"}, {"PERSIST", "tk2"},
			{"TTL", "tk2"}, {"EXPIRE", "tk2", "1000", "NX"}, {"EXPIRE", "tk2", "1000", "NX"},
		}},
	}
	var diffs []diff
	cases := 0
	for _, sc := range scenarios {
		// bounded and eventual do not promise read-your-writes, and these
		// sequences read what they just wrote: the generated run, which
		// waits for the replicas between steps, covers those two modes.
		sides := e.sides(t, sc.proto)[:4]
		if !strings.HasPrefix(sc.name, "stream") {
			compare(sides, nil, sc.name, sc.name, sc.cmds, &diffs)
			cases += len(sc.cmds)
			continue
		}
		// Pub/sub and CLIENT REPLY: replies do not pair with requests, so
		// the whole stream a connection receives is compared, one side at
		// a time (the proxied sides share one master).
		var want string
		for _, s := range sides {
			s.c.send(sc.cmds...)
			got := drain(s.c)
			if s.mode == "" {
				want = got
			} else if got != want {
				diffs = append(diffs, diff{name: sc.name, what: sc.name, mode: s.mode, plain: want, proxied: got})
			}
		}
		cases++
	}
	// Keys with TTLs expire on replicas as on the master: a replica read
	// of an expired key is a miss, whatever DEL has reached it.
	time.Sleep(100 * time.Millisecond)
	compare(e.sides(t, 2), nil, "ttl", "ttl expired", [][]string{{"GET", "tk"}, {"EXISTS", "tk"}, {"TTL", "tk"}}, &diffs)
	report(t, diffs, cases+3)
}

// drain reads replies until none comes for a while.
func drain(c *conn) string {
	var b strings.Builder
	for {
		r, ok := c.read(300 * time.Millisecond)
		if !ok {
			return norm("", b.String())
		}
		b.WriteString(r)
	}
}
