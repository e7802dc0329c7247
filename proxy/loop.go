package proxy

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/replproxy/replproxy/router"
)

// loop is the proxy state of one gnet event loop: its connections to every
// node and the work left to flush at the end of the current callback. Owned
// by that loop; only inflight is read from other goroutines.
type loop struct {
	srv *Server
	el  gnet.EventLoop

	master *nodePool
	// masterGen is the snapshot MasterGen the master pool belongs to;
	// switchTask moves the loop to a newer one (failover.go), and
	// switchWaiters are sessions parked until it has run. redirects are
	// writes the old master refused with -READONLY, kept for the new one.
	masterGen     uint64
	switchQueued  bool
	switchTask    gnet.Runnable
	switchWaiters []*session
	redirects     []redirected
	// masterLostAt: the loop's connection to the master (masterLostAddr)
	// closed, not by the proxy, and the control plane has not answered for
	// that master since (masterUnconfirmed).
	masterLostAt   time.Time
	masterLostAddr string
	// witnessWaits are write replies waiting for the replication link to
	// hold their bytes; witnessNeed (read where the link reads: its
	// goroutine, or linkLoop) is the
	// lowest fence among them, 0 for none; witnessWake dedups wake-ups.
	witnessWaits []witnessWait
	witnessBuf   []byte // the waiting replies' bytes (witnessWait.off, n)
	// witnessProbes counts the master ROLEs sent to decide waits whose
	// link dropped (witness.go); witnessProbing: one is in flight.
	witnessProbes  uint64
	witnessProbing bool
	// witnessTimerAt is when the armed witness timer fires (zero: none).
	witnessTimerAt   time.Time
	witnessTimerT    *time.Timer // made at the first wait, then Reset
	witnessTimerTask gnet.Runnable
	timerTask        gnet.Runnable
	witnessNeed      atomic.Int64
	witnessWake      atomic.Bool
	witnessTask      gnet.Runnable
	replicas         map[string]*nodePool
	// idle dedicated master connections, kept for the next session that pins one.
	idleDedicated [2][]*backend

	sessions map[*session]struct{}

	dirtySessions    []*session
	dirtyBackends    []*backend
	flushing         bool
	flushingBackends bool
	// flushQueued: the dirty backends will be written after every event of
	// the current wake-up (by OnBatchEnd, or by a task queued with Execute
	// where gnet has no batch-end hook), so requests from many clients
	// reach a backend in one write.
	flushQueued  bool
	backendFlush gnet.Runnable

	// inflight counts requests forwarded and not yet answered, for shutdown.
	inflight atomic.Int64

	sweeper gnet.Runnable
	rr      int

	stats loopStats
	// now and nowNs are the time of the event being handled, read once per
	// callback (tick): requests parsed or replies read in one callback
	// were, to the proxy, forwarded or answered at the same moment, and a
	// clock read per request was a fifth of the proxy's CPU.
	now   time.Time
	nowNs int64
	// yieldedNs is when OnBatchEnd last yielded (see yieldEveryNs).
	yieldedNs int64
	// linearizable reads waiting for a master offset sample: linWaiting
	// for the next ROLE, linInFlight for the one sent (linSent).
	linWaiting, linInFlight []*session
	linSent                 bool
	// epoch numbers the events that order master reads against master
	// ROLEs on this loop: a ROLE queued after a read's reply arrived runs
	// after that read on the master, so its offset bounds what the read
	// observed. sampleEpoch and sampleOff are the newest such ROLE answered
	// (fences and linearize samples) and the highest offset they returned.
	epoch       uint64
	sampleEpoch uint64
	sampleOff   int64
	// parked sessions wait for replica offsets: in WAIT (parked), at the
	// write gate (gateWaiters), or for their write to be replicated
	// (syncWaits, --sync-replicas).
	parked      []*session
	gateWaiters []*session
	syncWaits   []syncWait
	// redoBuf holds a copy of a request being re-sent.
	redoBuf []byte
	// readFacts and readPools (the pool of each fact) are the replica facts
	// gathered to place a read (gatherReplicas), reused from read to read.
	readFacts []replicaFact
	readPools []*nodePool
	// lastRefresh is when replica offsets were last asked for; refreshTimer
	// says a paced refresh is scheduled.
	lastRefresh  time.Time
	refreshTimer bool
}

