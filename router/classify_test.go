package router

import (
	"strings"
	"testing"
)

// args splits a request written as words; "\n" inside a word stays.
func args(words ...string) [][]byte {
	out := make([][]byte, len(words))
	for i, w := range words {
		out[i] = []byte(w)
	}
	return out
}

const (
	roScript    = "#!lua flags=no-writes,allow-stale\nreturn redis.call('get', KEYS[1])"
	rwScript    = "#!lua\nreturn redis.call('set', KEYS[1], 'x')"
	plainScript = "return redis.call('get', KEYS[1])"
)

func TestClassify(t *testing.T) {
	scripts := NewScriptCache(0)
	roSha := scripts.Add([]byte(roScript))
	rwSha := scripts.Add([]byte(rwScript))
	plainSha := scripts.Add([]byte(plainScript))
	unknownSha := strings.Repeat("ab", 20)

	tests := []struct {
		req   []string
		class Class
		local Local
		name  string
	}{
		// Flags decide.
		{[]string{"GET", "k"}, ClassRead, LocalNone, "get"},
		{[]string{"get", "k"}, ClassRead, LocalNone, "get"},
		{[]string{"gEt", "k"}, ClassRead, LocalNone, "get"},
		{[]string{"MGET", "a", "b"}, ClassRead, LocalNone, "mget"},
		{[]string{"PFCOUNT", "h"}, ClassRead, LocalNone, "pfcount"},
		{[]string{"SORT_RO", "l"}, ClassRead, LocalNone, "sort_ro"},
		{[]string{"SET", "k", "v"}, ClassWrite, LocalNone, "set"},
		{[]string{"SORT", "l"}, ClassWrite, LocalNone, "sort"},
		{[]string{"INCR", "k"}, ClassWrite, LocalNone, "incr"},
		{[]string{"FLUSHALL"}, ClassWrite, LocalNone, "flushall"},
		{[]string{"SWAPDB", "0", "1"}, ClassWrite, LocalNone, "swapdb"},
		{[]string{"PUBLISH", "ch", "m"}, ClassWrite, LocalNone, "publish"},
		{[]string{"SPUBLISH", "ch", "m"}, ClassWrite, LocalNone, "spublish"},
		{[]string{"INFO"}, ClassWrite, LocalNone, "info"},
		{[]string{"ROLE"}, ClassWrite, LocalNone, "role"},
		{[]string{"TIME"}, ClassWrite, LocalNone, "time"},
		{[]string{"SAVE"}, ClassWrite, LocalNone, "save"},
		{[]string{"BGSAVE"}, ClassWrite, LocalNone, "bgsave"},
		{[]string{"LASTSAVE"}, ClassWrite, LocalNone, "lastsave"},
		{[]string{"COMMAND", "COUNT"}, ClassWrite, LocalNone, "command|count"},
		{[]string{"DBSIZE"}, ClassWrite, LocalNone, "dbsize"},
		{[]string{"BLPOP", "l", "0"}, ClassBlocking, LocalNone, "blpop"},
		{[]string{"brpoplpush", "a", "b", "0"}, ClassBlocking, LocalNone, "brpoplpush"},
		{[]string{"BLMOVE", "a", "b", "LEFT", "RIGHT", "0"}, ClassBlocking, LocalNone, "blmove"},
		{[]string{"BZMPOP", "0", "1", "z", "MIN"}, ClassBlocking, LocalNone, "bzmpop"},
		{[]string{"BZPOPMAX", "z", "0"}, ClassBlocking, LocalNone, "bzpopmax"},
		{[]string{"WAITAOF", "1", "0", "0"}, ClassBlocking, LocalNone, "waitaof"},

		// Exceptions.
		{[]string{"ECHO", "x"}, ClassRead, LocalNone, "echo"},
		{[]string{"TOUCH", "k"}, ClassWrite, LocalNone, "touch"},
		{[]string{"SCAN", "0"}, ClassWrite, LocalNone, "scan"},
		{[]string{"HSCAN", "h", "0"}, ClassWrite, LocalNone, "hscan"},
		{[]string{"SSCAN", "s", "0"}, ClassWrite, LocalNone, "sscan"},
		{[]string{"ZSCAN", "z", "0"}, ClassWrite, LocalNone, "zscan"},
		{[]string{"OBJECT", "FREQ", "k"}, ClassWrite, LocalNone, "object|freq"},
		{[]string{"OBJECT", "IDLETIME", "k"}, ClassWrite, LocalNone, "object|idletime"},

		// Containers.
		{[]string{"CONFIG", "GET", "maxmemory"}, ClassWrite, LocalNone, "config|get"},
		{[]string{"config", "get", "maxmemory"}, ClassWrite, LocalNone, "config|get"},
		{[]string{"CONFIG"}, ClassWrite, LocalNone, "config"},
		{[]string{"CONFIG", "NOPE"}, ClassWrite, LocalNone, "config"},
		{[]string{"CLIENT", "LIST"}, ClassLocal, LocalClient, "client|list"},
		{[]string{"CLIENT", "INFO"}, ClassLocal, LocalClient, "client|info"},
		{[]string{"OBJECT", "ENCODING", "k"}, ClassWrite, LocalNone, "object|encoding"},
		{[]string{"object", "Encoding", "k"}, ClassWrite, LocalNone, "object|encoding"},
		{[]string{"OBJECT", "REFCOUNT", "k"}, ClassWrite, LocalNone, "object|refcount"},
		{[]string{"OBJECT", "HELP"}, ClassWrite, LocalNone, "object|help"},
		{[]string{"XINFO", "STREAM", "s"}, ClassWrite, LocalNone, "xinfo|stream"},
		{[]string{"XINFO", "GROUPS", "s"}, ClassWrite, LocalNone, "xinfo|groups"},
		{[]string{"XPENDING", "s", "g"}, ClassWrite, LocalNone, "xpending"},
		{[]string{"RANDOMKEY"}, ClassWrite, LocalNone, "randomkey"},
		{[]string{"DUMP", "k"}, ClassWrite, LocalNone, "dump"},
		{[]string{"XLEN", "s"}, ClassRead, LocalNone, "xlen"},
		{[]string{"SCRIPT", "KILL"}, ClassLocal, LocalScriptKill, "script|kill"},
		{[]string{"FUNCTION", "KILL"}, ClassLocal, LocalScriptKill, "function|kill"},
		{[]string{"MEMORY", "USAGE", "k"}, ClassWrite, LocalNone, "memory|usage"},
		{[]string{"MEMORY", "STATS"}, ClassWrite, LocalNone, "memory|stats"},
		{[]string{"SCRIPT", "EXISTS", roSha}, ClassWrite, LocalNone, "script|exists"},
		{[]string{"SCRIPT", "FLUSH"}, ClassWrite, LocalNone, "script|flush"},
		{[]string{"SCRIPT", "LOAD", roScript}, ClassWrite, LocalScriptLoad, "script|load"},
		{[]string{"FUNCTION", "LIST"}, ClassWrite, LocalNone, "function|list"},
		{[]string{"PUBSUB", "CHANNELS"}, ClassWrite, LocalNone, "pubsub|channels"},
		{[]string{"PUBSUB", "NUMSUB", "a"}, ClassWrite, LocalNone, "pubsub|numsub"},
		{[]string{"XGROUP", "CREATE", "s", "g", "$"}, ClassWrite, LocalNone, "xgroup|create"},
		{[]string{"ACL", "WHOAMI"}, ClassWrite, LocalNone, "acl|whoami"},

		// Local.
		{[]string{"PING"}, ClassLocal, LocalPing, "ping"},
		{[]string{"ping", "hi"}, ClassLocal, LocalPing, "ping"},
		{[]string{"QUIT"}, ClassLocal, LocalQuit, "quit"},
		{[]string{"AUTH", "pw"}, ClassLocal, LocalAuth, "auth"},
		{[]string{"HELLO", "3"}, ClassLocal, LocalHello, "hello"},
		{[]string{"SELECT", "1"}, ClassLocal, LocalSelect, "select"},
		{[]string{"RESET"}, ClassLocal, LocalReset, "reset"},
		{[]string{"WAIT", "1", "0"}, ClassLocal, LocalWait, "wait"},
		{[]string{"PROXY", "INFO"}, ClassLocal, LocalProxy, "proxy"},
		{[]string{"CLIENT", "ID"}, ClassLocal, LocalClientID, "client|id"},
		{[]string{"client", "getname"}, ClassLocal, LocalClientGetName, "client|getname"},
		{[]string{"CLIENT", "SETNAME", "x"}, ClassLocal, LocalClientSetName, "client|setname"},
		{[]string{"CLIENT", "SETINFO", "LIB-NAME", "x"}, ClassLocal, LocalClientSetInfo, "client|setinfo"},

		// Transactions.
		{[]string{"MULTI"}, ClassTxn, LocalMulti, "multi"},
		{[]string{"EXEC"}, ClassTxn, LocalExec, "exec"},
		{[]string{"DISCARD"}, ClassTxn, LocalDiscard, "discard"},
		{[]string{"WATCH", "k"}, ClassTxn, LocalWatch, "watch"},
		{[]string{"UNWATCH"}, ClassTxn, LocalUnwatch, "unwatch"},

		// Pub/sub.
		{[]string{"SUBSCRIBE", "a"}, ClassSubscribe, LocalNone, "subscribe"},
		{[]string{"PSUBSCRIBE", "a*"}, ClassSubscribe, LocalNone, "psubscribe"},
		{[]string{"SSUBSCRIBE", "a"}, ClassSubscribe, LocalNone, "ssubscribe"},
		{[]string{"UNSUBSCRIBE"}, ClassSubscribe, LocalNone, "unsubscribe"},
		{[]string{"PUNSUBSCRIBE"}, ClassSubscribe, LocalNone, "punsubscribe"},
		{[]string{"SUNSUBSCRIBE"}, ClassSubscribe, LocalNone, "sunsubscribe"},

		// Pinned.
		{[]string{"CLIENT", "TRACKING", "ON"}, ClassPinned, LocalNone, "client|tracking"},
		{[]string{"CLIENT", "CACHING", "YES"}, ClassPinned, LocalNone, "client|caching"},
		{[]string{"CLIENT", "GETREDIR"}, ClassPinned, LocalNone, "client|getredir"},
		{[]string{"CLIENT", "TRACKINGINFO"}, ClassPinned, LocalNone, "client|trackinginfo"},
		{[]string{"CLIENT", "NO-EVICT", "ON"}, ClassLocal, LocalClient, "client|no-evict"},
		{[]string{"CLIENT", "NO-TOUCH", "ON"}, ClassPinned, LocalNone, "client|no-touch"},

		// Denied.
		{[]string{"SHUTDOWN"}, ClassDenied, LocalNone, "shutdown"},
		{[]string{"shutdown", "NOSAVE"}, ClassDenied, LocalNone, "shutdown"},
		{[]string{"REPLICAOF", "NO", "ONE"}, ClassDenied, LocalNone, "replicaof"},
		{[]string{"SLAVEOF", "h", "1"}, ClassDenied, LocalNone, "slaveof"},
		{[]string{"FAILOVER"}, ClassDenied, LocalNone, "failover"},
		{[]string{"DEBUG", "SLEEP", "1"}, ClassDenied, LocalNone, "debug"},
		{[]string{"MONITOR"}, ClassDenied, LocalMonitor, "monitor"},
		{[]string{"SYNC"}, ClassDenied, LocalNone, "sync"},
		{[]string{"PSYNC", "?", "-1"}, ClassDenied, LocalNone, "psync"},
		{[]string{"REPLCONF", "ACK", "0"}, ClassDenied, LocalNone, "replconf"},
		{[]string{"CLUSTER", "INFO"}, ClassDenied, LocalNone, "cluster|info"},
		{[]string{"CLUSTER", "NOPE"}, ClassDenied, LocalNone, "cluster"},
		{[]string{"CLUSTER"}, ClassDenied, LocalNone, "cluster"},
		{[]string{"READONLY"}, ClassDenied, LocalNone, "readonly"},
		{[]string{"READWRITE"}, ClassDenied, LocalNone, "readwrite"},
		{[]string{"ASKING"}, ClassDenied, LocalNone, "asking"},
		{[]string{"CONFIG", "SET", "maxmemory", "1"}, ClassDenied, LocalNone, "config|set"},
		{[]string{"config", "rewrite"}, ClassDenied, LocalNone, "config|rewrite"},
		{[]string{"CONFIG", "RESETSTAT"}, ClassDenied, LocalNone, "config|resetstat"},
		{[]string{"CLIENT", "KILL", "ID", "1"}, ClassLocal, LocalClient, "client|kill"},
		{[]string{"CLIENT", "PAUSE", "100"}, ClassDenied, LocalNone, "client|pause"},
		{[]string{"CLIENT", "UNPAUSE"}, ClassDenied, LocalNone, "client|unpause"},
		{[]string{"CLIENT", "REPLY", "OFF"}, ClassLocal, LocalClient, "client|reply"},
		{[]string{"CLIENT", "UNBLOCK", "1"}, ClassLocal, LocalClient, "client|unblock"},
		{[]string{"ACL", "SETUSER", "u"}, ClassDenied, LocalNone, "acl|setuser"},
		{[]string{"ACL", "DELUSER", "u"}, ClassDenied, LocalNone, "acl|deluser"},
		{[]string{"ACL", "LOAD"}, ClassDenied, LocalNone, "acl|load"},
		{[]string{"ACL", "SAVE"}, ClassDenied, LocalNone, "acl|save"},
		{[]string{"MODULE", "LOAD", "x.so"}, ClassDenied, LocalNone, "module|load"},
		{[]string{"MODULE", "LOADEX", "x.so"}, ClassDenied, LocalNone, "module|loadex"},
		{[]string{"MODULE", "UNLOAD", "x"}, ClassDenied, LocalNone, "module|unload"},
		{[]string{"MODULE", "LIST"}, ClassWrite, LocalNone, "module|list"},
		{[]string{"SCRIPT", "DEBUG", "YES"}, ClassDenied, LocalNone, "script|debug"},

		// Streams: BLOCK before STREAMS blocks.
		{[]string{"XREAD", "STREAMS", "s", "0"}, ClassRead, LocalNone, "xread"},
		{[]string{"XREAD", "COUNT", "2", "STREAMS", "s", "0"}, ClassRead, LocalNone, "xread"},
		{[]string{"XREAD", "BLOCK", "0", "STREAMS", "s", "$"}, ClassBlocking, LocalNone, "xread"},
		{[]string{"xread", "count", "1", "block", "100", "streams", "s", "$"}, ClassBlocking, LocalNone, "xread"},
		{[]string{"XREAD", "STREAMS", "block", "0"}, ClassRead, LocalNone, "xread"},           // "block" is a key here
		{[]string{"XREAD", "STREAMS", "s", "BLOCK", "0", "0"}, ClassRead, LocalNone, "xread"}, // same
		{[]string{"XREAD", "BLOCK", "0"}, ClassRead, LocalNone, "xread"},                      // no STREAMS: syntax error
		{[]string{"XREAD", "BLOCK"}, ClassRead, LocalNone, "xread"},
		{[]string{"XREAD", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"}, ClassRead, LocalNone, "xread"}, // error
		{[]string{"XREAD", "NOACK", "BLOCK", "0", "STREAMS", "s", "0"}, ClassRead, LocalNone, "xread"},           // error
		{[]string{"XREAD", "BOGUS", "BLOCK", "0", "STREAMS", "s", "0"}, ClassRead, LocalNone, "xread"},           // error
		{[]string{"XREADGROUP", "GROUP", "g", "c", "STREAMS", "s", ">"}, ClassWrite, LocalNone, "xreadgroup"},
		{[]string{"XREADGROUP", "GROUP", "g", "c", "BLOCK", "0", "STREAMS", "s", ">"}, ClassBlocking, LocalNone, "xreadgroup"},
		{[]string{"XREADGROUP", "BLOCK", "10", "GROUP", "g", "c", "NOACK", "STREAMS", "s", ">"}, ClassBlocking, LocalNone, "xreadgroup"},
		{[]string{"XREADGROUP", "GROUP", "g", "c", "NOACK", "COUNT", "1", "STREAMS", "s", ">"}, ClassWrite, LocalNone, "xreadgroup"},
		{[]string{"XREADGROUP", "GROUP", "BLOCK", "STREAMS", "s", ">"}, ClassWrite, LocalNone, "xreadgroup"}, // BLOCK is the consumer name

		// Scripts.
		{[]string{"EVAL", roScript, "1", "k"}, ClassRead, LocalNone, "eval"},
		{[]string{"eval", "#!lua flags=no-writes\nreturn 1", "0"}, ClassRead, LocalNone, "eval"},
		{[]string{"EVAL", "#!lua flags=allow-oom,no-writes\nreturn 1", "0"}, ClassRead, LocalNone, "eval"},
		{[]string{"EVAL", rwScript, "1", "k"}, ClassWrite, LocalNone, "eval"},
		{[]string{"EVAL", plainScript, "1", "k"}, ClassWrite, LocalNone, "eval"},
		{[]string{"EVAL", "#!lua flags=no-writes", "0"}, ClassWrite, LocalNone, "eval"},                 // no newline: refused
		{[]string{"EVAL", "#!lua flags=no-writes,bogus\nreturn 1", "0"}, ClassWrite, LocalNone, "eval"}, // unknown flag: refused
		{[]string{"EVAL", "#!lua flags=no-writes,\nreturn 1", "0"}, ClassWrite, LocalNone, "eval"},      // empty flag: refused
		{[]string{"EVAL", "#!lua no-writes\nreturn 1", "0"}, ClassWrite, LocalNone, "eval"},             // unknown option
		{[]string{"EVAL", "#!luajit flags=no-writes\nreturn 1", "0"}, ClassWrite, LocalNone, "eval"},    // other engine
		{[]string{"EVAL", "#!LUA flags=no-writes\nreturn 1", "0"}, ClassWrite, LocalNone, "eval"},       // strcmp is case-sensitive
		{[]string{"EVAL", " #!lua flags=no-writes\nreturn 1", "0"}, ClassWrite, LocalNone, "eval"},      // not a shebang
		{[]string{"EVAL", "-- #!lua flags=no-writes\nreturn 1", "0"}, ClassWrite, LocalNone, "eval"},    // not a shebang
		{[]string{"EVAL", "#!lua \"flags=no-writes\"\nreturn 1", "0"}, ClassRead, LocalNone, "eval"},    // quotes are fine
		{[]string{"EVAL", "#!lua  flags=no-writes  \r\nreturn 1", "0"}, ClassRead, LocalNone, "eval"},   // \r is a space
		{[]string{"EVAL", "#!lua flags= flags=no-writes\nreturn 1", "0"}, ClassRead, LocalNone, "eval"}, // several flags= add up
		{[]string{"EVAL"}, ClassWrite, LocalNone, "eval"},
		{[]string{"EVAL_RO", plainScript, "1", "k"}, ClassRead, LocalNone, "eval_ro"},
		{[]string{"EVALSHA", roSha, "1", "k"}, ClassRead, LocalNone, "evalsha"},
		{[]string{"EVALSHA", strings.ToUpper(roSha), "1", "k"}, ClassRead, LocalNone, "evalsha"},
		{[]string{"EVALSHA", rwSha, "1", "k"}, ClassWrite, LocalNone, "evalsha"},
		{[]string{"EVALSHA", plainSha, "1", "k"}, ClassWrite, LocalNone, "evalsha"},
		{[]string{"EVALSHA", unknownSha, "0"}, ClassWrite, LocalNone, "evalsha"},
		{[]string{"EVALSHA", "short", "0"}, ClassWrite, LocalNone, "evalsha"},
		{[]string{"EVALSHA"}, ClassWrite, LocalNone, "evalsha"},
		{[]string{"EVALSHA_RO", unknownSha, "0"}, ClassRead, LocalNone, "evalsha_ro"},
		{[]string{"FCALL", "f", "0"}, ClassWrite, LocalNone, "fcall"},
		{[]string{"FCALL_RO", "f", "0"}, ClassRead, LocalNone, "fcall_ro"},

		// Unknown: the master.
		{[]string{"NOSUCHCOMMAND"}, ClassWrite, LocalNone, ""},
		{[]string{""}, ClassWrite, LocalNone, ""},
		{[]string{"config|get", "x"}, ClassWrite, LocalNone, ""},
		{[]string{"GETX", "k"}, ClassWrite, LocalNone, ""},
		{[]string{"GE", "k"}, ClassWrite, LocalNone, ""},
		{[]string{strings.Repeat("get", 100)}, ClassWrite, LocalNone, ""},
		{[]string{"get\x00"}, ClassWrite, LocalNone, ""},
		{[]string{"GET\u0130"}, ClassWrite, LocalNone, ""},
	}
	for _, tb := range []struct {
		name  string
		table *Table
	}{{"builtin", BuiltinTable(Options{})}, {"parsed", NewTable(recordedSpecs(t), Options{})}} {
		for _, tc := range tests {
			t.Run(tb.name+"/"+strings.Join(tc.req, "_"), func(t *testing.T) {
				got := tb.table.Classify(args(tc.req...), scripts)
				if got.Class != tc.class || got.Local != tc.local || got.Name != tc.name {
					t.Errorf("Classify(%q) = {%v %v %q}, want {%v %v %q}", tc.req, got.Class, got.Local, got.Name, tc.class, tc.local, tc.name)
				}
			})
		}
	}
}

func TestClassifyNoArgs(t *testing.T) {
	if got := BuiltinTable(Options{}).Classify(nil, nil); got != (Info{}) {
		t.Fatalf("Classify(nil) = %+v, want the zero Info (ClassWrite)", got)
	}
}

func TestClassifyNilCache(t *testing.T) {
	sha := NewScriptCache(1).Add([]byte(roScript))
	if got := BuiltinTable(Options{}).Classify(args("EVALSHA", sha, "0"), nil); got.Class != ClassWrite {
		t.Fatalf("EVALSHA with a nil cache: %v, want write", got.Class)
	}
}

func TestClassifyInfoFields(t *testing.T) {
	tab := BuiltinTable(Options{})
	get := tab.Classify(args("GET", "k"), nil)
	if get.Flags != FlagReadonly|FlagFast || get.FirstKey != 1 || get.LastKey != 1 || get.KeyStep != 1 {
		t.Errorf("GET: %+v", get)
	}
	mset := tab.Classify(args("MSET", "a", "1"), nil)
	if !mset.Flags.Has(FlagWrite|FlagDenyOOM) || mset.FirstKey != 1 || mset.LastKey != -1 || mset.KeyStep != 2 {
		t.Errorf("MSET: %+v", mset)
	}
	usage := tab.Classify(args("MEMORY", "USAGE", "k"), nil)
	if usage.FirstKey != 2 || usage.LastKey != 2 {
		t.Errorf("MEMORY USAGE: %+v", usage)
	}
	xread := tab.Classify(args("XREAD", "BLOCK", "0", "STREAMS", "s", "$"), nil)
	if !xread.Flags.Has(FlagReadonly | FlagBlocking | FlagMovableKeys) {
		t.Errorf("XREAD flags: %v", xread.Flags.Names())
	}
}

func TestAllow(t *testing.T) {
	tab := BuiltinTable(Options{Allow: []string{
		"MONITOR", "debug", "config|set", "client reply", "cluster|info", "acl", " script  debug ",
		"get", // not denied: ignored
	}})
	tests := []struct {
		req   []string
		class Class
		name  string
	}{
		{[]string{"MONITOR"}, ClassLocal, "monitor"},
		{[]string{"DEBUG", "SLEEP", "0"}, ClassWrite, "debug"},
		{[]string{"CONFIG", "SET", "x", "y"}, ClassWrite, "config|set"},
		{[]string{"CONFIG", "REWRITE"}, ClassDenied, "config|rewrite"},
		{[]string{"CLIENT", "REPLY", "ON"}, ClassLocal, "client|reply"},
		{[]string{"CLIENT", "KILL", "ID", "1"}, ClassLocal, "client|kill"},
		{[]string{"CLUSTER", "INFO"}, ClassWrite, "cluster|info"},
		{[]string{"CLUSTER", "NODES"}, ClassDenied, "cluster|nodes"},
		{[]string{"CLUSTER"}, ClassDenied, "cluster"},
		{[]string{"ACL", "SETUSER", "u"}, ClassWrite, "acl|setuser"},
		{[]string{"ACL", "SAVE"}, ClassWrite, "acl|save"},
		{[]string{"SCRIPT", "DEBUG", "NO"}, ClassPinned, "script|debug"},
		{[]string{"SYNC"}, ClassDenied, "sync"},
		{[]string{"SHUTDOWN"}, ClassDenied, "shutdown"},
		{[]string{"GET", "k"}, ClassRead, "get"},
	}
	for _, tc := range tests {
		got := tab.Classify(args(tc.req...), nil)
		if got.Class != tc.class || got.Name != tc.name {
			t.Errorf("Classify(%q) = {%v %q}, want {%v %q}", tc.req, got.Class, got.Name, tc.class, tc.name)
		}
	}

	all := BuiltinTable(Options{Allow: []string{"cluster", "sync", "psync", "shutdown", "replicaof", "readonly"}})
	for _, req := range [][]string{{"CLUSTER"}, {"CLUSTER", "NODES"}, {"CLUSTER", "FAILOVER"}, {"SHUTDOWN"}, {"REPLICAOF", "NO", "ONE"}, {"READONLY"}} {
		if got := all.Classify(args(req...), nil); got.Class != ClassWrite {
			t.Errorf("allowed %q: %v, want write", req, got.Class)
		}
	}
	for _, req := range [][]string{{"SYNC"}, {"PSYNC", "?", "-1"}} {
		if got := all.Classify(args(req...), nil); got.Class != ClassSubscribe {
			t.Errorf("allowed %q: %v, want subscribe", req, got.Class)
		}
	}
}

func TestDeniedMessage(t *testing.T) {
	want := "ERR replproxy: 'shutdown' is not allowed through the proxy (allow it with --allow-command shutdown)"
	if got := DeniedMessage("shutdown"); got != want {
		t.Fatalf("DeniedMessage = %q, want %q", got, want)
	}
	info := BuiltinTable(Options{}).Classify(args("config", "SET", "a", "b"), nil)
	if got := DeniedMessage(info.Name); !strings.Contains(got, "'config|set'") || !strings.HasSuffix(got, "--allow-command config|set)") {
		t.Fatalf("DeniedMessage(config|set) = %q", got)
	}
}

func TestTableLookupAndNames(t *testing.T) {
	tab := BuiltinTable(Options{})
	names := tab.Names()
	if len(names) != tab.Len() {
		t.Fatalf("Names() has %d, Len() = %d", len(names), tab.Len())
	}
	for _, n := range names {
		info, ok := tab.Lookup(n)
		if !ok || info.Name != n {
			t.Fatalf("Lookup(%q) = %+v, %v", n, info, ok)
		}
		upper, ok := tab.Lookup(strings.ToUpper(n))
		if !ok || upper != info {
			t.Fatalf("Lookup(%q) differs from Lookup(%q)", strings.ToUpper(n), n)
		}
	}
	// 240 commands and 126 subcommands in 7.0.15, plus the rules' own
	// names (proxy, waitaof, client|no-touch, client|setinfo).
	if tab.Len() < 366 {
		t.Errorf("Len() = %d, want >= 366", tab.Len())
	}
	for _, n := range []string{"proxy", "waitaof", "client|no-touch", "client|setinfo"} {
		if _, ok := tab.Lookup(n); !ok {
			t.Errorf("rule %q has no entry", n)
		}
	}
	if _, ok := tab.Lookup("nosuch"); ok {
		t.Error("Lookup(nosuch) found something")
	}
	if _, ok := tab.Lookup("config|nosuch"); ok {
		t.Error("Lookup(config|nosuch) found something")
	}
}

// Every rule name must be a real name: a typo would silently create a new
// command and leave the real one to the flags.
func TestRulesNameRealCommands(t *testing.T) {
	tab := NewTable(recordedSpecs(t), Options{})
	known := map[string]bool{}
	for _, s := range recordedSpecs(t) {
		known[s.Name] = true
		for _, sub := range s.Subcommands {
			known[sub.Name] = true
		}
	}
	notIn70 := map[string]bool{"proxy": true, "waitaof": true, "client|no-touch": true, "client|setinfo": true}
	for name := range rules {
		if !known[name] && !notIn70[name] {
			t.Errorf("rule %q names no redis 7.0 command", name)
		}
		if _, ok := tab.Lookup(name); !ok {
			t.Errorf("rule %q missing from the table", name)
		}
	}
}

func TestClassAndLocalStrings(t *testing.T) {
	for c := ClassWrite; c <= ClassDenied; c++ {
		if s := c.String(); s == "" || s == "unknown" {
			t.Errorf("Class(%d).String() = %q", c, s)
		}
	}
	if Class(200).String() != "unknown" {
		t.Error("out-of-range class")
	}
	for l := LocalNone; l <= LocalClientSetInfo; l++ {
		if s := l.String(); s == "" || s == "unknown" {
			t.Errorf("Local(%d).String() = %q", l, s)
		}
	}
	if Local(200).String() != "unknown" {
		t.Error("out-of-range local")
	}
}

func TestFlags(t *testing.T) {
	if ParseFlag("READONLY") != FlagReadonly || ParseFlag("movablekeys") != FlagMovableKeys || ParseFlag("no_multi") != FlagNoMulti {
		t.Error("ParseFlag")
	}
	if ParseFlag("brand_new_flag") != 0 {
		t.Error("unknown flag must be 0")
	}
	f := ParseFlags([]string{"write", "denyoom", "nonsense", "allow_busy"})
	if f != FlagWrite|FlagDenyOOM|FlagAllowBusy {
		t.Errorf("ParseFlags = %v", f.Names())
	}
	for i, n := range flagNames {
		if ParseFlag(n) != 1<<i || (Flag(1) << i).Names()[0] != n {
			t.Errorf("flag %q round trip", n)
		}
	}
}

// The index's hash must spread the real names: a lookup, found or not,
// stops after maxProbe slots.
func TestIndexSpread(t *testing.T) {
	tab := BuiltinTable(Options{})
	ix := tab.cmds
	total, n := 0, 0
	for i, s := range ix.slots {
		if s.e == nil {
			continue
		}
		home := int(s.hash & ix.mask)
		total += (i-home+len(ix.slots))%len(ix.slots) + 1
		n++
	}
	avg := float64(total) / float64(n)
	t.Logf("%d names in %d slots: %.2f probes on average, at most %d", n, len(ix.slots), avg, ix.maxProbe)
	if avg > 1.5 || ix.maxProbe > 8 {
		t.Errorf("poor spread: average %.2f, max %d", avg, ix.maxProbe)
	}
	// A name of any length costs O(1) before the comparison.
	long := make([]byte, 64<<20)
	if n := testing.AllocsPerRun(10, func() { tab.Classify([][]byte{long}, nil) }); n != 0 {
		t.Errorf("long name allocates %v", n)
	}
}
