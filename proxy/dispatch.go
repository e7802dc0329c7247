package proxy

import (
	"crypto/subtle"

	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
)

// dispatch runs one request. It returns false when the request cannot run
// yet and must stay in the input buffer: the session then waits (stalled)
// until its outstanding requests are answered.
//
// Why wait: a session's requests are in flight on one backend connection at
// a time. Sending the next one on another connection (a dedicated one for
// MULTI, or the shared one of another protocol) could let Redis run it
// before the earlier ones, breaking the order a client sees on a single
// Redis connection.
func (s *session) dispatch(cmd resp.Command, raw []byte) bool {
	if !s.l.masterCurrent() {
		return s.waitForSwitch()
	}
	info := s.srv.table.Load().Classify(cmd.Args, s.srv.scripts)
	s.lastCmd = info.Name
	if s.srv.monitors.Load() != nil {
		s.feedMonitors(cmd.Args, info)
	}
	s.next = pending{}
	s.routed = targetProxy
	if !s.route(cmd, raw, info) {
		return false
	}
	s.l.stats.commands[info.Class][s.routed].Add(1)
	return true
}

// route runs one classified request; see dispatch.
func (s *session) route(cmd resp.Command, raw []byte, info router.Info) bool {
	args := cmd.Args

	if !s.authed && info.Local != router.LocalAuth && info.Local != router.LocalHello && info.Local != router.LocalQuit {
		s.localError(errNoAuth)
		return true
	}
	if s.subscribed {
		return s.dispatchSubscribed(cmd, raw, info)
	}
	if s.inMulti && s.pinned != nil {
		if handled, consumed := s.queueInMulti(cmd, raw, info); handled {
			return consumed
		}
	} else if info.Class == router.ClassLocal && s.execPending() {
		return false // see execPending
	}

	switch info.Class {
	case router.ClassLocal:
		return s.local(info.Local, cmd, raw)
	case router.ClassRead:
		if info.Local == router.LocalNone && info.Flags&router.FlagNoscript == 0 && s.isEval(args) {
			s.srv.scripts.Add(args[1])
		}
		s.next.script = isScriptCall(info.Name)
		return s.sendRead(cmd, raw)
	case router.ClassWrite:
		if info.Local == router.LocalScriptLoad && len(args) == 3 {
			s.srv.scripts.Add(args[2])
		}
		if info.Name == "info" {
			s.next.info = true
		}
		if !isWrite(info) {
			// Master-only but not a write (INFO, CONFIG GET, PUBLISH...):
			// neither gated nor fenced.
			return s.send(cmd, raw, false, true)
		}
		if s.inMulti {
			s.multiWrites = true // gated at EXEC, as Redis would abort the transaction
		} else if pass, consumed := s.gate(); !pass {
			return consumed
		}
		s.next.fenced, s.next.write = true, true
		return s.send(cmd, raw, false, true)
	case router.ClassDenied:
		s.localError(router.DeniedMessage(info.Name))
		return true
	case router.ClassSubscribe:
		return s.subscribe(cmd, raw)
	case router.ClassPinned:
		// Connection state on the server: it needs a connection of its own,
		// kept until RESET or disconnect.
		if !s.send(cmd, raw, true, true) {
			return false
		}
		s.tracking = true
		return true
	case router.ClassBlocking:
		if s.inMulti {
			s.multiWrites = true
		} else if pass, consumed := s.gate(); !pass {
			return consumed
		}
		s.next.fenced, s.next.write = true, true
		if ok, consumed := s.pinForBlocking(); !ok {
			return consumed
		}
		if !s.send(cmd, raw, true, true) {
			return false
		}
		s.blockingCall = true
		return true
	}

	// ClassTxn: MULTI and WATCH state lives on one server connection.
	pin := info.Local == router.LocalMulti || info.Local == router.LocalWatch || s.pinned != nil
	if info.Local == router.LocalExec {
		s.next.fenced, s.next.write = true, true
		if s.inMulti && s.multiWrites && s.pinned != nil {
			if pass, consumed := s.gate(); !pass {
				if !consumed {
					return false
				}
				// The gate answered -NOREPLICAS for EXEC: the queued
				// transaction must not run later either.
				s.next = pending{kind: pendSwallow}
				s.pinned.out = append(s.pinned.out, discardRequest...)
				s.pinned.pend.push(pending{kind: pendSwallow})
				s.l.markBackend(s.pinned)
				s.inMulti, s.watching, s.multiSelect, s.multiWrites = false, false, -1, false
				return true
			}
		}
	}
	if (info.Local == router.LocalExec || info.Local == router.LocalDiscard) && s.pinned != nil {
		s.inMulti = false // EXEC itself runs outside the transaction: fence it
		s.endMulti(info.Local == router.LocalExec)
	}
	if !s.send(cmd, raw, pin, true) {
		return false
	}
	switch info.Local {
	case router.LocalMulti:
		if !s.inMulti {
			s.multiLocals, s.multiQueued = s.multiLocals[:0], 0
		}
		s.inMulti = true
	case router.LocalWatch:
		s.watching = true
	case router.LocalUnwatch:
		s.watching = false
	case router.LocalExec, router.LocalDiscard:
		if info.Local == router.LocalExec && s.multiSelect >= 0 && s.pinned != nil {
			// SELECT queued in the transaction took effect at EXEC; we no
			// longer know the connection's db for sure, so re-SELECT next time.
			s.db = s.multiSelect
			s.pinned.db = -1
		}
		s.inMulti, s.watching, s.multiSelect, s.multiWrites = false, false, -1, false
	}
	return true
}

