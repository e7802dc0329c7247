package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/replstream"
	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
	"github.com/replproxy/replproxy/topology"
)

// isOwnLink reports whether addr, as the master lists it among its replicas,
// is the proxy's own replication link. The link announces listening-port 0
// (see replstream), and discovery skips port-0 entries before asking.
func (s *Server) isOwnLink(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// lagMs is how stale a replica that applied offset is, in milliseconds,
// from the replication link's offset→time map; -1 when unknown.
func (s *Server) lagMs(offset int64) int64 {
	if s.link == nil || offset < 0 {
		return -1
	}
	return s.link.LagMs(offset, time.Now())
}

// Server is a running proxy. Create it with New and run it with Serve.
// Its methods are safe for concurrent use.
type Server struct {
	gnet.BuiltinEventEngine

	cfg Config
	log *slog.Logger

	consistency  consistency
	authRequired bool
	users        map[string]string // includes "default" when RequirePass is set

	limits      resp.Limits
	unauthLimit resp.Limits

	// upstream facts, fetched before serving; immutable afterwards.
	databases     int
	serverVersion string

	eng       gnet.Engine
	addr      atomic.Pointer[string]
	ready     chan struct{}
	readyOnce sync.Once
	// stopping is closed when the engine begins to stop (OnShutdown):
	// from then on a loop may never run a task queued to it.
	stopping     chan struct{}
	stoppingOnce sync.Once

	loopsMu sync.Mutex
	loops   map[gnet.EventLoop]*loop
	loopLst atomic.Pointer[[]*loop] // copy-on-write list for the ticker
	// linkLoop is the loop reading the replication link's stream (nil:
	// the link's own goroutine reads it); see linkHost.
	linkLoop atomic.Pointer[loop]

	topo  atomic.Pointer[router.Snapshot]
	table atomic.Pointer[router.Table]
	// fence is the causal fence: the highest master offset a write the
	// proxy acknowledged is known to be covered by.
	fence atomic.Int64
	// fenceLostAt (unix ns): a write was acknowledged without a fence.
	fenceLostAt atomic.Int64
	// tableLoads counts command tables read from a master's COMMAND.
	tableLoads atomic.Int64
	// dedicated counts dedicated master connections, capped by
	// Config.MaxDedicatedConns.
	dedicated atomic.Int64
	scripts   *router.ScriptCache
	mon       *topology.Monitor
	// lastSwitch is the last master switch (nil before one), for PROXY
	// INFO; switches counts them by cause kind, switchHist their durations.
	lastSwitch atomic.Pointer[router.Switch]
	switches   switchStats
	// replaying: a failover's lost suffix is being replayed onto the new
	// master; no request is dispatched until it is done (replay.go).
	replaying    atomic.Bool
	replayQ      replayQueue
	replays      replayStats
	backlogSizer backlogSizer // OnTick's goroutine only (backlog.go)

	// link is the proxy's own replication link (nil when disabled).
	link *replstream.Link

	rejected    atomic.Int64 // clients refused at maxclients
	topoChanges atomic.Int64 // snapshots that changed the node set or an eligibility
	sharedConns atomic.Int64 // open shared backend connections

	clients  atomic.Int64
	nextID   atomic.Int64
	draining atomic.Bool

	// --- Transparency (issue 13): clientcmd.go, monitorcmd.go ---
	// sessByID finds a client by its proxy id (CLIENT UNBLOCK); only the
	// session's loop touches the session it names.
	sessByID sync.Map // int64 -> *session
	// monitors are the sessions in MONITOR (nil: none); monMu serialises
	// the copy-on-write updates.
	monitors atomic.Pointer[[]*session]
	monMu    sync.Mutex

	hard hardening // listeners, TLS, client limits, reload (reload.go)
}

// New checks cfg, fills in defaults and returns a Server ready to Serve.
func New(cfg Config) (*Server, error) { return newServer(cfg, testKnobs{}) }

// testKnobs change what tests need changed and no deployment may: kept out
// of Config, which the command line and reload reflect over.
type testKnobs struct {
	noMasterWatch bool                                                     // topology.Config.NoMasterWatch
	linkDial      func(ctx context.Context, addr string) (net.Conn, error) // replstream.Config.Dial
}

func newServer(cfg Config, knobs testKnobs) (*Server, error) {
	if cfg.Master == "" && len(cfg.Sentinels) == 0 {
		return nil, ErrProxyNoMaster
	}
	if err := normalize(&cfg); err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		ready:    make(chan struct{}),
		stopping: make(chan struct{}),
		loops:    make(map[gnet.EventLoop]*loop),
		users:    make(map[string]string),
	}
	for u, p := range cfg.Users {
		s.users[u] = p
	}
	if cfg.RequirePass != "" {
		s.users["default"] = cfg.RequirePass
	}
	s.authRequired = len(s.users) > 0
	s.consistency, _ = parseConsistency(cfg.Consistency)
	s.limits = resp.DefaultLimits()
	s.limits.MaxBulkBytes = cfg.MaxBulkBytes
	s.unauthLimit = resp.UnauthenticatedLimits()
	empty := []*loop{}
	s.loopLst.Store(&empty)
	mon, err := topology.New(topology.Config{
		Master: cfg.Master, Replicas: cfg.Replicas, DiscoverReplicas: *cfg.DiscoverReplicas,
		Sentinels: cfg.Sentinels, SentinelMaster: cfg.SentinelMaster,
		SentinelUser: cfg.SentinelUser, SentinelPassword: cfg.SentinelPassword, SentinelTLS: cfg.SentinelTLS,
		User: cfg.UpstreamUser, Password: cfg.UpstreamPassword, TLS: cfg.UpstreamTLS,
		PollInterval: cfg.PollInterval, Timeout: cfg.HealthTimeout, HoldMax: cfg.FailoverHold,
		Guard: *cfg.EmptyMasterGuard, ParkAddr: cfg.GuardParkAddr, NoMasterWatch: knobs.noMasterWatch,
		Logger:           cfg.Logger,
		Publish:          s.publish,
		LagMs:            s.lagMs,
		OwnLink:          s.isOwnLink,
		NewMasterProcess: func(addr string) { s.loadCommandTable(context.Background(), addr) },
		Switched:         s.switched,
		BeforeSwitch:     s.beforeSwitch,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrProxyBadConfig, err)
	}
	s.mon = mon
	if !cfg.NoReplicationLink {
		link, err := replstream.New(replstream.Config{
			Master: cfg.Master, User: cfg.UpstreamUser, Password: cfg.UpstreamPassword,
			DialTimeout: cfg.ConnectTimeout, ReconnectBackoffMax: cfg.ReconnectBackoffMax,
			BacklogBytes: cfg.ReplicationBacklogBytes,
			OnAdvance:    s.onLinkAdvance,
			Host:         linkHost{s},
			Dial:         knobs.linkDial,
			TLS:          cfg.UpstreamTLS,
			Logger:       cfg.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("%w: replication link: %v", ErrProxyBadConfig, err)
		}
		s.link = link
	}
	s.scripts = router.NewScriptCache(router.DefaultScriptCacheSize)
	s.table.Store(router.BuiltinTable(router.Options{Allow: cfg.AllowCommands}))
	if err := s.initHardening(); err != nil {
		return nil, err
	}
	return s, nil
}

func normalize(cfg *Config) error {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:6380"
	}
	if cfg.DiscoverReplicas == nil {
		t := true
		cfg.DiscoverReplicas = &t
	}
	if cfg.EmptyMasterGuard == nil {
		t := true
		cfg.EmptyMasterGuard = &t
	}
	if cfg.Witness == nil {
		t := true
		cfg.Witness = &t
	}
	if cfg.WitnessTimeout <= 0 {
		cfg.WitnessTimeout = 100 * time.Millisecond
	}
	if cfg.ReplicationBacklogMax == 0 {
		cfg.ReplicationBacklogMax = 256 << 20
	}
	if cfg.Loops <= 0 {
		cfg.Loops = defaultLoops()
	}
	if cfg.BackendConns <= 0 {
		cfg.BackendConns = 1
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = 10000
	}
	if cfg.MaxPipeline <= 0 {
		cfg.MaxPipeline = 100000
	}
	if cfg.QueryBufferLimit <= 0 {
		cfg.QueryBufferLimit = 1 << 30
	}
	if cfg.OutputBufferLimit <= 0 {
		cfg.OutputBufferLimit = 1 << 30
	}
	if cfg.MaxBulkBytes <= 0 {
		cfg.MaxBulkBytes = 512 << 20
	}
	if cfg.MaxDedicatedConns <= 0 {
		cfg.MaxDedicatedConns = cfg.MaxClients
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	if cfg.HealthTimeout <= 0 {
		cfg.HealthTimeout = time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = time.Second
	}
	switch cfg.ReadBalance {
	case "":
		cfg.ReadBalance = "least-outstanding"
	case "least-outstanding", "round-robin":
	default:
		return fmt.Errorf("%w: unknown read balance %q (want least-outstanding or round-robin)", ErrProxyBadConfig, cfg.ReadBalance)
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = 2 * time.Second
	}
	if cfg.ReconnectBackoffMax <= 0 {
		cfg.ReconnectBackoffMax = time.Second
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	if cfg.Consistency == "" {
		cfg.Consistency = "causal"
	}
	if _, err := parseConsistency(cfg.Consistency); err != nil {
		return err
	}
	if cfg.MaxLag <= 0 {
		cfg.MaxLag = 100 * time.Millisecond
	}
	if cfg.CausalWait <= 0 {
		cfg.CausalWait = 2 * time.Millisecond
	}
	if cfg.MinReplicasMaxLag <= 0 {
		cfg.MinReplicasMaxLag = 10 * time.Second
	}
	if cfg.MinReplicasToWrite < 0 {
		return fmt.Errorf("%w: min-replicas-to-write must be >= 0", ErrProxyBadConfig)
	}
	switch cfg.WriteGate {
	case "":
		cfg.WriteGate = "reject"
	case "reject", "wait":
	default:
		return fmt.Errorf("%w: unknown write gate %q (want reject or wait)", ErrProxyBadConfig, cfg.WriteGate)
	}
	if cfg.WriteGateTimeout <= 0 {
		cfg.WriteGateTimeout = 100 * time.Millisecond
	}
	if cfg.SyncReplicas < 0 {
		return fmt.Errorf("%w: sync-replicas must be >= 0", ErrProxyBadConfig)
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = time.Second
	}
	switch cfg.SyncTimeoutAction {
	case "":
		cfg.SyncTimeoutAction = "error"
	case "error", "pass":
	default:
		return fmt.Errorf("%w: unknown sync timeout action %q (want error or pass)", ErrProxyBadConfig, cfg.SyncTimeoutAction)
	}
	if len(cfg.Sentinels) > 0 && cfg.SentinelMaster == "" {
		return fmt.Errorf("%w: Sentinels need SentinelMaster (the name they monitor)", ErrProxyBadConfig)
	}
	if cfg.FailoverHold <= 0 {
		cfg.FailoverHold = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	for _, a := range append(append([]string{cfg.Listen, cfg.Master}, cfg.Replicas...), cfg.Sentinels...) {
		if a == cfg.Master && a == "" {
			continue // Sentinel names it
		}
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%w: address %q: %v", ErrProxyBadConfig, a, err)
		}
	}
	return nil
}

// Addr is the address the proxy listens on, once Ready is closed.
func (s *Server) Addr() string {
	if p := s.addr.Load(); p != nil {
		return *p
	}
	return ""
}

// Ready is closed once the proxy accepts connections.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Serve runs the proxy until ctx is cancelled, then shuts down gracefully:
// it stops reading new commands, lets in-flight replies reach their clients
// for up to ShutdownTimeout, and closes everything.
func (s *Server) Serve(ctx context.Context) error {
	monCtx, stopMon := context.WithCancel(context.Background())
	s.mon.Start(monCtx)
	s.fetchUpstreamFacts(ctx)
	var linkDone chan struct{}
	// The link stops before the engine: its stream may be read on a loop
	// (linkHost), and a connection the engine closed under it would look
	// like a lost master, reconnected to in the middle of the shutdown.
	linkCtx, stopLink := context.WithCancel(monCtx)
	defer stopLink()
	if s.link != nil {
		linkDone = make(chan struct{})
		go func() {
			defer close(linkDone)
			if err := s.link.Run(linkCtx); err != nil {
				s.log.Error("replication link stopped", "err", err)
			}
		}()
	}
	defer func() {
		stopMon()
		s.mon.Wait()
		if linkDone != nil {
			<-linkDone
		}
	}()
	errc := make(chan error, 1)
	go func() { errc <- s.runEngine() }()
	select {
	case err := <-errc:
		return fmt.Errorf("proxy: listen %v %v: %w", addrStrings(s.hard.plain), s.cfg.TLSListen, err)
	case <-s.ready:
	}
	s.log.Info("replproxy listening", "addrs", s.Addrs(), "tls", s.TLSAddrs(), "master", s.mon.Master(), "sentinels", s.cfg.Sentinels, "loops", s.cfg.Loops)
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	s.shutdown(func() {
		stopLink()
		if linkDone != nil {
			select {
			case <-linkDone:
			case <-time.After(5 * time.Second):
				s.log.Warn("the replication link did not stop within 5 s")
			}
		}
	})
	return <-errc
}

// shutdown drains the clients, runs stopLink once nothing is in flight
// (the witness needs the link until then), and stops the engine.
func (s *Server) shutdown(stopLink func()) {
	s.draining.Store(true)
	deadline := time.Now().Add(s.cfg.ShutdownTimeout)
	for time.Now().Before(deadline) && s.inflight() > 0 {
		time.Sleep(5 * time.Millisecond)
	}
	if n := s.inflight(); n > 0 {
		s.log.Warn("shutdown deadline reached with requests in flight", "requests", n)
	} else {
		s.loopBarrier(time.Second)
	}
	stopLink()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.eng.Stop(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("engine stop", "err", err)
	}
}

// loopBarrier waits until every loop has run one task queued now: a loop
// counts a request out of inflight and writes its reply in one task, so
// after the barrier no reply counted out is still unwritten (a CI run's
// client got EOF instead of the reply its shutdown had waited for).
func (s *Server) loopBarrier(d time.Duration) {
	var wg sync.WaitGroup
	for _, l := range *s.loopLst.Load() {
		wg.Add(1)
		if err := l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			wg.Done()
			return nil
		})); err != nil {
			wg.Done()
		}
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

func (s *Server) inflight() int64 {
	var n int64
	for _, l := range *s.loopLst.Load() {
		n += l.inflight.Load()
	}
	return n
}

// fetchUpstreamFacts asks the master what SELECT and HELLO must agree with.
// The proxy still starts when the master is down: clients then get clear
// errors until it is back, as they would talking to Redis directly.
func (s *Server) fetchUpstreamFacts(ctx context.Context) {
	s.databases, s.serverVersion = s.cfg.Databases, "7.0.0"
	if s.databases == 0 {
		s.databases = 16
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	select {
	case <-s.mon.Known():
	case <-ctx.Done():
		s.log.Warn("no master known at start (no Sentinel answered with one); serving anyway", "sentinels", s.cfg.Sentinels)
		return
	}
	master := s.mon.Master()
	rc := redis.NewClient(&redis.Options{
		Addr:        master,
		TLSConfig:   s.cfg.UpstreamTLS,
		Username:    s.cfg.UpstreamUser,
		Password:    s.cfg.UpstreamPassword,
		Protocol:    2,
		DialTimeout: s.cfg.ConnectTimeout,
		MaxRetries:  -1,
	})
	defer rc.Close()
	info, err := rc.Info(ctx, "server").Result()
	if err != nil {
		s.log.Warn("master not reachable at start; serving anyway", "master", master, "err", err)
		return
	}
	if v := infoField(info, "redis_version"); v != "" {
		s.serverVersion = v
	}
	if s.cfg.Databases == 0 {
		if kv, err := rc.ConfigGet(ctx, "databases").Result(); err == nil {
			if n, err := strconv.Atoi(kv["databases"]); err == nil && n > 0 {
				s.databases = n
			}
		}
	}
}

// loadCommandTable replaces the built-in command table with the master's
// own COMMAND reply, so modules and newer commands are classified by the
// flags of the server that runs them.
func (s *Server) loadCommandTable(ctx context.Context, master string) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ConnectTimeout)
	defer cancel()
	conn, err := dialBackend(ctx, master, s.cfg.UpstreamUser, s.cfg.UpstreamPassword, 2, s.cfg.ConnectTimeout, s.cfg.UpstreamTLS)
	if err != nil {
		s.log.Warn("COMMAND unavailable; using the built-in Redis 7.0 table", "err", err)
		return
	}
	defer conn.Close()
	reply, err := roundTrip(conn, resp.AppendCommandStrings(nil, "COMMAND"), s.cfg.ConnectTimeout)
	if err == nil && len(reply) > 0 && reply[0] == '-' {
		err = fmt.Errorf("%s", reply[1:len(reply)-2])
	}
	var specs []router.CommandSpec
	if err == nil {
		specs, err = router.ParseCommandReply(reply)
	}
	if err != nil || len(specs) == 0 {
		s.log.Warn("COMMAND unusable; using the built-in Redis 7.0 table", "err", err)
		return
	}
	t := router.NewTable(specs, router.Options{Allow: s.live().allowCommands})
	s.table.Store(t)
	s.tableLoads.Add(1)
	s.log.Debug("command table loaded from the master", "commands", t.Len())
}

