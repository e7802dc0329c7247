package proxy

import (
	"bytes"
	"strconv"
	"time"

	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
)

// Version is reported by PROXY INFO; cmd/replproxy sets it at link time.
var Version = "dev"

var proxyHelp = []string{
	"PROXY <subcommand> [<arg> ...]. Subcommands are:",
	"INFO",
	"    Version, modes, limits and every node with its role, offset, lag and eligibility.",
	"TOPOLOGY",
	"    The nodes alone, as INFO shows them.",
	"CONSISTENCY [strong|linearizable|causal|bounded|eventual]",
	"    Show, or set for this connection, the read consistency mode.",
	"RELOAD",
	"    Re-read the configuration file and apply what can change live; list what applied and what needs a restart.",
	"HELP",
	"    Print this help.",
}

// proxyCommand answers PROXY, the proxy's own admin command. Its replies are
// maps in RESP3 and flat key/value arrays in RESP2, which redis-cli shows as
// numbered lines.
func (s *session) proxyCommand(args [][]byte) bool {
	if len(args) < 2 {
		s.localError("ERR wrong number of arguments for 'proxy' command")
		return true
	}
	sub := args[1]
	switch {
	case resp.EqualFold(sub, "help") && len(args) == 2:
		b := resp.AppendArrayHeader(s.scratch[:0], len(proxyHelp))
		for _, line := range proxyHelp {
			b = resp.AppendSimple(b, line)
		}
		s.scratch = b
		s.localReply(b)
	case resp.EqualFold(sub, "consistency") && len(args) == 2:
		s.scratch = resp.AppendBulkString(s.scratch[:0], s.consistency.String())
		s.localReply(s.scratch)
	case resp.EqualFold(sub, "consistency") && len(args) == 3:
		c, err := parseConsistency(string(args[2]))
		if err != nil {
			s.localError("ERR unknown consistency mode '" + string(args[2]) + "' (strong, linearizable, causal, bounded, eventual)")
			return true
		}
		s.consistency = c
		s.localOK()
	case resp.EqualFold(sub, "info") && len(args) == 2:
		s.scratch = s.appendProxyInfo(s.scratch[:0])
		s.localReply(s.scratch)
	case resp.EqualFold(sub, "reload") && len(args) == 2:
		s.proxyReload()
	case resp.EqualFold(sub, "topology") && len(args) == 2:
		s.scratch = s.appendTopology(s.scratch[:0])
		s.localReply(s.scratch)
	default:
		s.localError("ERR unknown subcommand or wrong number of arguments for '" + string(sub) + "'. Try PROXY HELP.")
	}
	return true
}

func (s *session) appendProxyInfo(b []byte) []byte {
	cfg := &s.srv.cfg
	p := s.proto
	b = resp.AppendMapHeader(b, 17, p)
	b = kvString(b, "version", Version)
	b = kvString(b, "listen", s.srv.Addr())
	b = kvString(b, "master", cfg.Master)
	lv := s.srv.live()
	b = kvString(b, "consistency", lv.consistency.String())
	b = kvString(b, "client_consistency", s.consistency.String())
	b = kvInt(b, "max_lag_ms", cfg.MaxLag.Milliseconds())
	b = kvInt(b, "min_replicas_to_write", int64(cfg.MinReplicasToWrite))
	b = kvInt(b, "min_replicas_max_lag_ms", cfg.MinReplicasMaxLag.Milliseconds())
	b = kvString(b, "read_balance", cfg.ReadBalance)
	b = kvInt(b, "read_timeout_ms", cfg.ReadTimeout.Milliseconds())
	b = kvInt(b, "connected_clients", s.srv.clients.Load())
	b = kvInt(b, "maxclients", int64(lv.maxClients))
	b = kvInt(b, "max_pipeline", int64(lv.maxPipeline))
	b = kvInt(b, "query_buffer_limit", int64(lv.queryBufferLimit))
	b = kvInt(b, "output_buffer_limit", lv.outNormal.HardBytes)
	b = kvInt(b, "commands_known", int64(s.srv.table.Load().Len()))
	b = resp.AppendBulkString(b, "nodes")
	return s.appendTopology(b)
}

// appendTopology lists the master then every replica, one map each.
func (s *session) appendTopology(b []byte) []byte {
	snap := s.srv.topo.Load()
	if snap == nil {
		return resp.AppendArrayHeader(b, 0)
	}
	b = resp.AppendArrayHeader(b, 1+len(snap.Replicas))
	b = s.appendNode(b, &snap.Master, snap.Master.Reachable && snap.Master.Role == "master")
	for i := range snap.Replicas {
		b = s.appendNode(b, &snap.Replicas[i], snap.Replicas[i].Eligible)
	}
	return b
}

