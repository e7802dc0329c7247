package proxy

import (
	"context"
	"slices"
	"strconv"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/replproxy/replproxy/resp"
)

// CLIENT subcommands about connections speak about the proxy's own clients
// (issue 13): every connection a Redis node sees is the proxy's, so
// Redis's answer would list the proxy's backend connections, and its
// CLIENT KILL would cut every client's requests. Ids are the proxy's (the
// ones CLIENT ID and HELLO give); CLIENT UNBLOCK translates one into the
// server's id of the dedicated connection the client is blocked on.
//
// A client's state is owned by its event loop: CLIENT LIST and KILL ask
// every loop (EventLoop.Execute) and answer once all have; no lock on the
// data path.

// replyMode is CLIENT REPLY's state.
type replyMode uint8

const (
	replyOn   replyMode = iota
	replySkip           // the next request's reply is dropped
	replyOff            // every reply is dropped until CLIENT REPLY ON
)

// reserve hands out the next reply slot, muted as CLIENT REPLY asked.
func (s *session) reserve() uint64 {
	mute := false
	switch s.replyMode {
	case replyOff:
		mute = true
	case replySkip:
		mute = true
		s.replyMode = replyOn
	}
	return s.replies.reserveMute(mute)
}

var clientIDRequest = []byte("*2\r\n$6\r\nCLIENT\r\n$2\r\nID\r\n")

// pinForBlocking gives the session its dedicated connection before a
// blocking call and asks the server for that connection's id first, so a
// CLIENT UNBLOCK of this client can name it while the call blocks. ok is
// false when the request cannot run now (consumed: it was answered).
func (s *session) pinForBlocking() (ok, consumed bool) {
	if s.inMulti {
		return true, true // nothing blocks inside MULTI
	}
	if s.pinned == nil {
		if !s.idle() {
			s.stalled = true
			return false, false
		}
		b, why := s.l.dedicatedBackend(s)
		if b == nil {
			if why == errTooManyDedicated {
				s.localError("ERR replproxy: " + why)
			} else {
				s.localError(errBackendDown + why)
			}
			return false, true
		}
		s.pinned = b
	}
	if b := s.pinned; b.redisID == 0 {
		b.redisID = -1 // asked
		b.out = append(b.out, clientIDRequest...)
		b.pend.push(pending{kind: pendClientID, reqEnd: b.reqEnd()})
		b.l.markBackend(b)
	}
	return true, true
}

// clientCommand answers CLIENT LIST, INFO, KILL, UNBLOCK, NO-EVICT and
// REPLY with Redis's replies and errors (networking.c clientCommand).
func (s *session) clientCommand(args [][]byte) bool {
	s.clientCommandAsync(args, nil)
	return true
}

// clientCommandAsync runs one CLIENT subcommand. Answers known at once
// go through localReply; the others (they ask other loops or a node) are
// handed to done when ready, and async is true. With done nil the answer
// takes its place in the reply queue.
func (s *session) clientCommandAsync(args [][]byte, done func([]byte)) (async bool) {
	info := s.srv.table.Load().Classify(args, nil)
	if !info.ArityOK(len(args)) {
		s.localError("ERR wrong number of arguments for '" + info.Name + "' command")
		return false
	}
	later := func() func([]byte) {
		if done != nil {
			return done
		}
		seq := s.reserve()
		s.asyncOutstanding++
		return func(r []byte) {
			s.asyncOutstanding--
			s.deliver(nil, seq, r)
		}
	}
	sub := args[1]
	switch {
	case resp.EqualFold(sub, "info"):
		b := append(s.appendClientLine(nil, time.Now()), '\n')
		s.scratch = resp.AppendVerbatim(s.scratch[:0], "txt", string(b), s.proto)
		s.localReply(s.scratch)
	case resp.EqualFold(sub, "list"):
		return s.clientList(args, later)
	case resp.EqualFold(sub, "kill"):
		return s.clientKill(args, later)
	case resp.EqualFold(sub, "unblock"):
		return s.clientUnblock(args, later)
	case resp.EqualFold(sub, "no-evict"):
		switch {
		case resp.EqualFold(args[2], "on"):
			s.noEvict = true
			s.localOK()
		case resp.EqualFold(args[2], "off"):
			s.noEvict = false
			s.localOK()
		default:
			s.localError(errSyntax)
		}
	case resp.EqualFold(sub, "reply"):
		switch {
		case resp.EqualFold(args[2], "on"):
			s.replyMode = replyOn
			s.localOK()
		case resp.EqualFold(args[2], "off"):
			s.replyMode = replyOff
		case resp.EqualFold(args[2], "skip"):
			if s.replyMode != replyOff {
				s.replyMode = replySkip
			}
		default:
			s.localError(errSyntax)
		}
	default:
		s.localError("ERR unknown subcommand '" + string(sub) + "'. Try CLIENT HELP.")
	}
	return false
}

