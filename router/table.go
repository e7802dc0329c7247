package router

import (
	"encoding/binary"
	"sort"
	"strings"

	"github.com/replproxy/replproxy/resp"
)

// Options adjusts a Table. The zero value denies every command the rules in
// table.go deny.
type Options struct {
	// Allow lists denied commands the operator lets through, by name
	// ("monitor", "debug") or as container|subcommand ("config|set"; "config
	// set" is accepted too). A container's name allows all its subcommands
	// ("cluster"). Case-insensitive. Names that are not denied are ignored.
	// An allowed command gets the class it would have had, except MONITOR,
	// SYNC and PSYNC (ClassSubscribe) and CLIENT REPLY and SCRIPT DEBUG
	// (ClassPinned), as the rules in table.go explain.
	Allow []string
}

// Table is the command table: what each command name (and each container
// command's subcommand) is, for the proxy's purposes. It is built from the
// live master's COMMAND reply (NewTable) or from the built-in Redis 7.0 one
// (BuiltinTable). Immutable after construction: safe for concurrent use.
type Table struct {
	cmds index
	n    int
}

// special marks commands whose class depends on their arguments.
type special uint8

const (
	specialNone special = iota
	// XREAD / XREADGROUP block only when BLOCK is given.
	specialStreamRead
	// EVAL is a read when its body declares itself no-writes.
	specialEval
	// EVALSHA is a read when the ScriptCache knows its body is.
	specialEvalSha
)

type entry struct {
	info    Info
	special special
	subs    index // a container's subcommands, by the part after '|'
}

// A rule is how the proxy treats a command whatever its flags say. Every rule
// applies even to a command the server did not list (PROXY never is; CLIENT
// NO-TOUCH and WAITAOF are newer than 7.0), so a rule's meaning does not
// depend on which server the table came from.
type rule struct {
	class   Class
	local   Local
	special special
	// fromFlags: the class comes from the flags (classFromFlags), the rule
	// only adds local or special.
	fromFlags bool
	// ifAllowed is the class of a ClassDenied command the operator allowed.
	ifAllowed Class
}

