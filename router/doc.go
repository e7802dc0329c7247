// Package router decides, for every client request, where it may run.
//
// Requests flow in as argument slices from resp.RequestParser and out as an
// Info: a Class (master, replica, answered by the proxy, transaction,
// blocking, pub/sub, pinned, denied), the canonical name and the command's
// flags and key positions. The decision comes from a Table built from the
// live master's COMMAND reply (ParseCommandReply, NewTable), or from the
// built-in Redis 7.0 one (BuiltinTable) when the master cannot be asked, plus
// the proxy's own rules (table.go), each with the reason it exists.
//
// The principle: a command is a read only when the server flags it readonly
// and nothing else says otherwise. Everything unknown, ambiguous or stateful
// goes to the master, the one node that runs every command correctly.
// Scripts are reads when they declare themselves so (a "#!lua
// flags=no-writes" shebang, checked exactly as Redis checks it); the
// ScriptCache remembers script bodies so EVALSHA can be judged too.
//
// Table.Classify is on the proxy's hot path: it looks names up
// case-insensitively straight from the request bytes and never allocates.
// Tables and ScriptCaches are safe for concurrent use by every event loop;
// the package does no I/O (the topology types in topology.go are plain data
// published by the proxy's monitor).
package router
