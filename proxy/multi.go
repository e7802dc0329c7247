package proxy

import (
	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
)

// Inside MULTI, Redis queues every command (but EXEC, DISCARD, MULTI,
// WATCH, QUIT and RESET) and answers it in EXEC's array. The commands the
// proxy answers itself (PING, CLIENT ..., AUTH, HELLO, PROXY, SCRIPT KILL)
// must be queued too, or EXEC's array lacks them (issue 13). The proxy
// cannot queue its own work on a Redis connection, so it queues a command
// in its place on the transaction's connection, which gets Redis's own
// queue-time checks and its QUEUED (or its error, which makes EXEC abort
// as it would on one Redis), and writes its own answer into that slot of
// EXEC's reply, computed when EXEC's reply arrives, in queue order.
//
// What is queued in the slot: the command itself when running it on the
// transaction's dedicated connection harms nothing (CLIENT ID, GETNAME,
// SETNAME, INFO, LIST, NO-EVICT: they only describe or label that
// connection, and the answer is replaced); otherwise a PING, after the
// proxy checked the arity Redis would have checked; with a wrong arity the
// command itself, which Redis refuses at once and never runs.

// multiLocal is one proxy-answered command queued in a transaction.
type multiLocal struct {
	pos  int // its slot in EXEC's array
	info router.Info
	args [][]byte // copies
}

// stand-ins queued on the transaction's connection.
var (
	pingRequest = []byte("*1\r\n$4\r\nPING\r\n")
	// abortRequest is refused by Redis at queue time (unknown command),
	// which flags the transaction so EXEC answers EXECABORT.
	abortRequest = []byte("*1\r\n$0\r\n\r\n")
)

// queueInMulti handles a request of a session in MULTI that the proxy
// would otherwise answer or refuse itself. handled is false for requests
// that take the ordinary path (forwarded commands, and those Redis does not
// queue).
func (s *session) queueInMulti(cmd resp.Command, raw []byte, info router.Info) (handled, consumed bool) {
	switch info.Class {
	case router.ClassDenied:
		// Refused here as Redis refuses a command at queue time: the error
		// now, and EXEC aborts.
		s.localError(router.DeniedMessage(info.Name))
		s.standIn(abortRequest)
		return true, true
	case router.ClassSubscribe:
		// SUBSCRIBE inside MULTI would turn the transaction's connection
		// into a pub/sub one at EXEC, under the proxy's feet.
		s.localError("ERR replproxy: SUBSCRIBE and friends are not supported inside MULTI")
		s.standIn(abortRequest)
		return true, true
	case router.ClassLocal:
	default:
		return false, false
	}
	switch info.Local {
	case router.LocalQuit, router.LocalReset, router.LocalSelect, router.LocalWait:
		// Not queued by Redis (QUIT, RESET), or already forwarded into the
		// transaction by their own handlers (SELECT, WAIT).
		return false, false
	case router.LocalPing:
		return true, s.send(cmd, raw, false, true) // Redis answers PING exactly
	}
	if !info.ArityOK(len(cmd.Args)) {
		return true, s.send(cmd, raw, false, true) // refused at queue time, never run
	}
	ml := multiLocal{pos: s.multiQueued, info: info, args: make([][]byte, len(cmd.Args))}
	for i, a := range cmd.Args {
		ml.args[i] = append([]byte(nil), a...)
	}
	if !harmlessInMulti(info.Name) {
		cmd, raw = resp.Command{}, pingRequest
	}
	if !s.send(cmd, raw, false, true) {
		return true, false
	}
	s.multiLocals = append(s.multiLocals, ml)
	return true, true
}

// harmlessInMulti: commands that may run as they are on the transaction's
// connection, since they only describe or label it.
func harmlessInMulti(name string) bool {
	switch name {
	case "client|id", "client|getname", "client|setname", "client|info", "client|list", "client|no-evict":
		return true
	}
	return false
}

// standIn queues raw on the transaction's connection with its reply
// dropped: the client already got the proxy's answer.
func (s *session) standIn(raw []byte) {
	b := s.pinned
	b.out = append(b.out, raw...)
	b.pend.push(pending{kind: pendQuiet, reqEnd: b.reqEnd()})
	b.l.markBackend(b)
}