func (s *session) appendNode(b []byte, n *router.NodeState, ok bool) []byte {
	p := s.proto
	b = resp.AppendMapHeader(b, 11, p)
	b = kvString(b, "addr", n.Addr)
	role := n.Role
	if role == "" {
		role = "unknown"
	}
	b = kvString(b, "role", role)
	b = kvBool(b, "reachable", n.Reachable, p)
	b = kvBool(b, "link_up", n.LinkUp || n.Role == "master", p)
	b = kvString(b, "replid", n.ReplID)
	lagBytes, lagMs := n.LagBytes, n.LagMs
	if n.Role == "master" {
		lagBytes, lagMs = 0, 0
	}
	b = kvInt(b, "offset", n.Offset)
	b = kvInt(b, "lag_bytes", lagBytes)
	b = kvInt(b, "lag_ms", lagMs)
	b = kvBool(b, "eligible", ok, p)
	b = kvString(b, "reason", n.Reason)
	seen := int64(-1)
	if !n.Seen.IsZero() {
		seen = time.Since(n.Seen).Milliseconds()
	}
	return kvInt(b, "seen_ms_ago", seen)
}

func kvString(b []byte, k, v string) []byte {
	return resp.AppendBulkString(resp.AppendBulkString(b, k), v)
}

func kvInt(b []byte, k string, v int64) []byte {
	return resp.AppendInt(resp.AppendBulkString(b, k), v)
}

// kvBool is a RESP3 boolean, or 1/0 in RESP2 which has none.
func kvBool(b []byte, k string, v bool, proto int) []byte {
	b = resp.AppendBulkString(b, k)
	if proto == 3 {
		if v {
			return append(b, "#t\r\n"...)
		}
		return append(b, "#f\r\n"...)
	}
	n := int64(0)
	if v {
		n = 1
	}
	return resp.AppendInt(b, n)
}

// appendProxyInfoSection returns the master's INFO reply with a "# Proxy"
// section added, re-encoded with the reply's own type (bulk in RESP2,
// verbatim "txt:" in RESP3). Clients that look for role: still find the
// master's "role:master": through the proxy the deployment is one master.
func (s *session) appendProxyInfoSection(reply []byte) []byte {
	if len(reply) < 4 || (reply[0] != '$' && reply[0] != '=') {
		return reply
	}
	i := skipLine(reply, 0)
	if i > len(reply) || len(reply) < i+2 {
		return reply
	}
	body := reply[i : len(reply)-2]
	if reply[0] == '=' && len(body) >= 4 {
		body = body[4:] // "txt:"
	}
	var b []byte
	b = append(b, body...)
	if !bytes.HasSuffix(b, []byte("\r\n")) {
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n# Proxy\r\n"...)
	b = append(b, "proxy_version:"...)
	b = append(b, Version...)
	b = append(b, "\r\nproxy_listen:"...)
	b = append(b, s.srv.Addr()...)
	b = append(b, "\r\nproxy_consistency:"...)
	b = append(b, s.srv.live().consistency.String()...)
	b = append(b, "\r\nproxy_connected_clients:"...)
	b = strconv.AppendInt(b, s.srv.clients.Load(), 10)
	eligible, total := 0, 0
	if snap := s.srv.topo.Load(); snap != nil {
		for i := range snap.Replicas {
			total++
			if snap.Replicas[i].Eligible {
				eligible++
			}
		}
	}
	b = append(b, "\r\nproxy_replicas:"...)
	b = strconv.AppendInt(b, int64(total), 10)
	b = append(b, "\r\nproxy_replicas_eligible:"...)
	b = strconv.AppendInt(b, int64(eligible), 10)
	b = append(b, "\r\nproxy_causal_fence:"...)
	b = strconv.AppendInt(b, s.srv.fence.Load(), 10)
	if l := s.srv.link; l != nil {
		b = append(b, "\r\nproxy_stream_offset:"...)
		b = strconv.AppendInt(b, l.Offset(), 10)
	}
	b = append(b, "\r\n"...)
	if reply[0] == '=' {
		out := resp.AppendVerbatim(s.scratch[:0], "txt", string(b), 3)
		s.scratch = out
		return out
	}
	s.scratch = resp.AppendBulk(s.scratch[:0], b)
	return s.scratch
}
