package replstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/replproxy/replproxy/resp"
)

// Link states, as Stats.State reports them.
const (
	StateConnecting = "connecting" // dialing the master
	StateHandshake  = "handshake"  // PING/AUTH/REPLCONF/PSYNC
	StateSync       = "sync"       // skipping the RDB of a full resync
	StateStreaming  = "streaming"  // following the command stream
	StateDown       = "down"       // not running, or waiting to reconnect
)

// Link is the proxy's own replica connection to the master. Run owns the
// connection on one goroutine; every other method is safe for concurrent use
// from any goroutine, never blocks on the link, and reads published state
// with atomic loads (Offset, ReplID, Connected, TimeAt, LagMs never allocate).
// A Link must not be copied.
type Link struct {
	cfg   Config
	epoch time.Time // time origin of the time index (monotonic clock)

	hist      atomic.Pointer[history] // nil before the first sync
	connected atomic.Bool
	// lostAt is when the link last stopped streaming (time.Duration
	// since epoch, so monotonic), 0 before it ever streamed.
	lostAt atomic.Int64
	// streaming is the master the current session streams from (nil:
	// none), published with connected.
	streaming atomic.Pointer[string]
	status    atomic.Pointer[status]

	fullSyncs      atomic.Uint64
	partialSyncs   atomic.Uint64
	reconnects     atomic.Uint64
	historyResets  atomic.Uint64
	masterRestarts atomic.Uint64
	bytesReceived  atomic.Uint64

	changes chan struct{}
	running atomic.Bool
	// prevs are the histories the link left, newest first: one a full
	// resync replaced (the empty-master guard promotes a replica of the
	// old history after the link already resynced from the master that
	// came back empty), or one it forked at a failover's split (the old
	// history stays whole for the replay of the suffix beyond it). A few
	// are kept: what came before them is older than any failover in
	// progress. Replaced whole (copy on write); link goroutine writes.
	prevs atomic.Pointer[[]*history]
	// follow is what SetMasterContinuing asked for: the link forks its
	// history at the split before it next dials that master.
	follow atomic.Pointer[followAt]
	// backlogWant is the backlog size SetBacklogBytes asked for (0: the
	// configured one); the link goroutine applies it.
	backlogWant atomic.Int64

	// master is the address followed now (SetMaster); masterConn is the
	// connection to it, closed by SetMaster to move the link at once.
	master     atomic.Pointer[string]
	connMu     sync.Mutex
	masterConn io.Closer // the connection, or the Host's handle of it

	// lastRecvNs is when the stream's last bytes came (UnixNano), for
	// the link's goroutine while a Host reads them.
	lastRecvNs atomic.Int64

	r runner // Run's state; survives between Runs
}

// history is one replication history as the link follows it: an ID, the
// offset reached in it, and the time index and backlog of its bytes. It is
// published whole through Link.hist, so a reader's ReplID, Offset, TimeAt
// and Backlog come from the same history. A +CONTINUE with a new ID gets a
// new history sharing the index and backlog (offsets continue); a full
// resync gets fresh ones. Only the link goroutine writes offset.
type history struct {
	replid string
	// aliases are the replication IDs this history continues under
	// another name (+CONTINUE with a new ID, a fork at a split): the same
	// offsets and bytes, up to each alias's upTo.
	aliases []alias
	// start is the offset the bytes begin after: the full resync that
	// began the history (a fork or a +CONTINUE keeps its parent's). Below
	// it the history holds nothing, whatever its ID: a full resync from a
	// master under an ID the link also holds forked up to an earlier split
	// must not claim that earlier stretch.
	start   int64
	offset  atomic.Int64
	times   *timeIndex
	backlog *backlog
	marks   *marks // transactions and SELECTs, for ReplayStart
}

// upTo is how far the history's bytes are those of alias replid (-1: not
// at all).
func (h *history) upTo(replid string) int64 {
	for _, a := range h.aliases {
		if a.replid == replid {
			return a.upTo
		}
	}
	return -1
}

// alias is another ID of a history: its offsets up to upTo are the
// same bytes under both IDs; beyond upTo they are this history's own.
type alias struct {
	replid string
	upTo   int64
}