// rules, by canonical name. Each group says why.
var rules = map[string]rule{
	// Answered by the proxy. The backend connections are shared by many
	// clients, so per-connection state (auth, protocol, db, name) belongs
	// to the proxy's session, like a hop-by-hop header, and is re-applied
	// by the proxy where needed. PING and QUIT need no backend at all.
	// WAIT is answered from this client's own write fence and the
	// replicas' offsets (DESIGN.md "Write rules"); asked of a shared master
	// connection it would measure someone else's writes. PROXY is ours.
	"ping":           {class: ClassLocal, local: LocalPing},
	"quit":           {class: ClassLocal, local: LocalQuit},
	"auth":           {class: ClassLocal, local: LocalAuth},
	"hello":          {class: ClassLocal, local: LocalHello},
	"select":         {class: ClassLocal, local: LocalSelect},
	"reset":          {class: ClassLocal, local: LocalReset},
	"wait":           {class: ClassLocal, local: LocalWait},
	"proxy":          {class: ClassLocal, local: LocalProxy},
	"client|id":      {class: ClassLocal, local: LocalClientID},
	"client|getname": {class: ClassLocal, local: LocalClientGetName},
	"client|setname": {class: ClassLocal, local: LocalClientSetName},
	"client|setinfo": {class: ClassLocal, local: LocalClientSetInfo},

	// Transactions: MULTI's queue and WATCH's dirty flag live on one
	// server connection, which must be the master's (EXEC writes).
	"multi":   {class: ClassTxn, local: LocalMulti},
	"exec":    {class: ClassTxn, local: LocalExec},
	"discard": {class: ClassTxn, local: LocalDiscard},
	"watch":   {class: ClassTxn, local: LocalWatch},
	"unwatch": {class: ClassTxn, local: LocalUnwatch},

	// Pub/sub mode: the connection then carries unsolicited messages.
	// PUBLISH and PUBSUB are not here: they are ordinary master commands
	// (pubsub flag, so never reads).
	"subscribe":    {class: ClassSubscribe},
	"psubscribe":   {class: ClassSubscribe},
	"ssubscribe":   {class: ClassSubscribe},
	"unsubscribe":  {class: ClassSubscribe},
	"punsubscribe": {class: ClassSubscribe},
	"sunsubscribe": {class: ClassSubscribe},

	// Client-side caching and eviction state of the connection itself;
	// TRACKING and CACHING also make the server push invalidations on it.
	"client|tracking":     {class: ClassPinned},
	"client|caching":      {class: ClassPinned},
	"client|getredir":     {class: ClassPinned},
	"client|trackinginfo": {class: ClassPinned},
	"client|no-touch":     {class: ClassPinned},

	// CLIENT subcommands about connections: every connection to a Redis
	// node is the proxy's, shared or not, so Redis's answer would speak
	// about the proxy and CLIENT KILL could cut everybody's requests. The
	// proxy answers them about its own clients (proxy/clientcmd.go), with
	// its own ids, which CLIENT UNBLOCK translates. NO-EVICT: Redis's
	// client eviction acts on the proxy's connections, never on clients.
	"client|list":     {class: ClassLocal, local: LocalClient},
	"client|info":     {class: ClassLocal, local: LocalClient},
	"client|kill":     {class: ClassLocal, local: LocalClient},
	"client|unblock":  {class: ClassLocal, local: LocalClient},
	"client|no-evict": {class: ClassLocal, local: LocalClient},
	// CLIENT REPLY OFF|SKIP: the request is still forwarded and its reply
	// matched as usual; the proxy drops the replies the client asked not to
	// get, so the backend connection never loses count.
	"client|reply": {class: ClassLocal, local: LocalClient},

	// Denied: through the proxy a client must not change the topology,
	// stop or reconfigure a server, or see or disturb other clients'
	// traffic, which includes the proxy's shared backend connections.
	"replicaof": {class: ClassDenied}, // topology
	"slaveof":   {class: ClassDenied},
	"failover":  {class: ClassDenied},
	"cluster":   {class: ClassDenied}, // and all its subcommands
	"readonly":  {class: ClassDenied}, // cluster connection state
	"readwrite": {class: ClassDenied},
	"asking":    {class: ClassDenied},
	"shutdown":  {class: ClassDenied}, // stops a server
	"debug":     {class: ClassDenied}, // can crash, stall or reload it
	"replconf":  {class: ClassDenied}, // replication handshake
	// These turn the connection into a one-way stream (every client's
	// commands, or the replication stream); allowed, SYNC and PSYNC need a
	// dedicated connection relayed like pub/sub, never the shared one.
	// MONITOR is served by the proxy (proxy/monitor.go): it sees every
	// client's commands, the master only those routed to it.
	"monitor": {class: ClassDenied, ifAllowed: ClassLocal, local: LocalMonitor},
	"sync":    {class: ClassDenied, ifAllowed: ClassSubscribe},
	"psync":   {class: ClassDenied, ifAllowed: ClassSubscribe},
	// Server-wide configuration and users (the proxy's own included).
	"config|set":       {class: ClassDenied},
	"config|rewrite":   {class: ClassDenied},
	"config|resetstat": {class: ClassDenied},
	"acl|setuser":      {class: ClassDenied},
	"acl|deluser":      {class: ClassDenied},
	"acl|load":         {class: ClassDenied},
	"acl|save":         {class: ClassDenied},
	"module|load":      {class: ClassDenied},
	"module|loadex":    {class: ClassDenied},
	"module|unload":    {class: ClassDenied},
	// Pausing acts on every connection of the server: through a proxy
	// those are the shared backend connections carrying everybody's
	// requests (and the proxy's own fences and polls).
	"client|pause":   {class: ClassDenied},
	"client|unpause": {class: ClassDenied},
	// SCRIPT DEBUG turns the connection into an interactive debugger (and
	// SYNC mode blocks the server). Allowed, it at least needs the client's
	// own connection.
	"script|debug": {class: ClassDenied, ifAllowed: ClassPinned},

	// Exceptions to the flag rule: readonly commands whose answer on a
	// replica differs from the master's, kept on the master (issue 13; the
	// reasons are from the Redis 7.0 source).
	// TOUCH exists for its side effect on the LRU/LFU clock, and only the
	// master's clock decides eviction.
	"touch": {class: ClassWrite},
	// OBJECT: FREQ and IDLETIME report that clock, which differs on every
	// node (replica reads touch their own); ENCODING depends on how the
	// value was built (a replica that loaded an RDB re-encodes small
	// values compactly, while on the master listpack -> hashtable is one
	// way: rdbLoadObject vs hashTypeConvert); REFCOUNT on whether the
	// value is a shared integer, which loading decides anew.
	"object|freq":     {class: ClassWrite},
	"object|idletime": {class: ClassWrite},
	"object|encoding": {class: ClassWrite},
	"object|refcount": {class: ClassWrite},
	// DBSIZE counts the keys in the dict, and a replica never deletes an
	// expired key itself: it waits for the master's DEL (db.c
	// expireIfNeeded: "if we are running in the context of a replica ...
	// return 1" without deleting), so it counts logically expired keys.
	"dbsize": {class: ClassWrite},
	// RANDOMKEY on a replica may return a logically expired key (db.c
	// dbRandomKey gives one up after 100 tries "if the DB is composed only
	// of keys with an expire set"); the master deletes it and looks again.
	"randomkey": {class: ClassWrite},
	// MEMORY USAGE measures the node's own allocation (encoding as for
	// OBJECT ENCODING, dict sizes); MEMORY STATS/DOCTOR describe the node.
	"memory|usage":  {class: ClassWrite},
	"memory|stats":  {class: ClassWrite},
	"memory|doctor": {class: ClassWrite},
	// DUMP serialises the node's encoding of the value (rdbSaveObject), so
	// the payload differs with OBJECT ENCODING.
	"dump": {class: ClassWrite},
	// Consumer-group state is the master's: XREADGROUP and XACK change it
	// there and reach replicas as XCLAIM/XGROUP SETID effects, with the
	// replica's own clock for consumers' seen-time (XINFO CONSUMERS idle,
	// XPENDING idle) and, in 7.0, without the group's entries-read
	// (XINFO GROUPS entries-read/lag differ: streamPropagateGroupID).
	"xinfo|groups":    {class: ClassWrite},
	"xinfo|consumers": {class: ClassWrite},
	"xinfo|stream":    {class: ClassWrite},
	"xpending":        {class: ClassWrite},
	// A SCAN cursor is a position in one server's hash table, whose hash
	// seed is random per process: a cursor from one node means nothing on
	// another, so an iteration must stay on one node. Only the master is
	// reachable by every step of every iteration (steps may come from
	// different connections of a pool).
	"scan":  {class: ClassWrite},
	"hscan": {class: ClassWrite},
	"sscan": {class: ClassWrite},
	"zscan": {class: ClassWrite},
	// ECHO has no flags worth a read but depends on no data at all: any
	// node gives the same answer.
	"echo": {class: ClassRead},
	// WAITAOF (7.2) blocks until the AOF is fsynced; the proxy cannot
	// answer it as it answers WAIT.
	"waitaof": {class: ClassBlocking},

	// Argument-dependent classes; the base class comes from the flags
	// without "blocking" (XREAD: read; XREADGROUP: write, as it changes the
	// group's pending list), and Classify refines it.
	"xread":      {fromFlags: true, special: specialStreamRead},
	"xreadgroup": {fromFlags: true, special: specialStreamRead},
	// EVAL and EVALSHA lack the readonly flag (the script decides); EVAL_RO,
	// EVALSHA_RO and FCALL_RO have it. FCALL stays on the master: a
	// function's flags are only known from FUNCTION LIST.
	"eval":    {fromFlags: true, special: specialEval},
	"evalsha": {fromFlags: true, special: specialEvalSha},
	// SCRIPT LOAD runs on the master; the proxy also caches the body.
	"script|load": {fromFlags: true, local: LocalScriptLoad},
	// SCRIPT KILL and FUNCTION KILL must reach the node running the slow
	// script, and a read-only one may run on a replica: the proxy sends
	// them to every node and answers as the node that had a script would.
	"script|kill":   {class: ClassLocal, local: LocalScriptKill},
	"function|kill": {class: ClassLocal, local: LocalScriptKill},
}

