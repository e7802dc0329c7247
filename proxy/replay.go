package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"net"
	"strings"

	"github.com/replproxy/replproxy/replstream"
	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
)

// Replay of the lost suffix (DESIGN.md "Failover and data safety").
//
// A promoted replica holds its old master's history up to
// second_repl_offset-1 (the split). Whatever the old master wrote after
// that is in the proxy's link backlog, every acknowledged write included
// (the witness). Before any request reaches the new master, that suffix is
// replayed onto it:
//
//   - taken at the switch, under the control plane's lock, before the link
//     moves to the new master (after which its backlog follows the new
//     history);
//   - from the MULTI of a transaction the split falls inside (the replica
//     discarded its queued part), in the database selected there;
//   - as one transaction on one connection: the stream's own MULTI/EXEC are
//     dropped (their commands are inside the outer one), the master's PING,
//     REPLCONF and PUBLISH are skipped (not data; a message is not
//     re-published), everything else is sent as the stream's own bytes
//     (writes as effects, absolute PEXPIREATs, SELECTs), pipelined;
//   - onto the master of the moment: if Sentinel replaced the new master
//     again before the replay committed, the next attempt goes to its
//     successor, whose marker says whether the first got in;
//   - exactly once: a marker key named by the old replication ID and the
//     offset range is SET in the same transaction, checked first under
//     WATCH: a second proxy (or this one retrying) finds it and does
//     nothing, and two racing ones cannot both commit (WATCH);
//   - the proxy's causal fence is raised to the new master's offset after
//     the replay, so no read is served by a replica that has not applied
//     the whole transaction.
//
// When the suffix cannot be taken whole (the link was on another history,
// or its backlog no longer reaches back to the split) nothing is replayed
// partially: the loss is logged, counted (replproxy_failover_lost_bytes)
// and shown in PROXY INFO.

// Several replays at once (a double failover: Sentinel replaces the first
// promoted replica before or just after its replay committed) run one at a
// time, the newest switch's first. A newer switch's suffix is the newer
// master's stream, and that stream holds any earlier replay the link
// witnessed on it, marker included: once it is replayed, an earlier job
// finds its marker and does nothing, or (when the earlier replay never
// reached the link) runs onto a master now equivalent to the one it was
// meant for. An earlier job run first would find no marker on the newest
// master and replay writes the newer suffix then replays again.
//
// A replay is done only once the link has witnessed it (its EXEC is at or
// below the link's offset on the master's history), as any acknowledged
// write: one that committed on a master that died before its stream
// reached the link or a replica exists nowhere else. Until then it is
// held, and a switch runs it again onto the next master, where its marker
// says whether it got there.

// replayJob is a suffix waiting to be replayed onto a new master.
type replayJob struct {
	seq uint64 // the switch's order: a higher one runs first
	sw  router.Switch
	// markerID is the history the offsets are of, which names the marker:
	// the old master's, or for a diverged switch the first master's.
	markerID string
	start    int64 // the suffix holds stream offsets (start, end]
	end      int64
	db       int
	hist     replstream.History // the old history, read after the link moved on
	// cut: the suffix was cut to whole transactions (end moved) already.
	cut bool
	// afterReplayOf: the job starts after the transaction in its range
	// that SET a replay marker with this prefix (a diverged switch: the
	// old master's own writes follow its replay); "" once found.
	afterReplayOf string

	// switched: the master switched while the job ran (under
	// replayQ.mu): what it committed went to a master no longer in use.
	switched bool
	// superseded: a diverged switch came while the job ran, and its own
	// jobs cover this one's range (under replayQ.mu): it is not run again.
	superseded bool

	// A committed replay, until the link witnessed it: the master's
	// history and offset after its EXEC.
	heldID    string
	heldOff   int64
	heldSince time.Time
}

