package router

import (
	"bufio"
	"context"
	"flag"
	"math/rand"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/resp"
)

var update = flag.Bool("update", false, "rewrite testdata/*.resp from the live redis-server")

// rawConn is a plain RESP connection: the test reads the exact bytes
// redis-server sends, as the proxy's control plane does.
type rawConn struct {
	t    *testing.T
	conn net.Conn
	r    *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawConn{t: t, conn: conn, r: bufio.NewReader(conn)}
}

func (c *rawConn) do(args ...string) []byte {
	c.t.Helper()
	c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(resp.AppendCommandStrings(nil, args...)); err != nil {
		c.t.Fatal(err)
	}
	sc := resp.NewReplyScanner(resp.Limits{})
	var buf []byte
	chunk := make([]byte, 32<<10)
	for {
		n, err := sc.Scan(buf)
		if err != nil {
			c.t.Fatalf("%s: %v", args[0], err)
		}
		if n > 0 {
			if n != len(buf) {
				c.t.Fatalf("%s: %d stray bytes after the reply", args[0], len(buf)-n)
			}
			return buf
		}
		m, err := c.r.Read(chunk)
		if err != nil {
			c.t.Fatalf("%s: %v", args[0], err)
		}
		buf = append(buf, chunk[:m]...)
	}
}

func sortedSpecs(specs []CommandSpec) []CommandSpec {
	out := append([]CommandSpec(nil), specs...)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	for i := range out {
		out[i].Subcommands = sortedSpecs(out[i].Subcommands)
		if len(out[i].Subcommands) == 0 {
			out[i].Subcommands = nil
		}
	}
	return out
}

// recordedSpecs parses the COMMAND reply recorded from redis 7.0.15 in
// testdata, so the table tests need no server.
func recordedSpecs(t testing.TB) []CommandSpec {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "command_resp2.resp"))
	if err != nil {
		t.Fatal(err)
	}
	specs, err := ParseCommandReply(raw)
	if err != nil {
		t.Fatal(err)
	}
	return specs
}

// oracle is the classification rule written again, independently of
// table.go, from the flags the live server prints and an explicit list of
// the exceptions the package documents.
func oracle(name string, flags []string) Class {
	has := map[string]bool{}
	for _, f := range flags {
		has[f] = true
	}
	exceptions := map[string]Class{
		"ping": ClassLocal, "quit": ClassLocal, "auth": ClassLocal, "hello": ClassLocal,
		"select": ClassLocal, "reset": ClassLocal, "wait": ClassLocal,
		"client|id": ClassLocal, "client|getname": ClassLocal, "client|setname": ClassLocal,
		"multi": ClassTxn, "exec": ClassTxn, "discard": ClassTxn, "watch": ClassTxn, "unwatch": ClassTxn,
		"subscribe": ClassSubscribe, "psubscribe": ClassSubscribe, "ssubscribe": ClassSubscribe,
		"unsubscribe": ClassSubscribe, "punsubscribe": ClassSubscribe, "sunsubscribe": ClassSubscribe,
		"client|tracking": ClassPinned, "client|caching": ClassPinned, "client|getredir": ClassPinned,
		"client|trackinginfo": ClassPinned, "client|no-evict": ClassLocal,
		"client|list": ClassLocal, "client|info": ClassLocal, "client|kill": ClassLocal,
		"client|reply": ClassLocal, "client|unblock": ClassLocal,
		"script|kill": ClassLocal, "function|kill": ClassLocal,
		"replicaof": ClassDenied, "slaveof": ClassDenied, "failover": ClassDenied, "shutdown": ClassDenied,
		"debug": ClassDenied, "sync": ClassDenied, "psync": ClassDenied, "replconf": ClassDenied,
		"monitor": ClassDenied, "readonly": ClassDenied, "readwrite": ClassDenied, "asking": ClassDenied,
		"config|set": ClassDenied, "config|rewrite": ClassDenied, "config|resetstat": ClassDenied,
		"client|pause": ClassDenied, "client|unpause": ClassDenied,
		"acl|setuser": ClassDenied, "acl|deluser": ClassDenied, "acl|load": ClassDenied, "acl|save": ClassDenied,
		"module|load": ClassDenied, "module|loadex": ClassDenied, "module|unload": ClassDenied,
		"script|debug": ClassDenied,
		// Readonly, but on the master: side effect on / report of the
		// node's own LRU clock, and cursors valid on one node only.
		"touch": ClassWrite, "object|freq": ClassWrite, "object|idletime": ClassWrite,
		// Readonly, but answered differently by a replica (table.go).
		"object|encoding": ClassWrite, "object|refcount": ClassWrite, "dbsize": ClassWrite,
		"randomkey": ClassWrite, "memory|usage": ClassWrite, "dump": ClassWrite, "xpending": ClassWrite,
		"xinfo|groups": ClassWrite, "xinfo|consumers": ClassWrite, "xinfo|stream": ClassWrite,
		"scan": ClassWrite, "hscan": ClassWrite, "sscan": ClassWrite, "zscan": ClassWrite,
		// Pure.
		"echo": ClassRead,
		// Without BLOCK (the request in this test has no arguments).
		"xread": ClassRead, "xreadgroup": ClassWrite,
	}
	if strings.HasPrefix(name, "cluster") {
		return ClassDenied
	}
	if c, ok := exceptions[name]; ok {
		return c
	}
	switch {
	case has["blocking"]:
		return ClassBlocking
	case has["readonly"] && !has["write"] && !has["admin"] && !has["pubsub"]:
		return ClassRead
	}
	return ClassWrite
}

