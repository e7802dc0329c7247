package proxy

import "errors"

// Sentinel errors returned by New and Serve.
var (
	ErrProxyNoMaster      = errors.New("proxy: no master address configured")
	ErrProxyBadConfig     = errors.New("proxy: invalid configuration")
	ErrProxyNotSupported  = errors.New("proxy: not supported yet")
	ErrProxyBackendClosed = errors.New("proxy: backend connection closed")
)

// Error replies sent to clients. They keep Redis's own prefixes and, where
// Redis has a text for the same situation, Redis's own text, so client
// libraries recognise them.
const (
	errNoAuth         = "NOAUTH Authentication required."
	errHelloNoAuth    = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	errHelloNoAuth70  = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
	errWrongPass      = "WRONGPASS invalid username-password pair or user is disabled."
	errAuthNoPassword = "ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"
	errNoProto        = "NOPROTO unsupported protocol version"
	errDBRange        = "ERR DB index is out of range"
	errNotInteger     = "ERR value is not an integer or out of range"
	errClientName     = "ERR Client names cannot contain spaces, newlines or special characters."
	errMaxClients     = "ERR max number of clients reached"
	errBackendLost    = "ERR replproxy: connection to the master was lost before the reply arrived (the command may or may not have been executed)"
	// errUnwitnessed: the write ran, but its master was lost (died,
	// demoted) before the proxy's replication link received it, so it may
	// be missing from the next master (witness.go). Like errBackendLost it
	// says "may", and the proxy never retries it.
	errUnwitnessed     = "ERR replproxy: the master ran the write but was lost before the proxy's replication link received it (the write may be lost in the failover)"
	errBackendDown     = "ERR replproxy: master is unavailable: "
	errSubscribedLocal = "ERR replproxy: AUTH and HELLO are not accepted while this connection is in subscribe mode; send RESET first"
	errProxyDraining   = "ERR replproxy: shutting down"
	// errGuarding: the master's history is in doubt (it restarted, maybe
	// empty) and nothing may run on it until the guard has decided.
	// TRYAGAIN is the prefix Redis uses for "not now, retry".
	// errMasterUnconfirmed: the master connection was lost and the
	// control plane has not seen the master answer since (gate.go).
	errMasterUnconfirmed = "TRYAGAIN replproxy: the connection to the master was lost and the master has not answered the proxy since; retry shortly"
	errGuarding          = "TRYAGAIN replproxy: the master was lost and the empty-master guard is protecting the replicas' data; retry shortly"
	// errNoMasterKnown follows errBackendDown: no Sentinel has named a
	// master that answers as one yet.
	errNoMasterKnown = "no master known yet (waiting for Sentinel)"
	// errTooManyDedicated follows errBackendDown's "master is unavailable: ".
	errTooManyDedicated = "too many dedicated connections (blocking calls, MULTI/WATCH, pub/sub, tracking); raise --max-dedicated-conns"
)