// infoField returns one "field:value" line of an INFO reply.
func infoField(info, field string) string {
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), field+":"); ok {
			return v
		}
	}
	return ""
}

// OnBatchEnd runs on a loop's goroutine after each batch of events and
// tasks (our patch of gnet, internal/gnet): it releases the write replies
// the replication link has caught up with when the link woke the loop for
// them (wakeWitness), and writes every backend the batch's requests went
// to, one write each.
func (s *Server) OnBatchEnd(el gnet.EventLoop) {
	l := s.loopOf(el)
	l.witnessWoken()
	if l.flushQueued {
		l.flushQueued = false
		l.flushBackends()
	}
	if yieldDue(l.nowNs, l.yieldedNs) {
		l.yieldedNs = l.nowNs
		runtime.Gosched()
	}
}

// yieldEveryNs: a busy loop passes through the Go scheduler this often.
//
// Why: a loop goroutine never yields by itself (NoYield; it blocks only in
// epoll_wait and in the socket calls, which leave the P's schedtick as it
// was). The runtime's sysmon takes a schedtick unchanged for 10 ms
// (forcePreemptNS) for a goroutine hogging its P: it signals the thread
// and, when the thread is in a syscall, takes its P away (handoffp, a
// spinning M). Every such retake also resets sysmon's back-off, so it
// polls every 20 µs for the next millisecond and more. Measured at GET
// pipeline 16 (50 clients, make bench's layout, strace -c over 3 s): 11,215
// nanosleeps (sysmon's usleep) and 26 preemption signals without the
// yield; 293 and none with it. Proxy CPU per request, 3 alternated pairs:
// GET P16 0.738 -> 0.703 µs, GET P1 8.41 -> 7.80 µs, SET P16 (master and 2
// replicas on the other CPU) 1.00 -> 0.865 µs with context switches per
// request 0.021 -> 0.013, GET P16 over TLS 0.878 -> 0.845 µs.
//
// A Gosched costs a futex wake or two (the loop goes through the global
// run queue), hence not every batch; it must come well within the 10-ms
// slice, since sysmon looks at most every 10 ms and must see schedtick move
// between two looks (TestYieldDue).
const yieldEveryNs = int64(5 * time.Millisecond)