// endMulti is told that EXEC (exec) or DISCARD is being sent: EXEC's
// reply will carry the transaction's proxy-answered slots.
func (s *session) endMulti(exec bool) {
	if exec && len(s.multiLocals) > 0 {
		s.next.exec = true
		s.execQueue = append(s.execQueue, execSlots{locals: s.multiLocals, queued: s.multiQueued})
		s.multiLocals = nil
	}
	s.multiLocals, s.multiQueued = s.multiLocals[:0], 0
}

// execPending stalls a command the proxy answers while an EXEC with
// proxy-answered slots is in flight: those slots change the session's
// state (CLIENT SETNAME in the transaction) only when EXEC's reply comes,
// and a CLIENT GETNAME pipelined after EXEC must see it.
func (s *session) execPending() bool {
	if len(s.execQueue) == 0 || s.idle() {
		return false
	}
	s.stalled = true
	return true
}

// execSlots are the proxy-answered slots of one EXEC in flight.
type execSlots struct {
	locals []multiLocal
	queued int
}

// execReply fills the proxy's slots of EXEC's reply and delivers it. An
// EXEC that did not run (EXECABORT, a WATCH that failed: an error or a
// null) is passed on as it is.
func (s *session) execReply(b *backend, seq uint64, reply []byte) {
	if len(s.execQueue) == 0 {
		s.deliver(b, seq, reply)
		return
	}
	slots := s.execQueue[0]
	s.execQueue = s.execQueue[1:]
	elems, ok := splitArray(reply)
	if !ok || len(elems) != slots.queued {
		s.deliver(b, seq, reply)
		return
	}
	a := &execAssembly{s: s, b: b, seq: seq, parts: make([][]byte, len(elems))}
	for i, e := range elems {
		a.parts[i] = append([]byte(nil), e...)
	}
	a.waiting = 1 // released at the end of this loop
	for _, ml := range slots.locals {
		pos := ml.pos
		a.waiting++
		s.runCaptured(ml, func(r []byte) {
			a.parts[pos] = r
			a.done()
		})
	}
	a.done()
}

// execAssembly is an EXEC reply waiting for answers computed on other
// loops (CLIENT LIST, KILL, UNBLOCK). Owned by the session's loop.
type execAssembly struct {
	s       *session
	b       *backend
	seq     uint64
	parts   [][]byte
	waiting int
}

func (a *execAssembly) done() {
	if a.waiting--; a.waiting > 0 {
		return
	}
	n := 0
	for _, p := range a.parts {
		n += len(p)
	}
	out := resp.AppendArrayHeader(make([]byte, 0, n+16), len(a.parts))
	for _, p := range a.parts {
		out = append(out, p...)
	}
	a.s.deliver(a.b, a.seq, out)
}

// runCaptured computes the answer of one proxy-answered command as if it
// ran now, and hands it to done (now, or later for those that ask other
// loops).
func (s *session) runCaptured(ml multiLocal, done func([]byte)) {
	var out []byte
	prev := s.capture
	s.capture = &out
	async := false
	switch ml.info.Local {
	case router.LocalClient:
		async = s.clientCommandAsync(ml.args, done)
	case router.LocalScriptKill:
		async = s.scriptKillAsync(ml.args, done)
	default:
		s.local(ml.info.Local, resp.Command{Args: ml.args}, nil)
	}
	s.capture = prev
	if !async {
		done(out)
	}
}

// splitArray returns the elements of an array reply ("*n" or, in RESP3,
// the same); ok is false for anything else (an error, a null).
func splitArray(reply []byte) (elems [][]byte, ok bool) {
	if len(reply) < 4 || reply[0] != '*' {
		return nil, false
	}
	i := skipLine(reply, 0)
	n, isInt := resp.ParseInt(reply[1 : i-2])
	if !isInt || n < 0 {
		return nil, false
	}
	sc := resp.NewReplyScanner(resp.DefaultLimits())
	for ; n > 0; n-- {
		m, err := sc.Scan(reply[i:])
		if err != nil || m == 0 {
			return nil, false
		}
		elems = append(elems, reply[i:i+m])
		i += m
	}
	return elems, i == len(reply)
}
