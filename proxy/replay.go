package proxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
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
//     re-published), everything else is sent with its exact arguments
//     (writes as effects, absolute PEXPIREATs, SELECTs);
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

// replayJob is a suffix waiting to be replayed onto a new master.
type replayJob struct {
	sw     router.Switch
	start  int64 // the suffix holds stream offsets (start, end]
	end    int64
	db     int
	suffix []byte
}

// replayStats are the replay counters and the last outcome.
type replayStats struct {
	replayed, skipped, failed atomic.Int64 // replays committed, found done, given up
	bytes                     atomic.Int64 // suffix bytes replayed
	lostBytes                 atomic.Int64 // suffix bytes that could not be replayed
	last                      atomic.Pointer[string]
}

func (r *replayStats) note(s string) { r.last.Store(&s) }

// beforeSwitch takes the suffix the new master lacks (topology's
// BeforeSwitch hook: under its lock, before the switch is published; it
// must not block).
func (s *Server) beforeSwitch(sw router.Switch) {
	if s.link == nil || !*s.cfg.Witness || !sw.Continues || sw.SplitOffset < 0 {
		return
	}
	replid, off := s.link.Position()
	if off <= sw.SplitOffset && replid == sw.OldReplID {
		return // the new master holds everything the link saw
	}
	if replid != sw.OldReplID {
		msg := fmt.Sprintf("the replication link was not on the old master's history (%s, not %s): writes after offset %d cannot be replayed", replid, sw.OldReplID, sw.SplitOffset)
		s.log.Error("WRITES MAY BE LOST in the failover: " + msg)
		s.replays.note(msg)
		return
	}
	start, db, ok := s.link.ReplayStart(sw.SplitOffset)
	var suffix []byte
	if ok {
		suffix, ok = s.link.Backlog(nil, start)
	}
	if !ok {
		lost := off - sw.SplitOffset
		s.replays.lostBytes.Add(lost)
		msg := fmt.Sprintf("the link's backlog no longer reaches offset %d: %d bytes of the old master's writes are lost (raise --replication-backlog)", sw.SplitOffset, lost)
		s.log.Error("WRITES LOST in the failover: " + msg)
		s.replays.note(msg)
		return
	}
	s.replayPending.Store(&replayJob{sw: sw, start: start, end: off, db: db, suffix: suffix})
	s.replaying.Store(true)
}

// startReplay runs a pending replay (from the Switched hook).
func (s *Server) startReplay() {
	job := s.replayPending.Swap(nil)
	if job == nil {
		return
	}
	go func() {
		defer s.endReplay()
		s.replay(job)
	}()
}

// endReplay lets requests through again and wakes the loops.
func (s *Server) endReplay() {
	s.replaying.Store(false)
	for _, l := range *s.loopLst.Load() {
		_ = l.el.Execute(context.Background(), l.switchTask)
	}
}

// replayAttempts bounds the retries of a replay that failed on the new
// master (a connection error, a master not yet accepting writes).
const replayAttempts = 5

func (s *Server) replay(job *replayJob) {
	cmds, err := replayCommands(job.suffix, job.db)
	if err != nil {
		s.replayFailed(job, err)
		return
	}
	marker := "__replproxy:replayed:" + job.sw.OldReplID + ":" + strconv.FormatInt(job.start, 10) + "-" + strconv.FormatInt(job.end, 10)
	for attempt := 1; ; attempt++ {
		done, err := s.replayOnce(job.sw.To, marker, cmds)
		switch {
		case err == nil && done:
			s.replays.replayed.Add(1)
			s.replays.bytes.Add(int64(len(job.suffix)))
			msg := fmt.Sprintf("replayed %d commands (%d bytes, offsets %d-%d of %s) onto %s", len(cmds), len(job.suffix), job.start, job.end, job.sw.OldReplID, job.sw.To)
			s.log.Warn("FAILOVER REPLAY: " + msg)
			s.replays.note(msg)
			return
		case err == nil:
			s.replays.skipped.Add(1)
			msg := "the suffix was already replayed (marker " + marker + " present): nothing done"
			s.log.Info("FAILOVER REPLAY: " + msg)
			s.replays.note(msg)
			return
		case attempt >= replayAttempts:
			s.replayFailed(job, err)
			return
		}
		s.log.Warn("failover replay failed; retrying", "attempt", attempt, "err", err)
		time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
	}
}