const errSyntax = "ERR syntax error"

// clientType is getClientType's answer for a proxy client: the proxy has
// no master or replica clients, and a monitor counts as normal there too.
func (s *session) clientType() string {
	if s.subs.any() {
		return "pubsub"
	}
	return "normal"
}

// parseClientType is getClientTypeByName; "" for an unknown name.
func parseClientType(name []byte) string {
	switch {
	case resp.EqualFold(name, "normal"):
		return "normal"
	case resp.EqualFold(name, "slave"), resp.EqualFold(name, "replica"):
		return "replica"
	case resp.EqualFold(name, "pubsub"):
		return "pubsub"
	case resp.EqualFold(name, "master"):
		return "master"
	}
	return ""
}

func (s *session) clientList(args [][]byte, later func() func([]byte)) bool {
	var typ string
	var ids []int64
	switch {
	case len(args) == 4 && resp.EqualFold(args[2], "type"):
		if typ = parseClientType(args[3]); typ == "" {
			s.localError("ERR Unknown client type '" + string(args[3]) + "'")
			return false
		}
	case len(args) > 3 && resp.EqualFold(args[2], "id"):
		for _, a := range args[3:] {
			id, ok := resp.ParseInt(a)
			if !ok {
				s.localError("ERR Invalid client ID")
				return false
			}
			ids = append(ids, id)
		}
	case len(args) != 2:
		s.localError(errSyntax)
		return false
	}
	done := later()
	proto := s.proto
	s.eachClient(func(t *session, now time.Time) []byte {
		if typ != "" && t.clientType() != typ {
			return nil
		}
		if ids != nil && !slices.Contains(ids, t.id) {
			return nil
		}
		return append(t.appendClientLine(nil, now), '\n')
	}, func(lines map[int64][]byte) {
		var body []byte
		if ids != nil {
			for _, id := range ids { // in the order asked, as Redis
				body = append(body, lines[id]...)
			}
		} else {
			for _, id := range sortedIDs(lines) {
				body = append(body, lines[id]...)
			}
		}
		done(resp.AppendVerbatim(nil, "txt", string(body), proto))
	})
	return true
}

