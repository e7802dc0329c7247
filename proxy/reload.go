package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
)

// hardening is the Server state of listen.go, tls.go, limits.go and this
// file. Safe for concurrent use: what the loops read is behind atomics.
type hardening struct {
	plain    []listenAddr // immutable after New
	addrs    atomic.Pointer[[]string]
	tlsAddrs atomic.Pointer[[]string]
	// tlsBound are the TLS listeners' bound addresses, to tell their
	// connections apart in OnOpen. Written in OnBoot, before any accept.
	tlsBound []*net.TCPAddr
	// plainKeys and tlsKeys are the TCP listeners' names in gnet
	// (uniqueKey), written by runEngine before the engine boots.
	plainKeys, tlsKeys []string
	// serverTLS is the configuration new TLS clients handshake with;
	// Reload swaps it, connections already up keep theirs.
	serverTLS atomic.Pointer[tls.Config]
	live      atomic.Pointer[liveConfig]

	reloadMu sync.Mutex
	applied  Config // what the live settings were made from; under reloadMu
	reloads  atomic.Int64
}

// liveConfig is every setting Reload may change while clients are
// connected. Immutable: Reload publishes a new one, and each session reads
// the current one when it needs a setting, so a reload reaches every client
// at once without a lock, and no session ever sees half of one.
type liveConfig struct {
	consistency  consistency
	users        map[string]string // includes "default" when RequirePass is set
	authRequired bool
	limits       resp.Limits // after AUTH (or with no password)
	unauthLimit  resp.Limits

	maxClients       int
	maxPipeline      int
	queryBufferLimit int
	idleTimeout      time.Duration
	authTimeout      time.Duration // 0: never
	outNormal        OutputLimit
	outPubSub        OutputLimit

	allowCommands []string
}

func (s *Server) live() *liveConfig { return s.hard.live.Load() }

// newLive derives the live settings from a normalized cfg.
func newLive(cfg *Config) (*liveConfig, error) {
	lv := &liveConfig{
		users:            make(map[string]string, len(cfg.Users)+1),
		maxClients:       cfg.MaxClients,
		maxPipeline:      cfg.MaxPipeline,
		queryBufferLimit: cfg.QueryBufferLimit,
		idleTimeout:      cfg.IdleTimeout,
		authTimeout:      max(cfg.AuthTimeout, 0),
		allowCommands:    slices.Clone(cfg.AllowCommands),
	}
	for u, p := range cfg.Users {
		if u == "default" {
			return nil, fmt.Errorf("%w: the default user's password is RequirePass", ErrProxyBadConfig)
		}
		lv.users[u] = p
	}
	if cfg.RequirePass != "" {
		lv.users["default"] = cfg.RequirePass
	}
	lv.authRequired = len(lv.users) > 0
	var err error
	if lv.consistency, err = parseConsistency(cfg.Consistency); err != nil {
		return nil, err
	}
	lv.limits = resp.DefaultLimits()
	lv.limits.MaxBulkBytes = cfg.MaxBulkBytes
	lv.unauthLimit = resp.UnauthenticatedLimits()
	if lv.outNormal, lv.outPubSub, err = outputLimits(cfg); err != nil {
		return nil, err
	}
	return lv, nil
}

// initHardening is New's hook: it checks the listeners (protected mode
// included) and TLS, and publishes the first live settings.
func (s *Server) initHardening() error {
	cfg := &s.cfg
	if cfg.AuthTimeout == 0 {
		cfg.AuthTimeout = defaultAuthTimeout
	}
	plain, err := listenAddrs(cfg)
	if err != nil {
		return err
	}
	lv, err := newLive(cfg)
	if err != nil {
		return err
	}
	if err := checkTLSListen(cfg); err != nil {
		return err
	}
	if err := checkProtectedMode(cfg, lv, plain); err != nil {
		return err
	}
	s.hard.plain = plain
	s.hard.live.Store(lv)
	if cfg.TLS != nil {
		s.hard.serverTLS.Store(cfg.TLS)
	}
	s.hard.applied = *cfg
	return nil
}