func TestLiveCommandTable(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{})
	c := dialRaw(t, topo.Master.Addr())

	raw2 := c.do("COMMAND")
	infoRaw2 := c.do("COMMAND", "INFO", "get", "nosuchcommand", "config|get", "xread")
	if hello := c.do("HELLO", "3"); hello[0] != '%' {
		t.Fatalf("HELLO 3: %q", hello[:min(len(hello), 40)])
	}
	raw3 := c.do("COMMAND")
	infoRaw3 := c.do("COMMAND", "INFO", "get", "nosuchcommand", "config|get", "xread")
	if raw3[0] != '*' || !strings.Contains(string(raw3[:200]), "~") {
		t.Fatalf("RESP3 COMMAND reply does not look like RESP3: %q", raw3[:80])
	}
	if *update {
		for name, b := range map[string][]byte{
			"command_resp2.resp": raw2, "command_resp3.resp": raw3,
			"command_info_resp2.resp": infoRaw2, "command_info_resp3.resp": infoRaw3,
		} {
			if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}

	specs2, err := ParseCommandReply(raw2)
	if err != nil {
		t.Fatal(err)
	}
	specs3, err := ParseCommandReply(raw3)
	if err != nil {
		t.Fatal(err)
	}
	// The server lists subcommands in dict order, which changes between
	// calls: compare sorted.
	if !reflect.DeepEqual(sortedSpecs(specs2), sortedSpecs(specs3)) {
		t.Fatal("RESP2 and RESP3 COMMAND replies parse differently")
	}
	count, err := topo.Master.Client().Do(context.Background(), "COMMAND", "COUNT").Int()
	if err != nil {
		t.Fatal(err)
	}
	if len(specs2) != count {
		t.Fatalf("parsed %d commands, COMMAND COUNT says %d", len(specs2), count)
	}

	live := NewTable(specs2, Options{})
	checked := 0
	check := func(s CommandSpec, req []string) {
		t.Helper()
		checked++
		got := live.Classify(args(req...), nil)
		want := oracle(s.Name, s.Flags)
		if got.Class != want {
			t.Errorf("%s %v: class %v, want %v", s.Name, s.Flags, got.Class, want)
		}
		if got.Name != s.Name {
			t.Errorf("%q: name %q, want %q", req, got.Name, s.Name)
		}
		if got.Flags != ParseFlags(s.Flags) || got.FirstKey != s.FirstKey || got.LastKey != s.LastKey || got.KeyStep != s.KeyStep {
			t.Errorf("%s: info %+v does not match spec %+v", s.Name, got, s)
		}
		for _, f := range s.Flags {
			if ParseFlag(f) == 0 {
				t.Errorf("%s: flag %q unknown to ParseFlag", s.Name, f)
			}
		}
	}
	for _, s := range specs2 {
		check(s, []string{strings.ToUpper(s.Name)})
		for _, sub := range s.Subcommands {
			p, name, _ := strings.Cut(sub.Name, "|")
			if p != s.Name {
				t.Errorf("subcommand %q of %q", sub.Name, s.Name)
			}
			check(sub, []string{s.Name, strings.ToUpper(name)})
		}
	}
	t.Logf("checked %d live commands and subcommands", checked)

	// The built-in table must agree with the live one for every command.
	version := topo.Master.Info(t, "server")["redis_version"]
	builtin := BuiltinTable(Options{})
	for _, name := range live.Names() {
		want, _ := live.Lookup(name)
		got, ok := builtin.Lookup(name)
		if version == builtinVersion {
			if !ok || got != want {
				t.Errorf("builtin %q = %+v, live %+v", name, got, want)
			}
		} else if ok && got.Class != want.Class {
			t.Errorf("builtin (redis %s) %q is %v, live (redis %s) %v", builtinVersion, name, got.Class, version, want.Class)
		}
	}
	if version == builtinVersion && builtin.Len() != live.Len() {
		t.Errorf("builtin has %d names, live %d", builtin.Len(), live.Len())
	}
	if version != builtinVersion {
		t.Logf("live redis %s, builtin table from %s: compared classes only", version, builtinVersion)
	}

	info2, err := ParseCommandReply(infoRaw2)
	if err != nil {
		t.Fatal(err)
	}
	info3, err := ParseCommandReply(infoRaw3)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(sortedSpecs(info2), sortedSpecs(info3)) || len(info2) != 3 || info2[0].Name != "get" || info2[1].Name != "config|get" || info2[2].Name != "xread" {
		t.Fatalf("COMMAND INFO parsed to %+v / %+v", info2, info3)
	}
}