func sortedIDs(m map[int64][]byte) []int64 {
	ids := make([]int64, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// clientKill is CLIENT KILL addr (old form: +OK or "No such client", may
// kill the caller) and CLIENT KILL <filter> <value> ... (the count).
func (s *session) clientKill(args [][]byte, later func() func([]byte)) bool {
	var addr, laddr, user, typ string
	var id int64
	skipme := true
	oldForm := len(args) == 3
	if oldForm {
		addr, skipme = string(args[2]), false
	} else {
		for i := 2; i < len(args); i += 2 {
			more := i+1 < len(args)
			opt := args[i]
			switch {
			case more && resp.EqualFold(opt, "id"):
				v, ok := resp.ParseInt(args[i+1])
				if !ok || v < 1 {
					s.localError("ERR client-id should be greater than 0")
					return false
				}
				id = v
			case more && resp.EqualFold(opt, "type"):
				if typ = parseClientType(args[i+1]); typ == "" {
					s.localError("ERR Unknown client type '" + string(args[i+1]) + "'")
					return false
				}
			case more && resp.EqualFold(opt, "addr"):
				addr = string(args[i+1])
			case more && resp.EqualFold(opt, "laddr"):
				laddr = string(args[i+1])
			case more && resp.EqualFold(opt, "user"):
				user = string(args[i+1])
				if _, ok := s.srv.users[user]; !ok && user != "default" {
					s.localError("ERR No such user '" + user + "'")
					return false
				}
			case more && resp.EqualFold(opt, "skipme"):
				switch {
				case resp.EqualFold(args[i+1], "yes"):
					skipme = true
				case resp.EqualFold(args[i+1], "no"):
					skipme = false
				default:
					s.localError(errSyntax)
					return false
				}
			default:
				s.localError(errSyntax)
				return false
			}
		}
	}
	done := later()
	self := s
	killSelf := false
	s.eachClient(func(t *session, _ time.Time) []byte {
		switch {
		case addr != "" && t.c.RemoteAddr().String() != addr,
			laddr != "" && t.c.LocalAddr().String() != laddr,
			typ != "" && t.clientType() != typ,
			id != 0 && t.id != id,
			user != "" && t.user != user,
			t == self && skipme:
			return nil
		}
		if t == self {
			killSelf = true // after its reply, as Redis (CLOSE_AFTER_REPLY)
		} else {
			_ = t.c.Close()
		}
		return []byte{}
	}, func(killed map[int64][]byte) {
		if killSelf {
			s.closeWhenDone = true
		}
		switch {
		case !oldForm:
			done(resp.AppendInt(nil, int64(len(killed))))
		case len(killed) == 0:
			done(resp.AppendError(nil, "ERR No such client"))
		default:
			done(okReply)
		}
	})
	return true
}

// clientUnblock unblocks a client of the proxy blocked in a blocking
// command: the server is asked, on a connection of its own, to unblock the
// dedicated connection the call runs on, and its answer (1 or 0) is the
// reply; the blocked client then gets what Redis sends it (the timeout
// reply, or -UNBLOCKED with ERROR). A client blocked in the proxy's own
// WAIT is unblocked by the proxy (waitunblock.go).
func (s *session) clientUnblock(args [][]byte, later func() func([]byte)) bool {
	if len(args) > 4 {
		s.localError("ERR unknown subcommand or wrong number of arguments for 'unblock'. Try CLIENT HELP.")
		return false
	}
	reason := "TIMEOUT"
	if len(args) == 4 {
		switch {
		case resp.EqualFold(args[3], "timeout"):
		case resp.EqualFold(args[3], "error"):
			reason = "ERROR"
		default:
			s.localError("ERR CLIENT UNBLOCK reason should be TIMEOUT or ERROR")
			return false
		}
	}
	id, ok := resp.ParseInt(args[2])
	if !ok {
		s.localError(errNotInteger)
		return false
	}
	v, found := s.srv.sessByID.Load(id)
	if !found {
		s.localReply(zeroReply)
		return false
	}
	t := v.(*session)
	done := later()
	home := s.l
	answer := func(r []byte) {
		home.run(func() { done(r) })
	}
	t.l.run(func() {
		if t.l.unblockWait(t, reason == "ERROR") {
			answer(oneReply)
			return
		}
		var rid int64
		if !t.closed && t.blockingCall && t.pinned != nil && !t.inMulti {
			rid = t.pinned.redisID
		}
		if rid <= 0 {
			answer(zeroReply)
			return
		}
		req := resp.AppendCommandStrings(nil, "CLIENT", "UNBLOCK", strconv.FormatInt(rid, 10), reason)
		go func() { answer(s.srv.askNode(s.srv.cfg.Master, req, s.srv.cfg.ConnectTimeout)) }()
	})
	return true
}

var zeroReply = []byte(":0\r\n")

// run executes f on the loop (EventLoop.Execute), with the loop's clock
// read and its output flushed after.
func (l *loop) run(f func()) {
	err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		l.tick()
		f()
		l.flush()
		return nil
	}))
	if err != nil {
		l.srv.log.Warn("event loop task not run", "err", err)
	}
}