// nodePool is a loop's connections to one node. Shared connections are
// (re)created on demand, subject to the reconnect backoff in dial.
type nodePool struct {
	addr    string
	replica bool
	shared  [2][]*backend // by protocol (2, 3)
	dial    dialState
	// knownOffset is the highest applied offset a ROLE on this loop's
	// connections reported; -1 after the connection was lost (a restarted
	// replica may come back behind it).
	knownOffset int64
	// demotedAt: a read here failed (LOADING, MASTERDOWN, BUSY, a lost or
	// hung connection). The replica is not read from again until the monitor
	// has polled it after that moment and still finds it eligible.
	demotedAt time.Time
}

// dialState is the reconnect backoff toward one node.
type dialState struct {
	retryAt time.Time
	backoff time.Duration
	lastErr string
}

const (
	initialBackoff   = 25 * time.Millisecond
	maxIdleDedicated = 8
)

func newLoop(s *Server, el gnet.EventLoop) *loop {
	l := &loop{srv: s, el: el, sessions: make(map[*session]struct{}), replicas: make(map[string]*nodePool)}
	addr := ""
	if snap := s.topo.Load(); snap != nil {
		addr, l.masterGen = snap.Master.Addr, snap.MasterGen
	}
	l.master = l.newPool(addr, false)
	l.switchTask = newSwitchTask(l)
	l.witnessTask = newWitnessTask(l)
	l.witnessTimerTask = newWitnessTimerTask(l)
	l.timerTask = newTimerTask(l)
	l.backendFlush = gnet.RunnableFunc(func(context.Context) error {
		l.flushQueued = false
		l.flushBackends()
		return nil
	})
	l.sweeper = gnet.RunnableFunc(func(context.Context) error {
		l.tick()
		l.sweep(l.now)
		return nil
	})
	return l
}

// tick reads the clock for the callback that starts.
func (l *loop) tick() {
	l.now = time.Now()
	l.nowNs = l.now.UnixNano()
}

func (l *loop) newPool(addr string, replica bool) *nodePool {
	p := &nodePool{addr: addr, replica: replica, knownOffset: -1}
	n := l.srv.cfg.BackendConns
	if replica {
		n = 1
	}
	for i := range p.shared {
		p.shared[i] = make([]*backend, n)
	}
	return p
}

func (l *loop) replicaPool(addr string) *nodePool {
	p := l.replicas[addr]
	if p == nil {
		p = l.newPool(addr, true)
		l.replicas[addr] = p
	}
	return p
}

// sharedBackend returns the connection to p that a session speaking proto
// multiplexes onto, creating it if needed. It returns nil with the reason
// while the node is in reconnect backoff.
func (l *loop) sharedBackend(p *nodePool, proto int) (*backend, string) {
	conns := p.shared[proto-2]
	i := 0
	if len(conns) > 1 {
		l.rr++
		i = l.rr % len(conns)
	}
	if b := conns[i]; b != nil {
		return b, ""
	}
	if why := p.mayDial(); why != "" {
		return nil, why
	}
	if p.addr == "" {
		return nil, errNoMasterKnown
	}
	b := newBackend(l, p, proto, nil)
	conns[i] = b
	b.slot = &conns[i]
	return b, ""
}

// dedicatedBackend returns a master connection for sess alone.
func (l *loop) dedicatedBackend(sess *session) (*backend, string) {
	idle := &l.idleDedicated[sess.proto-2]
	for len(*idle) > 0 {
		b := (*idle)[len(*idle)-1]
		*idle = (*idle)[:len(*idle)-1]
		if b.state != stateClosed {
			b.owner = sess
			return b, ""
		}
	}
	if why := l.master.mayDial(); why != "" {
		return nil, why
	}
	if l.master.addr == "" {
		return nil, errNoMasterKnown
	}
	if l.srv.dedicated.Add(1) > int64(l.srv.cfg.MaxDedicatedConns) {
		l.srv.dedicated.Add(-1)
		return nil, errTooManyDedicated
	}
	b := newBackend(l, l.master, sess.proto, sess)
	b.dedicated = true
	return b, ""
}