func checkTLSListen(cfg *Config) error {
	if len(cfg.TLSListen) > 0 && cfg.TLS == nil {
		return fmt.Errorf("%w: TLS listeners need a TLS configuration (certificate and key)", ErrProxyBadConfig)
	}
	for _, a := range cfg.TLSListen {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%w: tls listen %q: want host:port", ErrProxyBadConfig, a)
		}
	}
	return nil
}

// liveFields are the Config fields Reload applies to a running proxy.
// Every other field but the ignored ones is reported when it changes.
var liveFields = map[string]bool{
	"Replicas": true, "Consistency": true, "RequirePass": true, "Users": true,
	"AllowCommands": true, "MaxClients": true, "MaxPipeline": true,
	"QueryBufferLimit": true, "OutputBufferLimit": true, "MaxBulkBytes": true,
	"IdleTimeout": true, "AuthTimeout": true, "ClientOutputBufferLimits": true,
	"TLS": true,
}

// ignoredFields are not compared. Upstream and Sentinel TLS configurations
// are used by clients built once (go-redis, the replication link): to
// change their certificates live, give them callbacks (GetClientCertificate,
// VerifyConnection) that read the current ones, as cmd/replproxy does.
var ignoredFields = map[string]bool{
	"Logger": true, "Reloader": true, "UpstreamTLS": true, "SentinelTLS": true,
	"Listen": true, "ListenAddrs": true, // compared as resolved addresses
}

// Reload applies cfg to the running proxy, atomically: either every live
// setting of cfg takes effect (for the next command of every client) or,
// when cfg is invalid, nothing changes and err says why. applied names the
// live settings (Config field names) that changed; notLive the ones that
// differ from what runs but only take effect on a restart (listeners,
// loops, the master...). What changes when:
//   - Consistency: each client's mode, unless it chose one with PROXY
//     CONSISTENCY, from its next connection or RESET (Redis's config
//     changes reach connections the same way);
//   - RequirePass, Users: the next AUTH; clients already authenticated stay
//     so (as in Redis); removing every password authenticates everyone;
//   - MaxClients, MaxPipeline, limits, timeouts: at once, except
//     MaxBulkBytes, from each client's next connection or AUTH;
//   - AllowCommands: the next command; Replicas: the next topology poll;
//   - TLS: the next TLS handshake.
//
// Safe for concurrent use; reloads are serialized.
func (s *Server) Reload(cfg Config) (applied, notLive []string, err error) {
	s.hard.reloadMu.Lock()
	defer s.hard.reloadMu.Unlock()
	defer func() {
		if err != nil {
			s.log.Warn("reload refused; nothing changed", "err", err)
		}
	}()
	if cfg.Master == "" {
		return nil, nil, ErrProxyNoMaster
	}
	if cfg.Logger == nil {
		cfg.Logger = s.cfg.Logger
	}
	if err := normalize(&cfg); err != nil {
		return nil, nil, err
	}
	if cfg.AuthTimeout == 0 {
		cfg.AuthTimeout = defaultAuthTimeout
	}
	lv, err := newLive(&cfg)
	if err != nil {
		return nil, nil, err
	}
	plain, err := listenAddrs(&cfg)
	if err != nil {
		return nil, nil, err
	}
	// Protected mode judges the listeners that run, not the ones cfg asks
	// for: those change only on a restart.
	running := cfg
	running.TLSListen = s.cfg.TLSListen
	if err := checkTLSListen(&running); err != nil {
		return nil, nil, err
	}
	if err := checkProtectedMode(&running, lv, s.hard.plain); err != nil {
		return nil, nil, err
	}

	prev := s.hard.applied
	prevLive := s.live()
	notLive = notLiveChanges(&s.cfg, &cfg, s.hard.plain, plain)
	applied = changedFields(&prev, &cfg, func(name string) bool { return liveFields[name] })

	s.hard.live.Store(lv)
	if cfg.TLS != nil {
		s.hard.serverTLS.Store(cfg.TLS)
	}
	if !slices.Equal(prevLive.allowCommands, lv.allowCommands) {
		// The built-in table at once, the master's own as soon as it answers.
		s.table.Store(router.BuiltinTable(router.Options{Allow: lv.allowCommands}))
		go s.loadCommandTable(context.Background(), s.mon.Master())
	}
	if !sameSet(prev.Replicas, cfg.Replicas) {
		s.mon.SetStaticReplicas(cfg.Replicas)
	}
	if prevLive.authRequired && !lv.authRequired {
		s.authenticateAll()
	}
	s.hard.applied = cfg
	s.hard.reloads.Add(1)
	s.log.Info("configuration reloaded", "applied", applied, "not_live", notLive)
	return applied, notLive, nil
}