// askNode sends req to the Redis node at addr on a connection of its own
// and returns its reply, or an error reply. It blocks: run it off the
// loops. A node busy with a script still answers SCRIPT KILL and CLIENT
// UNBLOCK there, where the shared connection waits behind the script.
// The reply is waited for up to wait after the connection is set up.
func (s *Server) askNode(addr string, req []byte, wait time.Duration) []byte {
	cfg := &s.cfg
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ConnectTimeout)
	defer cancel()
	conn, err := dialBackend(ctx, addr, cfg.UpstreamUser, cfg.UpstreamPassword, 2, cfg.ConnectTimeout, cfg.UpstreamTLS)
	if err != nil {
		return resp.AppendError(nil, errBackendDown+err.Error())
	}
	defer conn.Close()
	reply, err := roundTrip(conn, req, wait)
	if err != nil {
		return resp.AppendError(nil, errBackendLost)
	}
	return reply
}

// eachClient calls visit for every client of the proxy, on the client's
// own loop, then done on this session's loop with the non-nil results by
// client id.
func (s *session) eachClient(visit func(t *session, now time.Time) []byte, done func(map[int64][]byte)) {
	loops := *s.srv.loopLst.Load()
	out := make(map[int64][]byte)
	waiting := len(loops)
	home := s.l
	for _, l := range loops {
		l := l
		l.run(func() {
			now := time.Now()
			part := map[int64][]byte{}
			for t := range l.sessions {
				if r := visit(t, now); r != nil {
					part[t.id] = r
				}
			}
			home.run(func() {
				for id, r := range part {
					out[id] = r
				}
				if waiting--; waiting == 0 {
					done(out)
				}
			})
		})
	}
}

// appendClientLine is catClientInfoString for a proxy client: Redis's
// fields in Redis's order. Buffer and memory fields describe the proxy's
// connection (what it has buffered), not a Redis client's allocations.
func (s *session) appendClientLine(b []byte, now time.Time) []byte {
	b = append(b, "id="...)
	b = strconv.AppendInt(b, s.id, 10)
	b = append(b, " addr="...)
	b = append(b, s.c.RemoteAddr().String()...)
	b = append(b, " laddr="...)
	b = append(b, s.c.LocalAddr().String()...)
	b = append(b, " fd="...)
	b = strconv.AppendInt(b, int64(s.c.Fd()), 10)
	b = append(b, " name="...)
	b = append(b, s.name...)
	b = append(b, " age="...)
	b = strconv.AppendInt(b, int64(now.Sub(s.created)/time.Second), 10)
	b = append(b, " idle="...)
	b = strconv.AppendInt(b, int64(now.Sub(s.lastActive)/time.Second), 10)
	b = append(b, " flags="...)
	n := len(b)
	if s.monitoring {
		b = append(b, 'O')
	}
	if s.subs.any() {
		b = append(b, 'P')
	}
	if s.inMulti {
		b = append(b, 'x')
	}
	if (s.blockingCall && !s.inMulti) || s.waiting != nil {
		b = append(b, 'b')
	}
	if s.tracking {
		b = append(b, 't')
	}
	if s.closeWhenDone {
		b = append(b, 'c')
	}
	if s.noEvict {
		b = append(b, 'e')
	}
	if len(b) == n {
		b = append(b, 'N')
	}
	b = append(b, " db="...)
	b = strconv.AppendInt(b, int64(s.db), 10)
	b = append(b, " sub="...)
	b = strconv.AppendInt(b, int64(s.subs.sub), 10)
	b = append(b, " psub="...)
	b = strconv.AppendInt(b, int64(s.subs.psub), 10)
	b = append(b, " ssub="...)
	b = strconv.AppendInt(b, int64(s.subs.ssub), 10)
	b = append(b, " multi="...)
	multi := -1
	if s.inMulti {
		multi = s.multiQueued
	}
	b = strconv.AppendInt(b, int64(multi), 10)
	in, out := s.c.InboundBuffered(), s.c.OutboundBuffered()+len(s.out)
	b = append(b, " qbuf="...)
	b = strconv.AppendInt(b, int64(in), 10)
	b = append(b, " qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl="...)
	b = strconv.AppendInt(b, int64(out), 10)
	b = append(b, " oll=0 omem="...)
	b = strconv.AppendInt(b, int64(out), 10)
	b = append(b, " tot-mem="...)
	b = strconv.AppendInt(b, int64(in+out), 10)
	b = append(b, " events=r cmd="...)
	if s.lastCmd == "" {
		b = append(b, "NULL"...)
	} else {
		b = append(b, s.lastCmd...)
	}
	b = append(b, " user="...)
	b = append(b, s.user...)
	b = append(b, " redir=-1 resp="...)
	return strconv.AppendInt(b, int64(s.proto), 10)
}