// yieldDue reports whether a loop whose clock reads nowNs and which last
// yielded at yieldedNs yields now.
func yieldDue(nowNs, yieldedNs int64) bool { return nowNs-yieldedNs >= yieldEveryNs }

// NoYield: a loop blocks in epoll_wait right after a batch, without a
// zero-timeout poll and a runtime.Gosched first (two syscalls a batch, and
// with a spare P the Gosched wakes its thread: futex). Other goroutines
// run on the spare P (Procs), or on the loop's P once sysmon hands it off
// while the loop waits.
func (s *Server) NoYield() bool { return true }

// defaultLoops is one loop per CPU the Go runtime would use: GOMAXPROCS's
// default, which since Go 1.25 follows a cgroup CPU limit (a container
// limited to 2 CPUs of a 64-CPU host runs 2 loops, where NumCPU said 64)
// and the affinity mask. Read once, at the first proxy's start: the binary
// then sets GOMAXPROCS to one more (Procs), and a reload's defaults must
// not see that.
var defaultLoops = sync.OnceValue(func() int { return runtime.GOMAXPROCS(0) })

// Procs is the GOMAXPROCS the binary runs a proxy of loops event loops
// with: one P more than loops. With every P in a loop's epoll_wait, sysmon
// finds none idle, retakes each after 20 µs (a futex wake and a spinning
// thread per idle spell) and never sleeps longer than 20 µs itself. With
// a spare P it backs off to 10 ms. Measured at GET P1 on make bench's
// layout with NoYield (perf stat, 200,000 requests, 3 pairs): 2.30
// syscalls per request against 2.49 at GOMAXPROCS = loops (nanosleep
// 0.045 against 0.125, futex 0.015 against 0.085). Without NoYield the
// spare P cost more than it saved: gnet's Gosched on every empty poll
// woke it (3.2 syscalls per request against 2.7).
func Procs(loops int) int { return loops + 1 }

