package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// Replies to the harness's own commands (INFO, SENTINEL ...) are small;
// anything larger means a confused peer, not data to allocate for.
const (
	maxAdminBulkBytes = 4 << 20
	maxAdminArrayLen  = 1 << 16
	maxAdminLineBytes = 64 << 10 // redis's own inline limit
	maxAdminDepth     = 8        // SENTINEL REPLICAS nests two levels
)

// adminConn is the harness's own RESP2 connection to a node, re-dialed
// after any I/O error. It is not go-redis because go-redis's pool, once
// dials have failed PoolSize times, fails fast and re-dials only once a
// second, which would add up to a second to every readiness poll and log
// each failure to stderr. Safe for concurrent use; calls are serialised.
type adminConn struct {
	addr     string
	password string

	mu sync.Mutex
	c  net.Conn
	r  *bufio.Reader
}

// respError is an error reply from the server; the connection stays usable.
type respError string

func (e respError) Error() string { return string(e) }

// do sends one command and reads its reply: a string (simple or bulk),
// int64, nil, []any, or a respError as the error. A kept connection that
// fails is re-dialed once: the server may have dropped it meanwhile (a
// restart, Sentinel's CLIENT KILL on promotion), and the harness only sends
// commands that are safe to repeat.
func (a *adminConn) do(timeout time.Duration, args ...string) (any, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	deadline := time.Now().Add(timeout)
	for attempt := 0; ; attempt++ {
		reused := a.c != nil
		if !reused {
			if err := a.dialLocked(deadline); err != nil {
				return nil, err
			}
		}
		reply, err := a.roundTrip(deadline, args...)
		var re respError
		if err == nil || errors.As(err, &re) {
			return reply, err
		}
		a.closeLocked()
		if !reused || attempt > 0 {
			return nil, err
		}
	}
}

func (a *adminConn) dialLocked(deadline time.Time) error {
	c, err := net.DialTimeout("tcp", a.addr, time.Until(deadline))
	if err != nil {
		return err
	}
	a.c, a.r = c, bufio.NewReader(c)
	if a.password != "" {
		if _, err := a.roundTrip(deadline, "AUTH", a.password); err != nil {
			a.closeLocked()
			return fmt.Errorf("AUTH: %w", err)
		}
	}
	return nil
}

func (a *adminConn) roundTrip(deadline time.Time, args ...string) (any, error) {
	if err := a.c.SetDeadline(deadline); err != nil {
		return nil, err
	}
	buf := append([]byte{'*'}, strconv.Itoa(len(args))...)
	buf = append(buf, "\r\n"...)
	for _, arg := range args {
		buf = append(buf, '$')
		buf = strconv.AppendInt(buf, int64(len(arg)), 10)
		buf = append(buf, "\r\n"...)
		buf = append(buf, arg...)
		buf = append(buf, "\r\n"...)
	}
	if _, err := a.c.Write(buf); err != nil {
		return nil, err
	}
	return readReply(a.r, 0)
}

func (a *adminConn) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.closeLocked()
}

func (a *adminConn) closeLocked() {
	if a.c != nil {
		_ = a.c.Close()
		a.c, a.r = nil, nil
	}
}

// str runs a command whose reply is a string (INFO, PING).
func (a *adminConn) str(timeout time.Duration, args ...string) (string, error) {
	reply, err := a.do(timeout, args...)
	if err != nil {
		return "", err
	}
	s, ok := reply.(string)
	if !ok {
		return "", fmt.Errorf("%w: %v answered %T", errRedistestBadReply, args, reply)
	}
	return s, nil
}

// array runs a command whose reply is an array (SENTINEL ...).
func (a *adminConn) array(timeout time.Duration, args ...string) ([]any, error) {
	reply, err := a.do(timeout, args...)
	if err != nil {
		return nil, err
	}
	arr, ok := reply.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: %v answered %T", errRedistestBadReply, args, reply)
	}
	return arr, nil
}

func readReply(r *bufio.Reader, depth int) (any, error) {
	if depth > maxAdminDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", errRedistestBadReply, maxAdminDepth)
	}
	line, err := readLine(r)
	if err != nil {
		return nil, err
	}
	if len(line) == 0 {
		return nil, fmt.Errorf("%w: empty line", errRedistestBadReply)
	}
	body := string(line[1:])
	switch line[0] {
	case '+':
		return body, nil
	case '-':
		return nil, respError(body)
	case ':':
		n, err := strconv.ParseInt(body, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%w: integer %q", errRedistestBadReply, body)
		}
		return n, nil
	case '$':
		n, err := strconv.Atoi(body)
		switch {
		case err != nil || n < -1 || n > maxAdminBulkBytes:
			return nil, fmt.Errorf("%w: bulk length %q", errRedistestBadReply, body)
		case n == -1:
			return nil, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		return string(b[:n]), nil
	case '*':
		n, err := strconv.Atoi(body)
		switch {
		case err != nil || n < -1 || n > maxAdminArrayLen:
			return nil, fmt.Errorf("%w: array length %q", errRedistestBadReply, body)
		case n == -1:
			return nil, nil
		}
		arr := make([]any, n)
		for i := range arr {
			v, err := readReply(r, depth+1)
			var re respError
			switch {
			case errors.As(err, &re):
				v = re // an element, not a failure: the rest must still be read
			case err != nil:
				return nil, err
			}
			arr[i] = v
		}
		return arr, nil
	}
	return nil, fmt.Errorf("%w: type byte %q", errRedistestBadReply, line[0])
}

func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		line = append(line, chunk...)
		if len(line) > maxAdminLineBytes {
			return nil, fmt.Errorf("%w: line over %d bytes", errRedistestBadReply, maxAdminLineBytes)
		}
		if !isPrefix {
			return line, nil
		}
	}
}
