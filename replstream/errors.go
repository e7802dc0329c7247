package replstream

import "errors"

// Sentinel errors. Everything the link reports wraps one of them with %w, so
// callers test with errors.Is; the wrapped text says what exactly happened.
var (
	// ErrConfig: New was given a Config it cannot run with.
	ErrConfig = errors.New("replstream: invalid config")

	// ErrRunning: Run was called while another Run of the same Link is
	// still going. A Link has one owner goroutine.
	ErrRunning = errors.New("replstream: Run is already running")

	// ErrProtocol: the master sent bytes that are not what the replication
	// protocol allows at that point (a malformed PSYNC answer, an RDB
	// header that is neither "$<len>" nor "$EOF:<mark>", inline commands in
	// the stream...). The link is out of sync and is dropped.
	ErrProtocol = errors.New("replstream: protocol error")

	// ErrMasterError: the master answered a handshake step, PSYNC or the
	// RDB transfer with an error reply (-NOAUTH, -WRONGPASS, -LOADING,
	// -NOMASTERLINK, ...). The link backs off and tries again.
	ErrMasterError = errors.New("replstream: master replied with an error")

	// ErrReadTimeout: nothing at all (not even the master's PING or an RDB
	// keep-alive newline) arrived for Config.ReadTimeout.
	ErrReadTimeout = errors.New("replstream: no data from the master within the read timeout")
)
