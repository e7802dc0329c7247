package proxy

import "github.com/replproxy/replproxy/resp"

// roleOffset extracts the replication offset from a raw ROLE reply: the
// master's master_repl_offset (["master", offset, [...]]) or a replica's
// processed offset (["slave", host, port, state, offset]). It reads only the
// bytes it needs and allocates nothing; ok is false for anything else
// (an error reply, a sentinel's ROLE, a malformed frame).
func roleOffset(frame []byte) (offset int64, master, ok bool) {
	if len(frame) < 4 || frame[0] != '*' {
		return 0, false, false
	}
	i := skipLine(frame, 0)
	role, i, ok := bulkAt(frame, i)
	if !ok {
		return 0, false, false
	}
	switch {
	case resp.EqualFold(role, "master"):
		n, _, ok := intAt(frame, i)
		return n, true, ok
	case resp.EqualFold(role, "slave"):
		if _, i, ok = bulkAt(frame, i); !ok { // host
			return 0, false, false
		}
		if _, i, ok = intAt(frame, i); !ok { // port
			return 0, false, false
		}
		if _, i, ok = bulkAt(frame, i); !ok { // state
			return 0, false, false
		}
		n, _, ok := intAt(frame, i)
		return n, false, ok
	}
	return 0, false, false
}

func skipLine(b []byte, i int) int {
	for i < len(b) && b[i] != '\n' {
		i++
	}
	return i + 1
}

// bulkAt reads a bulk or simple string element at b[i:].
func bulkAt(b []byte, i int) ([]byte, int, bool) {
	if i >= len(b) {
		return nil, i, false
	}
	switch b[i] {
	case '+':
		end := skipLine(b, i)
		if end < i+3 || end > len(b) {
			return nil, i, false
		}
		return b[i+1 : end-2], end, true
	case '$':
		end := skipLine(b, i)
		if end > len(b) || end < i+3 {
			return nil, i, false
		}
		n, ok := resp.ParseInt(b[i+1 : end-2])
		if !ok || n < 0 || end+int(n)+2 > len(b) {
			return nil, i, false
		}
		return b[end : end+int(n)], end + int(n) + 2, true
	}
	return nil, i, false
}

func intAt(b []byte, i int) (int64, int, bool) {
	if i >= len(b) || b[i] != ':' {
		return 0, i, false
	}
	end := skipLine(b, i)
	if end > len(b) || end < i+3 {
		return 0, i, false
	}
	n, ok := resp.ParseInt(b[i+1 : end-2])
	return n, end, ok
}

var roleRequest = []byte("*1\r\n$4\r\nROLE\r\n")