// classFromFlags is the rule for every command without a rule: a read only
// when the server promises it changes nothing (readonly) and nothing else
// says it must stay on the master. Everything else, including a command
// with no flags at all, goes to the master.
func classFromFlags(f Flag) Class {
	if f&FlagBlocking != 0 {
		return ClassBlocking
	}
	if f&FlagReadonly != 0 && f&(FlagWrite|FlagAdmin|FlagPubsub|FlagMayReplicate) == 0 {
		return ClassRead
	}
	return ClassWrite
}

// NewTable builds a table from the specs the live master lists (see
// ParseCommandReply) and the proxy's rules.
func NewTable(specs []CommandSpec, opt Options) *Table {
	allow := map[string]bool{}
	for _, a := range opt.Allow {
		a = strings.ToLower(strings.TrimSpace(a))
		a = strings.Join(strings.Fields(a), "|")
		allow[a] = true
	}

	type node struct {
		spec CommandSpec
		subs map[string]*CommandSpec
	}
	top := map[string]*node{}
	get := func(name string) *node {
		n := top[name]
		if n == nil {
			n = &node{spec: CommandSpec{Name: name}, subs: map[string]*CommandSpec{}}
			top[name] = n
		}
		return n
	}
	addSub := func(parent string, s CommandSpec) {
		name := strings.ToLower(s.Name)
		if !strings.Contains(name, "|") {
			name = parent + "|" + name
		}
		p, sub, _ := strings.Cut(name, "|")
		s.Name = p + "|" + sub
		s.Subcommands = nil
		get(p).subs[sub] = &s
	}
	for _, s := range specs {
		name := strings.ToLower(s.Name)
		if p, _, ok := strings.Cut(name, "|"); ok {
			// COMMAND INFO config|get lists the subcommand at top level.
			addSub(p, s)
			continue
		}
		n := get(name)
		n.spec = s
		n.spec.Name = name
		for _, sub := range s.Subcommands {
			addSub(name, sub)
		}
	}
	for name := range rules {
		if p, sub, ok := strings.Cut(name, "|"); ok {
			if n := get(p); n.subs[sub] == nil {
				n.subs[sub] = &CommandSpec{Name: name}
			}
		} else {
			get(name)
		}
	}

	t := &Table{}
	var entries []*entry
	for name, n := range top {
		e := makeEntry(&n.spec, allow, false)
		var subs []*entry
		for _, s := range n.subs {
			se := makeEntry(s, allow, e.info.Class == ClassDenied)
			subs = append(subs, se)
		}
		e.subs = buildIndex(subs, func(se *entry) string { return se.info.Name[len(name)+1:] })
		t.n += 1 + len(subs)
		entries = append(entries, e)
	}
	t.cmds = buildIndex(entries, func(e *entry) string { return e.info.Name })
	return t
}

