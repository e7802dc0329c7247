package replstream

import (
	"context"
	"fmt"
	"time"

	"github.com/replproxy/replproxy/resp"
)

// ackCommand is the only acknowledgement the link ever sends. Offset 0 keeps
// it out of WAIT and of every "has this replica caught up" test on the
// master; see doc.go for why and for what it still does.
var ackCommand = resp.AppendCommandStrings(nil, "REPLCONF", "ACK", "0")

// stream follows the command stream until the connection fails: it consumes
// whole commands, advancing the offset by their exact byte length, answers
// REPLCONF GETACK and acks every AckInterval.
func (r *runner) stream(ctx context.Context) error {
	cfg := &r.l.cfg
	// First ack now: after a diskless transfer the master starts the
	// stream only once the replica acks (repl_start_cmd_stream_on_ack).
	now := time.Now()
	if err := r.ack(now); err != nil {
		return err
	}
	if r.awaitStart {
		r.awaitStart = false
		if err := r.awaitStreamStart(now); err != nil {
			return err
		}
	}
	if r.rd < r.w {
		// Stream bytes that came with the PSYNC answer or the RDB's end.
		if err := r.consume(now); err != nil {
			return err
		}
	}
	// The Host is offered the connection now and again at each ack: it
	// may have had no loop to take it yet.
	offer := true
	for {
		now := time.Now()
		if !now.Before(r.nextAck) {
			if err := r.ack(now); err != nil {
				return err
			}
			offer = true
		}
		if offer {
			offer = false
			if h, err := r.tryHost(); err != nil {
				return err
			} else if h != nil {
				return r.streamHosted(ctx, h)
			}
		}
		// One deadline serves both timers; it changes about once per
		// AckInterval, not per read.
		dl := r.nextAck
		if rt := r.lastRecv.Add(cfg.ReadTimeout); rt.Before(dl) {
			dl = rt
		}
		if !dl.Equal(r.readDeadline) {
			if err := r.conn.SetReadDeadline(dl); err != nil {
				return err
			}
			r.readDeadline = dl
		}
		n, err := r.read()
		if n > 0 {
			if err := r.consume(r.lastRecv); err != nil {
				return err
			}
		}
		if err != nil {
			if isTimeout(err) {
				if time.Since(r.lastRecv) < cfg.ReadTimeout {
					continue // the ack timer fired
				}
				return fmt.Errorf("%w (%v)", ErrReadTimeout, cfg.ReadTimeout)
			}
			return err
		}
	}
}

// streamStartRetry is how often the link repeats its first ack until the
// stream starts (awaitStreamStart).
const streamStartRetry = 10 * time.Millisecond

// awaitStreamStart repeats the first ack after a diskless full resync until
// the stream's first byte arrives, for at most an AckInterval.
//
// Why: after a diskless transfer the master starts the stream only on an
// ACK that comes once it has put the replica online
// (repl_start_cmd_stream_on_ack; it does that when it reaps the RDB
// child), and it ignores one that comes before. The link finishes reading
// the RDB as the child writes its end, so its first ack usually comes
// first, and the stream waited for the next periodic one, up to a second:
// a second in which the link reported itself streaming while every write
// reply the proxy held for the witness was released at the witness
// timeout, unwitnessed (9 of the first 500 SETs through the proxy, each
// 100 ms late). A master with nothing to send sends nothing after the ACK
// either; the AckInterval bound covers that.
func (r *runner) awaitStreamStart(start time.Time) error {
	deadline := start.Add(r.l.cfg.AckInterval)
	for r.rd == r.w && time.Now().Before(deadline) {
		if err := r.conn.SetReadDeadline(time.Now().Add(streamStartRetry)); err != nil {
			return err
		}
		r.readDeadline = time.Time{}
		n, err := r.read()
		if n > 0 {
			return nil
		}
		if err != nil && !isTimeout(err) {
			return err
		}
		if err := r.ack(time.Now()); err != nil {
			return err
		}
	}
	return nil
}

// consume processes the complete commands in buf[rd:w] that arrived at
// time now, and publishes the new offset, backlog bytes and time sample.
func (r *runner) consume(now time.Time) error {
	h := r.hist
	if want := int(r.l.backlogWant.Load()); want > 0 && h.backlog.slotsFor(want) != len(h.backlog.ring.Load().slots) {
		h.backlog.resize(want)
	}
	data := r.buf[r.rd:r.w]
	off := r.off
	i, start := 0, 0
	getack := false
	var perr error // commands before a bad byte are still published
	for i < len(data) {
		if data[i] == '\n' {
			// An out-of-band keep-alive at a command boundary: some
			// Redis versions send one a second to sub-replicas while
			// their own master link is down (replicationCron,
			// "is_subslave"). It is not part of the master's stream and
			// is not counted in any offset.
			h.backlog.write(data[start:i])
			i++
			start = i
			continue
		}
		if data[i] != '*' {
			perr = fmt.Errorf("%w: stream byte %q at offset %d is not the start of a multibulk command", ErrProtocol, data[i], off+1)
			break
		}
		// Skim reads the whole, well-formed commands that make up the
		// stream; the parser decides the rest (a command split across
		// reads, a malformed one) exactly as before.
		n, argc, name, arg1, ok := r.parser.Skim(data[i:])
		if !ok {
			cmd, pn, err := r.parser.Parse(data[i:])
			if err != nil {
				perr = fmt.Errorf("%w: stream at offset %d: %w", ErrProtocol, off+1, err)
				break
			}
			if pn == 0 {
				r.need = r.parser.Need()
				break
			}
			n, argc = pn, len(cmd.Args)
			name, arg1 = nameAndFirst(cmd.Args)
		}
		r.need = 0
		if isGetAck(argc, name, arg1) {
			getack = true
		}
		r.hist.marks.note(argc, name, arg1, off, off+int64(n))
		i += n
		off += int64(n)
	}
	h.backlog.write(data[start:i])
	r.rd += i
	// Order matters for lock-free readers: the time sample covering the new
	// bytes and the bytes themselves are published before the offset, so a
	// reader that sees the offset also finds both.
	h.times.push(off+int64(len(data)-i), int64(now.Sub(r.l.epoch)))
	h.backlog.publish()
	advanced := off != r.off
	h.offset.Store(off)
	r.off = off
	if advanced && r.l.cfg.OnAdvance != nil {
		r.l.cfg.OnAdvance(off)
	}
	if perr != nil {
		return perr
	}
	if getack {
		return r.ack(now)
	}
	return nil
}

// nameAndFirst is a parsed command's name and first argument, as Skim
// returns them (nil for each one missing).
func nameAndFirst(args [][]byte) (name, arg1 []byte) {
	if len(args) > 0 {
		name = args[0]
	}
	if len(args) > 1 {
		arg1 = args[1]
	}
	return name, arg1
}

// isGetAck reports REPLCONF GETACK, the master asking for an ack now (for a
// WAIT, a FAILOVER or a SHUTDOWN waiting for its replicas).
func isGetAck(argc int, name, arg1 []byte) bool {
	return argc >= 2 && resp.EqualFold(name, "REPLCONF") && resp.EqualFold(arg1, "GETACK")
}

// ack sends REPLCONF ACK 0 and schedules the next periodic one.
func (r *runner) ack(now time.Time) error {
	r.nextAck = now.Add(r.l.cfg.AckInterval)
	if err := r.write(ackCommand); err != nil {
		return fmt.Errorf("REPLCONF ACK: %w", err)
	}
	return nil
}
