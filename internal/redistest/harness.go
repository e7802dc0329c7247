package redistest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// TB is the part of testing.TB the harness uses; *testing.T and *testing.B
// satisfy it, and so can a benchmark program's own type. Fatalf must not
// return (testing's does not); if it does, the harness returns nil values.
type TB interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}

// SentinelMasterName is the name the Sentinels monitor the master under.
const SentinelMasterName = "mymaster"

const (
	// startSyncTimeout bounds Start's wait for replicas and Sentinels. A
	// replica first connects from replicationCron (once a second), and a
	// second replica may wait for the first one's transfer and one more tick.
	startSyncTimeout        = 20 * time.Second
	sentinelDownAfterMs     = 1000
	sentinelFailoverTimeout = 3000 // ms
)

// RedisServerPath returns the redis-server binary or calls tb.Fatalf with an
// actionable message. It never skips: a test needing Redis must fail, in
// CI and out of it.
func RedisServerPath(tb TB) string {
	tb.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		tb.Fatalf("redis-server not found in PATH: install it with `apt-get install -y redis-server redis-tools redis-sentinel` (make test does this when run as root)")
		return ""
	}
	return path
}

// Options describes a topology. The zero value is a lone master.
type Options struct {
	Replicas int // number of replicas of the master

	// Args is extra config for the master and the replicas (not the
	// Sentinels), as "--name value" argv pieces, e.g.
	// {"--requirepass", "pw", "--masterauth", "pw"}. It comes after the
	// harness's own settings, so it can override them. The go-redis clients
	// use the last --requirepass found when Password is empty.
	Args        []string
	MasterArgs  []string // extra config for the master only, after Args
	ReplicaArgs []string // extra config for replicas only, after Args

	// Wrapper is an argv prefix for every process, e.g.
	// {"taskset", "-c", "0"}. It must exec redis-server so the PID stays the
	// server's: Start checks INFO process_id against the PID it started.
	Wrapper []string

	// Password, if set, is requirepass and masterauth on master and
	// replicas, auth-pass for the Sentinels, and what the clients use.
	// Sentinels themselves get no password.
	Password string

	// Sentinels is the number of Sentinels (redis-server --sentinel)
	// monitoring the master as SentinelMasterName with quorum Sentinels/2+1,
	// down-after-milliseconds 1000 and failover-timeout 3000.
	Sentinels int

	// SentinelDownAfterMs is each Sentinel's down-after-milliseconds;
	// 0 means 1000.
	SentinelDownAfterMs int
	// SentinelFailoverTimeoutMs is each Sentinel's failover-timeout; 0
	// means 3000. Sentinel may start another failover 2× this after one,
	// which a test that must see exactly one sets higher.
	SentinelFailoverTimeoutMs int
	// SentinelArgs is extra argv for every Sentinel, after --sentinel.
	SentinelArgs []string

	// NoWaitSync makes Start return once every process answers PING, without
	// waiting for replicas to sync or Sentinels to discover the topology.
	NoWaitSync bool
}

// Topology is what Start started. The harness never changes its fields,
// even after a Sentinel failover; its methods are safe for concurrent use.
type Topology struct {
	Master    *Node
	Replicas  []*Node
	Sentinels []*Node
}