var discardRequest = []byte("*1\r\n$7\r\nDISCARD\r\n")

// isWrite reports the commands that may change the dataset: flagged write,
// unknown to the table (nothing is harmless by being absent), or scripts and
// functions that did not declare themselves read-only (their writes are
// invisible in COMMAND's flags).
func isWrite(info router.Info) bool {
	switch info.Name {
	case "", "eval", "evalsha", "fcall":
		return true
	}
	return info.Flags.Has(router.FlagWrite)
}

// isScriptCall reports the commands that run a script or a function.
func isScriptCall(name string) bool {
	switch name {
	case "eval", "eval_ro", "evalsha", "evalsha_ro", "fcall", "fcall_ro":
		return true
	}
	return false
}

// isEval reports an EVAL or EVAL_RO call: its body is cached when it is a
// read-only script, so a later EVALSHA of it can go to a replica too.
func (s *session) isEval(args [][]byte) bool {
	return len(args) >= 3 && (resp.EqualFold(args[0], "eval") || resp.EqualFold(args[0], "eval_ro"))
}

// send forwards a request to the session's backend: its dedicated one when
// it has (or pin asks for) one, the loop's shared one otherwise.
func (s *session) send(cmd resp.Command, raw []byte, pin, expectReply bool) bool {
	var b *backend
	var why string
	if s.pinned == nil && s.l.guarding() {
		// The master may be a node that came back empty: neither a write
		// nor a read may run there until the guard has decided.
		s.localError(errGuarding)
		return true
	}
	switch {
	case s.pinned != nil:
		b = s.pinned
	case pin:
		if !s.idle() {
			s.stalled = true
			return false
		}
		if b, why = s.l.dedicatedBackend(s); b != nil {
			s.pinned = b
		}
	case s.behindOwnOnMaster() && s.target.proto == s.proto:
		// Keep to the connection the session's requests are in flight on:
		// with --backend-conns > 1 another one would make it wait.
		b = s.target
	default:
		b, why = s.l.sharedBackend(s.l.master, s.proto)
	}
	if b == nil {
		if why == errTooManyDedicated {
			s.localError("ERR replproxy: " + why)
		} else {
			s.localError(errBackendDown + why)
		}
		return true
	}
	return s.sendTo(b, cmd, raw, expectReply)
}

// sendTo forwards to b, unless the session has requests in flight on
// another backend: then it stalls until they are answered (see dispatch).
func (s *session) sendTo(b *backend, cmd resp.Command, raw []byte, expectReply bool) bool {
	if b != s.target {
		if !s.idle() {
			s.stalled = true
			return false
		}
		s.target = b
	}
	if b.pool.replica {
		s.routed = targetReplica
	} else {
		s.routed = targetMaster
	}
	if cmd.Inline || raw == nil {
		s.scratch = resp.AppendCommand(s.scratch[:0], cmd.Args...)
		raw = s.scratch
	}
	b.forward(s, raw, expectReply)
	if expectReply {
		s.targetOutstanding++
		if s.inMulti {
			s.multiQueued++
		}
	}
	return true
}

// subscribe moves the session to a dedicated connection in subscribe mode.
func (s *session) subscribe(cmd resp.Command, raw []byte) bool {
	if !s.send(cmd, raw, true, false) {
		return false
	}
	if s.pinned != nil {
		s.subscribed = true
		s.pinned.relay = true
	}
	return true
}

