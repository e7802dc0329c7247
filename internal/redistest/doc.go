// Package redistest starts real redis-server processes for integration tests
// and benchmarks: a master, replicas of it (--replicaof) and optionally
// Sentinels, each on a free 127.0.0.1 port with its own temporary dir and
// log (redis.log in Node.Dir), persistence off.
//
// Every process is killed by PID and reaped from the TB's Cleanup; Pdeathsig
// kills it if the test binary dies first. Nothing is mocked and nothing is
// skipped: when redis-server is not installed the harness calls TB.Fatalf
// with the command that installs it. Linux only.
package redistest