// holds reports whether the history's bytes from its start up to offset
// at are replid's.
func (h *history) holds(replid string, at int64) bool {
	return at >= h.start && h.names(replid, at)
}

// names reports whether the history's bytes up to offset at, as far as it
// has them, go by replid: its own ID, or an alias reaching at.
func (h *history) names(replid string, at int64) bool {
	if replid == "" {
		return false
	}
	if h.replid == replid {
		return true
	}
	for _, a := range h.aliases {
		if a.replid == replid && at <= a.upTo {
			return true
		}
	}
	return false
}

// aliasesAt is every ID under which the history holds its bytes up to
// at, with upTo clipped to at: the aliases of a history forked there.
func (h *history) aliasesAt(at int64) []alias {
	out := []alias{{h.replid, at}}
	for _, a := range h.aliases {
		if a.upTo >= at {
			out = append(out, alias{a.replid, at})
		}
	}
	return out
}

// followAt is a master to follow from a split of the link's history.
type followAt struct {
	addr   string
	replid string // the ID under which the master holds the history
	split  int64  // up to this offset
}

// maxPrevs bounds Link.prevs.
const maxPrevs = 4

// status is the slowly changing part of Stats, replaced whole on change.
type status struct {
	state       string
	lastError   string
	lastSync    time.Time
	masterRunID string
	rdbBytes    int64
	rdbDiskless bool
}

// Stats is a snapshot of the link's state and counters.
type Stats struct {
	State  string // StateConnecting, StateHandshake, StateSync, StateStreaming, StateDown
	ReplID string // as ReplID()
	Offset int64  // as Offset()

	FullSyncs    uint64 // completed full resyncs (+FULLRESYNC and its RDB skipped)
	PartialSyncs uint64 // +CONTINUE answers
	// Reconnects counts connections established after the first one.
	Reconnects uint64
	// HistoryResets counts +FULLRESYNC answers to an offset lower than the
	// link's: the master lost writes the link had seen. A new replid with
	// a lower offset is a master restarted without persistence (the seed
	// hazard); the same replid with a lower offset, a master restored from
	// an older RDB. A full resync to a higher offset (the link fell out of
	// the master's backlog) is not a reset. Each one fires Changes as soon
	// as the answer arrives, before the RDB transfer.
	HistoryResets uint64
	// MasterRestarts counts handshakes that found a run_id different from
	// the previous one (learned from INFO server).
	MasterRestarts uint64
	BytesReceived  uint64 // every byte read from the master, RDBs included

	LastError   string    // the error that ended the last session, "" if none yet
	LastSync    time.Time // when the last full or partial sync completed
	MasterRunID string    // the master's run_id, "" if INFO was refused
	RDBBytes    int64     // payload size of the last full resync's RDB
	RDBDiskless bool      // whether it came as a diskless ($EOF:) transfer
}

// New checks cfg and returns a Link that does nothing until Run.
func New(cfg Config) (*Link, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	l := &Link{
		cfg:     cfg,
		epoch:   time.Now(),
		changes: make(chan struct{}, 1),
	}
	l.status.Store(&status{state: StateDown})
	addr := cfg.Master
	l.master.Store(&addr)
	l.r = runner{
		l:      l,
		log:    cfg.Logger,
		parser: resp.NewRequestParser(resp.DefaultLimits()),
		scan:   resp.NewReplyScanner(resp.DefaultLimits()),
	}
	return l, nil
}