func (s *Server) replayFailed(job *replayJob, err error) {
	s.replays.failed.Add(1)
	s.replays.lostBytes.Add(job.end - job.start)
	msg := fmt.Sprintf("replay of offsets %d-%d onto %s failed: %v", job.start, job.end, job.sw.To, err)
	s.log.Error("WRITES LOST in the failover: " + msg)
	s.replays.note(msg)
}

// errReplayRace: another proxy touched the marker between our check and
// our EXEC; the next attempt finds its result.
var errReplayRace = errors.New("replay: the marker changed under WATCH")

// replayOnce checks the marker and, when absent, runs the suffix and sets
// the marker in one transaction. done is false when the marker was there.
func (s *Server) replayOnce(master, marker string, cmds [][]any) (done bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*s.cfg.ConnectTimeout)
	defer cancel()
	rc := redis.NewClient(&redis.Options{
		Addr: master, Username: s.cfg.UpstreamUser, Password: s.cfg.UpstreamPassword,
		TLSConfig: s.cfg.UpstreamTLS, Protocol: 2, PoolSize: 1, MaxRetries: -1,
		DialTimeout: s.cfg.ConnectTimeout, ReadTimeout: 10 * s.cfg.ConnectTimeout, DisableIdentity: true,
	})
	defer rc.Close() // the transaction SELECTs: this connection is not reused
	err = rc.Watch(ctx, func(tx *redis.Tx) error {
		n, err := tx.Exists(ctx, marker).Result()
		if err != nil {
			return err
		}
		if n > 0 {
			return nil
		}
		_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range cmds {
				p.Do(ctx, c...)
			}
			p.Do(ctx, "SELECT", 0)
			p.Set(ctx, marker, time.Now().UTC().Format(time.RFC3339Nano), 24*time.Hour)
			return nil
		})
		if errors.Is(err, redis.TxFailedErr) {
			return errReplayRace
		}
		if err != nil {
			return err
		}
		done = true
		return nil
	}, marker)
	if errors.Is(err, errReplayRace) {
		return s.replayOnce(master, marker, cmds)
	}
	if err != nil || !done {
		return done, err
	}
	// Raise the causal fence past the replay: a replica counts as holding a
	// write only once it applied the whole transaction.
	if off, err := masterOffset(ctx, rc); err == nil {
		s.advanceFence(off)
	} else {
		s.fenceLost()
	}
	return true, nil
}

func masterOffset(ctx context.Context, rc *redis.Client) (int64, error) {
	v, err := rc.Do(ctx, "ROLE").Slice()
	if err != nil {
		return 0, err
	}
	if len(v) < 2 {
		return 0, fmt.Errorf("ROLE: %v", v)
	}
	off, ok := v[1].(int64)
	if !ok {
		return 0, fmt.Errorf("ROLE: %v", v)
	}
	return off, nil
}

// replayCommands turns stream bytes into the commands to replay (see the
// comment at the top), starting in database db.
func replayCommands(stream []byte, db int) ([][]any, error) {
	parser := resp.NewRequestParser(resp.DefaultLimits())
	out := [][]any{{"SELECT", strconv.Itoa(db)}}
	for len(stream) > 0 {
		cmd, n, err := parser.Parse(stream)
		if err != nil {
			return nil, fmt.Errorf("replay: stream: %w", err)
		}
		if n == 0 {
			return nil, errors.New("replay: the suffix ends inside a command")
		}
		stream = stream[n:]
		if len(cmd.Args) == 0 || skipOnReplay(cmd.Args[0]) {
			continue
		}
		args := make([]any, len(cmd.Args))
		for i, a := range cmd.Args {
			args[i] = string(a) // go-redis writes strings as bulk strings, byte for byte
		}
		out = append(out, args)
	}
	return out, nil
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
