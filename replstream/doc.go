// Package replstream is replproxy's own replica link to the master: it
// follows the master's replication stream to know, to the byte and to the
// millisecond, where the master's history is.
//
// # What flows through it
//
// One goroutine (Link.Run) owns a TCP connection to the master and performs
// a replica's handshake: PING, AUTH when configured, INFO server (to learn
// the run_id), REPLCONF listening-port 0, REPLCONF capa eof capa psync2,
// then PSYNC <replid> <offset+1> (PSYNC ? -1 the first time). On
// +FULLRESYNC the RDB that follows is skipped without being parsed or kept
// (disk-based "$<len>" and diskless "$EOF:<mark>" framings, keep-alive
// newlines before either); on +CONTINUE the stream resumes where the link
// left it, and a new replication ID in it is adopted with the offset kept.
// After that every byte of the stream (plain RESP commands: SELECT, writes
// as effects, PEXPIREAT, DEL of expired keys, PUBLISH, the master's PING
// every repl-ping-replica-period, REPLCONF GETACK) is parsed into whole
// commands and counted: Offset equals what the master reports as
// master_repl_offset once it produced those bytes. A dropped connection is
// re-established with backoff and resumed with +CONTINUE.
//
// With Config.Host set, a plain TCP connection that streams is handed to
// the Host (the proxy's event loop), which reads it and passes the bytes to
// Feed: the same parsing and history code, run on the Host's goroutine
// while Run's goroutine waits, acks through the Host and watches the read
// timeout (host.go). "Link goroutine" below means whichever of the two
// holds the connection: never both at once.
//
// At a failover the link follows the promoted replica from the split
// (SetMasterContinuing): it forks its history there, sharing the backlog
// below it, and continues with PSYNC <replid2> <split+1>, which the replica
// answers +CONTINUE; the history it left stays whole (HistoryOf), for the
// replay of the suffix the replica lacks. Without the fork the replica
// would refuse the link's own offset, beyond what it holds, and the link
// would resync in full, blind meanwhile.
//
// Out of the link flow, to readers on any goroutine, published with atomic
// stores and read without locks or allocation:
//   - the position: ReplID, Offset (Position for both at once), Connected;
//   - a time index: the arrival time of every read from the socket, so
//     TimeAt(off) tells when the master's offset went past off and
//     LagMs(applied, now) how old the oldest write a replica at applied
//     lacks is (bounded lag in milliseconds, not Redis's whole seconds);
//   - a backlog of the most recent stream bytes (Backlog), the exact
//     commands a replica that stopped at some offset has not applied;
//   - Changes, a signal after every history change: a full resync (and, as
//     soon as its answer arrives, one that moves the offset backwards: the
//     seed hazard of a master restarted empty), a new replication ID, a new
//     run_id;
//   - Stats, a snapshot of counters and state.
//
// # Staying out of WAIT: the ack policy
//
// The link acknowledges offset 0, always: every AckInterval and in answer to
// every REPLCONF GETACK. A master counts a replica for WAIT when its acked
// offset (repl_ack_off, raised only by a larger ack) reaches the waiting
// client's target (replicationCountAcksByOffset), so the link never makes a
// WAIT succeed that real replicas did not satisfy. It was checked against
// Redis 7.0 that offset 0 is accepted and harmless everywhere else the
// master looks at it: REPLCONF ACK still refreshes the ack time and puts a
// diskless replica online (the first ack after the RDB starts its stream);
// INFO and ROLE show the link with offset=0; FAILOVER without TO never picks
// it (updateFailoverStatus wants a replica whose ack equals the master's
// offset), and FAILOVER TO <ip> 0 would point the master at a port nothing
// listens on. Two consequences remain, both pinned down by tests:
//   - A WAIT that is a connection's very first command waits for offset 0
//     (Redis 7.0 sets a connection's WAIT target to the master's offset
//     after each command it runs, writes or not) and counts the link like
//     every other replica. Any client that wrote first is unaffected.
//   - A master shutting down (SHUTDOWN, SIGTERM) waits up to shutdown-timeout
//     (10 s by default) for all its replicas to reach its offset, and the
//     link never does: such a shutdown takes the full timeout and logs the
//     link as a lagging replica. Use SHUTDOWN NOW, or shutdown-timeout 0, or
//     stop the proxy first, where that matters.
//
// Acking the real offset would make WAIT count the proxy as a copy of the
// data, which it is not; that is worse than both effects above.
//
// # The master's min-replicas-to-write
//
// The ack's time, not its offset, decides whether the master counts a
// replica as "good" for its own min-replicas-to-write / min-replicas-max-lag
// (lag = now - last ack, whole seconds). The link acks every second, so it
// always counts as one good replica: with min-replicas-to-write N on the
// master, N-1 real replicas are enough to accept writes while the proxy is
// connected. Raise the master's setting by one, or better, leave it to
// replproxy's own gate (--min-replicas-to-write), which counts only real
// replicas and measures their lag in milliseconds from this package's time
// index.
//
// # Never promoted
//
// The link announces listening port 0. The master lists it as
// "ip=...,port=0", so a Sentinel learns it as a replica at <ip>:0, cannot
// connect to it (flags "slave,disconnected", later s_down) and never selects
// an instance it cannot reach: with real replicas it promotes one of them,
// and with only the link it aborts the failover
// (-failover-abort-no-good-slave). Tests run this against three real Sentinels. replproxy's own
// replica discovery (from the master's ROLE / INFO) must skip port-0
// entries for the same reason: nothing listens there.
//
// # TLS
//
// With Config.TLS the link is a TLS client of the master's tls-port, as a
// Redis replica with tls-replication yes: the handshake comes right after
// the TCP connect, within DialTimeout, and a master whose certificate does
// not verify is never followed (the attempt fails and is retried with the
// usual backoff). Nothing else changes: offsets count the plaintext stream.
//
// # Limits
//
// TimeAt and LagMs answer for the last TimeIndexSize reads and Backlog for
// the last BacklogBytes bytes; older questions get "unknown". Times are
// arrival times at the link: bytes produced while the link was down are
// dated when they arrive after the reconnection, so lags of writes made in
// that window are underestimated (Connected is false meanwhile). During a
// full resync Offset, ReplID, TimeAt and Backlog still describe the
// previous history until the RDB has been skipped.
package replstream