// Run connects to the master and follows its replication stream until ctx
// is done, reconnecting forever (backing off up to ReconnectBackoffMax) and
// resuming with PSYNC <replid> <offset+1> so a dropped connection continues
// with +CONTINUE. It returns nil once ctx is done, or ErrRunning if another
// Run is in progress. Run may be called again after it returned; the
// history (replid, offset, time index, backlog) is kept.
func (l *Link) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer l.running.Store(false)
	r := &l.r
	backoff := time.Duration(0)
	for {
		streamed, err := r.session(ctx)
		if l.connected.Load() { // (only this goroutine writes it)
			l.lostAt.Store(max(1, int64(time.Since(l.epoch)))) // first: DownFor never sees a stale drop
			l.connected.Store(false)
		}
		l.streaming.Store(nil)
		if ctx.Err() != nil {
			l.setStatus(func(s *status) { s.state = StateDown })
			return nil
		}
		r.noteError(err)
		if streamed || backoff == 0 {
			backoff = minReconnectBackoff
		} else {
			backoff = min(2*backoff, l.cfg.ReconnectBackoffMax)
		}
		backoff = min(backoff, l.cfg.ReconnectBackoffMax)
		// ±20% jitter, so proxies that lost the master together do not
		// come back in lockstep.
		wait := backoff - backoff/5 + rand.N(2*backoff/5+1)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

var errNoMasterYet = errors.New("replstream: no master known yet")

// ReplayStart returns where a replay of the stream after offset from must
// begin so that it holds whole transactions and runs in the right
// database: the offset just before the MULTI of a transaction that from
// falls inside (a replica that stopped there discarded the queued part),
// else from itself; and the database selected at that point. ok is false
// when the link cannot tell (the SELECT in effect there is no longer known).
func (l *Link) ReplayStart(from int64) (start int64, db int, ok bool) {
	h := l.hist.Load()
	if h == nil {
		return 0, 0, false
	}
	return h.marks.replayStart(from)
}

// Master returns the address the link follows.
func (l *Link) Master() string { return *l.master.Load() }

// SetMaster moves the link to another master (a failover): the current
// connection is closed and the next one goes to addr with PSYNC <replid>
// <offset+1>, which a promoted replica that continues the history answers
// +CONTINUE. Safe for concurrent use.
func (l *Link) SetMaster(addr string) {
	l.follow.Store(nil)
	l.setMaster(addr)
}

// SetMasterContinuing is SetMaster for a master that holds the link's
// history under replid only up to offset split (a promoted replica: its
// master_replid2 and second_repl_offset-1), while the link may have read
// further: the suffix the old master wrote after the split and the
// promoted replica never got. PSYNC from the link's own offset would be
// refused (+FULLRESYNC), leaving the link blind while the RDB transfers
// (no write is witnessed then) and its new history starting wherever the
// master was at that moment, so a later failover to a replica behind that
// point finds nothing to replay. Instead the link forks its history at
// the split: the new history shares the backlog below it and continues
// with PSYNC <replid> <split+1>, which the master answers +CONTINUE; the
// old history stays whole, readable through HistoryOf, for the replay of
// the suffix. Nothing is forked when the link is not past the split, or
// does not hold replid there. Safe for concurrent use.
func (l *Link) SetMasterContinuing(addr, replid string, split int64) {
	l.follow.Store(&followAt{addr: addr, replid: replid, split: split})
	l.setMaster(addr)
}

func (l *Link) setMaster(addr string) {
	if l.Master() == addr {
		return
	}
	l.connMu.Lock()
	l.master.Store(&addr)
	c := l.masterConn
	l.connMu.Unlock()
	if c != nil {
		c.Close()
	}
}

// Offset returns the replication offset of the last stream byte processed
// (complete commands only), or -1 before the first sync. During a full
// resync it still reports the previous history until the RDB is skipped.
func (l *Link) Offset() int64 {
	h := l.hist.Load()
	if h == nil {
		return -1
	}
	return h.offset.Load()
}

// ReplID returns the replication ID the offsets belong to ("" before the
// first sync).
func (l *Link) ReplID() string {
	if h := l.hist.Load(); h != nil {
		return h.replid
	}
	return ""
}

// Position returns ReplID and Offset as one consistent pair.
func (l *Link) Position() (replid string, offset int64) {
	h := l.hist.Load()
	if h == nil {
		return "", -1
	}
	return h.replid, h.offset.Load()
}

// Connected reports whether the link is following the stream right now.
func (l *Link) Connected() bool { return l.connected.Load() }

// DownFor returns how long the link has not been streaming: 0 while it
// streams, math.MaxInt64 when it never has. The write witness tells by it a
// link that just dropped (maybe with the master: the writes it had not
// received yet are in doubt) from one that has been down a while (the
// witness is off).
func (l *Link) DownFor() time.Duration {
	if l.connected.Load() {
		return 0
	}
	at := l.lostAt.Load()
	if at == 0 {
		return math.MaxInt64
	}
	return max(1, time.Since(l.epoch)-time.Duration(at))
}

// StreamingFrom reports whether the link follows addr's stream right now
// (not a session to the master before, still ending).
func (l *Link) StreamingFrom(addr string) bool {
	p := l.streaming.Load()
	return p != nil && *p == addr
}

// TimeAt returns when the link received the stream byte at offset off+1,
// i.e. when the master's offset first went past off (as seen from here: a
// byte that was produced while the link was down is dated when it arrived
// after the reconnection). ok is false when off is older than the time
// index, or >= Offset(). Never allocates.
func (l *Link) TimeAt(off int64) (time.Time, bool) {
	h := l.hist.Load()
	if h == nil || off < 0 || off >= h.offset.Load() {
		return time.Time{}, false
	}
	at, ok := h.times.lookup(off)
	if !ok {
		return time.Time{}, false
	}
	return l.epoch.Add(time.Duration(at)), true
}

// LagMs returns how stale a replica whose applied offset is applied is, in
// milliseconds: 0 when applied >= Offset() (caught up as far as the link
// knows), else now - TimeAt(applied), the age of the oldest write the
// replica lacks; -1 when unknown (applied < 0, no sync yet, older than the
// time index). The caller must check the replica follows ReplID(): offsets
// of another history mean nothing here. Never allocates.
func (l *Link) LagMs(applied int64, now time.Time) int64 {
	h := l.hist.Load()
	if h == nil || applied < 0 {
		return -1
	}
	if applied >= h.offset.Load() {
		return 0
	}
	at, ok := h.times.lookup(applied)
	if !ok {
		return -1
	}
	return max(0, now.Sub(l.epoch.Add(time.Duration(at))).Milliseconds())
}

// Backlog appends to dst the stream bytes after offset from (exclusive) up
// to Offset(): whole commands, exactly as the master sent them. ok is false,
// and dst is returned unchanged, when those bytes are no longer in the
// backlog (or from is beyond Offset()).
func (l *Link) Backlog(dst []byte, from int64) ([]byte, bool) {
	h := l.hist.Load()
	if h == nil {
		return dst, false
	}
	return h.backlog.appendTo(dst, from)
}

// History is a handle on the history the link follows now: its backlog
// stays readable through the handle after the link has moved on to another
// history (a full resync from a new master), which is what a failover's
// replay needs. Safe for concurrent use.
//
// A handle from HistoryOf may be limited: a history that holds the asked-for
// ID only up to an offset (an alias) reports that offset as its Offset and
// gives no bytes beyond it, which are another history's.
type History struct {
	h     *history
	limit int64 // the handle's bytes end here at most
}

// History returns the current history (ok false before the first sync).
// Cheap: no copy.
func (l *Link) History() (History, bool) {
	h := l.hist.Load()
	return History{h, math.MaxInt64}, h != nil
}

// SetBacklogBytes changes how many stream bytes the backlog keeps, from
// the next bytes received (growing keeps every byte held; shrinking keeps
// the newest). n <= 0 goes back to Config.BacklogBytes. Safe for
// concurrent use.
func (l *Link) SetBacklogBytes(n int) {
	if n <= 0 {
		n = l.cfg.BacklogBytes
	}
	l.backlogWant.Store(int64(n))
}

// BacklogBytes is how many stream bytes the backlog keeps now (rounded up
// to its segments), or the size it will have before the first sync.
func (l *Link) BacklogBytes() int {
	if h := l.hist.Load(); h != nil {
		return h.backlog.capacity()
	}
	return l.backlogSize()
}

func (l *Link) backlogSize() int {
	if n := l.backlogWant.Load(); n > 0 {
		return int(n)
	}
	return l.cfg.BacklogBytes
}

// HistoryOf returns the link's bytes of the history named replid, from
// offset at on: from the current history or one the link left (a full
// resync replaced it, a failover forked it), whichever holds replid's
// bytes furthest past at. A history that starts after at (a full resync
// under the same ID, later) counts only when none holds at itself: it
// cannot replay from at, and the caller says what is lost. The handle ends
// where replid's bytes end (an alias's upTo). ok is false when no history
// goes by replid at at.
func (l *Link) HistoryOf(replid string, at int64) (History, bool) {
	best := History{limit: -1}
	bestHolds := false
	consider := func(h *history) {
		if h == nil || !h.names(replid, at) {
			return
		}
		holds := h.holds(replid, at)
		if bestHolds && !holds {
			return
		}
		reach := h.offset.Load()
		if h.replid != replid {
			reach = min(reach, h.upTo(replid))
		}
		if reach > best.limit || holds && !bestHolds {
			best, bestHolds = History{h, reach}, holds
		}
	}
	consider(l.hist.Load())
	if p := l.prevs.Load(); p != nil {
		for _, h := range *p {
			consider(h)
		}
	}
	if best.h == nil {
		return History{}, false
	}
	if best.h.replid == replid {
		best.limit = math.MaxInt64 // its own: it may still grow
	}
	return best, true
}

// pushPrev records a history the link left. Link goroutine only.
func (l *Link) pushPrev(h *history) {
	var old []*history
	if p := l.prevs.Load(); p != nil {
		old = *p
	}
	next := append([]*history{h}, old[:min(len(old), maxPrevs-1)]...)
	l.prevs.Store(&next)
}

// ReplID is the history's replication ID.
func (h History) ReplID() string { return h.h.replid }

// ReplayStart is as Link.ReplayStart, on this history.
func (h History) ReplayStart(from int64) (start int64, db int, ok bool) {
	return h.h.marks.replayStart(from)
}

// Voids returns the ranges (start, end] after offset from that were never
// executed in this history (a transaction its fork's split cut), in
// stream order: a replay leaves them out.
func (h History) Voids(from int64) [][2]int64 {
	var out [][2]int64
	for _, v := range h.h.marks.voidsAfter(from) {
		out = append(out, [2]int64{v.start, v.end})
	}
	return out
}

// Offset is how far the link got in this history (or the handle's limit).
func (h History) Offset() int64 { return min(h.h.offset.Load(), h.limit) }

// Backlog is as Link.Backlog, on this history, up to Offset.
func (h History) Backlog(dst []byte, from int64) ([]byte, bool) {
	end := h.Offset()
	if from > end {
		return dst, false
	}
	orig := len(dst)
	dst, ok := h.h.backlog.appendTo(dst, from)
	if ok && int64(len(dst)-orig) > end-from {
		dst = dst[:orig+int(end-from)]
	}
	return dst, ok
}

// Changes returns a channel that receives (non-blocking send, capacity 1)
// after every history change: a full resync starting (when it rewinds the
// offset: HistoryResets) and completing, +CONTINUE with a new replication
// ID, a master restart seen by its run_id. Receivers re-read the state; one
// receive may stand for several changes.
func (l *Link) Changes() <-chan struct{} { return l.changes }

// Stats returns a snapshot of the link's state and counters.
func (l *Link) Stats() Stats {
	s := l.status.Load()
	replid, off := l.Position()
	return Stats{
		State:          s.state,
		ReplID:         replid,
		Offset:         off,
		FullSyncs:      l.fullSyncs.Load(),
		PartialSyncs:   l.partialSyncs.Load(),
		Reconnects:     l.reconnects.Load(),
		HistoryResets:  l.historyResets.Load(),
		MasterRestarts: l.masterRestarts.Load(),
		BytesReceived:  l.bytesReceived.Load(),
		LastError:      s.lastError,
		LastSync:       s.lastSync,
		MasterRunID:    s.masterRunID,
		RDBBytes:       s.rdbBytes,
		RDBDiskless:    s.rdbDiskless,
	}
}

func (l *Link) notifyChange() {
	select {
	case l.changes <- struct{}{}:
	default:
	}
}

// setStatus publishes a modified copy of the status. Link goroutine only
// (one writer, so no compare-and-swap is needed).
func (l *Link) setStatus(f func(*status)) {
	s := *l.status.Load()
	f(&s)
	l.status.Store(&s)
}

// runner is the state of the goroutine running Run: the connection, its
// buffers and parsers. Not safe for concurrent use: while a Host reads
// the stream (hosted), its Feed calls own the stream state and Run's
// goroutine touches none of it until Hosted.Done has received.
type runner struct {
	l   *Link
	log *slog.Logger

	conn         net.Conn
	buf          []byte // read buffer: unprocessed bytes are buf[rd:w]
	rd, w        int
	need         int // bytes the frame at buf[rd:] needs at least (0: unknown)
	readDeadline time.Time
	wbuf         []byte

	parser *resp.RequestParser
	scan   *resp.ReplyScanner
	rdb    rdbSkipper

	addr     string   // the master this runner last dialed
	hist     *history // == l.hist.Load(), kept here for the writer
	off      int64    // == hist.offset, the writer's copy
	runID    string
	everConn bool
	lastErr  string

	lastRecv time.Time
	nextAck  time.Time

	// hosted: a Host reads the stream (Config.Host); writes go to
	// hostOut, which Feed returns, instead of to conn.
	hosted  bool
	hostOut []byte

	// awaitStart: a diskless full resync just ended; the stream starts
	// on an ack the master may not have been ready for (awaitStreamStart).
	awaitStart bool
}

const (
	readChunkBytes = 64 << 10 // read buffer size in the steady state
	minReadBytes   = 4 << 10  // compact or grow when less room than this is left
)

// session runs one connection: dial, handshake, sync, stream. streamed
// reports whether it got as far as streaming (the backoff restarts then).
func (r *runner) session(ctx context.Context) (streamed bool, err error) {
	l := r.l
	l.setStatus(func(s *status) { s.state = StateConnecting })
	addr := l.Master()
	if addr == "" {
		return false, errNoMasterYet
	}
	if addr != r.addr {
		// Another node (a failover): its run_id differs without any
		// restart, so only a change seen on this node counts as one.
		r.addr, r.runID = addr, ""
		r.log = l.cfg.Logger.With("master", addr)
	}
	if f := l.follow.Load(); f != nil && f.addr == addr && l.follow.CompareAndSwap(f, nil) {
		r.forkAt(f.replid, f.split)
	}
	conn, err := l.dial(ctx, addr)
	if err != nil {
		return false, err
	}
	l.connMu.Lock()
	l.masterConn = conn
	moved := l.Master() != addr
	l.connMu.Unlock()
	if moved {
		conn.Close()
		return false, errors.New("replstream: master moved while dialing")
	}
	if r.everConn {
		l.reconnects.Add(1)
	}
	r.everConn = true
	r.conn = conn
	// Closing is the only way to interrupt a blocked Read when ctx ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		stop()
		conn.Close()
		l.connMu.Lock()
		l.masterConn = nil
		l.connMu.Unlock()
		r.conn = nil
		r.rd, r.w, r.need = 0, 0, 0
		r.parser.Reset()
		r.readDeadline = time.Time{}
	}()

	l.setStatus(func(s *status) { s.state = StateHandshake })
	rep, err := r.handshake()
	if err != nil {
		return false, err
	}
	switch rep.kind {
	case psyncContinue:
		if err := r.continued(rep); err != nil {
			return false, err
		}
	case psyncFull:
		if err := r.fullResync(rep); err != nil {
			return false, err
		}
	}
	l.setStatus(func(s *status) {
		s.state = StateStreaming
		s.lastSync = time.Now()
	})
	l.connected.Store(true)
	l.streaming.Store(&addr)
	return true, r.stream(ctx)
}