// Start starts a master, its replicas, then its Sentinels, each on a free
// port in its own TempDir. Unless opts.NoWaitSync, it returns once every
// replica is synced (WaitSynced) and every Sentinel sees the master, every
// replica and every other Sentinel, so a failover can start right away.
// Everything is killed at tb's cleanup.
func Start(tb TB, opts Options) *Topology {
	tb.Helper()
	if opts.Replicas < 0 || opts.Sentinels < 0 {
		tb.Fatalf("redistest: Start: negative count in %+v", opts)
		return nil
	}
	server := RedisServerPath(tb)
	if server == "" {
		return nil
	}
	bin := append(slices.Clone(opts.Wrapper), server)

	dataArgs := func(role []string, extra ...[]string) func(port int, dir string) []string {
		return func(port int, dir string) []string {
			args := serverArgs(port, dir)
			if opts.Password != "" {
				args = append(args, "--requirepass", opts.Password, "--masterauth", opts.Password)
			}
			args = append(args, role...)
			for _, e := range extra {
				args = append(args, e...)
			}
			return args
		}
	}
	password := opts.Password
	if password == "" {
		password = passwordFromArgs(slices.Concat(opts.Args, opts.MasterArgs))
	}
	t := &Topology{}
	t.Master = newNode(tb, nodeSpec{
		name:     "master",
		bin:      bin,
		password: password,
		args:     dataArgs(nil, opts.Args, opts.MasterArgs),
	})
	if t.Master == nil {
		return nil
	}

	replicaOf := []string{"--replicaof", "127.0.0.1", strconv.Itoa(t.Master.Port())}
	password = opts.Password
	if password == "" {
		password = passwordFromArgs(slices.Concat(opts.Args, opts.ReplicaArgs))
	}
	for i := range opts.Replicas {
		r := newNode(tb, nodeSpec{
			name:     fmt.Sprintf("replica %d", i+1),
			bin:      bin,
			password: password,
			args:     dataArgs(replicaOf, opts.Args, opts.ReplicaArgs),
		})
		if r == nil {
			return nil
		}
		t.Replicas = append(t.Replicas, r)
	}
	if !opts.NoWaitSync {
		t.WaitSynced(tb, startSyncTimeout)
	}

	quorum := opts.Sentinels/2 + 1
	for i := range opts.Sentinels {
		s := newNode(tb, nodeSpec{
			name:     fmt.Sprintf("sentinel %d", i+1),
			bin:      bin,
			password: passwordFromArgs(opts.SentinelArgs),
			args: func(port int, dir string) []string {
				return append([]string{filepath.Join(dir, "sentinel.conf"), "--sentinel"}, opts.SentinelArgs...)
			},
			setup: func(port int, dir string) error {
				// The master's password, however it was given (Password or Args).
				conf := sentinelConf(port, dir, t.Master.Port(), quorum, t.Master.password)
				if opts.SentinelFailoverTimeoutMs > 0 {
					conf = strings.Replace(conf, fmt.Sprintf("failover-timeout %s %d", SentinelMasterName, sentinelFailoverTimeout),
						fmt.Sprintf("failover-timeout %s %d", SentinelMasterName, opts.SentinelFailoverTimeoutMs), 1)
				}
				if opts.SentinelDownAfterMs > 0 {
					conf = strings.Replace(conf, fmt.Sprintf("down-after-milliseconds %s %d", SentinelMasterName, sentinelDownAfterMs),
						fmt.Sprintf("down-after-milliseconds %s %d", SentinelMasterName, opts.SentinelDownAfterMs), 1)
				}
				return os.WriteFile(filepath.Join(dir, "sentinel.conf"), []byte(conf), 0o644)
			},
		})
		if s == nil {
			return nil
		}
		t.Sentinels = append(t.Sentinels, s)
	}
	if !opts.NoWaitSync && len(t.Sentinels) > 0 {
		t.waitSentinels(tb, startSyncTimeout)
	}

	master, replicas := t.Addrs()
	tb.Logf("redistest: master %s, replicas %v, sentinels %v", master, replicas, addrs(t.Sentinels))
	return t
}

// StartServer starts one standalone redis-server with extra argv pieces
// (e.g. "--maxmemory", "1mb") after the harness's own settings. Its client
// uses the last --requirepass in args.
func StartServer(tb TB, args ...string) *Node {
	tb.Helper()
	server := RedisServerPath(tb)
	if server == "" {
		return nil
	}
	args = slices.Clone(args)
	return newNode(tb, nodeSpec{
		name:     "server",
		bin:      []string{server},
		password: passwordFromArgs(args),
		args: func(port int, dir string) []string {
			return append(serverArgs(port, dir), args...)
		},
	})
}

