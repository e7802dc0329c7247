package proxy

import "github.com/replproxy/replproxy/resp"

// subCounts are a subscribed client's channels, patterns and shard
// channels, as CLIENT LIST / INFO show them in sub=, psub= and ssub=
// (issue 13). The proxy does not keep the names: it reads the counts off
// the confirmations the server sends the client, which say them already.
// Redis's count in a SUBSCRIBE/UNSUBSCRIBE/PSUBSCRIBE/PUNSUBSCRIBE
// confirmation is channels + patterns (clientSubscriptionsCount), and in an
// SSUBSCRIBE/SUNSUBSCRIBE one the shard channels alone; a channel
// confirmation leaves the patterns unchanged and the other way round, so
// each figure follows from the other. Owned by the session's loop.
type subCounts struct {
	sub, psub, ssub int
}

// any reports whether the client is in Redis's pub/sub state (the P flag,
// CLIENT LIST TYPE pubsub): Redis leaves it when the last subscription
// goes, though the proxy keeps the dedicated connection.
func (c subCounts) any() bool { return c.sub+c.psub+c.ssub > 0 }

// notePubSub updates the counts from a frame the server sent a subscribed
// client; frames that are not confirmations leave them alone.
func (c *subCounts) notePubSub(frame []byte) {
	kind, n, ok := pubsubConfirmation(frame)
	if !ok {
		return
	}
	switch kind {
	case "subscribe", "unsubscribe":
		c.sub = max(n-c.psub, 0)
	case "psubscribe", "punsubscribe":
		c.psub = max(n-c.sub, 0)
	case "ssubscribe", "sunsubscribe":
		c.ssub = max(n, 0)
	}
}

// pubsubConfirmation parses [kind, channel or nil, count] as RESP2 array or
// RESP3 push. Frames come whole from the backend's reply scanner.
func pubsubConfirmation(frame []byte) (kind string, n int, ok bool) {
	if len(frame) < 4 || (frame[0] != '*' && frame[0] != '>') || frame[1] != '3' || frame[2] != '\r' {
		return "", 0, false
	}
	rest := frame[4:]
	k, rest, ok := bulkElement(rest)
	if !ok || len(k) < 9 || len(k) > 12 { // "subscribe" .. "punsubscribe"
		return "", 0, false
	}
	if _, rest, ok = bulkElement(rest); !ok {
		return "", 0, false
	}
	if len(rest) < 4 || rest[0] != ':' || rest[len(rest)-2] != '\r' {
		return "", 0, false
	}
	v, okInt := resp.ParseInt(rest[1 : len(rest)-2])
	if !okInt {
		return "", 0, false
	}
	return string(k), int(v), true
}

// bulkElement splits one bulk string ($n, $-1 or RESP3 null _) off b.
func bulkElement(b []byte) (val, rest []byte, ok bool) {
	if len(b) >= 3 && b[0] == '_' && b[1] == '\r' && b[2] == '\n' {
		return nil, b[3:], true
	}
	if len(b) < 4 || b[0] != '$' {
		return nil, nil, false
	}
	i := 1
	for i < len(b) && b[i] != '\r' {
		i++
	}
	if i+1 >= len(b) || b[i+1] != '\n' {
		return nil, nil, false
	}
	n, okInt := resp.ParseInt(b[1:i])
	if !okInt {
		return nil, nil, false
	}
	b = b[i+2:]
	if n < 0 {
		return nil, b, true
	}
	if int64(len(b)) < n+2 {
		return nil, nil, false
	}
	return b[:n], b[n+2:], true
}