// busyReplyWait is how long SCRIPT KILL and FUNCTION KILL wait for the
// master's reply. A node running a script answers no one until the script
// has run busy-reply-threshold (5 s by default, lua-time-limit before
// 7.0); a client of that node sending SCRIPT KILL meanwhile just waits,
// then gets its +OK. With the connect timeout instead (2 s), the proxy
// answered "connection lost" (seen in CI, the script on the master).
// Replicas get the same wait: a read-only script runs where it was sent,
// as long as it takes (loop.sweep), so the replica running it answers
// only after that threshold too. The first +OK answers the client at once:
// a paused node delays only a kill that finds no script.
const busyReplyWait = 15 * time.Second

// scriptKill sends SCRIPT KILL or FUNCTION KILL to every node, each on a
// connection of its own (the shared one may be the one the script runs
// on), and answers as the node that ran a script did: +OK from any node
// wins, then an error other than NOTBUSY (UNKILLABLE), then the master's.
func (s *session) scriptKill(cmd resp.Command, raw []byte) bool {
	s.scriptKillAsync(cmd.Args, nil)
	return true
}

func (s *session) scriptKillAsync(args [][]byte, done func([]byte)) (async bool) {
	info := s.srv.table.Load().Classify(args, nil)
	if !info.ArityOK(len(args)) {
		s.localError("ERR wrong number of arguments for '" + info.Name + "' command")
		return false
	}
	if done == nil {
		seq := s.reserve()
		s.asyncOutstanding++
		done = func(r []byte) {
			s.asyncOutstanding--
			s.deliver(nil, seq, r)
		}
	}
	nodes := []string{s.srv.cfg.Master}
	if snap := s.srv.topo.Load(); snap != nil {
		for i := range snap.Replicas {
			nodes = append(nodes, snap.Replicas[i].Addr)
		}
	}
	req := resp.AppendCommand(nil, args...)
	home := s.l
	go func() {
		type answer struct {
			i     int
			reply []byte
		}
		ch := make(chan answer, len(nodes)) // room for all: late ones never block
		for i, addr := range nodes {
			go func() { ch <- answer{i, s.srv.askNode(addr, req, busyReplyWait)} }()
		}
		replies := make([][]byte, len(nodes))
		for range nodes {
			a := <-ch
			if len(a.reply) > 0 && a.reply[0] == '+' {
				// The node that ran the script killed it: that is the
				// answer, whatever the others (a paused one) say later.
				home.run(func() { done(a.reply) })
				return
			}
			replies[a.i] = a.reply
		}
		best := replies[0]
		for _, r := range replies[1:] {
			if len(best) > 0 && best[0] == '-' && hasPrefix(best, "-NOTBUSY") && len(r) > 0 && r[0] == '-' &&
				!hasPrefix(r, "-NOTBUSY") && !hasPrefix(r, "-ERR replproxy") {
				best = r
			}
		}
		home.run(func() { done(best) })
	}()
	return true
}

func hasPrefix(b []byte, p string) bool { return len(b) >= len(p) && string(b[:len(p)]) == p }
