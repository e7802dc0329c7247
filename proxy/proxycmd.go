package proxy

import (
	"bytes"
	"strconv"
	"strings"
	"time"

	"github.com/replproxy/replproxy/resp"
	"github.com/replproxy/replproxy/router"
	"github.com/replproxy/replproxy/topology"
)

var topologyGuardKinds = topology.GuardActionKinds

// Version is reported by PROXY INFO; cmd/replproxy sets it at link time.
var Version = "dev"

var proxyHelp = []string{
	"PROXY <subcommand> [<arg> ...]. Subcommands are:",
	"INFO",
	"    Version, modes, limits and every node with its role, offset, lag and eligibility.",
	"TOPOLOGY",
	"    The nodes alone, as INFO shows them.",
	"GUARD",
	"    The empty-master guard: on or off, acting or not, its actions, and the last incident step by step.",
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
	case resp.EqualFold(sub, "guard") && len(args) == 2:
		s.scratch = s.appendGuard(s.scratch[:0])
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
	b = resp.AppendMapHeader(b, 33, p)
	b = kvString(b, "version", Version)
	b = kvString(b, "listen", s.srv.Addr())
	snap := s.srv.topo.Load()
	var sw router.Switch
	master, gen, held := "", uint64(0), false
	if snap != nil {
		master, gen = snap.Master.Addr, snap.MasterGen
		held = snap.HoldWrites && time.Now().Before(snap.HoldUntil)
	}
	if p := s.srv.lastSwitch.Load(); p != nil {
		sw = *p
	}
	b = kvString(b, "master", master)
	b = kvInt(b, "master_generation", int64(gen))
	b = kvString(b, "sentinel_master", cfg.SentinelMaster)
	b = kvString(b, "sentinels", strings.Join(s.srv.mon.Sentinels(), ","))
	b = kvBool(b, "writes_held", held, p)
	var switches int64
	for _, n := range s.srv.switchCounts() {
		switches += n
	}
	b = kvInt(b, "master_switches", switches)
	b = kvString(b, "last_switch", describeSwitch(sw))
	ago := int64(-1)
	if !sw.At.IsZero() {
		ago = time.Since(sw.At).Milliseconds()
	}
	b = kvInt(b, "last_switch_ms_ago", ago)
	b = kvInt(b, "last_switch_took_ms", sw.Took.Milliseconds())
	g := s.srv.mon.Guard()
	b = kvBool(b, "empty_master_guard", g.Enabled, p)
	guardState := "idle"
	if g.Active {
		guardState = "acting: " + g.Incident.Cause
	} else if g.Incident != nil {
		guardState = "last incident " + g.Incident.Started.Format(time.RFC3339) + ": " + g.Incident.Outcome
	}
	b = kvString(b, "guard_state", guardState)
	witness := "off"
	switch {
	case !*cfg.Witness || s.srv.link == nil:
	case s.srv.link.Connected():
		witness = "on"
	case s.srv.link.DownFor() < cfg.WitnessTimeout:
		witness = "on, the replication link just dropped: writes wait for it, or for the master to show it still holds them"
	default:
		witness = "on, but the replication link is down: writes are acknowledged unwitnessed"
	}
	b = kvString(b, "witness", witness)
	short, lag := s.srv.witnessBacklogShort()
	backlog := ""
	if short {
		backlog = "TOO SMALL: a replica lags by " + strconv.FormatInt(lag, 10) + " bytes; raise --replication-backlog-max"
	}
	b = kvString(b, "witness_backlog", backlog)
	last := ""
	if p := s.srv.replays.last.Load(); p != nil {
		last = *p
	}
	b = kvString(b, "last_replay", last)
	b = kvInt(b, "failover_lost_bytes", s.srv.replays.lostBytes.Load())
	backlogNow := int64(backlogBytes(cfg.ReplicationBacklogBytes))
	if s.srv.link != nil {
		backlogNow = int64(s.srv.link.BacklogBytes())
	}
	b = kvInt(b, "replication_backlog_bytes", backlogNow)
	b = kvInt(b, "replication_backlog_max", int64(max(cfg.ReplicationBacklogMax, backlogBytes(cfg.ReplicationBacklogBytes))))
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

// describeSwitch is a switch in one line, "" for none.
func describeSwitch(sw router.Switch) string {
	if sw.To == "" {
		return ""
	}
	hist := "new history (fences reset)"
	if sw.Continues {
		hist = "continues history up to offset " + strconv.FormatInt(sw.SplitOffset, 10)
	}
	return sw.From + " -> " + sw.To + ": " + sw.Cause + "; " + hist
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
	b = resp.AppendMapHeader(b, 16, p)
	b = kvString(b, "addr", n.Addr)
	role := n.Role
	if role == "" {
		role = "unknown"
	}
	b = kvString(b, "role", role)
	// Where it sits in the replication tree: "" and 0 for the master; a
	// replica of a replica names its parent, at depth 2 and more.
	b = kvString(b, "parent", n.Parent)
	b = kvInt(b, "depth", int64(n.Depth))
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
	b = kvString(b, "persistence_rdb", triState(n.PersistRDB))
	b = kvString(b, "persistence_aof", triState(n.PersistAOF))
	b = kvInt(b, "keys", n.Keys)
	seen := int64(-1)
	if !n.Seen.IsZero() {
		seen = time.Since(n.Seen).Milliseconds()
	}
	return kvInt(b, "seen_ms_ago", seen)
}

func triState(v int8) string {
	switch v {
	case 0:
		return "off"
	case 1:
		return "on"
	}
	return "unknown"
}

// appendGuard is PROXY GUARD: the guard's state and its last incident.
func (s *session) appendGuard(b []byte) []byte {
	p := s.proto
	g := s.srv.mon.Guard()
	b = resp.AppendMapHeader(b, 4, p)
	b = kvBool(b, "enabled", g.Enabled, p)
	b = kvBool(b, "acting", g.Active, p)
	b = resp.AppendBulkString(b, "actions")
	b = resp.AppendMapHeader(b, len(topologyGuardKinds), p)
	for _, k := range topologyGuardKinds {
		b = kvInt(b, k, g.Actions[k])
	}
	b = resp.AppendBulkString(b, "last_incident")
	inc := g.Incident
	if inc == nil {
		return resp.AppendNull(b, p)
	}
	b = resp.AppendMapHeader(b, 9, p)
	b = kvString(b, "started", inc.Started.Format(time.RFC3339Nano))
	b = kvString(b, "cause", inc.Cause)
	b = kvString(b, "master", inc.Master)
	b = kvString(b, "replid", inc.ReplID)
	b = kvInt(b, "offset", inc.Offset)
	b = kvString(b, "parked", strings.Join(inc.Parked, ","))
	b = kvString(b, "promoted", inc.Promoted)
	resolved := ""
	if !inc.Resolved.IsZero() {
		resolved = inc.Resolved.Format(time.RFC3339Nano) + " (" + inc.Resolved.Sub(inc.Started).Round(time.Millisecond).String() + ") " + inc.Outcome
	}
	b = kvString(b, "resolved", resolved)
	b = resp.AppendBulkString(b, "actions")
	b = resp.AppendArrayHeader(b, len(inc.Actions))
	for _, a := range inc.Actions {
		b = resp.AppendBulkString(b, a)
	}
	return b
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