// The script classification must agree with the server: a script the
// router calls read-only is refused writes by redis, and one it does not is
// either allowed to write or refused altogether.
func TestLiveScriptFlags(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{})
	// go-redis, not rawConn: redis does not escape a CR that a quoted
	// shebang piece put in its error text, so that reply is not valid RESP.
	client := topo.Master.Client()
	ctx := context.Background()
	seed := time.Now().UnixNano()
	t.Logf("random shebang seed %d", seed)
	cases := append(shebangCases(), randomShebangs(rand.New(rand.NewSource(seed)), 500)...)
	seen := map[string]int{}
	for i, line := range cases {
		body := line + "\nreturn redis.call('set', KEYS[1], 'v')"
		reply := "+OK"
		if err := client.Eval(ctx, body, []string{"k"}).Err(); err != nil {
			reply = err.Error()
		}
		flags, shebang, valid := parseShebang([]byte(body))
		var want string
		switch {
		case !valid:
			want = "refused"
		case shebang && flags&scriptFlagNoWrites != 0:
			want = "read-only"
		default:
			want = "writes"
		}
		var got string
		switch {
		case reply == "+OK":
			got = "writes"
		case !strings.HasPrefix(line, "#!") && !strings.Contains(reply, "shebang"):
			// No shebang: the line is Lua (it may fail to compile or
			// run), in compatibility mode, where a script may write.
			got = "writes"
		case strings.Contains(reply, "Write commands are not allowed from read-only scripts"):
			got = "read-only"
		case strings.Contains(reply, "shebang"):
			got = "refused"
		default:
			t.Fatalf("case %d %q: unexpected reply %q", i, line, reply)
		}
		seen[got]++
		if got != want {
			t.Errorf("case %d %q: redis says %s, router says %s (%q)", i, line, got, want, reply)
		}
		if ro := ScriptReadOnly([]byte(body)); ro != (got == "read-only") {
			t.Errorf("case %d %q: ScriptReadOnly = %v, redis says %s", i, line, ro, got)
		}
	}
	t.Logf("%d scripts: %v", len(cases), seen)
	for _, k := range []string{"refused", "read-only", "writes"} {
		if seen[k] < 10 {
			t.Errorf("only %d %s scripts: the cases do not cover that outcome", seen[k], k)
		}
	}
}

