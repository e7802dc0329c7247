package proxy

import (
	"strconv"
	"time"

	"github.com/replproxy/replproxy/router"
)

// MONITOR (when --allow-command monitor lets it through) is served by the
// proxy: it sees every client's commands, where the master sees only those
// routed to it and none of the replicas' reads, under the proxy's own
// address (issue 13). Lines are Redis's (replicationFeedMonitors): the
// time, the client's db and address, each argument quoted as sdscatrepr
// does. As in Redis 7.0, admin commands and those flagged skip_monitor are
// not shown, and AUTH and HELLO's credentials are "(redacted)". Commands a
// client sends inside MULTI are shown as they are queued (Redis shows them
// when EXEC runs them).
//
// The list of monitors is a copy-on-write snapshot: a command costs one
// atomic load while nobody monitors.

func (s *session) monitorCommand(args [][]byte) bool {
	if len(args) != 1 {
		s.localError("ERR wrong number of arguments for 'monitor' command")
		return true
	}
	if s.capture != nil {
		s.localError("ERR MONITOR isn't allowed for DENY BLOCKING client")
		return true
	}
	if !s.monitoring {
		s.monitoring = true
		s.srv.addMonitor(s)
	}
	s.localOK()
	return true
}

func (srv *Server) addMonitor(s *session) {
	srv.monMu.Lock()
	defer srv.monMu.Unlock()
	var lst []*session
	if p := srv.monitors.Load(); p != nil {
		lst = append(lst, *p...)
	}
	lst = append(lst, s)
	srv.monitors.Store(&lst)
}

func (srv *Server) removeMonitor(s *session) {
	srv.monMu.Lock()
	defer srv.monMu.Unlock()
	p := srv.monitors.Load()
	if p == nil {
		return
	}
	var lst []*session
	for _, m := range *p {
		if m != s {
			lst = append(lst, m)
		}
	}
	if len(lst) == 0 {
		srv.monitors.Store(nil)
		return
	}
	srv.monitors.Store(&lst)
}

// feedMonitors sends the command about to run to every monitor.
func (s *session) feedMonitors(args [][]byte, info router.Info) {
	p := s.srv.monitors.Load()
	if p == nil || info.Name == "" || !info.ArityOK(len(args)) ||
		info.Flags&(router.FlagAdmin|router.FlagSkipMonitor) != 0 {
		return
	}
	db := s.db
	if info.Local == router.LocalSelect && len(args) == 2 {
		if v, err := strconv.Atoi(string(args[1])); err == nil && v >= 0 && v < s.srv.databases {
			db = v // shown after it ran, in the db it selected
		}
	}
	line := appendMonitorLine(nil, time.Now(), db, s.c.RemoteAddr().String(), args, info.Local)
	for _, m := range *p {
		if m.l == s.l {
			if !m.closed {
				m.out = append(m.out, line...)
				m.l.markSession(m)
			}
			continue
		}
		m := m
		m.l.run(func() {
			if !m.closed {
				m.out = append(m.out, line...)
				m.l.markSession(m)
			}
		})
	}
}

func appendMonitorLine(b []byte, now time.Time, db int, addr string, args [][]byte, local router.Local) []byte {
	b = append(b, '+')
	b = strconv.AppendInt(b, now.Unix(), 10)
	b = append(b, '.')
	us := strconv.AppendInt(nil, int64(now.Nanosecond()/1000), 10)
	for i := len(us); i < 6; i++ {
		b = append(b, '0')
	}
	b = append(b, us...)
	b = append(b, " ["...)
	b = strconv.AppendInt(b, int64(db), 10)
	b = append(b, ' ')
	b = append(b, addr...)
	b = append(b, "] "...)
	for i, a := range args {
		if i > 0 {
			b = append(b, ' ')
		}
		if redacted(local, args, i) {
			b = append(b, `"(redacted)"`...)
			continue
		}
		b = appendRepr(b, a)
	}
	return append(b, '\r', '\n')
}

// redacted: AUTH's arguments and HELLO's AUTH user and password, which
// Redis 7.0 shows as "(redacted)" (redactClientCommandArgument).
func redacted(local router.Local, args [][]byte, i int) bool {
	switch local {
	case router.LocalAuth:
		return i > 0
	case router.LocalHello:
		for j := 2; j+2 < len(args)+0 && j < i; j++ {
			if string(lowerASCII(args[j])) == "auth" && (i == j+1 || i == j+2) {
				return true
			}
		}
	}
	return false
}

func lowerASCII(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}

// appendRepr is Redis's sdscatrepr: a quoted string with \n \r \t \a \b,
// quote and backslash escaped, other unprintable bytes as \xHH.
func appendRepr(b, s []byte) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for _, c := range s {
		switch c {
		case '\\', '"':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		case '\a':
			b = append(b, '\\', 'a')
		case '\b':
			b = append(b, '\\', 'b')
		default:
			if c >= 0x20 && c < 0x7f {
				b = append(b, c)
			} else {
				b = append(b, '\\', 'x', hex[c>>4], hex[c&15])
			}
		}
	}
	return append(b, '"')
}