// releaseDedicated takes back a connection whose session state ended.
func (l *loop) releaseDedicated(b *backend) {
	b.owner = nil
	idle := &l.idleDedicated[b.proto-2]
	if b.state == stateOpen && !b.relay && b.pend.len() == 0 && len(*idle) < maxIdleDedicated {
		*idle = append(*idle, b)
		return
	}
	b.close()
}

// mayDial says why a connection to the node must not be dialed now (the
// reconnect backoff), or "". It runs for every replica considered for
// every read, so a healthy node costs no clock read.
func (p *nodePool) mayDial() string {
	if p.dial.retryAt.IsZero() {
		return ""
	}
	if time.Now().Before(p.dial.retryAt) {
		return p.dial.lastErr
	}
	return ""
}

func (p *nodePool) dialFailed(err error, max time.Duration) {
	if p.dial.backoff == 0 {
		p.dial.backoff = initialBackoff
	} else if p.dial.backoff *= 2; p.dial.backoff > max {
		p.dial.backoff = max
	}
	p.dial.retryAt = time.Now().Add(p.dial.backoff)
	p.dial.lastErr = err.Error()
}

func (p *nodePool) dialSucceeded() { p.dial = dialState{} }

// usable reports whether reads may go to the replica st describes.
func (p *nodePool) usable(st *router.NodeState) bool {
	if !st.Eligible {
		return false
	}
	return p.demotedAt.IsZero() || st.Seen.After(p.demotedAt)
}

// stillEligible reports whether a replica a session is reading from may
// take more reads.
func (l *loop) stillEligible(p *nodePool) bool {
	snap := l.srv.topo.Load()
	if snap == nil {
		return false
	}
	for i := range snap.Replicas {
		if snap.Replicas[i].Addr == p.addr {
			return p.usable(&snap.Replicas[i])
		}
	}
	return false
}

func (l *loop) demote(p *nodePool, why string) {
	if p.demotedAt.IsZero() || l.srv.log.Enabled(context.Background(), -4) {
		l.srv.log.Info("replica demoted on this loop until the monitor sees it healthy", "replica", p.addr, "why", why)
	}
	p.demotedAt = time.Now()
	p.knownOffset = -1
	// Other loops may have no connection to it and would not notice: the
	// monitor takes it out of every loop's snapshot until it polls it again.
	l.srv.mon.Demote(p.addr, p.demotedAt)
}

func (l *loop) markSession(s *session) {
	if !s.dirty {
		s.dirty = true
		l.dirtySessions = append(l.dirtySessions, s)
	}
}

func (l *loop) markBackend(b *backend) {
	if !b.dirty {
		b.dirty = true
		l.dirtyBackends = append(l.dirtyBackends, b)
		if batchBackendWrites && !l.flushQueued {
			if gnet.BatchEndSupported {
				l.flushQueued = true // Server.OnBatchEnd writes it
			} else {
				l.flushQueued = l.el.Execute(context.Background(), l.backendFlush) == nil
			}
		}
	}
}

// batchBackendWrites defers backend writes to the end of the loop's
// wake-up (see loop.flushQueued) instead of writing after each callback.
const batchBackendWrites = true

// flushBackends writes every dirty backend. A write can fail and close its
// connection synchronously, and that close flushes again: the nested call
// returns at once (flushingBackends), and whatever it would have written
// is picked up by this loop, which re-reads the list on every iteration.
// (Without the guard the nested call walked the entries this one had
// already cleared: a nil dereference, seen when a switch closed
// connections under load.)
func (l *loop) flushBackends() {
	if l.flushingBackends {
		return
	}
	l.flushingBackends = true
	for i := 0; i < len(l.dirtyBackends); i++ {
		b := l.dirtyBackends[i]
		l.dirtyBackends[i] = nil
		if b == nil {
			continue
		}
		b.dirty = false
		b.flush()
	}
	l.dirtyBackends = l.dirtyBackends[:0]
	l.flushingBackends = false
}

