package proxy

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// OutputLimit is one class of Redis's client-output-buffer-limit: a client
// whose unsent replies exceed HardBytes, or stay above SoftBytes for longer
// than SoftFor, is closed. Zero bytes means no such limit.
type OutputLimit struct {
	HardBytes int64
	SoftBytes int64
	SoftFor   time.Duration
}

// Output buffer classes. Redis's third, replica, has no use here: replicas
// never connect to the proxy.
const (
	classNormal = "normal"
	classPubSub = "pubsub"
)

// defaultOutputLimits are redis.conf's defaults.
var defaultOutputLimits = map[string]OutputLimit{
	classNormal: {},
	classPubSub: {HardBytes: 32 << 20, SoftBytes: 8 << 20, SoftFor: 60 * time.Second},
}

// defaultAuthTimeout bounds the unauthenticated phase. Redis has no such
// bound (only maxclients), so a few thousand idle connections that never
// AUTH hold every slot forever; 10 s is long enough for any client over
// any network to send AUTH, short enough that a flood drains by itself.
const defaultAuthTimeout = 10 * time.Second

// outputLimits resolves Config.ClientOutputBufferLimits: Redis's default
// for an absent class, and OutputBufferLimit as the hard cap of every class
// (Redis's "0 = no limit" is never unbounded here).
func outputLimits(cfg *Config) (normal, pubsub OutputLimit, err error) {
	for name := range cfg.ClientOutputBufferLimits {
		if name != classNormal && name != classPubSub {
			return normal, pubsub, fmt.Errorf("%w: client-output-buffer-limit class %q: want normal or pubsub (replicas never connect to the proxy)", ErrProxyBadConfig, name)
		}
	}
	get := func(name string) (OutputLimit, error) {
		l, ok := cfg.ClientOutputBufferLimits[name]
		if !ok {
			l = defaultOutputLimits[name]
		}
		if l.HardBytes < 0 || l.SoftBytes < 0 || l.SoftFor < 0 {
			return l, fmt.Errorf("%w: client-output-buffer-limit %s: negative value", ErrProxyBadConfig, name)
		}
		if cap := int64(cfg.OutputBufferLimit); l.HardBytes == 0 || l.HardBytes > cap {
			l.HardBytes = cap
		}
		return l, nil
	}
	if normal, err = get(classNormal); err != nil {
		return normal, pubsub, err
	}
	pubsub, err = get(classPubSub)
	return normal, pubsub, err
}

// FormatOutputLimits writes limits as redis.conf's directive argument,
// "normal 0 0 0 pubsub 32mb 8mb 60", classes sorted.
func FormatOutputLimits(limits map[string]OutputLimit) string {
	names := make([]string, 0, len(limits))
	for n := range limits {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for i, n := range names {
		l := limits[n]
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s %d %d %d", n, l.HardBytes, l.SoftBytes, int64(l.SoftFor/time.Second))
	}
	return b.String()
}

// sessionGuard is what a session keeps for the limits that protect the
// proxy from its clients. Owned by the session's loop.
type sessionGuard struct {
	// openedAt: the auth timeout counts from it.
	openedAt time.Time
	// softSince is when the client's unsent replies went above its class's
	// soft limit; zero while below.
	softSince time.Time
}

// outputClass is the client-output-buffer-limit class of the session now.
func (s *session) outputClass(lv *liveConfig) (string, OutputLimit) {
	if s.subscribed {
		return classPubSub, lv.outPubSub
	}
	return classNormal, lv.outNormal
}

// outputOverLimit reports whether the client must be closed for the replies
// it leaves unread, Redis's checkClientOutputBufferLimits: at once past
// the hard limit, or after SoftFor continuously above the soft one.
func (s *session) outputOverLimit(now time.Time) bool {
	lv := s.srv.live()
	class, lim := s.outputClass(lv)
	n := int64(s.c.OutboundBuffered())
	if n > lim.HardBytes {
		s.srv.log.Warn("closing client that does not read its replies: hard output buffer limit", "client", s.id, "class", class, "buffered", n, "limit", lim.HardBytes)
		return true
	}
	if lim.SoftBytes == 0 || n <= lim.SoftBytes {
		s.guard.softSince = time.Time{}
		return false
	}
	if s.guard.softSince.IsZero() {
		s.guard.softSince = now
		return false
	}
	if now.Sub(s.guard.softSince) > lim.SoftFor {
		s.srv.log.Warn("closing client that does not read its replies: soft output buffer limit", "client", s.id, "class", class, "buffered", n, "limit", lim.SoftBytes, "for", lim.SoftFor)
		return true
	}
	return false
}

// sweepGuard reports whether the loop's sweep must close the session: it
// has not authenticated within the auth timeout, or has stayed above its
// soft output limit with no new reply to notice it.
func (s *session) sweepGuard(now time.Time) bool {
	lv := s.srv.live()
	if !s.authed && lv.authTimeout > 0 && now.Sub(s.guard.openedAt) > lv.authTimeout {
		s.srv.log.Info("closing client that did not authenticate in time", "client", s.id, "auth_timeout", lv.authTimeout)
		return true
	}
	if s.handshakeExpired(now, lv.authTimeout) {
		s.srv.log.Info("closing client that did not finish its TLS handshake in time", "client", s.id, "auth_timeout", lv.authTimeout)
		return true
	}
	return !s.guard.softSince.IsZero() && s.outputOverLimit(now)
}
