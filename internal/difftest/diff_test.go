package difftest

import (
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/replproxy/replproxy/internal/proxytest"
	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/proxy"
)

// skipped are the commands the generic run does not compare, with why.
// Those marked "own test" are compared by a test of their own below.
var skipped = map[string]string{
	// Denied by the proxy by default (README: --allow-command).
	"shutdown": "denied", "debug": "denied", "replicaof": "denied", "slaveof": "denied",
	"failover": "denied", "sync": "denied", "psync": "denied", "replconf": "denied",
	"readonly": "denied", "readwrite": "denied", "asking": "denied",
	"config|set": "denied", "config|rewrite": "denied", "config|resetstat": "denied",
	"acl|setuser": "denied", "acl|deluser": "denied", "acl|load": "denied", "acl|save": "denied",
	"module|load": "denied", "module|loadex": "denied", "module|unload": "denied",
	"client|pause": "denied", "client|unpause": "denied", "script|debug": "denied",
	"monitor": "denied by default; served by the proxy when allowed (proxy tests)",
	// Never the same on two servers.
	"info": "server figures", "config|get": "ports, dirs", "time": "clock", "lastsave": "clock",
	"role": "a plain Redis has no replicas", "wait": "a plain Redis has no replicas (WAIT 1 blocks)",
	"latency|latest": "server figures", "latency|history": "server figures", "latency|doctor": "server figures",
	"latency|graph": "server figures", "latency|histogram": "server figures", "latency|reset": "server figures",
	"slowlog|get": "server figures", "slowlog|len": "server figures", "slowlog|reset": "server figures",
	"memory|stats": "allocator", "memory|doctor": "allocator", "memory|malloc-stats": "allocator",
	"memory|usage": "allocator", "memory|purge": "allocator",
	"randomkey": "random", "spop": "random", "srandmember": "random", "hrandfield": "random",
	"zrandmember": "random", "lolwut": "random art", "acl|genpass": "random",
	"bgsave": "background job timing", "bgrewriteaof": "background job timing", "save": "background job timing",
	"acl|log": "entries carry client addresses and times",
	"quit":    "closes the connection", "reset": "own test",
	// Compared by their own tests.
	"multi": "own test", "exec": "own test", "discard": "own test", "watch": "own test", "unwatch": "own test",
	"subscribe": "own test", "psubscribe": "own test", "ssubscribe": "own test",
	"unsubscribe": "own test", "punsubscribe": "own test", "sunsubscribe": "own test",
	"client|id": "own test", "client|kill": "own test", "client|reply": "own test",
	"client|tracking": "own test", "client|caching": "own test", "client|list": "own test", "client|info": "own test",
}

// timeValued replies carry times or ids made of times: their integers are
// normalised.
var timeValued = map[string]bool{
	"ttl": true, "pttl": true, "expiretime": true, "pexpiretime": true, "object|idletime": true,
	"xinfo|stream": true, "xinfo|groups": true, "xinfo|consumers": true, "xpending": true,
	"xautoclaim": true, "xclaim": true, "hello": true,
}

// unordered replies list a hash table in its order, which depends on the
// process's random hash seed: compared as sorted lines.
var unordered = map[string]bool{
	"keys": true, "scan": true, "command": true, "command|docs": true, "command|info": true, "command|list": true,
}

var reStreamID = regexp.MustCompile(`\d{13}-\d+`)

// reScanCursor is a SCAN reply's cursor: where a COUNT-limited scan stops
// depends on the hash table's layout, and so on the process's hash seed.
var reScanCursor = regexp.MustCompile(`^\*2\r\n\$\d+\r\n\d+\r\n`)

func norm(name, r string) string {
	r = reStreamID.ReplaceAllString(r, "STREAMID")
	if name == "scan" {
		r = reScanCursor.ReplaceAllString(r, "*2\r\n$6\r\nCURSOR\r\n")
	}
	r = normalize(r, timeValued[name])
	if unordered[name] {
		lines := strings.Split(r, "\n")
		sort.Strings(lines)
		r = strings.Join(lines, "\n")
	}
	return r
}

// env is a plain Redis and a proxied master with two replicas.
type env struct {
	plain, proxied string
	topo           *redistest.Topology
}

func start(t *testing.T) *env {
	t.Helper()
	plain := redistest.Start(t, redistest.Options{})
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	srv := proxytest.Start(t, proxy.Config{Master: topo.Master.Addr()})
	e := &env{plain: plain.Master.Addr(), proxied: srv.Addr(), topo: topo}
	// Wait until reads can go to both replicas.
	c := dial(t, e.proxied)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := c.do([]string{"PROXY", "TOPOLOGY"})[0]
		if strings.Count(r, "eligible\r\n:1") >= 2 || strings.Count(r, "eligible\r\n#t") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas never eligible: %q", r)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return e
}