// continued adopts a +CONTINUE answer.
func (r *runner) continued(rep psyncReply) error {
	l := r.l
	h := r.hist
	if h == nil {
		return fmt.Errorf("%w: +CONTINUE answered PSYNC ? -1", ErrProtocol)
	}
	l.partialSyncs.Add(1)
	if rep.replid != "" && rep.replid != h.replid {
		// The master changed history (a failover, a REPLICAOF NO ONE)
		// and knows ours up to our offset: offsets continue.
		nh := &history{replid: rep.replid, aliases: h.aliasesAt(r.off), start: h.start,
			times: h.times, backlog: h.backlog, marks: h.marks}
		nh.offset.Store(r.off)
		r.hist = nh
		l.hist.Store(nh)
		r.log.Info("replstream: partial resync with a new replication ID", "old_replid", h.replid, "new_replid", rep.replid, "offset", r.off)
		l.notifyChange()
		return nil
	}
	r.log.Info("replstream: partial resync", "replid", h.replid, "offset", r.off)
	return nil
}

// forkAt starts a history that holds replid's bytes up to split and
// continues from there (SetMasterContinuing says why): forked from the
// current history, or from one the link left (the empty-master guard
// promotes a replica of the old history after the link resynced from the
// master that came back empty). The history forked is kept whole among
// the ones the link left, and so is the current one.
func (r *runner) forkAt(replid string, split int64) {
	l := r.l
	h := r.hist
	if split < 0 || h == nil {
		return
	}
	if !h.holds(replid, split) {
		h = nil
		if p := l.prevs.Load(); p != nil {
			for _, o := range *p {
				if o.holds(replid, split) && split <= o.offset.Load() {
					h = o
					break
				}
			}
		}
		if h == nil {
			return
		}
	} else if split >= r.off {
		return // nothing read past the split: PSYNC from here continues
	}
	var aliases []alias
	for _, a := range h.aliasesAt(split) {
		if a.replid != replid {
			aliases = append(aliases, a)
		}
	}
	nh := &history{
		replid:  replid,
		aliases: aliases,
		start:   h.start,
		times:   h.times.fork(split, int64(time.Since(l.epoch))),
		backlog: h.backlog.fork(split),
		marks:   h.marks.fork(split),
	}
	nh.offset.Store(split)
	l.pushPrev(r.hist) // the one forked, or the one left for it (h is among prevs then)
	r.log.Warn("replstream: the new master holds the history only up to its split: following it from there; the suffix beyond stays readable for the replay",
		"replid", replid, "split", split, "history_offset", h.offset.Load(), "suffix_bytes", h.offset.Load()-split)
	r.hist, r.off = nh, split
	l.hist.Store(nh)
	l.notifyChange()
}

