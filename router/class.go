package router

// Class says where a command may run. The zero value is ClassWrite, so an
// Info nobody filled in sends its command to the master: the one node that
// can run every command correctly.
type Class uint8

const (
	// ClassWrite: the master. This includes every command the table does not
	// know: nothing is a read by being absent from a list.
	ClassWrite Class = iota
	// ClassRead: may be served by a replica. Only commands the server flags
	// readonly (and not write, admin, pubsub, blocking or may_replicate), bar
	// the documented exceptions in table.go.
	ClassRead
	// ClassLocal: answered by the proxy itself; Info.Local says which.
	ClassLocal
	// ClassTxn: MULTI/EXEC/DISCARD/WATCH/UNWATCH, whose state lives on one
	// master connection; Info.Local says which.
	ClassTxn
	// ClassBlocking: may block the connection it runs on (BLPOP..., XREAD
	// and XREADGROUP with BLOCK), so it must not run on a shared one.
	ClassBlocking
	// ClassSubscribe: enters or leaves pub/sub mode, after which the server
	// sends unsolicited messages. Allowed MONITOR, SYNC and PSYNC are
	// classified here too: they also turn the connection into a stream.
	ClassSubscribe
	// ClassPinned: creates per-connection server state (CLIENT TRACKING and
	// friends) that must stay on a connection of this client's own.
	ClassPinned
	// ClassDenied: refused by the proxy unless Options.Allow lists it.
	// Reply with DeniedMessage(Info.Name).
	ClassDenied
)

var classNames = [...]string{
	ClassWrite:     "write",
	ClassRead:      "read",
	ClassLocal:     "local",
	ClassTxn:       "txn",
	ClassBlocking:  "blocking",
	ClassSubscribe: "subscribe",
	ClassPinned:    "pinned",
	ClassDenied:    "denied",
}

// String returns the class's lowercase name, e.g. for metrics labels.
func (c Class) String() string {
	if int(c) < len(classNames) {
		return classNames[c]
	}
	return "unknown"
}

// Local identifies a command the proxy handles itself (or, for ClassTxn and
// LocalScriptLoad, has to look at while forwarding), so the proxy switches on
// a small integer instead of comparing names.
type Local uint8

const (
	LocalNone Local = iota
	LocalPing
	LocalQuit
	LocalAuth
	LocalHello
	LocalSelect
	LocalReset
	LocalClientID
	LocalClientGetName
	LocalClientSetName
	LocalWait
	LocalProxy // the proxy's own admin command, PROXY <subcommand>
	LocalMulti
	LocalExec
	LocalDiscard
	LocalWatch
	LocalUnwatch
	// LocalScriptLoad: SCRIPT LOAD goes to the master (ClassWrite) but the
	// proxy records its body in the ScriptCache, so a later EVALSHA of a
	// read-only script can go to a replica.
	LocalScriptLoad
	// LocalClientSetInfo: CLIENT SETINFO LIB-NAME/LIB-VER (Redis 7.2+, sent
	// by go-redis and others on connect) labels the connection it runs on;
	// forwarded on a shared connection it would label everyone's.
	LocalClientSetInfo
	// LocalClient: the CLIENT subcommands that speak about connections
	// (LIST, INFO, KILL, UNBLOCK, NO-EVICT, REPLY): answered from the
	// proxy's own clients, since every backend connection is the proxy's.
	LocalClient
	// LocalScriptKill: SCRIPT KILL and FUNCTION KILL go to every node, as
	// a read-only script may be running on a replica.
	LocalScriptKill
	// LocalMonitor: MONITOR (when allowed) is served by the proxy, which
	// sees every client's commands; the master sees only its share.
	LocalMonitor
)