// dispatchSubscribed handles requests of a session in subscribe mode. In
// RESP2 every frame the server sends is relayed in arrival order, so the
// proxy answers nothing itself but QUIT and RESET, which end the session's
// use of the connection. In RESP3 pushes are out of band by definition and
// ordinary replies keep their order through the reply queue.
func (s *session) dispatchSubscribed(cmd resp.Command, raw []byte, info router.Info) bool {
	switch info.Local {
	case router.LocalQuit:
		return s.local(info.Local, cmd, raw)
	case router.LocalReset:
		s.dropPinned()
		return s.local(info.Local, cmd, raw)
	case router.LocalAuth, router.LocalHello:
		s.localError(errSubscribedLocal)
		return true
	case router.LocalSelect:
		if len(cmd.Args) == 2 {
			if db, ok := resp.ParseInt(cmd.Args[1]); ok && db >= 0 && db < int64(s.srv.databases) {
				s.db = int(db)
			}
		}
		s.pinned.db = -1
	}
	if info.Class == router.ClassDenied {
		s.localError(router.DeniedMessage(info.Name))
		return true
	}
	expect := s.proto == 3 && info.Class != router.ClassSubscribe
	return s.send(cmd, raw, true, expect)
}

// dropPinned closes the dedicated connection and forgets the state it held.
func (s *session) dropPinned() {
	if b := s.pinned; b != nil {
		s.pinned = nil
		b.owner = nil
		b.close()
	}
	if s.target != nil && s.idle() {
		s.target = nil
	}
	s.inMulti, s.watching, s.subscribed, s.tracking, s.blockingCall = false, false, false, false, false
	s.multiSelect = -1
	s.subs = subCounts{}
}

// local answers the commands that act on the client connection itself.
func (s *session) local(id router.Local, cmd resp.Command, raw []byte) bool {
	args := cmd.Args
	switch id {
	case router.LocalPing:
		switch len(args) {
		case 1:
			s.localReply(pongReply)
		case 2:
			s.scratch = resp.AppendBulk(s.scratch[:0], args[1])
			s.localReply(s.scratch)
		default:
			s.localError("ERR wrong number of arguments for 'ping' command")
		}
	case router.LocalQuit:
		s.localOK()
		s.closeWhenDone = true
	case router.LocalAuth:
		s.auth(args)
	case router.LocalHello:
		return s.hello(args)
	case router.LocalSelect:
		return s.selectDB(args)
	case router.LocalClientID:
		s.scratch = resp.AppendInt(s.scratch[:0], s.id)
		s.localReply(s.scratch)
	case router.LocalClientGetName:
		if s.name == nil {
			s.scratch = resp.AppendNull(s.scratch[:0], s.proto)
		} else {
			s.scratch = resp.AppendBulk(s.scratch[:0], s.name)
		}
		s.localReply(s.scratch)
	case router.LocalClientSetName:
		if len(args) != 3 {
			s.localError("ERR wrong number of arguments for 'client|setname' command")
		} else if !validClientName(args[2]) {
			s.localError(errClientName)
		} else {
			s.setName(args[2])
			s.localOK()
		}
	case router.LocalClientSetInfo:
		// Library name and version label a connection; the proxy's backend
		// connections are not the client's, so accept and keep nothing.
		s.localOK()
	case router.LocalWait:
		return s.wait(args)
	case router.LocalClient:
		return s.clientCommand(args)
	case router.LocalScriptKill:
		return s.scriptKill(cmd, raw)
	case router.LocalMonitor:
		return s.monitorCommand(args)
	case router.LocalProxy:
		return s.proxyCommand(args)
	case router.LocalReset:
		if !s.idle() {
			s.stalled = true
			return false
		}
		s.dropPinned()
		s.db, s.proto, s.name = 0, 2, nil
		lv := s.srv.live()
		s.consistency = lv.consistency
		if lv.authRequired {
			s.authed = false
			s.parser.SetLimits(lv.unauthLimit)
		}
		s.localReply(resetReply)
	default:
		return s.send(cmd, raw, false, true)
	}
	return true
}

func (s *session) checkPassword(user, pass []byte) bool {
	want, ok := s.srv.live().users[string(user)]
	if !ok {
		// compare anyway so a missing user costs what a wrong password does
		want = "\x00"
	}
	return subtle.ConstantTimeCompare([]byte(want), pass) == 1 && ok
}

