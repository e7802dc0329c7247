package redistest

import (
	"fmt"
	"net"
	"sync"
)

// portAttempts bounds how often a first start is retried on a fresh port
// after losing a bind race.
const portAttempts = 8

// reserved holds the ports handed to live nodes of this process. The kernel
// may hand the same ephemeral port to two probes once the first listener is
// closed, and parallel tests in one binary must not start two servers on it.
var reserved struct {
	mu    sync.Mutex
	inUse map[int]bool
}

// pickPort is reservePort; tests swap it to hand out a taken port.
var pickPort = reservePort

// reservePort returns a port that was free a moment ago and is not held by
// another node of this process. Another process can still take it before
// redis-server binds; the caller retries on errRedistestPortInUse.
func reservePort() (int, error) {
	var lastErr error
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			lastErr = err
			continue
		}
		port := l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		reserved.mu.Lock()
		taken := reserved.inUse[port]
		if !taken {
			if reserved.inUse == nil {
				reserved.inUse = map[int]bool{}
			}
			reserved.inUse[port] = true
		}
		reserved.mu.Unlock()
		if !taken {
			return port, nil
		}
	}
	return 0, fmt.Errorf("%w: %v", errRedistestNoFreePort, lastErr)
}

func releasePort(port int) {
	reserved.mu.Lock()
	delete(reserved.inUse, port)
	reserved.mu.Unlock()
}
