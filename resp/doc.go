// Package resp frames the Redis serialization protocol (RESP2 and RESP3) for
// a proxy that forwards bytes instead of values.
//
// Client bytes flow in through RequestParser, which finds one request frame
// (multibulk or inline) and hands back its arguments as slices of the
// caller's buffer, so the proxy can classify the command and forward the
// original bytes untouched. Backend bytes flow in through ReplyScanner,
// which only finds where one complete reply ends, so the reply can be passed
// through raw. Replies the proxy makes itself flow out through the Append*
// encoders, which append to a caller-owned buffer.
//
// Everything here is a pure function or a small state machine over []byte:
// no I/O, no goroutines, no allocation on the steady state. The incremental
// parsers remember how far into a frame they got as offsets and report, via
// Need, how many bytes the frame needs at least, so a large value arriving in
// many reads is looked at O(1) times instead of once per read (the same idea
// as redis-server's processMultibulkBuffer). Lengths read from the wire are
// checked against Limits before they are trusted, and nothing is allocated
// from a peer-supplied length.
package resp