func (s *session) authenticated() {
	if !s.authed {
		s.authed = true
		s.parser.SetLimits(s.srv.live().limits)
	}
}

func (s *session) auth(args [][]byte) {
	switch len(args) {
	case 2:
		if !s.srv.live().authRequired {
			s.localError(errAuthNoPassword)
			return
		}
		if !s.checkPassword([]byte("default"), args[1]) {
			s.localError(errWrongPass)
			return
		}
	case 3:
		if !s.srv.live().authRequired || !s.checkPassword(args[1], args[2]) {
			s.localError(errWrongPass)
			return
		}
	default:
		s.localError("ERR wrong number of arguments for 'auth' command")
		return
	}
	s.authenticated()
	if len(args) == 3 {
		s.user = string(args[1])
	}
	s.localOK()
}

// hello implements HELLO [protover [AUTH user pass] [SETNAME name]] with
// Redis's checks and reply, describing the proxy as a standalone master.
func (s *session) hello(args [][]byte) bool {
	proto := s.proto
	var user, pass, name []byte
	setName := false
	if len(args) >= 2 {
		v, ok := resp.ParseInt(args[1])
		if !ok {
			s.localError("ERR Protocol version is not an integer or out of range")
			return true
		}
		if v != 2 && v != 3 {
			s.localError(errNoProto)
			return true
		}
		proto = int(v)
		for i := 2; i < len(args); i++ {
			more := len(args) - i - 1
			switch {
			case resp.EqualFold(args[i], "auth") && more >= 2:
				user, pass = args[i+1], args[i+2]
				i += 2
			case resp.EqualFold(args[i], "setname") && more >= 1:
				name, setName = args[i+1], true
				i++
			default:
				s.localError("ERR Syntax error in HELLO option '" + string(args[i]) + "'")
				return true
			}
		}
	}
	if pass != nil {
		if !s.srv.live().authRequired || !s.checkPassword(user, pass) {
			s.localError(errWrongPass)
			return true
		}
	} else if !s.authed {
		s.localError(helloNoAuth(s.srv.serverVersion))
		return true
	}
	if setName && !validClientName(name) {
		s.localError(errClientName)
		return true
	}
	if proto != s.proto && s.pinned != nil {
		s.localError("ERR replproxy: HELLO cannot change the protocol inside MULTI, WATCH or client tracking")
		return true
	}
	if pass != nil {
		s.authenticated()
		s.user = string(user)
	}
	if setName {
		s.setName(name)
	}
	s.proto = proto
	b := resp.AppendMapHeader(s.scratch[:0], 7, proto)
	b = resp.AppendBulkString(b, "server")
	b = resp.AppendBulkString(b, "redis")
	b = resp.AppendBulkString(b, "version")
	b = resp.AppendBulkString(b, s.srv.serverVersion)
	b = resp.AppendBulkString(b, "proto")
	b = resp.AppendInt(b, int64(proto))
	b = resp.AppendBulkString(b, "id")
	b = resp.AppendInt(b, s.id)
	b = resp.AppendBulkString(b, "mode")
	b = resp.AppendBulkString(b, "standalone")
	b = resp.AppendBulkString(b, "role")
	b = resp.AppendBulkString(b, "master")
	b = resp.AppendBulkString(b, "modules")
	b = resp.AppendArrayHeader(b, 0)
	s.scratch = b
	s.localReply(b)
	return true
}

func (s *session) selectDB(args [][]byte) bool {
	if len(args) != 2 {
		s.localError("ERR wrong number of arguments for 'select' command")
		return true
	}
	db, ok := resp.ParseInt(args[1])
	if !ok {
		s.localError(errNotInteger)
		return true
	}
	if db < 0 || db >= int64(s.srv.databases) {
		s.localError(errDBRange)
		return true
	}
	if s.inMulti {
		// Inside MULTI the server queues SELECT and runs it at EXEC.
		if !s.send(resp.Command{Args: args}, nil, true, true) {
			return false
		}
		s.multiSelect = int(db)
		return true
	}
	s.db = int(db)
	s.localOK()
	return true
}

func validClientName(name []byte) bool {
	for _, c := range name {
		if c < '!' || c > '~' {
			return false
		}
	}
	return true
}

func (s *session) setName(name []byte) {
	if len(name) == 0 {
		s.name = nil
		return
	}
	s.name = append(s.name[:0], name...)
}