// fullResync skips the RDB that follows +FULLRESYNC and starts a new history
// at the announced offset.
func (r *runner) fullResync(rep psyncReply) error {
	l := r.l
	if old := r.hist; old != nil && rep.offset < r.off {
		// The seed hazard: the master's offset went backwards, so
		// writes the link (and the replicas) saw are gone from it. Say so
		// now, while the replicas are still transferring, not after.
		l.historyResets.Add(1)
		r.log.Warn("replstream: MASTER HISTORY RESET: full resync to a lower offset; writes after it are lost on the master and replicas will drop them",
			"old_replid", old.replid, "old_offset", r.off, "new_replid", rep.replid, "new_offset", rep.offset)
		l.notifyChange()
	}
	l.setStatus(func(s *status) { s.state = StateSync })
	r.log.Info("replstream: full resync", "replid", rep.replid, "offset", rep.offset)
	r.rdb.reset()
	for {
		n, done, err := r.rdb.feed(r.buf[r.rd:r.w])
		r.rd += n
		if err != nil {
			return fmt.Errorf("RDB transfer: %w", err)
		}
		if done {
			break
		}
		if err := r.readWithTimeout(); err != nil {
			return fmt.Errorf("RDB transfer: %w", err)
		}
	}
	h := &history{
		replid:  rep.replid,
		start:   rep.offset,
		times:   newTimeIndex(l.cfg.TimeIndexSize),
		backlog: newBacklog(l.backlogSize(), rep.offset),
		marks:   &marks{},
	}
	if old := r.hist; old != nil {
		l.pushPrev(old)
	}
	// The lower bound of the window: the stream starts after this offset.
	h.times.push(rep.offset, int64(time.Since(l.epoch)))
	h.offset.Store(rep.offset)
	r.hist, r.off = h, rep.offset
	r.awaitStart = r.rdb.diskless
	r.parser.Reset()
	l.hist.Store(h)
	l.fullSyncs.Add(1)
	l.setStatus(func(s *status) {
		s.rdbBytes = r.rdb.payloadBytes
		s.rdbDiskless = r.rdb.diskless
	})
	r.log.Info("replstream: RDB skipped, streaming", "rdb_bytes", r.rdb.payloadBytes, "diskless", r.rdb.diskless, "keepalives", r.rdb.keepalives)
	l.notifyChange()
	return nil
}

