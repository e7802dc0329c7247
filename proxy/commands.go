package proxy

// cmdKind says how the proxy treats a command. The read/write split replaces
// this table with package router's, built from the live COMMAND INFO; until
// then every forwarded command goes to the master and only the commands that
// touch per-connection state need a kind.
type cmdKind uint8

const (
	kindForward   cmdKind = iota // shared master connection
	kindLocal                    // answered by the proxy
	kindPin                      // needs a dedicated connection while its state lasts
	kindBlocking                 // may block: dedicated connection for the call
	kindSubscribe                // enters subscribe mode: dedicated connection, replies relayed
	kindDenied                   // would change the topology or another client's view
)

// local command ids, so the dispatcher switches on an int, not on strings.
type localID uint8

const (
	localNone localID = iota
	localPing
	localQuit
	localAuth
	localHello
	localSelect
	localClient
	localReset
	localMulti
	localExec
	localDiscard
	localWatch
	localUnwatch
	localXRead
)

type cmdInfo struct {
	kind cmdKind
	id   localID
}

// maxCmdNameLen bounds the lowercase copy of a command name; longer names
// are unknown to Redis anyway and are forwarded as they are.
const maxCmdNameLen = 32

var commandTable = map[string]cmdInfo{
	"ping":   {kindLocal, localPing},
	"quit":   {kindLocal, localQuit},
	"auth":   {kindLocal, localAuth},
	"hello":  {kindLocal, localHello},
	"select": {kindLocal, localSelect},
	"client": {kindLocal, localClient},
	"reset":  {kindLocal, localReset},

	// MULTI and WATCH state lives on the server connection.
	"multi":   {kindPin, localMulti},
	"exec":    {kindPin, localExec},
	"discard": {kindPin, localDiscard},
	"watch":   {kindPin, localWatch},
	"unwatch": {kindPin, localUnwatch},

	"blpop":      {kindBlocking, localNone},
	"brpop":      {kindBlocking, localNone},
	"brpoplpush": {kindBlocking, localNone},
	"blmove":     {kindBlocking, localNone},
	"blmpop":     {kindBlocking, localNone},
	"bzpopmin":   {kindBlocking, localNone},
	"bzpopmax":   {kindBlocking, localNone},
	"bzmpop":     {kindBlocking, localNone},
	"xread":      {kindForward, localXRead}, // blocking only with BLOCK
	"xreadgroup": {kindForward, localXRead},

	"subscribe":    {kindSubscribe, localNone},
	"psubscribe":   {kindSubscribe, localNone},
	"ssubscribe":   {kindSubscribe, localNone},
	"unsubscribe":  {kindSubscribe, localNone},
	"punsubscribe": {kindSubscribe, localNone},
	"sunsubscribe": {kindSubscribe, localNone},

	// A client must not be able to change the topology, stop a server, or
	// see or alter other clients' traffic through the proxy.
	"monitor":   {kindDenied, localNone},
	"sync":      {kindDenied, localNone},
	"psync":     {kindDenied, localNone},
	"replconf":  {kindDenied, localNone},
	"replicaof": {kindDenied, localNone},
	"slaveof":   {kindDenied, localNone},
	"shutdown":  {kindDenied, localNone},
	"debug":     {kindDenied, localNone},
	"failover":  {kindDenied, localNone},
	"cluster":   {kindDenied, localNone},
	"readonly":  {kindDenied, localNone},
	"readwrite": {kindDenied, localNone},
	"asking":    {kindDenied, localNone},
}

// deniedSubcommands are denied forms of otherwise allowed container commands.
var deniedSubcommands = map[string]map[string]bool{
	"config": {"set": true, "rewrite": true, "resetstat": true},
	"acl":    {"setuser": true, "deluser": true, "load": true, "save": true, "dryrun": false},
	"module": {"load": true, "loadex": true, "unload": true},
}

// lookupCommand finds a command's info without allocating: the name is
// lowered into a stack buffer and the map index converts it in place.
func lookupCommand(name []byte) (cmdInfo, [maxCmdNameLen]byte, int) {
	var low [maxCmdNameLen]byte
	if len(name) > maxCmdNameLen {
		return cmdInfo{}, low, 0
	}
	n := lowerInto(low[:], name)
	return commandTable[string(low[:n])], low, n
}

func lowerInto(dst, src []byte) int {
	n := copy(dst, src)
	for i := 0; i < n; i++ {
		if c := dst[i]; c >= 'A' && c <= 'Z' {
			dst[i] = c + ('a' - 'A')
		}
	}
	return n
}