//go:generate go run gen_builtin.go

// BuiltinTable is NewTable over the COMMAND reply of the Redis 7.0 server
// builtin_table.go was generated from: the fallback when the master cannot
// be asked.
func BuiltinTable(opt Options) *Table {
	return NewTable(builtinSpecs, opt)
}

// makeEntry applies the rules to one spec. deniedByParent: the container is
// denied (CLUSTER, unless allowed as a whole): its subcommands without a
// rule of their own are denied too, unless allowed by their own name.
func makeEntry(s *CommandSpec, allow map[string]bool, deniedByParent bool) *entry {
	e := &entry{info: Info{
		Name:     s.Name,
		Flags:    ParseFlags(s.Flags),
		Arity:    s.Arity,
		FirstKey: s.FirstKey,
		LastKey:  s.LastKey,
		KeyStep:  s.KeyStep,
	}}
	r, ok := rules[s.Name]
	switch {
	case deniedByParent && !ok:
		e.info.Class = ClassDenied
		if allow[s.Name] {
			e.info.Class = classFromFlags(e.info.Flags)
		}
		return e
	case !ok || r.fromFlags:
		e.info.Class = classFromFlags(e.info.Flags)
	default:
		e.info.Class = r.class
	}
	e.info.Local = r.local
	e.special = r.special
	if e.special == specialStreamRead || e.special == specialEval || e.special == specialEvalSha {
		e.info.Class = classFromFlags(e.info.Flags &^ FlagBlocking)
	}
	if e.info.Class == ClassDenied && allowed(allow, s.Name) {
		e.info.Class = r.ifAllowed
	}
	return e
}

