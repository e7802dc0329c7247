// Package difftest is the differential test of replproxy's transparency
// (issue 13): the same command sequences go to a plain Redis and, through
// replproxy, to a master with two replicas, in every consistency mode, and
// the replies must be the same bytes once what must differ (ids, addresses,
// times, run ids) is normalised. Commands come from the server's own
// COMMAND DOCS, with generated arguments: valid ones, invalid ones, wrong
// types and wrong arity, alone and inside MULTI; then scripts and
// functions (nested and huge replies), pub/sub in RESP2 and RESP3, blocking
// calls, CLIENT subcommands and keys with TTLs.
//
// What is not compared is listed, with the reason, in skipped (never the
// same on two servers, or denied by the proxy by design) and in the
// README's "Differences from a single Redis".
//
// The package has no non-test code: the test needs the proxy package,
// real redis-server processes (internal/redistest) and nothing else.
package difftest