// randomShebangs makes first lines: half built like valid shebangs (then
// quoted, escaped, re-spaced or damaged at random), half glued from pieces
// that matter to sdssplitargs and the flag parser.
func randomShebangs(r *rand.Rand, n int) []string {
	pieces := []string{
		"#!lua", "#!", "lua", " ", "  ", "\t", "\v", "\f", "\r", "flags=", "flags", "=",
		"no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys",
		",", ",", "\"", "'", "\\", "\\x00", "\\x2d", "\\\"", "\\'", "\x00", "x", "-",
		"no", "writes", "\\n", "\xc3\xa9",
	}
	pick := func(xs ...string) string { return xs[r.Intn(len(xs))] }
	out := make([]string, 0, n)
	for len(out) < n {
		var b strings.Builder
		if r.Intn(2) == 0 {
			b.WriteString("#!lua")
			for k := r.Intn(3); k >= 0; k-- {
				b.WriteString(pick(" ", " ", "  ", "\t", "\r", "\f", " \v"))
				var names []string
				for m := r.Intn(4); m >= 0; m-- {
					names = append(names, pick("no-writes", "no-writes", "allow-oom", "allow-stale", "no-cluster", "allow-cross-slot-keys", "", "no_writes"))
				}
				tok := "flags=" + strings.Join(names, ",")
				switch r.Intn(6) {
				case 0:
					tok = `"` + strings.ReplaceAll(tok, "-", pick(`\x2d`, `\-`, "-")) + pick(`"`, `\x00"`, `\x00,x"`, `" `, `"x`)
				case 1:
					tok = "'" + tok + pick("'", `\''`, "' ", "")
				case 2:
					i := r.Intn(len(tok) + 1)
					tok = tok[:i] + pieces[r.Intn(len(pieces))] + tok[i:]
				}
				b.WriteString(tok)
			}
			b.WriteString(pick("", "", " ", "\t", "\r"))
		} else {
			if r.Intn(8) != 0 {
				b.WriteString("#!lua ")
			}
			for k := r.Intn(8); k >= 0; k-- {
				b.WriteString(pieces[r.Intn(len(pieces))])
			}
		}
		if strings.Contains(b.String(), "\n") {
			continue // the first line is what we test
		}
		out = append(out, b.String())
	}
	return out
}

// shebangCases are first lines meant to hit every branch of
// evalExtractShebangFlags and sdssplitargs.
func shebangCases() []string {
	return []string{
		"-- no shebang",
		"#!lua",
		"#!lua ",
		"#!lua flags=no-writes",
		"#!lua flags=no-writes,allow-stale",
		"#!lua flags=allow-oom,allow-stale,no-cluster,allow-cross-slot-keys,no-writes",
		"#!lua flags=allow-oom",
		"#!lua flags=",
		"#!lua flags=no-writes,",
		"#!lua flags=,no-writes",
		"#!lua flags=no-writes,,allow-oom",
		"#!lua flags=no-write",
		"#!lua flags=no-writess",
		"#!lua flags=NO-WRITES",
		"#!lua flags=no-writes flags=allow-oom",
		"#!lua flags= flags=no-writes",
		"#!lua flags=allow-oom flags=no-writes",
		"#!lua Flags=no-writes",
		"#!lua flag=no-writes",
		"#!lua flags",
		"#!lua no-writes",
		"#!lua\tflags=no-writes",
		"#!lua\vflags=no-writes",
		"#!lua \vflags=no-writes",
		"#!lua \fflags=no-writes\f",
		"#!lua flags=no-writes\r",
		"#!lua\r",
		"#!lu",
		"#!luax",
		"#!",
		"#! lua flags=no-writes",
		"#!/usr/bin/lua flags=no-writes",
		"#!LUA flags=no-writes",
		`#!lua "flags=no-writes"`,
		`#!lua 'flags=no-writes'`,
		`#!lua flags="no-writes"`,
		`#!lua flags="no-writes"x`,
		`#!lua flags='no-writes'`,
		`#!lua flags='no-writes`,
		`#!lua flags="no-writes`,
		`#!lua "flags=no-writes\x00garbage"`,
		`#!lua "flags=no-writes\x00,allow-oom"`,
		`#!lua "flags=\x00no-writes"`,
		`#!lua "fla\x00gs=no-writes"`,
		`#!lu"a" flags=no-writes`,
		`#!lua"\x00junk" flags=no-writes`,
		`#!lu"\x00a" flags=no-writes`,
		`#!lua "flags=no\x2dwrites"`,
		`#!lua "flags=no\-writes"`,
		`#!lua "flags=no-writes\"`,
		`#!lua "flags=no-writes\\"`,
		`#!lua 'flags=no-writes\''`,
		`#!lua 'flags=no-writes\'`,
		`#!lua "flags=no-writes\n"`,
		`#!lua "flags=no-writes"  `,
		`#!lua ""`,
		`#!lua ''`,
		`#!lua "" flags=no-writes`,
		"#!lua flags=no-writes\x01",
		"#!lua flags=no-writes\xff",
		"#!lua flags=no-writes\x00",
	}
}