// StartSentinel starts one redis-sentinel of its own, monitoring
// SentinelMasterName at masterPort with quorum 1: a Sentinel that can be
// made to disagree with a Topology's (name a replica, say), as a stale or
// misconfigured Sentinel does.
func StartSentinel(tb TB, masterPort int) *Node {
	tb.Helper()
	server := RedisServerPath(tb)
	if server == "" {
		return nil
	}
	return newNode(tb, nodeSpec{
		name: "sentinel",
		bin:  []string{server},
		args: func(port int, dir string) []string {
			return []string{filepath.Join(dir, "sentinel.conf"), "--sentinel"}
		},
		setup: func(port int, dir string) error {
			conf := sentinelConf(port, dir, masterPort, 1, "")
			return os.WriteFile(filepath.Join(dir, "sentinel.conf"), []byte(conf), 0o644)
		},
	})
}

// serverArgs are the settings every data node gets: loopback only, nothing
// persisted (a restart starts empty, as the seed hazard needs), and no
// diskless-sync delay so replicas sync at once.
func serverArgs(port int, dir string) []string {
	return []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--repl-diskless-sync-delay", "0",
		"--daemonize", "no",
		"--logfile", filepath.Join(dir, "redis.log"),
	}
}

func sentinelConf(port int, dir string, masterPort, quorum int, password string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "port %d\n", port)
	b.WriteString("bind 127.0.0.1\n")
	fmt.Fprintf(&b, "dir %s\n", quoteConf(dir))
	fmt.Fprintf(&b, "logfile %s\n", quoteConf(filepath.Join(dir, "redis.log")))
	b.WriteString("daemonize no\n")
	// Must precede "sentinel monitor", which resolves the address it is given.
	b.WriteString("sentinel resolve-hostnames no\n")
	fmt.Fprintf(&b, "sentinel monitor %s 127.0.0.1 %d %d\n", SentinelMasterName, masterPort, quorum)
	fmt.Fprintf(&b, "sentinel down-after-milliseconds %s %d\n", SentinelMasterName, sentinelDownAfterMs)
	fmt.Fprintf(&b, "sentinel failover-timeout %s %d\n", SentinelMasterName, sentinelFailoverTimeout)
	if password != "" {
		fmt.Fprintf(&b, "sentinel auth-pass %s %s\n", SentinelMasterName, quoteConf(password))
	}
	return b.String()
}