// replayQueue orders the replays (see above). Its lock is taken under the
// control plane's (beforeSwitch) and never the other way round.
type replayQueue struct {
	mu      sync.Mutex
	seq     uint64
	jobs    []*replayJob // to run onto the master of the moment
	held    []*replayJob // committed, until the link witnessed them
	running bool         // runReplays is on
	// current is the job runReplays is running (nil: none); a switch
	// meanwhile sets its switched flag.
	current *replayJob
}

// newerThan reports whether a job of a later switch is waiting. Under mu.
func (q *replayQueue) newerThanLocked(seq uint64) bool {
	for _, j := range q.jobs {
		if j.seq > seq {
			return true
		}
	}
	return false
}

// popNewestLocked removes and returns the job of the latest switch. Under
// mu, with jobs not empty.
func (q *replayQueue) popNewestLocked() *replayJob {
	k := 0
	for i, j := range q.jobs {
		if j.seq > q.jobs[k].seq {
			k = i
		}
	}
	job := q.jobs[k]
	q.jobs = append(q.jobs[:k], q.jobs[k+1:]...)
	return job
}

// maxHeld is how long a committed replay waits for the link to witness it
// on a master that stays: past that, the master has had every chance to
// pass it to its replicas.
const maxHeld = 2 * time.Minute

// replayStats are the replay counters and the last outcome.
type replayStats struct {
	replayed, skipped, failed atomic.Int64 // replays committed, found done, given up
	bytes                     atomic.Int64 // suffix bytes replayed
	lostBytes                 atomic.Int64 // suffix bytes that could not be replayed
	last                      atomic.Pointer[string]

	mu     sync.Mutex
	recent []string // the last maxReplayNotes outcomes, oldest first
}

const maxReplayNotes = 8

func (r *replayStats) note(s string) {
	r.last.Store(&s)
	r.mu.Lock()
	if len(r.recent) == maxReplayNotes {
		r.recent = append(r.recent[:0], r.recent[1:]...)
	}
	r.recent = append(r.recent, s)
	r.mu.Unlock()
}

// replayNotes returns the last replay outcomes, oldest first.
func (s *Server) replayNotes() []string {
	s.replays.mu.Lock()
	defer s.replays.mu.Unlock()
	return slices.Clone(s.replays.recent)
}

// beforeSwitch takes the suffix the new master lacks (topology's
// BeforeSwitch hook: under its lock, before the switch is published; it
// must not block), and queues it with the replays the new master may lack
// (committed on the master replaced, not witnessed). Requests wait while
// any is queued.
func (s *Server) beforeSwitch(sw router.Switch) {
	jobs := s.takeSuffix(sw)
	q := &s.replayQ
	q.mu.Lock()
	defer q.mu.Unlock()
	if sw.Diverged {
		// The replay of the first master's suffix from the new master's own
		// split (takeSuffix) supersedes any still waiting from the switch
		// before, which started at the old master's lower split: the new
		// master has part of that already.
		superseded := func(j *replayJob) bool { return j.markerID == sw.HeldID }
		q.jobs = slices.DeleteFunc(q.jobs, superseded)
		q.held = slices.DeleteFunc(q.held, superseded)
	}
	for _, j := range q.held {
		if !sw.Continues {
			// The new master starts a history of its own: what it
			// lacks is everything, not this replay.
			lost := j.end - j.start
			s.replays.lostBytes.Add(lost)
			msg := fmt.Sprintf("a replay committed on %s was not yet witnessed when the master switched to %s, which does not continue its history: %d bytes of it may be lost", sw.From, sw.To, lost)
			s.log.Error("WRITES MAY BE LOST in the failover: " + msg)
			s.replays.note(msg)
			continue
		}
		j.heldID, j.heldOff = "", 0
		q.jobs = append(q.jobs, j)
	}
	q.held = nil
	// jobs are in the order they must run; the newest runs first.
	for i := len(jobs) - 1; i >= 0; i-- {
		q.seq++
		jobs[i].seq = q.seq
		q.jobs = append(q.jobs, jobs[i])
	}
	switch {
	case q.current != nil && sw.Diverged && q.current.markerID == sw.HeldID:
		// The first master's suffix from the old master's split, still
		// running onto the old master: the diverged switch's two jobs
		// replace it (the new master's own split lies beyond it, and the
		// old master's writes after its replay, if it committed, are the
		// second job). Were it run again as well, part of its range would
		// run twice (a test run: 200 of 400 writes twice).
		q.current.superseded = true
	case q.current != nil:
		// The job running now may commit on the master just replaced
		// (it is alive, only slow: Sentinel gave up on it while it took
		// the replay): it must run again onto the new one, before any
		// request reaches it.
		q.current.switched = true
	}
	if len(q.jobs) > 0 || q.current != nil {
		s.replaying.Store(true)
	}
}