func allowed(allow map[string]bool, name string) bool {
	if allow[name] {
		return true
	}
	p, _, ok := strings.Cut(name, "|")
	return ok && allow[p]
}

// Len returns the number of names the table knows, subcommands included.
func (t *Table) Len() int { return t.n }

// Lookup returns the Info of a command by canonical name ("get",
// "config|get"), as Classify gives it for a request without arguments that
// refine it. Case-insensitive.
func (t *Table) Lookup(name string) (Info, bool) {
	p, sub, isSub := strings.Cut(name, "|")
	e := t.cmds.find([]byte(p))
	if e == nil {
		return Info{}, false
	}
	if isSub {
		if e = e.subs.find([]byte(sub)); e == nil {
			return Info{}, false
		}
	}
	return e.info, true
}

// Names returns every name the table knows, subcommands as "name|sub",
// sorted.
func (t *Table) Names() []string {
	var out []string
	for _, e := range t.cmds.entries() {
		out = append(out, e.info.Name)
		for _, s := range e.subs.entries() {
			out = append(out, s.info.Name)
		}
	}
	sort.Strings(out)
	return out
}

// Classify says what the request args (args[0] is the command name; the
// slices may alias the client's buffer and are not retained) is and where it
// may run. scripts may be nil (EVALSHA then stays on the master). It never
// allocates and never fails: an unknown command is ClassWrite with Name "".
//
// Beyond the name it looks at: a container's subcommand (args[1]; an
// unknown one gets the container's Info), XREAD/XREADGROUP options (BLOCK
// makes them ClassBlocking), EVAL's script body and EVALSHA's digest.
func (t *Table) Classify(args [][]byte, scripts *ScriptCache) Info {
	if len(args) == 0 {
		return Info{}
	}
	e := t.cmds.find(args[0])
	if e == nil {
		return Info{}
	}
	if len(args) > 1 && e.subs.size() > 0 {
		if s := e.subs.find(args[1]); s != nil {
			e = s
		}
	}
	switch e.special {
	case specialStreamRead:
		if streamReadBlocks(args) {
			info := e.info
			info.Class = ClassBlocking
			return info
		}
	case specialEval:
		if e.info.Class == ClassWrite && len(args) > 1 && ScriptReadOnly(args[1]) {
			info := e.info
			info.Class = ClassRead
			return info
		}
	case specialEvalSha:
		if e.info.Class == ClassWrite && len(args) > 1 {
			if _, ro, ok := scripts.Lookup(args[1]); ok && ro {
				info := e.info
				info.Class = ClassRead
				return info
			}
		}
	}
	return e.info
}

