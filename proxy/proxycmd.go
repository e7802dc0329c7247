package proxy

import (
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
	b = kvString(b, "consistency", s.srv.consistency.String())
	b = kvString(b, "client_consistency", s.consistency.String())
	b = kvInt(b, "max_lag_ms", cfg.MaxLag.Milliseconds())
	b = kvInt(b, "min_replicas_to_write", int64(cfg.MinReplicasToWrite))
	b = kvInt(b, "min_replicas_max_lag_ms", cfg.MinReplicasMaxLag.Milliseconds())
	b = kvString(b, "read_balance", cfg.ReadBalance)
	b = kvInt(b, "read_timeout_ms", cfg.ReadTimeout.Milliseconds())
	b = kvInt(b, "connected_clients", s.srv.clients.Load())
	b = kvInt(b, "maxclients", int64(cfg.MaxClients))
	b = kvInt(b, "max_pipeline", int64(cfg.MaxPipeline))
	b = kvInt(b, "query_buffer_limit", int64(cfg.QueryBufferLimit))
	b = kvInt(b, "output_buffer_limit", int64(cfg.OutputBufferLimit))
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
	b = kvInt(b, "offset", n.Offset)
	b = kvInt(b, "lag_bytes", n.LagBytes)
	b = kvInt(b, "lag_ms", n.LagMs)
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
