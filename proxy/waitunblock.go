package proxy

import "github.com/replproxy/replproxy/resp"

// unblockWait is CLIENT UNBLOCK of a client blocked in the proxy's own
// WAIT (wait.go), run on that client's loop. As Redis does for a blocked
// WAIT (replyToBlockedClientTimedOut): TIMEOUT answers the WAIT with the
// replicas known to have the write so far, ERROR with -UNBLOCKED. It
// reports whether t was blocked in WAIT; the WAIT leaves l.parked at the
// next checkParked, which skips sessions no longer waiting.
func (l *loop) unblockWait(t *session, asError bool) bool {
	w := t.waiting
	if t.closed || w == nil {
		return false
	}
	t.waiting = nil
	var buf [64]byte
	var reply []byte
	if asError {
		reply = resp.AppendError(buf[:0], errUnblocked)
	} else {
		n := 0
		if w.fence != unprovableFence {
			n = l.ackedReplicas(w.fence)
		}
		l.stats.waits[waitTimeout].Add(1)
		reply = resp.AppendInt(buf[:0], int64(n))
	}
	t.deliver(nil, w.seq, reply)
	t.resume()
	return true
}

const errUnblocked = "UNBLOCKED client unblocked via CLIENT UNBLOCK"

var oneReply = []byte(":1\r\n")