// takeSuffix returns the replays a switch needs, in the order they must
// run: none when the new master holds everything the link saw (or the loss
// was logged), one as a rule, two after a diverged double failover.
func (s *Server) takeSuffix(sw router.Switch) []*replayJob {
	if s.link == nil || !*s.cfg.Witness || !sw.Continues || sw.SplitOffset < 0 {
		return nil
	}
	if sw.Diverged {
		return s.divergedSuffix(sw)
	}
	return s.suffixOf(sw, sw.OldReplID, sw.SplitOffset, -1)
}

// divergedSuffix: the new master holds the first master's history (HeldID)
// up to HeldTo, beyond the old master's split; the old master's stream
// past its split is its replay of the first master's suffix, then its own
// writes. What the new master lacks is the first master's suffix past
// HeldTo, then the old master's writes after its replay: two jobs, in that
// order (the writes came after).
func (s *Server) divergedSuffix(sw router.Switch) []*replayJob {
	jobs := s.suffixOf(sw, sw.HeldID, sw.HeldTo, -1)
	own := s.suffixOf(sw, sw.OldReplID, sw.SplitOffset, -1)
	for _, j := range own {
		// Where the old master's replay ends is found on the replay's
		// goroutine (it reads the stream): not under this lock.
		j.afterReplayOf = "__replproxy:replayed:" + sw.HeldID + ":"
	}
	return append(jobs, own...)
}

// suffixOf is the replay of history replid after offset from, as the link
// holds it: one job, or one per range between the voids of the history (a
// transaction a fork cut, never executed there), in order; lostFrom (-1:
// from) is where what cannot be replayed is counted from.
func (s *Server) suffixOf(sw router.Switch, replid string, from, lostFrom int64) []*replayJob {
	if lostFrom < 0 {
		lostFrom = from
	}
	// The old master's history, even when the link has left it: after a
	// master restarted empty the link full-resyncs from it before the
	// empty-master guard promotes a replica, and the bytes to replay are
	// in the history that resync replaced.
	hist, ok := s.link.HistoryOf(replid, from)
	if !ok {
		cur := "none"
		if h, ok := s.link.History(); ok {
			cur = h.ReplID()
		}
		msg := fmt.Sprintf("the replication link was not on the old master's history (%s, not %s): writes after offset %d cannot be replayed", cur, replid, from)
		s.log.Error("WRITES MAY BE LOST in the failover: " + msg)
		s.replays.note(msg)
		return nil
	}
	off := hist.Offset()
	if off <= from {
		return nil // the new master holds everything the link saw
	}
	start, db, ok := hist.ReplayStart(from)
	if !ok {
		lost := off - lostFrom
		s.replays.lostBytes.Add(lost)
		msg := fmt.Sprintf("the database in effect at offset %d is no longer known: %d bytes of the old master's writes are lost", from, lost)
		s.log.Error("WRITES LOST in the failover: " + msg)
		s.replays.note(msg)
		return nil
	}
	// The copy of the bytes happens on the replay's goroutine, through
	// the history handle: nothing slow under the control plane's lock.
	var jobs []*replayJob
	for i, r := range aroundVoids(start, off, hist.Voids(start)) {
		if i > 0 {
			// After a void: the database in effect there.
			if _, db, ok = hist.ReplayStart(r[0]); !ok {
				continue
			}
		}
		jobs = append(jobs, &replayJob{sw: sw, markerID: replid, start: r[0], end: r[1], db: db, hist: hist})
	}
	return jobs
}