// noteRunID records the run_id INFO reported and detects a restart.
func (r *runner) noteRunID(id string) {
	if id == "" || id == r.runID {
		return
	}
	if r.runID != "" {
		r.l.masterRestarts.Add(1)
		r.log.Warn("replstream: master restarted (run_id changed)", "old_run_id", r.runID, "new_run_id", id)
		r.l.notifyChange()
	}
	r.runID = id
	r.l.setStatus(func(s *status) { s.masterRunID = id })
}

// noteError records why a session ended. A repeated error is logged at
// debug level: a master that stays down must not flood the log.
func (r *runner) noteError(err error) {
	if err == nil {
		err = errors.New("session ended")
	}
	msg := err.Error()
	r.l.setStatus(func(s *status) {
		s.state = StateDown
		s.lastError = msg
	})
	if msg != r.lastErr {
		r.log.Warn("replstream: link lost", "err", msg)
	} else {
		r.log.Debug("replstream: link lost", "err", msg)
	}
	r.lastErr = msg
}

// read reads once into the buffer, making room first.
func (r *runner) read() (int, error) {
	r.makeRoom()
	n, err := r.conn.Read(r.buf[r.w:])
	if n > 0 {
		r.w += n
		r.received(n, time.Now())
	}
	return n, err
}

// received records n stream bytes that came at now: for the read timeout
// (lastRecvNs is its copy for Run's goroutine while a Host reads) and the
// stats.
func (r *runner) received(n int, now time.Time) {
	r.lastRecv = now
	r.l.lastRecvNs.Store(now.UnixNano())
	r.l.bytesReceived.Add(uint64(n))
}

