// Package clientlibs runs real Redis client libraries (ioredis, node-redis)
// and redis-cli's own features against replproxy and against a plain Redis,
// and requires the same results from both (issue 13: an application or a
// client library must not notice the proxy).
//
// What flows through it: the Go test starts a plain Redis and a master with
// two replicas behind an in-process proxy, both with a password, then runs
// each Node script in js/ once against each, concurrently. A script runs
// the library's common surface step by step (connect with and without AUTH
// and HELLO, pipelines, MULTI/EXEC, Lua scripts, pub/sub, blocking calls,
// SCAN iterators, CLIENT SETNAME on connect, SELECT, reconnect after every
// connection on the Redis side was killed, RESP3 types and pushes, error
// replies, a 1 MiB value) and prints one JSON object {step: result}; the two
// objects must be equal step by step. Errors are results too, so an error
// reply surfaced differently is a difference.
//
// The libraries are pinned in package.json / package-lock.json; `npm ci`
// installs them into node_modules (make test does, and so does the test
// when node_modules is missing). Without node or npm the test fails when
// CI=true and skips, saying why, elsewhere.
//
// The package has no non-test code.
package clientlibs
