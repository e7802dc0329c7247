// Package proxy is replproxy's data plane: a gnet event handler that accepts
// Redis clients, parses their requests with package resp, answers the
// per-connection commands itself (AUTH, HELLO, SELECT, CLIENT SETNAME, PING,
// QUIT, RESET) and forwards everything else as raw bytes to backend
// connections registered on the client's own event loop.
//
// What flows through it: request bytes from a client are parsed only far
// enough to find the command name, then appended unchanged to a backend's
// output buffer together with a pending entry (session, sequence number).
// Reply bytes from the backend are scanned for their end only and handed to
// the session that owns the head pending entry; the session releases replies
// to its client strictly in request order, whatever order they completed in.
//
// Ownership: a session, the backends of its loop, their pending queues and
// buffers belong to one event loop and are touched only from that loop's
// callbacks. The Server's shared fields are atomics or immutable after New.
//
// Hardening: the settings a reload may change (users, the default
// consistency, limits, allowed commands) are one immutable liveConfig
// behind an atomic pointer (reload.go); sessions read it when they need a
// setting, so Reload reaches every client at once and no session sees half
// of one. A client of a TLS listener is a tlsConn (tlsconn.go): the session
// reads and writes plaintext through it, and crypto/tls runs on the loop
// once the handshake (on a goroutine) is done. Upstream TLS connections are
// relayed through a socketpair (tls.go), so backends never see TLS.
// Listeners and protected mode are in listen.go, client limits (auth
// timeout, output buffer classes) in limits.go.
package proxy