// changedFields lists the fields of Config, among those keep accepts, whose
// values differ between a and b.
func changedFields(a, b *Config, keep func(string) bool) []string {
	va, vb := reflect.ValueOf(a).Elem(), reflect.ValueOf(b).Elem()
	t := va.Type()
	var out []string
	for i := range t.NumField() {
		name := t.Field(i).Name
		if !keep(name) {
			continue
		}
		if name == "TLS" {
			// A new configuration object means new certificates or CAs; a
			// TLS config holds functions, which DeepEqual never equates.
			if a.TLS != b.TLS && b.TLS != nil {
				out = append(out, name)
			}
			continue
		}
		if !reflect.DeepEqual(va.Field(i).Interface(), vb.Field(i).Interface()) {
			out = append(out, name)
		}
	}
	return out
}

// notLiveChanges lists what differs from the running configuration but
// cannot change without a restart.
func notLiveChanges(running, next *Config, runPlain, nextPlain []listenAddr) []string {
	out := changedFields(running, next, func(name string) bool {
		return !liveFields[name] && !ignoredFields[name]
	})
	if !slices.Equal(addrStrings(runPlain), addrStrings(nextPlain)) {
		out = append([]string{"ListenAddrs"}, out...)
	}
	return out
}

func addrStrings(as []listenAddr) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

// authenticateAll: with no password left, Redis no longer asks anyone to
// authenticate (authRequired is evaluated per command); sessions connected
// while a password was set are let through the same way.
func (s *Server) authenticateAll() {
	for _, l := range *s.loopLst.Load() {
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			for sess := range l.sessions {
				sess.authenticated()
			}
			return nil
		}))
	}
}

// proxyReload answers PROXY RELOAD: the configuration source is read and
// applied off the loop (it reads files), and the reply is delivered back on
// the loop in the session's request order.
func (s *session) proxyReload() {
	srv, l, proto := s.srv, s.l, s.proto
	seq := s.replies.reserve()
	go func() {
		var reply []byte
		if srv.cfg.Reloader == nil {
			reply = resp.AppendError(nil, "ERR replproxy: PROXY RELOAD needs a configuration source (replproxy --config FILE)")
		} else {
			applied, notLive, err := srv.cfg.Reloader()
			if err != nil {
				msg := strings.ReplaceAll(err.Error(), "\r\n", " ")
				msg = strings.ReplaceAll(msg, "\n", " ")
				reply = resp.AppendError(nil, "ERR reload refused, nothing changed: "+msg)
			} else {
				reply = appendReloadReply(nil, applied, notLive, proto)
			}
		}
		_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if s.closed {
				return nil
			}
			l.tick()
			s.out = s.replies.complete(s.out, seq, reply)
			l.markSession(s)
			l.flush()
			return nil
		}))
	}()
}

// appendReloadReply is {applied: [...], not_live: [...]}: a map in RESP3,
// a flat key/value array in RESP2.
func appendReloadReply(b []byte, applied, notLive []string, proto int) []byte {
	b = resp.AppendMapHeader(b, 2, proto)
	for _, kv := range []struct {
		k string
		v []string
	}{{"applied", applied}, {"not_live", notLive}} {
		b = resp.AppendBulkString(b, kv.k)
		b = resp.AppendArrayHeader(b, len(kv.v))
		for _, f := range kv.v {
			b = resp.AppendBulkString(b, f)
		}
	}
	return b
}