// streamReadBlocks walks XREAD / XREADGROUP options as redis 7.0 t_stream.c
// xreadCommand does, up to STREAMS: the call can block only if BLOCK came
// before it. Options redis would reject end the walk as "does not block":
// redis replies with an error at once.
func streamReadBlocks(args [][]byte) bool {
	group := resp.EqualFold(args[0], "xreadgroup")
	block := false
	for i := 1; i < len(args); i++ {
		more := len(args) - i - 1
		a := args[i]
		switch {
		case more > 0 && resp.EqualFold(a, "block"):
			block = true
			i++
		case more > 0 && resp.EqualFold(a, "count"):
			i++
		case more > 0 && resp.EqualFold(a, "streams"):
			return block
		case more >= 2 && resp.EqualFold(a, "group"):
			if !group {
				return false
			}
			i += 2
		case resp.EqualFold(a, "noack"):
			if !group {
				return false
			}
		default:
			return false
		}
	}
	return false
}

// index is an immutable open-addressing hash table from a name to its entry,
// looked up case-insensitively straight from the request bytes: no
// lowercase copy, no length limit, no allocation, and O(1) work before the
// final comparison however long the name a client sends. Linear probing at
// a load factor of at most 1/4 (about 1.2 probes on average for the 7.0
// table); maxProbe bounds every lookup, found or not.
type index struct {
	slots    []slot
	mask     uint32
	maxProbe uint32
}

type slot struct {
	hash  uint32
	e     *entry
	key   string // lowercase
	upper string // key in uppercase: clients mostly send one or the other
}

func buildIndex(entries []*entry, key func(*entry) string) index {
	if len(entries) == 0 {
		return index{}
	}
	size := 4
	for size < 4*len(entries) {
		size *= 2
	}
	ix := index{slots: make([]slot, size), mask: uint32(size - 1)}
	// Insert in name order so the layout does not depend on map order.
	sort.Slice(entries, func(i, j int) bool { return key(entries[i]) < key(entries[j]) })
	for _, e := range entries {
		k := key(e)
		h := hashFold([]byte(k))
		var probe uint32
		for i := h & ix.mask; ; i = (i + 1) & ix.mask {
			if ix.slots[i].e == nil {
				ix.slots[i] = slot{hash: h, e: e, key: k, upper: strings.ToUpper(k)}
				break
			}
			probe++
		}
		if probe+1 > ix.maxProbe {
			ix.maxProbe = probe + 1
		}
	}
	return ix
}

func (ix *index) size() int { return len(ix.slots) }

func (ix *index) find(name []byte) *entry {
	if len(ix.slots) == 0 {
		return nil
	}
	h := hashFold(name)
	i := h & ix.mask
	for n := uint32(0); n < ix.maxProbe; n++ {
		s := &ix.slots[i]
		if s.e == nil {
			return nil
		}
		if s.hash == h && (string(name) == s.key || string(name) == s.upper || equalLower(name, s.key)) {
			return s.e
		}
		i = (i + 1) & ix.mask
	}
	return nil
}

func (ix *index) entries() []*entry {
	var out []*entry
	for _, s := range ix.slots {
		if s.e != nil {
			out = append(out, s.e)
		}
	}
	return out
}

// hashFold hashes a name in O(1): its length and its first and last 8
// bytes (overlapping for short names), each byte with bit 0x20 set, so
// names equal but for ASCII case hash alike (a few other bytes collide too,
// e.g. '@' and '`', which equalLower sorts out). Command names differ early
// or late and in length; the table's maxProbe shows the spread (tests).
func hashFold(b []byte) uint32 {
	const fold = 0x2020202020202020
	n := len(b)
	var x, y uint64
	if n >= 8 {
		x = binary.LittleEndian.Uint64(b)
		y = binary.LittleEndian.Uint64(b[n-8:])
	} else {
		for i := n - 1; i >= 0; i-- {
			x = x<<8 | uint64(b[i])
		}
		y = x
	}
	h := (x|fold)*0x9e3779b97f4a7c15 ^ (y|fold)*0xc2b2ae3d27d4eb4f ^ uint64(n)*0x165667b19e3779f9
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return uint32(h)
}

// equalLower reports whether b equals the lowercase key ignoring ASCII case.
func equalLower(b []byte, key string) bool {
	if len(b) != len(key) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if lower(b[i]) != key[i] {
			return false
		}
	}
	return true
}