// flush writes everything the current callback produced: requests first, so
// the backends start working while replies go out. A write can fail and
// close a connection synchronously, whose OnClose flushes again: the nested
// call is a no-op and what it would have written is picked up here, since
// the lists are re-read on every iteration.
//
// Inside a flushBackends (a backend's failed write closed it, and its
// OnClose flushes), the backends are that outer call's to write: the loop
// here must not wait for them, or it spins forever on a list only the
// outer call empties (seen: a loop stuck at 100% CPU after a node was
// killed, every client of the loop timing out).
func (l *loop) flush() {
	if l.flushing {
		return
	}
	l.flushing = true
	backends := func() bool { return len(l.dirtyBackends) > 0 && !l.flushQueued && !l.flushingBackends }
	for backends() || len(l.dirtySessions) > 0 {
		if backends() {
			l.flushBackends()
		}
		for i := 0; i < len(l.dirtySessions); i++ {
			s := l.dirtySessions[i]
			l.dirtySessions[i] = nil
			s.dirty = false
			s.flush()
		}
		l.dirtySessions = l.dirtySessions[:0]
	}
	if l.flushQueued && !l.flushingBackends {
		// A backend with a lot queued gets it now rather than at the end of
		// the wake-up, so the server works on the first clients' requests
		// while the loop still reads the others': one round trip per
		// wake-up, all stages in series, left the CPUs idle a third of the
		// time under 50 pipelining clients.
		for _, b := range l.dirtyBackends {
			if len(b.out) >= eagerFlushBytes {
				b.flush()
			}
		}
	}
	l.flushing = false
}

// eagerFlushBytes: see flush. Pipelined GETs through the proxy (50 clients,
// 16 deep) ran about 1.3× faster with 2–8 KiB here than with none; a much
// smaller threshold would spend a write syscall on every few requests.
const eagerFlushBytes = 4 << 10

// scriptHangTimeout is how long a replica running a read-only script (one
// at the head of its connection) may stay silent before it is judged hung
// like any other (see sweep).
const scriptHangTimeout = 30 * time.Second

// sweep enforces idle timeouts and replica read timeouts, and during
// shutdown closes clients that have nothing left in flight.
func (l *loop) sweep(now time.Time) {
	idle := l.srv.live().idleTimeout
	draining := l.srv.draining.Load()
	for s := range l.sessions {
		switch {
		case draining && s.replies.outstanding() == 0:
			s.c.Close()
		case idle > 0 && s.replies.outstanding() == 0 && !s.exemptFromIdle() && now.Sub(s.lastActive) > idle:
			s.c.Close()
		case s.sweepGuard(now):
			s.c.Close()
		}
	}
	if !l.masterCurrent() {
		l.switchMaster()
	}
	l.expireRedirects(now)
	l.checkParked()
	// A replica that stopped answering (paused, partitioned, hung) would
	// hold its reads forever: past the read timeout its connection is
	// dropped and the reads it held are re-sent elsewhere. But for a
	// read-only script at the head of the connection: the replica is most
	// likely running it, as long as it takes, as Redis would for a client
	// of its own; sent elsewhere it would run again there, and again on
	// the master, each node busy in turn. So the replica only gets no new
	// reads meanwhile (demoted; the monitor's polls find it busy too), and
	// the script and the reads behind it wait for its answer, up to
	// scriptHangTimeout.
	for _, p := range l.replicas {
		for _, conns := range p.shared {
			for _, b := range conns {
				if b == nil || b.state != stateOpen || b.pend.len() == 0 {
					continue
				}
				switch stalled := now.Sub(b.lastProgress); {
				case stalled <= l.srv.cfg.ReadTimeout:
				case b.pend.peek().script && stalled <= scriptHangTimeout:
					if p.demotedAt.Before(b.lastProgress) {
						l.demote(p, "running a read-only script")
					}
				default:
					l.demote(p, "read timeout")
					b.timedOut = true
					b.close()
				}
			}
		}
	}
	l.flush()
}