// quoteConf quotes s for a redis config file (sdssplitargs rules), so a
// dir or password with spaces or quotes stays one argument.
func quoteConf(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`)
	return `"` + r.Replace(s) + `"`
}

// passwordFromArgs returns the value of the last --requirepass, which is
// the one redis-server applies.
func passwordFromArgs(args []string) string {
	pw := ""
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--requirepass" {
			pw = args[i+1]
		}
	}
	return pw
}

// Addrs returns the master's and the replicas' addresses.
func (t *Topology) Addrs() (master string, replicas []string) {
	return t.Master.Addr(), addrs(t.Replicas)
}

func addrs(nodes []*Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.Addr())
	}
	return out
}

// WaitSynced polls until every replica has its link up, no sync or load in
// progress, follows the master's replication ID and has applied exactly the
// master's offset, and the master is streaming to it. It assumes nobody
// writes meanwhile (Sentinel hellos are fine: they only need another poll).
// It fails the test after timeout or at once if a replica or the master is
// not running.
//
// Equal offsets right after a full sync do not prove the stream flows: after
// a diskless transfer Redis 7.0 sends the command stream only once the
// replica's first REPLCONF ACK arrives, and the replica's immediate ACK can
// reach the master before the master has noticed the transfer ended (it
// reaps the child in serverCron), so it is ignored and the stream starts
// with the next periodic ACK, up to a second later ("Waiting for REPLCONF
// ACK from slave to enable streaming" in the master's log). So once offsets
// match, a PUBLISH to a channel nobody listens to moves the master's offset
// without touching the keyspace, and the replicas must reach it too.
func (t *Topology) WaitSynced(tb TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	probed := len(t.Replicas) == 0
	for {
		culprit, err := t.syncState()
		if err == nil && probed {
			return
		}
		if err == nil {
			if _, err = t.Master.adminConn().do(adminTimeout, "PUBLISH", streamProbeChannel, "1"); err == nil {
				probed = true
				continue
			}
			culprit = t.Master
		}
		if culprit != nil && !culprit.Running() || time.Now().After(deadline) {
			if culprit == nil {
				culprit = t.Master
			}
			culprit.fatalf(tb, "WaitSynced: %v%s", err, t.Master.logTailsIf(culprit != t.Master))
			return
		}
		time.Sleep(pollInterval)
	}
}

// streamProbeChannel is where WaitSynced publishes to prove the master
// streams to its replicas.
const streamProbeChannel = "__redistest__:stream-probe"

// syncState returns nil when all replicas are in sync, else the first
// reason why not and the node it concerns.
func (t *Topology) syncState() (*Node, error) {
	// Replicas first, master last: a replica's offset cannot exceed what the
	// master reports afterwards, so equality means it had everything.
	type state struct{ offset, replid string }
	states := make([]state, len(t.Replicas))
	for i, r := range t.Replicas {
		if !r.Running() {
			return r, fmt.Errorf("%s is not running", r)
		}
		info, err := r.tryInfo("replication", "persistence")
		if err != nil {
			return r, err
		}
		switch {
		case info["role"] != "slave":
			return r, fmt.Errorf("role is %q", info["role"])
		case info["master_link_status"] != "up":
			return r, fmt.Errorf("master_link_status is %q", info["master_link_status"])
		case info["master_sync_in_progress"] != "0":
			return r, fmt.Errorf("master_sync_in_progress is %q", info["master_sync_in_progress"])
		case info["loading"] != "0" || info["async_loading"] == "1":
			return r, fmt.Errorf("loading is %q, async_loading %q", info["loading"], info["async_loading"])
		}
		states[i] = state{info["slave_repl_offset"], info["master_replid"]}
	}
	if !t.Master.Running() {
		return t.Master, fmt.Errorf("%s is not running", t.Master)
	}
	m, err := t.Master.tryInfo("replication")
	if err != nil {
		return t.Master, err
	}
	for i, r := range t.Replicas {
		if states[i].replid != m["master_replid"] {
			return r, fmt.Errorf("follows replid %s, master has %s", states[i].replid, m["master_replid"])
		}
		if states[i].offset != m["master_repl_offset"] {
			return r, fmt.Errorf("slave_repl_offset %s, master_repl_offset %s", states[i].offset, m["master_repl_offset"])
		}
	}
	return nil, nil
}

func (n *Node) logTailsIf(cond bool) string {
	if !cond {
		return ""
	}
	return n.LogTails()
}

// waitSentinels polls until every Sentinel reports the master as up,
// knows all replicas as connected and knows all other Sentinels: before
// that a killed master would not be failed over.
func (t *Topology) waitSentinels(tb TB, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for _, s := range t.Sentinels {
		for {
			err := t.sentinelState(s)
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				s.fatalf(tb, "waiting for the Sentinel to see the topology: %v", err)
				return
			}
			time.Sleep(pollInterval)
		}
	}
}

func (t *Topology) sentinelState(s *Node) error {
	c := s.adminConn()
	master, err := c.array(adminTimeout, "SENTINEL", "MASTER", SentinelMasterName)
	if err != nil {
		return err
	}
	m := pairs(master)
	want := map[string]string{
		"flags":               "master",
		"port":                strconv.Itoa(t.Master.Port()),
		"num-slaves":          strconv.Itoa(len(t.Replicas)),
		"num-other-sentinels": strconv.Itoa(len(t.Sentinels) - 1),
	}
	for k, v := range want {
		if m[k] != v {
			return fmt.Errorf("SENTINEL MASTER: %s is %q, want %q", k, m[k], v)
		}
	}
	replicas, err := c.array(adminTimeout, "SENTINEL", "REPLICAS", SentinelMasterName)
	if err != nil {
		return err
	}
	for _, r := range replicas {
		fields, _ := r.([]any)
		rm := pairs(fields)
		if rm["flags"] != "slave" || rm["master-link-status"] != "ok" {
			return fmt.Errorf("SENTINEL REPLICAS: %s flags %q, master-link-status %q", rm["name"], rm["flags"], rm["master-link-status"])
		}
	}
	return nil
}

// pairs turns a RESP2 field/value array into a map.
func pairs(a []any) map[string]string {
	m := make(map[string]string, len(a)/2)
	for i := 0; i+1 < len(a); i += 2 {
		k, _ := a[i].(string)
		v, _ := a[i+1].(string)
		m[k] = v
	}
	return m
}
