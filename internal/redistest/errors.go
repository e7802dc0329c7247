package redistest

import "errors"

var (
	// errRedistestPortInUse means the server could not bind its port: another
	// process took it between our probe and the server's bind.
	errRedistestPortInUse = errors.New("redistest: port already in use")

	// errRedistestExited means the process ended before it answered PING.
	errRedistestExited = errors.New("redistest: process exited")

	// errRedistestBadReply means a node answered the harness with something
	// that is not the RESP2 it expects.
	errRedistestBadReply = errors.New("redistest: bad reply")

	// errRedistestNoFreePort means the port allocator gave up.
	errRedistestNoFreePort = errors.New("redistest: no free port")
)