// Loops is the number of event loops the proxy runs.
func (s *Server) Loops() int { return s.cfg.Loops }

// OnBoot records the engine and the bound address (the port may have been 0).
func (s *Server) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	s.bootListeners(eng)
	s.readyOnce.Do(func() { close(s.ready) })
	return gnet.None
}

// OnShutdown: the engine stops; linkHost no longer waits for a loop.
func (s *Server) OnShutdown(gnet.Engine) {
	s.stoppingOnce.Do(func() { close(s.stopping) })
}

func (s *Server) loopOf(el gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	l := s.loops[el]
	if l == nil {
		l = newLoop(s, el)
		s.loops[el] = l
		lst := append(append([]*loop(nil), *s.loopLst.Load()...), l)
		s.loopLst.Store(&lst)
	}
	return l
}

// loopConn is a connection the proxy enrolled on a loop itself: a Redis
// backend, or the replication link's stream (linkConn).
type loopConn interface {
	home() *loop // the loop it is enrolled on
	onOpen(gnet.Conn)
	onTraffic()
	onClose(error)
}

// OnOpen: a connection with a loopConn context is one the proxy enrolled;
// anything else is a client.
func (s *Server) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if x, ok := c.Context().(loopConn); ok {
		x.home().tick()
		x.onOpen(c)
		return nil, gnet.None
	}
	if s.draining.Load() {
		return s.refusal(c, errProxyDraining), gnet.Close
	}
	if s.clients.Add(1) > int64(s.live().maxClients) {
		s.clients.Add(-1)
		s.rejected.Add(1)
		return s.refusal(c, errMaxClients), gnet.Close
	}
	l := s.loopOf(c.EventLoop())
	sess := newSession(l, s.clientConn(c), s.nextID.Add(1))
	c.SetContext(sess)
	return nil, gnet.None
}

func (s *Server) OnClose(c gnet.Conn, err error) gnet.Action {
	switch x := c.Context().(type) {
	case *session:
		s.clients.Add(-1)
		x.sessionClosed()
		x.onClose()
	case loopConn:
		x.home().tick()
		x.onClose(err)
	}
	return gnet.None
}

func (s *Server) OnTraffic(c gnet.Conn) gnet.Action {
	switch x := c.Context().(type) {
	case *session:
		x.l.tick()
		return x.traffic()
	case loopConn:
		x.home().tick()
		x.onTraffic()
	}
	return gnet.None
}

// OnTick runs on its own goroutine: it only schedules each loop's sweep on
// that loop, where the state it checks lives.
func (s *Server) OnTick() (time.Duration, gnet.Action) {
	for _, l := range *s.loopLst.Load() {
		_ = l.el.Execute(context.Background(), l.sweeper)
	}
	s.sizeBacklog(time.Now())
	return 100 * time.Millisecond, gnet.None
}

// gnetLogger sends gnet's own logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