var localNames = [...]string{
	LocalNone:          "none",
	LocalPing:          "ping",
	LocalQuit:          "quit",
	LocalAuth:          "auth",
	LocalHello:         "hello",
	LocalSelect:        "select",
	LocalReset:         "reset",
	LocalClientID:      "client|id",
	LocalClientGetName: "client|getname",
	LocalClientSetName: "client|setname",
	LocalWait:          "wait",
	LocalProxy:         "proxy",
	LocalMulti:         "multi",
	LocalExec:          "exec",
	LocalDiscard:       "discard",
	LocalWatch:         "watch",
	LocalUnwatch:       "unwatch",
	LocalScriptLoad:    "script|load",
	LocalClientSetInfo: "client|setinfo",
	LocalClient:        "client",
	LocalScriptKill:    "script|kill",
	LocalMonitor:       "monitor",
}

// ArityOK reports whether n arguments (the name included) pass the server's
// arity check; true when the arity is unknown.
func (i Info) ArityOK(n int) bool {
	switch {
	case i.Arity > 0:
		return n == i.Arity
	case i.Arity < 0:
		return n >= -i.Arity
	}
	return true
}

// String returns the command the value stands for ("client|id"), or "none".
func (l Local) String() string {
	if int(l) < len(localNames) {
		return localNames[l]
	}
	return "unknown"
}

// Flag is one command flag as COMMAND prints it; Info.Flags is a set of them.
type Flag uint32

const (
	FlagWrite Flag = 1 << iota
	FlagReadonly
	FlagDenyOOM
	FlagModule
	FlagAdmin
	FlagPubsub
	FlagNoscript
	FlagBlocking
	FlagLoading
	FlagStale
	FlagSkipMonitor
	FlagSkipSlowlog
	FlagAsking
	FlagFast
	FlagNoAuth
	// FlagMayReplicate, FlagSentinel, FlagOnlySentinel and FlagProtected
	// exist in redis 7.0 but COMMAND hides them ("Hidden on purpose" in
	// server.c addReplyCommandFlags); they are parsed in case a server
	// ever shows them.
	FlagMayReplicate
	FlagSentinel
	FlagOnlySentinel
	FlagNoMandatoryKeys
	FlagProtected
	FlagNoAsyncLoading
	FlagNoMulti
	FlagMovableKeys
	FlagAllowBusy
	// FlagRandom and FlagSortForScript are printed by servers before 7.0.
	FlagRandom
	FlagSortForScript
)

// flagNames are the names COMMAND prints, in bit order.
var flagNames = [...]string{
	"write", "readonly", "denyoom", "module", "admin", "pubsub", "noscript",
	"blocking", "loading", "stale", "skip_monitor", "skip_slowlog", "asking",
	"fast", "no_auth", "may_replicate", "sentinel", "only_sentinel",
	"no_mandatory_keys", "protected", "no_async_loading", "no_multi",
	"movablekeys", "allow_busy", "random", "sort_for_script",
}

// ParseFlag returns the Flag COMMAND prints as name (case-insensitive), or 0
// for a name this package does not know: a newer server's flag must not
// make its command unusable, and no unknown flag can make a command a read.
func ParseFlag(name string) Flag {
	for i, n := range flagNames {
		if equalFoldString(name, n) {
			return 1 << i
		}
	}
	return 0
}

// ParseFlags ORs ParseFlag over names.
func ParseFlags(names []string) Flag {
	var f Flag
	for _, n := range names {
		f |= ParseFlag(n)
	}
	return f
}

// Has reports whether every flag of g is in f.
func (f Flag) Has(g Flag) bool { return f&g == g }

// Names returns the names of f's flags in COMMAND's order.
func (f Flag) Names() []string {
	var out []string
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// Info is what Classify says about one request. It is returned by value and
// holds no pointer into the request, so the caller may keep it.
type Info struct {
	Class Class
	Local Local
	// Name is the canonical lowercase name ("get", "config|get" for a known
	// subcommand, the container's name for an unknown one); "" for a command
	// the table does not know. It is a string of the table's: no allocation.
	Name  string
	Flags Flag
	// Arity is COMMAND's: n > 0 exactly n arguments (the name included),
	// n < 0 at least -n; 0 when the server did not list the command.
	Arity int
	// FirstKey, LastKey and KeyStep are COMMAND's legacy key positions
	// (LastKey may be negative, counting from the end; all zero for commands
	// without keys or with movable keys).
	FirstKey, LastKey, KeyStep int
}

func equalFoldString(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}
