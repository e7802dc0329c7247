package replstream

import (
	"bytes"
	"fmt"
	"strconv"
	"time"

	"github.com/replproxy/replproxy/resp"
)

// maxReplyLineBytes bounds a PSYNC answer line. "+FULLRESYNC <40> <offset>"
// is under 80 bytes; error texts are longer but not by this much.
const maxReplyLineBytes = 4096

// replIDLen is CONFIG_RUN_ID_SIZE, the length of replication and run IDs.
const replIDLen = 40

type psyncKind uint8

const (
	psyncFull     psyncKind = iota + 1 // +FULLRESYNC: an RDB follows
	psyncContinue                      // +CONTINUE: the stream resumes
)

// psyncReply is the master's answer to PSYNC.
type psyncReply struct {
	kind   psyncKind
	replid string // FULLRESYNC: the history; CONTINUE: a new ID or ""
	offset int64  // FULLRESYNC only: the stream starts after this offset
}

// scanLine returns the first line of buf without its "\n" (and without a
// "\r" before it), and the bytes it took. n == 0 with a nil error means the
// line is not complete yet. A line longer than maxLen is an error.
func scanLine(buf []byte, maxLen int) (line []byte, n int, err error) {
	i := bytes.IndexByte(buf, '\n')
	if i < 0 {
		if len(buf) > maxLen {
			return nil, 0, fmt.Errorf("%w: reply line longer than %d bytes", ErrProtocol, maxLen)
		}
		return nil, 0, nil
	}
	if i > maxLen {
		return nil, 0, fmt.Errorf("%w: reply line longer than %d bytes", ErrProtocol, maxLen)
	}
	return bytes.TrimSuffix(buf[:i], []byte("\r")), i + 1, nil
}

// parsePSYNCReply interprets the line answering PSYNC (as scanLine returns
// it; the caller skips the empty keep-alive lines the master may send before
// answering). Accepted forms are what replication.c
// slaveTryPartialResynchronization accepts:
//
//	+FULLRESYNC <replid> <offset>
//	+CONTINUE
//	+CONTINUE <new replid>   (any text that is not 40 bytes: no new ID)
//
// An error reply wraps ErrMasterError (e.g. -NOMASTERLINK, -LOADING: try
// again later); anything else wraps ErrProtocol.
func parsePSYNCReply(line []byte) (psyncReply, error) {
	switch {
	case len(line) > 0 && line[0] == '-':
		return psyncReply{}, fmt.Errorf("%w: PSYNC: %s", ErrMasterError, line[1:])
	case bytes.HasPrefix(line, []byte("+FULLRESYNC ")):
		f := bytes.Split(line[len("+FULLRESYNC "):], []byte(" "))
		if len(f) != 2 || len(f[0]) != replIDLen || !validID(f[0]) {
			return psyncReply{}, fmt.Errorf("%w: malformed %q", ErrProtocol, line)
		}
		off, ok := resp.ParseInt(f[1])
		if !ok || off < 0 {
			return psyncReply{}, fmt.Errorf("%w: bad offset in %q", ErrProtocol, line)
		}
		return psyncReply{kind: psyncFull, replid: string(f[0]), offset: off}, nil
	case bytes.Equal(line, []byte("+CONTINUE")):
		return psyncReply{kind: psyncContinue}, nil
	case bytes.HasPrefix(line, []byte("+CONTINUE ")):
		id := line[len("+CONTINUE "):]
		if len(id) != replIDLen || !validID(id) {
			// redis-server keeps its ID unless exactly 40 bytes follow.
			return psyncReply{kind: psyncContinue}, nil
		}
		return psyncReply{kind: psyncContinue, replid: string(id)}, nil
	}
	return psyncReply{}, fmt.Errorf("%w: unexpected PSYNC reply %q", ErrProtocol, line)
}