var modes = []string{"strong", "linearizable", "causal", "bounded", "eventual"}

// side is one connection to the plain Redis or to the proxy in a mode.
type side struct {
	c    *conn
	mode string // "" for the plain Redis
}

func (e *env) sides(t *testing.T, proto int) []*side {
	out := []*side{{c: dial(t, e.plain)}}
	for _, m := range modes {
		s := &side{c: dial(t, e.proxied), mode: m}
		s.c.do([]string{"PROXY", "CONSISTENCY", m})
		out = append(out, s)
	}
	if proto == 3 {
		for _, s := range out {
			s.c.do([]string{"HELLO", "3"})
		}
	}
	return out
}

// setup runs writes on every side; through the proxy it then waits for
// both replicas, so that the modes that do not promise read-your-writes
// (bounded, eventual) read what a single Redis would.
func setup(sides []*side, cmds [][]string) {
	for _, s := range sides {
		s.c.do(cmds...)
		if s.mode == "bounded" || s.mode == "eventual" {
			s.c.do([]string{"WAIT", "2", "2000"})
		}
	}
}

type diff struct {
	name, what, mode, plain, proxied string
}

// compare runs first (unless nil: see setup) then cmds on every side in
// turn, since the proxied sides share one dataset, and records the replies
// that differ.
func compare(sides []*side, first [][]string, name, what string, cmds [][]string, diffs *[]diff) {
	var want []string
	for _, s := range sides {
		if first != nil {
			setup([]*side{s}, first)
		}
		got := s.c.do(cmds...)
		for i := range got {
			got[i] = norm(name, got[i])
		}
		if s.mode == "" {
			want = got
			continue
		}
		for i := range got {
			if got[i] != want[i] {
				*diffs = append(*diffs, diff{name: name, what: what + " " + strings.Join(cmds[i], " "), mode: s.mode, plain: want[i], proxied: got[i]})
				break
			}
		}
	}
}

func report(t *testing.T, diffs []diff, cases int) {
	t.Helper()
	t.Logf("%d cases compared, %d differences", cases, len(diffs))
	byCmd := map[string]int{}
	for i, d := range diffs {
		byCmd[d.name]++
		if i < 30 {
			t.Errorf("%s [%s]:\n  redis:    %q\n  replproxy: %q", d.what, d.mode, trunc(d.plain), trunc(d.proxied))
		}
	}
	if len(byCmd) > 0 {
		var names []string
		for n, k := range byCmd {
			names = append(names, n+"="+strconv.Itoa(k))
		}
		sort.Strings(names)
		t.Errorf("differences by command: %s", strings.Join(names, " "))
	}
}

// TestCommands: every command of COMMAND DOCS, with generated arguments
// (no arguments; the required ones with a string, a list and a missing
// key, so wrong types too; all optional ones; garbage numbers), alone and
// inside MULTI, in RESP2 in every mode, and in RESP3.
func TestCommands(t *testing.T) {
	e := start(t)
	docs := loadDocs(t, e.plain)
	cases := 0
	var diffs []diff
	for _, proto := range []int{2, 3} {
		sides := e.sides(t, proto)
		if proto == 3 {
			sides = []*side{sides[0], sides[3]} // the plain Redis and causal
		}
		setup(sides, [][]string{{"FLUSHALL"}})
		covered := 0
		for _, d := range docs {
			name := d.full()
			if _, skip := skipped[name]; skip || strings.HasPrefix(name, "cluster") {
				continue
			}
			covered++
			cmd := func(extra ...string) []string { return append(append([]string(nil), d.name...), extra...) }
			variants := [][]string{
				cmd(),
				cmd(argValues(d.args, false, "kstr", false)...),
				cmd(argValues(d.args, false, "klist", false)...),
				cmd(argValues(d.args, false, "kmissing", false)...),
				cmd(argValues(d.args, true, "khash", false)...),
				cmd(argValues(d.args, true, "kstr", true)...),
			}
			tag := "RESP" + strconv.Itoa(proto)
			compare(sides, fixture(), name, tag, variants, &diffs)
			cases += len(variants)
			if proto == 2 {
				// The command inside a transaction too.
				compare(sides, fixture(), name, "MULTI", [][]string{{"MULTI"}, variants[1], variants[3], {"EXEC"}}, &diffs)
				cases += 2
			}
		}
		if proto == 2 {
			t.Logf("commands and subcommands covered: %d of %d in COMMAND DOCS", covered, len(docs))
		}
	}
	report(t, diffs, cases)
}