// aroundVoids returns the ranges (start, end] of (from, end] outside the
// voids (sorted, not overlapping), in order.
func aroundVoids(from, end int64, voids [][2]int64) [][2]int64 {
	var out [][2]int64
	for _, v := range voids {
		if v[1] <= from || v[0] >= end {
			continue
		}
		if v[0] > from {
			out = append(out, [2]int64{from, v[0]})
		}
		from = max(from, v[1])
	}
	if from < end {
		out = append(out, [2]int64{from, end})
	}
	return out
}

// replayedEnd finds, in stream (the bytes after offset base), the
// transaction that SET a replay marker starting with prefix, and returns
// the offset just after its EXEC: where the writes a master took after
// that replay begin. found is false when there is none.
func replayedEnd(stream []byte, base int64, prefix string) (end int64, found bool) {
	parser := resp.NewRequestParser(resp.DefaultLimits())
	inTx, marked := false, false
	for pos := 0; pos < len(stream); {
		cmd, m, err := parser.Parse(stream[pos:])
		if err != nil || m == 0 {
			return end, found
		}
		pos += m
		if len(cmd.Args) == 0 {
			continue
		}
		switch {
		case resp.EqualFold(cmd.Args[0], "MULTI"):
			inTx, marked = true, false
		case resp.EqualFold(cmd.Args[0], "EXEC"):
			if inTx && marked {
				end, found = base+int64(pos), true
			}
			inTx, marked = false, false
		case inTx && len(cmd.Args) >= 2 && resp.EqualFold(cmd.Args[0], "SET") && strings.HasPrefix(string(cmd.Args[1]), prefix):
			marked = true
		}
	}
	return end, found
}

// startReplay runs the queued replays (from the Switched hook).
func (s *Server) startReplay() {
	q := &s.replayQ
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.running || len(q.jobs) == 0 {
		return
	}
	q.running = true
	go s.runReplays()
}