// makeRoom ensures at least minReadBytes of free space after w and room for
// the whole frame being parsed (r.need bytes from rd).
func (r *runner) makeRoom() {
	if r.rd == r.w {
		r.rd, r.w = 0, 0
		if r.need == 0 && len(r.buf) > 4*readChunkBytes {
			// Give back what one huge command made us allocate.
			r.buf = nil
		}
	}
	if len(r.buf)-r.w >= minReadBytes && len(r.buf)-r.rd >= r.need {
		return
	}
	if r.rd > 0 {
		r.w = copy(r.buf, r.buf[r.rd:r.w])
		r.rd = 0
	}
	if len(r.buf)-r.w >= minReadBytes && len(r.buf) >= r.need {
		return
	}
	size := max(r.need+minReadBytes, r.w+readChunkBytes)
	nb := make([]byte, size)
	copy(nb, r.buf[:r.w])
	r.buf = nb
}

// write sends p with a ReadTimeout deadline.
func (r *runner) write(p []byte) error {
	if r.hosted {
		r.hostOut = append(r.hostOut, p...)
		return nil
	}
	if err := r.conn.SetWriteDeadline(time.Now().Add(r.l.cfg.ReadTimeout)); err != nil {
		return err
	}
	_, err := r.conn.Write(p)
	return err
}

func isTimeout(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// dial connects to the master, over TLS when the link is configured so.
func (l *Link) dial(ctx context.Context, addr string) (net.Conn, error) {
	var conn net.Conn
	var err error
	if l.cfg.Dial != nil {
		dctx, cancel := context.WithTimeout(ctx, l.cfg.DialTimeout)
		conn, err = l.cfg.Dial(dctx, addr)
		cancel()
	} else {
		d := net.Dialer{Timeout: l.cfg.DialTimeout}
		conn, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil || l.cfg.TLS == nil {
		return conn, err
	}
	cfg := l.cfg.TLS
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(addr)
		cfg = cfg.Clone()
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	hctx, cancel := context.WithTimeout(ctx, l.cfg.DialTimeout)
	defer cancel()
	if err := tc.HandshakeContext(hctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("replstream: TLS handshake with %s: %w", addr, err)
	}
	return tc, nil
}