// A read-only replica is an oracle of its own: it refuses every command it
// considers a write with -READONLY before looking at the arguments. Every
// command the live table calls a read must get past that check; and, to
// show the check is seen, every write-flagged command must not.
func TestLiveReadsPassReadOnlyReplica(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{Replicas: 1})
	m := dialRaw(t, topo.Master.Addr())
	specs, err := ParseCommandReply(m.do("COMMAND"))
	if err != nil {
		t.Fatal(err)
	}
	tab := NewTable(specs, Options{})
	r := dialRaw(t, topo.Replicas[0].Addr())
	reads, writes := 0, 0
	try := func(s CommandSpec, words []string) {
		t.Helper()
		n := s.Arity
		if n < 0 {
			n = -n
		}
		for len(words) < n {
			words = append(words, "x")
		}
		info := tab.Classify(args(words...), nil)
		isWrite := ParseFlags(s.Flags).Has(FlagWrite)
		if info.Class != ClassRead && !isWrite {
			return
		}
		reply := string(r.do(words...))
		refused := strings.HasPrefix(reply, "-READONLY")
		switch {
		case info.Class == ClassRead && refused:
			t.Errorf("%q is ClassRead but the replica refuses it: %q", words, reply)
		case isWrite && !refused:
			t.Errorf("%q is flagged write but the replica does not refuse it: %q", words, reply)
		}
		if info.Class == ClassRead {
			reads++
		} else {
			writes++
		}
	}
	for _, s := range specs {
		if len(s.Subcommands) == 0 {
			try(s, []string{s.Name})
		}
		for _, sub := range s.Subcommands {
			_, name, _ := strings.Cut(sub.Name, "|")
			try(sub, []string{s.Name, name})
		}
	}
	t.Logf("%d reads passed the replica, %d writes were refused", reads, writes)
}

// The fact ScriptCache exists for: redis 7 replicates scripts by their
// effects only, so a script loaded on the master is unknown to its
// replicas, and EVALSHA of it sent to a replica gets NOSCRIPT unless the
// proxy sends the body.
func TestLiveScriptLoadNotReplicated(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{Replicas: 1})
	ctx := context.Background()
	sha, err := topo.Master.Client().ScriptLoad(ctx, roScript).Result()
	if err != nil {
		t.Fatal(err)
	}
	if want := NewScriptCache(1).Add([]byte(roScript)); sha != want {
		t.Fatalf("SCRIPT LOAD returned %s, ScriptCache.Add %s", sha, want)
	}
	topo.Master.Client().Set(ctx, "k", "v", 0)
	topo.WaitSynced(t, 10*time.Second)
	replica := topo.Replicas[0].Client()
	if exists, err := replica.ScriptExists(ctx, sha).Result(); err != nil || exists[0] {
		t.Fatalf("replica SCRIPT EXISTS = %v, %v: SCRIPT LOAD was replicated", exists, err)
	}
	if err := replica.EvalSha(ctx, sha, []string{"k"}).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOSCRIPT") {
		t.Fatalf("replica EVALSHA: %v, want NOSCRIPT", err)
	}
	// The no-writes body itself runs on the read-only replica.
	if got, err := replica.Eval(ctx, roScript, []string{"k"}).Result(); err != nil || got != "v" {
		t.Fatalf("replica EVAL of the read-only script = %v, %v", got, err)
	}
}