// runReplays runs the queued replays, newest first, lets requests through
// once none is left to run, and then waits for the link to witness the
// committed ones.
func (s *Server) runReplays() {
	q := &s.replayQ
	released := false
	for {
		q.mu.Lock()
		if len(q.jobs) > 0 {
			job := q.popNewestLocked()
			q.current = job
			released = false
			q.mu.Unlock()
			held := s.replay(job)
			// In one critical section with clearing current, so a switch
			// sees the job either running or held, never neither.
			q.mu.Lock()
			q.current = nil
			switch {
			case held && job.switched:
				job.switched, job.heldID, job.heldOff = false, "", 0
				q.jobs = append(q.jobs, job)
			case held:
				job.heldSince = time.Now()
				q.held = append(q.held, job)
			}
			q.mu.Unlock()
			continue
		}
		// Nothing left to run: requests go on (under mu, so a switch
		// queueing a job now sets replaying after this).
		s.replaying.Store(false)
		s.dropWitnessedLocked()
		idle := len(q.held) == 0
		if idle {
			q.running = false
		}
		q.mu.Unlock()
		if !released {
			s.endReplay()
			released = true
		}
		if idle {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// dropWitnessedLocked forgets the held replays the link has witnessed
// (or that waited maxHeld on a master that stayed). Under replayQ.mu.
func (s *Server) dropWitnessedLocked() {
	q := &s.replayQ
	replid, off := s.link.Position()
	kept := q.held[:0]
	for _, j := range q.held {
		switch {
		case replid == j.heldID && off >= j.heldOff:
			s.log.Debug("failover replay witnessed by the link", "replid", replid, "offset", j.heldOff)
		case time.Since(j.heldSince) > maxHeld:
			// Committed on a master that stayed, but no second machine is
			// known to have it: say so, as for any unwitnessed write (not
			// counted as lost: the master has it).
			msg := fmt.Sprintf("a replay committed on the master (history %s, offset %d) was not witnessed by the link within %v (it is at %s %d): %d bytes may be on that master alone", j.heldID, j.heldOff, maxHeld, replid, off, j.end-j.start)
			s.log.Warn("FAILOVER REPLAY: " + msg)
			s.replays.note(msg)
		default:
			kept = append(kept, j)
		}
	}
	clear(q.held[len(kept):])
	q.held = kept
}

// endReplay lets requests through again and wakes the loops.
func (s *Server) endReplay() {
	for _, l := range *s.loopLst.Load() {
		_ = l.el.Execute(context.Background(), l.switchTask)
	}
}

// linkWait bounds how long a replay waits for the link to follow the new
// master (awaitLink); requests wait with it.
const linkWait = 2 * time.Second

// awaitLink waits until the link streams from master (or linkWait has
// passed, or the master changed). The link must continue from the split
// before the replay's megabytes reach the new master's backlog (1 MB by
// default): past them the split is gone from there, the PSYNC from it is
// refused, and the link resyncs in full, blind while the RDB transfers:
// no write is witnessed meanwhile (seen in CI: a double failover then lost
// the writes taken in that window). It takes a few milliseconds.
func (s *Server) awaitLink(master string) {
	if s.link == nil {
		return
	}
	for deadline := time.Now().Add(linkWait); !s.link.StreamingFrom(master) && time.Now().Before(deadline) && s.mon.Master() == master; {
		time.Sleep(2 * time.Millisecond)
	}
}

// replayAttempts bounds the retries of a replay that failed on the new
// master (a connection error, a master not yet accepting writes, or one
// replaced again meanwhile: each attempt goes to the master of the moment,
// whose marker tells whether an earlier attempt got in).
const replayAttempts = 8

// replay runs one job onto the master of the moment. held: it committed
// there and waits for the link to witness it. A job whose attempt failed
// while a later switch's job is waiting goes back to the queue, to run
// after that one.
func (s *Server) replay(job *replayJob) (held bool) {
	if prefix := job.afterReplayOf; prefix != "" {
		job.afterReplayOf = ""
		if stream, ok := job.hist.Backlog(nil, job.start); ok {
			stream = stream[:min(int64(len(stream)), job.end-job.start)]
			if end, found := replayedEnd(stream, job.start, prefix); found {
				if end >= job.end {
					return false // the old master wrote nothing after its replay
				}
				// After an EXEC: a command boundary outside any transaction.
				_, db, ok := job.hist.ReplayStart(end)
				if !ok {
					// From its split instead would run the replay again.
					s.replayFailed(job, fmt.Errorf("the database in effect at offset %d is no longer known", end))
					return false
				}
				job.start, job.db = end, db
			}
		}
	}
	s.awaitLink(s.mon.Master())
	suffix, ok := job.hist.Backlog(nil, job.start)
	if !ok {
		lost := job.end - job.start
		s.replays.lostBytes.Add(lost)
		msg := fmt.Sprintf("the link's backlog no longer reaches offset %d: %d bytes of the old master's writes are lost (raise --replication-backlog)", job.start, lost)
		s.log.Error("WRITES LOST in the failover: " + msg)
		s.replays.note(msg)
		return false
	}
	if int64(len(suffix)) > job.end-job.start {
		suffix = suffix[:job.end-job.start] // what the link got after the switch is not the old master's
	}
	if !job.cut {
		// A transaction the stream had only begun when the master died
		// was never acknowledged (its EXEC's fence lies beyond):
		// replaying part of it would break its atomicity. The replay
		// ends before it.
		cut, err := completeTransactions(suffix)
		if err != nil {
			s.replayFailed(job, err)
			return false
		}
		job.end = job.start + int64(cut)
		job.cut = true
	}
	suffix = suffix[:job.end-job.start]
	// The marker is keyed by where the replay starts, the same for every
	// proxy (the split and the stream decide it), and holds where it
	// ended: proxies whose links got different amounts of the old
	// master's stream replay, together, each byte once (keyed by the
	// range, two proxies that had read different lengths both replayed:
	// writes ran twice).
	if job.markerID == "" {
		job.markerID = job.sw.OldReplID
	}
	marker := "__replproxy:replayed:" + job.markerID + ":" + strconv.FormatInt(job.start, 10)
	for attempt := 1; ; attempt++ {
		target := s.mon.Master()
		res, err := s.replayOnce(target, marker, job, suffix)
		q := &s.replayQ
		q.mu.Lock()
		switched := job.switched
		job.switched = false
		if job.superseded {
			q.mu.Unlock()
			s.log.Warn("FAILOVER REPLAY: a diverged switch came while the replay ran on " + target + "; its own replays replace this one")
			return false
		}
		if switched && err == nil {
			// It ran onto a master replaced meanwhile: run it again, onto
			// the master of the moment (after a newer switch's job), where
			// the marker says whether it got there.
			q.jobs = append(q.jobs, job)
			q.mu.Unlock()
			s.log.Warn("FAILOVER REPLAY: the master switched while the replay ran on " + target + "; running it again onto the new master")
			return false
		}
		q.mu.Unlock()
		switch {
		case err == nil && res.from < job.end:
			s.replays.replayed.Add(1)
			s.replays.bytes.Add(job.end - res.from)
			msg := fmt.Sprintf("replayed %d commands (%d bytes, offsets %d-%d of %s) onto %s", res.n, job.end-res.from, res.from, job.end, job.markerID, target)
			s.log.Warn("FAILOVER REPLAY: " + msg)
			s.replays.note(msg)
			if res.replid == "" {
				return false // nothing to wait for: the master did not say where it is
			}
			job.heldID, job.heldOff = res.replid, res.offset
			return true
		case err == nil:
			s.replays.skipped.Add(1)
			msg := "the suffix was already replayed (marker " + marker + " on " + target + " reaches offset " + strconv.FormatInt(job.end, 10) + " or beyond): nothing done"
			s.log.Info("FAILOVER REPLAY: " + msg)
			s.replays.note(msg)
			return false
		case attempt >= replayAttempts:
			s.replayFailed(job, err)
			return false
		}
		q.mu.Lock()
		if q.newerThanLocked(job.seq) {
			q.jobs = append(q.jobs, job)
			q.mu.Unlock()
			s.log.Warn("failover replay failed; a later switch's replay goes first", "master", target, "err", err)
			return false
		}
		q.mu.Unlock()
		s.log.Warn("failover replay failed; retrying", "attempt", attempt, "master", target, "err", err)
		time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
	}
}

func (s *Server) replayFailed(job *replayJob, err error) {
	s.replays.failed.Add(1)
	s.replays.lostBytes.Add(job.end - job.start)
	msg := fmt.Sprintf("replay of offsets %d-%d failed: %v", job.start, job.end, err)
	s.log.Error("WRITES LOST in the failover: " + msg)
	s.replays.note(msg)
}

// replayResult is what one replay attempt did.
type replayResult struct {
	from int64 // where it replayed from (job.end: nothing was left)
	n    int   // how many commands
	// The master's history and offset after the EXEC ("" when it did not
	// say, or is no master).
	replid string
	offset int64
}

// replayOnce replays, in one transaction under WATCH of the marker, what
// of suffix (the old stream from job.start to job.end) no proxy replayed
// yet onto master: from the marker's end offset, or job.start without
// one; the marker is SET in the same transaction, and INFO replication
// then says where the master's stream is past it. Everything goes on one
// plain connection, pipelined: the suffix can be megabytes.
func (s *Server) replayOnce(master, marker string, job *replayJob, suffix []byte) (res replayResult, err error) {
	timeout := 10 * s.cfg.ConnectTimeout
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	conn, err := dialBackend(ctx, master, s.cfg.UpstreamUser, s.cfg.UpstreamPassword, 2, s.cfg.ConnectTimeout, s.cfg.UpstreamTLS)
	if err != nil {
		return replayResult{}, err
	}
	defer conn.Close() // the transaction SELECTs: this connection is not reused
	rd := &replyReader{conn: conn, sc: resp.NewReplyScanner(resp.DefaultLimits())}
	conn.SetDeadline(time.Now().Add(timeout))
	check := resp.AppendCommandStrings(nil, "WATCH", marker)
	check = resp.AppendCommandStrings(check, "GET", marker)
	if _, err := conn.Write(check); err != nil {
		return replayResult{}, err
	}
	if r, err := rd.next(); err != nil || r[0] == '-' {
		return replayResult{}, replyErr("WATCH", r, err)
	}
	r, err := rd.next()
	if err != nil || (r[0] != '$' && r[0] != '_') {
		return replayResult{}, replyErr("GET", r, err)
	}
	from := job.start
	db := job.db
	if done, ok := markerEnd(r); ok {
		if done >= job.end {
			return replayResult{from: job.end}, nil
		}
		// Another proxy's link had less of the stream: replay only what
		// lies beyond. It ended at a whole transaction (above), so the
		// database in effect there is what the link recorded.
		start, d, ok := job.hist.ReplayStart(done)
		if !ok || start != done || done < job.start {
			return replayResult{}, fmt.Errorf("replay: the marker ends at offset %d, where the stream is not at a command the link can start from", done)
		}
		from, db = done, d
	}
	body, n, err := replayBody(suffix[from-job.start:], db)
	if err != nil {
		return replayResult{}, err
	}
	tx := resp.AppendCommandStrings(nil, "MULTI")
	tx = append(tx, body...)
	tx = resp.AppendCommandStrings(tx, "SELECT", "0")
	tx = resp.AppendCommandStrings(tx, "SET", marker, strconv.FormatInt(job.end, 10), "EX", "86400")
	tx = resp.AppendCommandStrings(tx, "EXEC")
	tx = resp.AppendCommandStrings(tx, "INFO", "replication")
	if _, err := conn.Write(tx); err != nil {
		return replayResult{}, err
	}
	// +OK for MULTI, +QUEUED for each command (an error here means Redis
	// refused to queue it, and EXEC aborts), then EXEC's array, then ROLE.
	for i := 0; i < 1+n+2; i++ {
		if _, err := rd.next(); err != nil {
			return replayResult{}, err
		}
	}
	exec, err := rd.next()
	if err != nil {
		return replayResult{}, err
	}
	switch {
	case len(exec) >= 3 && exec[0] == '*' && exec[1] == '-':
		// WATCH: another proxy replayed (or wrote the marker) meanwhile:
		// check again.
		return s.replayOnce(master, marker, job, suffix)
	case exec[0] != '*':
		return replayResult{}, replyErr("EXEC", exec, nil)
	}
	res = replayResult{from: from, n: n}
	info, err := rd.next()
	if replid, off, ok := masterPosition(info); err == nil && ok {
		// A replica counts as holding a replayed write only once it
		// applied the whole transaction.
		s.advanceFence(off)
		res.replid, res.offset = replid, off
	} else {
		s.fenceLost()
	}
	return res, nil
}

// masterPosition reads master_replid and master_repl_offset from an INFO
// replication reply of a master (ok false for a replica or an error).
func masterPosition(reply []byte) (replid string, off int64, ok bool) {
	if len(reply) == 0 || reply[0] != '$' {
		return "", 0, false
	}
	info := string(reply)
	if infoField(info, "role") != "master" {
		return "", 0, false
	}
	off, err := strconv.ParseInt(infoField(info, "master_repl_offset"), 10, 64)
	replid = infoField(info, "master_replid")
	return replid, off, err == nil && replid != ""
}

// markerEnd reads the end offset a replay marker holds (GET's reply); ok
// is false when there is none.
func markerEnd(reply []byte) (int64, bool) {
	if reply[0] != '$' || len(reply) < 4 || reply[1] == '-' {
		return 0, false
	}
	i := bytes.IndexByte(reply, '\n')
	if i < 0 {
		return 0, false
	}
	v, err := strconv.ParseInt(strings.TrimSuffix(string(reply[i+1:]), "\r\n"), 10, 64)
	return v, err == nil
}

// completeTransactions returns how much of stream ends at a whole
// command outside any MULTI: all of it, unless a MULTI has no EXEC (or
// DISCARD) after it, then up to that MULTI.
func completeTransactions(stream []byte) (int, error) {
	parser := resp.NewRequestParser(resp.DefaultLimits())
	open, pos := -1, 0
	for pos < len(stream) {
		cmd, m, err := parser.Parse(stream[pos:])
		if err != nil {
			return 0, fmt.Errorf("replay: stream: %w", err)
		}
		if m == 0 {
			return 0, errors.New("replay: the suffix ends inside a command")
		}
		if len(cmd.Args) > 0 {
			switch {
			case resp.EqualFold(cmd.Args[0], "MULTI"):
				open = pos
			case resp.EqualFold(cmd.Args[0], "EXEC"), resp.EqualFold(cmd.Args[0], "DISCARD"):
				open = -1
			}
		}
		pos += m
	}
	if open >= 0 {
		return open, nil
	}
	return pos, nil
}

func replyErr(what string, r []byte, err error) error {
	if err != nil {
		return fmt.Errorf("replay: %s: %w", what, err)
	}
	return fmt.Errorf("replay: %s: %s", what, strings.TrimSpace(string(r)))
}

// replyReader reads whole replies from a blocking connection.
type replyReader struct {
	conn net.Conn
	sc   *resp.ReplyScanner
	buf  []byte
	off  int
}

func (r *replyReader) next() ([]byte, error) {
	for {
		if r.off < len(r.buf) {
			n, err := r.sc.Scan(r.buf[r.off:])
			if err != nil {
				return nil, err
			}
			if n > 0 {
				frame := r.buf[r.off : r.off+n]
				r.off += n
				return frame, nil
			}
		}
		if r.off > 0 {
			r.buf = append(r.buf[:0], r.buf[r.off:]...)
			r.off = 0
		}
		if len(r.buf) == cap(r.buf) {
			r.buf = append(r.buf, make([]byte, max(4096, len(r.buf)))...)[:len(r.buf)]
		}
		m, err := r.conn.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+m]
		if err != nil && m == 0 {
			return nil, err
		}
	}
}

// replayBody returns the stream's commands to replay (see the comment at
// the top), byte for byte, after a SELECT of db, and how many there are.
func replayBody(stream []byte, db int) ([]byte, int, error) {
	parser := resp.NewRequestParser(resp.DefaultLimits())
	body := resp.AppendCommandStrings(nil, "SELECT", strconv.Itoa(db))
	n := 1
	for len(stream) > 0 {
		cmd, m, err := parser.Parse(stream)
		if err != nil {
			return nil, 0, fmt.Errorf("replay: stream: %w", err)
		}
		if m == 0 {
			return nil, 0, errors.New("replay: the suffix ends inside a command")
		}
		if len(cmd.Args) > 0 && !skipOnReplay(cmd.Args[0]) {
			body = append(body, stream[:m]...)
			n++
		}
		stream = stream[m:]
	}
	return body, n, nil
}

// skipOnReplay: stream commands that are not data, or would nest.
func skipOnReplay(name []byte) bool {
	for _, s := range []string{"PING", "REPLCONF", "PUBLISH", "SPUBLISH", "MULTI", "EXEC"} {
		if resp.EqualFold(name, s) {
			return true
		}
	}
	return false
}