// validID: replication IDs are hex (getRandomHexChars); refusing spaces and
// control bytes keeps a garbled line from becoming an ID we send back.
func validID(id []byte) bool {
	for _, c := range id {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// infoField returns the value of "name:value" in an INFO text.
func infoField(info []byte, name string) string {
	for len(info) > 0 {
		line := info
		if i := bytes.IndexByte(info, '\n'); i >= 0 {
			line, info = info[:i], info[i+1:]
		} else {
			info = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if v, ok := bytes.CutPrefix(line, []byte(name+":")); ok {
			return string(v)
		}
	}
	return ""
}

// pingAccepted: replication.c syncWithMaster treats these errors to PING
// as "alive, authenticate next".
func pingAccepted(reply []byte) bool {
	if len(reply) > 0 && reply[0] == '+' {
		return true
	}
	for _, p := range []string{"-NOAUTH", "-NOPERM", "-ERR operation not permitted"} {
		if bytes.HasPrefix(reply, []byte(p)) {
			return true
		}
	}
	return false
}

// handshake runs PING, AUTH, INFO server, REPLCONF and PSYNC on a fresh
// connection and returns the master's answer to PSYNC. Bytes that followed
// the answer stay in the read buffer.
func (r *runner) handshake() (psyncReply, error) {
	cfg := &r.l.cfg
	r.wbuf = resp.AppendCommandStrings(r.wbuf[:0], "PING")
	if err := r.write(r.wbuf); err != nil {
		return psyncReply{}, err
	}
	reply, err := r.readReply()
	if err != nil {
		return psyncReply{}, fmt.Errorf("PING: %w", err)
	}
	if !pingAccepted(reply) {
		return psyncReply{}, fmt.Errorf("%w: PING: %s", ErrMasterError, trimReply(reply))
	}

	// The rest of the handshake is pipelined; replies come back in order.
	r.wbuf = r.wbuf[:0]
	steps := make([]string, 0, 4)
	if cfg.Password != "" {
		if cfg.User != "" {
			r.wbuf = resp.AppendCommandStrings(r.wbuf, "AUTH", cfg.User, cfg.Password)
		} else {
			r.wbuf = resp.AppendCommandStrings(r.wbuf, "AUTH", cfg.Password)
		}
		steps = append(steps, "AUTH")
	}
	r.wbuf = resp.AppendCommandStrings(r.wbuf, "INFO", "server")
	// Port 0: nobody can connect to the link, so Sentinel can never
	// promote it, and replproxy's discovery knows to skip it (doc.go).
	r.wbuf = resp.AppendCommandStrings(r.wbuf, "REPLCONF", "listening-port", "0")
	r.wbuf = resp.AppendCommandStrings(r.wbuf, "REPLCONF", "capa", "eof", "capa", "psync2")
	steps = append(steps, "INFO", "REPLCONF listening-port", "REPLCONF capa")
	if err := r.write(r.wbuf); err != nil {
		return psyncReply{}, err
	}
	for _, step := range steps {
		reply, err := r.readReply()
		if err != nil {
			return psyncReply{}, fmt.Errorf("%s: %w", step, err)
		}
		failed := len(reply) > 0 && reply[0] == '-'
		switch step {
		case "AUTH":
			if failed {
				return psyncReply{}, fmt.Errorf("%w: AUTH: %s", ErrMasterError, trimReply(reply))
			}
		case "INFO":
			if failed {
				// Only the restart detection by run_id is lost.
				r.log.Debug("replstream: INFO refused; master restarts are detected by replication ID only", "reply", trimReply(reply))
				continue
			}
			if _, body, ok := bytes.Cut(reply, []byte("\r\n")); ok {
				r.noteRunID(infoField(body, "run_id"))
			}
		default:
			// As a Redis replica does, go on: an old master that does
			// not know an option still replicates.
			if failed {
				r.log.Info("replstream: master refused "+step, "reply", trimReply(reply))
			}
		}
	}

	r.wbuf = r.wbuf[:0]
	if r.hist != nil {
		r.wbuf = resp.AppendCommandStrings(r.wbuf, "PSYNC", r.hist.replid, strconv.FormatInt(r.off+1, 10))
	} else {
		r.wbuf = resp.AppendCommandStrings(r.wbuf, "PSYNC", "?", "-1")
	}
	if err := r.write(r.wbuf); err != nil {
		return psyncReply{}, err
	}
	for {
		line, n, err := scanLine(r.buf[r.rd:r.w], maxReplyLineBytes)
		if err != nil {
			return psyncReply{}, err
		}
		if n == 0 {
			if err := r.readWithTimeout(); err != nil {
				return psyncReply{}, fmt.Errorf("PSYNC: %w", err)
			}
			continue
		}
		r.rd += n
		if len(line) == 0 {
			continue // keep-alive while the master prepares its answer
		}
		return parsePSYNCReply(line)
	}
}

// readReply returns the next complete reply in the read buffer, reading
// more as needed. The slice is valid until the next read.
func (r *runner) readReply() ([]byte, error) {
	r.scan.Reset()
	for {
		n, err := r.scan.Scan(r.buf[r.rd:r.w])
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrProtocol, err)
		}
		if n > 0 {
			reply := r.buf[r.rd : r.rd+n]
			r.rd += n
			r.need = 0
			return reply, nil
		}
		r.need = r.scan.Need()
		if err := r.readWithTimeout(); err != nil {
			return nil, err
		}
	}
}

// readWithTimeout reads once with a ReadTimeout deadline.
func (r *runner) readWithTimeout() error {
	if err := r.conn.SetReadDeadline(time.Now().Add(r.l.cfg.ReadTimeout)); err != nil {
		return err
	}
	r.readDeadline = time.Time{}
	_, err := r.read()
	if isTimeout(err) {
		return fmt.Errorf("%w (%v)", ErrReadTimeout, r.l.cfg.ReadTimeout)
	}
	return err
}

// trimReply shortens a reply for messages: the first line, without its type
// byte.
func trimReply(reply []byte) string {
	line, _, _ := bytes.Cut(reply, []byte("\r\n"))
	if len(line) > 0 && (line[0] == '-' || line[0] == '+') {
		line = line[1:]
	}
	if len(line) > 200 {
		line = line[:200]
	}
	return string(line)
}
