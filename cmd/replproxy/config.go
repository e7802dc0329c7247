package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/replproxy/replproxy/proxy"
)

// settings is the union of every setting the command line and the config
// file can carry. The yaml tag of each field is also its flag name: mergeCLI
// relies on that to let a flag given on the command line win over the file.
type settings struct {
	Listen           stringList `yaml:"listen"`
	Master           string     `yaml:"master"`
	Replica          stringList `yaml:"replica"`
	DiscoverReplicas bool       `yaml:"discover-replicas"`
	Sentinel         stringList `yaml:"sentinel"`
	SentinelMaster   string     `yaml:"sentinel-master"`
	SentinelUser     string     `yaml:"sentinel-user"`
	SentinelPassword string     `yaml:"sentinel-password"`
	FailoverHold     duration   `yaml:"failover-hold"`
	EmptyMasterGuard string     `yaml:"empty-master-guard"`
	Witness          string     `yaml:"witness"`
	WitnessTimeout   duration   `yaml:"witness-timeout"`
	GuardParkAddr    string     `yaml:"guard-park-addr"`
	UpstreamUser     string     `yaml:"upstream-user"`
	UpstreamPassword string     `yaml:"upstream-password"`

	Consistency        string   `yaml:"consistency"`
	MaxLag             duration `yaml:"max-lag"`
	MinReplicasToWrite int      `yaml:"min-replicas-to-write"`
	MinReplicasMaxLag  duration `yaml:"min-replicas-max-lag"`

	CausalWait        duration `yaml:"causal-wait"`
	WriteGate         string   `yaml:"write-gate"`
	WriteGateTimeout  duration `yaml:"write-gate-timeout"`
	SyncReplicas      int      `yaml:"sync-replicas"`
	SyncTimeout       duration `yaml:"sync-timeout"`
	SyncTimeoutAction string   `yaml:"sync-timeout-action"`
	ReplicationLink   bool     `yaml:"replication-link"`
	ReplBacklog       size     `yaml:"replication-backlog"`
	ReplBacklogMax    size     `yaml:"replication-backlog-max"`

	PollInterval  duration   `yaml:"poll-interval"`
	HealthTimeout duration   `yaml:"health-timeout"`
	ReadTimeout   duration   `yaml:"read-timeout"`
	ReadBalance   string     `yaml:"read-balance"`
	AllowCommand  stringList `yaml:"allow-command"`

	RequirePass  string   `yaml:"requirepass"`
	User         userMap  `yaml:"user"`
	MaxClients   int      `yaml:"maxclients"`
	MaxDedicated int      `yaml:"max-dedicated-conns"`
	Timeout      duration `yaml:"timeout"`

	Loops             int      `yaml:"loops"`
	BackendConns      int      `yaml:"backend-conns"`
	MaxPipeline       int      `yaml:"max-pipeline"`
	QueryBufferLimit  size     `yaml:"query-buffer-limit"`
	OutputBufferLimit size     `yaml:"output-buffer-limit"`
	ProtoMaxBulkLen   size     `yaml:"proto-max-bulk-len"`
	ConnectTimeout    duration `yaml:"connect-timeout"`
	ShutdownTimeout   duration `yaml:"shutdown-timeout"`
	CPUPolicy         string   `yaml:"cpu-policy"`

	MetricsListen string `yaml:"metrics-listen"`
	Pprof         bool   `yaml:"pprof"`
	LogFormat     string `yaml:"log-format"`
	LogLevel      string `yaml:"log-level"`

	// Hardening (hardening.go, tls.go).
	ProtectedMode           yesNo        `yaml:"protected-mode"`
	UnixSocketPerm          fileMode     `yaml:"unixsocketperm"`
	AuthTimeout             duration     `yaml:"auth-timeout"`
	ClientOutputBufferLimit outputLimits `yaml:"client-output-buffer-limit"`
	TLSListen               stringList   `yaml:"tls-listen"`
	TLSCertFile             string       `yaml:"tls-cert-file"`
	TLSKeyFile              string       `yaml:"tls-key-file"`
	TLSCACertFile           string       `yaml:"tls-ca-cert-file"`
	TLSAuthClients          string       `yaml:"tls-auth-clients"`
	UpstreamTLS             bool         `yaml:"upstream-tls"`
	UpstreamTLSCACertFile   string       `yaml:"upstream-tls-ca-cert-file"`
	UpstreamTLSCertFile     string       `yaml:"upstream-tls-cert-file"`
	UpstreamTLSKeyFile      string       `yaml:"upstream-tls-key-file"`
	UpstreamTLSServerName   string       `yaml:"upstream-tls-server-name"`
	SentinelTLS             bool         `yaml:"sentinel-tls"`
}

// defaultSettings are the values --help shows. Where proxy.Config documents a
// default for its zero value, the same number is written out here so that
// --help and the README state what actually runs instead of "0".
func defaultSettings() settings {
	return settings{
		Listen:            stringList{"127.0.0.1:6380"},
		DiscoverReplicas:  true,
		Consistency:       "causal",
		MaxLag:            duration(100 * time.Millisecond),
		MinReplicasMaxLag: duration(10 * time.Second),
		CausalWait:        duration(2 * time.Millisecond),
		WriteGate:         "reject",
		EmptyMasterGuard:  "on",
		Witness:           "on",
		WitnessTimeout:    duration(100 * time.Millisecond),
		GuardParkAddr:     "127.0.0.1:1",
		WriteGateTimeout:  duration(100 * time.Millisecond),
		SyncTimeout:       duration(time.Second),
		SyncTimeoutAction: "error",
		ReplicationLink:   true,
		ReplBacklog:       1 << 20,
		ReplBacklogMax:    256 << 20,
		PollInterval:      duration(100 * time.Millisecond),
		HealthTimeout:     duration(time.Second),
		ReadTimeout:       duration(time.Second),
		ReadBalance:       "least-outstanding",
		MaxClients:        10000,
		MaxDedicated:      10000,
		BackendConns:      1,
		MaxPipeline:       100000,
		QueryBufferLimit:  1 << 30,
		OutputBufferLimit: 1 << 30,
		ProtoMaxBulkLen:   512 << 20,
		ConnectTimeout:    duration(2 * time.Second),
		ShutdownTimeout:   duration(5 * time.Second),
		MetricsListen:     "127.0.0.1:9121",
		LogFormat:         "text",
		CPUPolicy:         "normal",
		LogLevel:          "info",
		ProtectedMode:     true,
		AuthTimeout:       duration(10 * time.Second),
		ClientOutputBufferLimit: outputLimits{
			"normal": {},
			"pubsub": {HardBytes: 32 << 20, SoftBytes: 8 << 20, SoftFor: 60 * time.Second},
		},
		TLSAuthClients: "yes",
	}
}

// options are the command-line settings that never reach proxy.Config.
type options struct {
	configPath    string
	showHelp      bool
	showVersion   bool
	metricsListen string // "" disables the metrics server
	pprof         bool
	logFormat     string // "text" or "json"
	cpuPolicy     string // "normal" or "batch" (cpupolicy_linux.go)
	logLevel      slog.Level
	// upstreamTLS holds the certificates behind Config.UpstreamTLS and
	// SentinelTLS, for a reload to swap (tls.go); nil without upstream TLS.
	upstreamTLS *upstreamTLS
}

var consistencyModes = []string{"strong", "linearizable", "causal", "bounded", "eventual"}

// newFlagSet binds every flag to a field of s, or of o for the cmd-only ones.
// Output is discarded: buildConfig must stay pure, and main prints usage and
// errors itself.
func newFlagSet(s *settings, o *options) *flag.FlagSet {
	fs := flag.NewFlagSet("replproxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)

	fs.Var(&replaceList{dst: &s.Listen}, "listen", "client-facing `address`: host:port, or unix:/path for a unix socket; repeat for several")
	bindHardeningFlags(fs, s)
	fs.StringVar(&s.Master, "master", s.Master, "Redis master `address` (host:port); required unless --sentinel names it")
	fs.Var(&s.Replica, "replica", "Redis replica `address` (host:port); repeat for several")
	fs.BoolVar(&s.DiscoverReplicas, "discover-replicas", s.DiscoverReplicas, "also use the replicas the master and, down the tree, each replica reports (and those Sentinel lists); turn off with --discover-replicas=false")
	fs.Var(&s.Sentinel, "sentinel", "Sentinel `address` (host:port) to follow failovers; repeat for several")
	fs.StringVar(&s.SentinelMaster, "sentinel-master", s.SentinelMaster, "master `name` monitored by the Sentinels")
	fs.StringVar(&s.SentinelUser, "sentinel-user", s.SentinelUser, "ACL `user` the proxy authenticates as to the Sentinels")
	fs.StringVar(&s.SentinelPassword, "sentinel-password", s.SentinelPassword, "`password` the proxy sends to the Sentinels (their own, not the data nodes')")
	fs.StringVar(&s.EmptyMasterGuard, "empty-master-guard", s.EmptyMasterGuard, "protect the replicas' data when the master restarts empty (`on` or off)")
	fs.StringVar(&s.Witness, "witness", s.Witness, "hold each write's reply until the proxy's replication link has the write, and replay what a promoted master lacks (`on` or off)")
	fs.Var(&s.WitnessTimeout, "witness-timeout", "longest a write reply waits for the witness before it is released anyway (counted)")
	fs.StringVar(&s.GuardParkAddr, "guard-park-addr", s.GuardParkAddr, "`address` (host:port where nothing listens) the guard points replicas at to keep them from resyncing")
	fs.Var(&s.FailoverHold, "failover-hold", "how long a write waits during a failover for the new master before going to the current one")
	fs.StringVar(&s.UpstreamUser, "upstream-user", s.UpstreamUser, "ACL `user` the proxy authenticates as to every Redis node")
	fs.StringVar(&s.UpstreamPassword, "upstream-password", s.UpstreamPassword, "`password` the proxy sends to every Redis node")

	fs.StringVar(&s.Consistency, "consistency", s.Consistency, "default read consistency `mode`: strong|linearizable|causal|bounded|eventual")
	fs.Var(&s.MaxLag, "max-lag", "staleness bound of the bounded mode")
	fs.IntVar(&s.MinReplicasToWrite, "min-replicas-to-write", s.MinReplicasToWrite, "refuse writes unless this many replicas are within --min-replicas-max-lag (0 = no gate)")
	fs.Var(&s.MinReplicasMaxLag, "min-replicas-max-lag", "lag bound of the write gate")

	fs.Var(&s.CausalWait, "causal-wait", "how long a causal or linearizable read waits for a replica to catch up before it goes to the master")
	fs.StringVar(&s.WriteGate, "write-gate", s.WriteGate, "a write failing the gate is rejected at once (`reject`) or held up to --write-gate-timeout (wait)")
	fs.Var(&s.WriteGateTimeout, "write-gate-timeout", "how long --write-gate wait holds a write")
	fs.IntVar(&s.SyncReplicas, "sync-replicas", s.SyncReplicas, "release a write's reply only after this many replicas applied it (0 = off)")
	fs.Var(&s.SyncTimeout, "sync-timeout", "how long a synchronous write waits for its replicas")
	fs.StringVar(&s.SyncTimeoutAction, "sync-timeout-action", s.SyncTimeoutAction, "on --sync-timeout: `error` (-NOREPLICAS; the write stays applied) or pass (the normal reply)")
	fs.BoolVar(&s.ReplicationLink, "replication-link", s.ReplicationLink, "run the proxy's own replica link to the master (lag in ms, bounded mode, write gate); --replication-link=false disables it")
	fs.Var(&s.ReplBacklog, "replication-backlog", "how many of the latest replication stream bytes the link keeps, with their offsets and arrival times (as repl-backlog-size); the least it keeps")
	fs.Var(&s.ReplBacklogMax, "replication-backlog-max", "how far the backlog may grow to hold the replicas' lag and the last 10 s of the stream, which a failover's replay needs; 0 keeps it at --replication-backlog")

	fs.Var(&s.PollInterval, "poll-interval", "how often the topology monitor polls each node")
	fs.Var(&s.HealthTimeout, "health-timeout", "a node that does not answer a poll within this is unreachable")
	fs.Var(&s.ReadTimeout, "read-timeout", "a read waiting this long on a replica is re-sent elsewhere and the replica set aside")
	fs.StringVar(&s.ReadBalance, "read-balance", s.ReadBalance, "replica choice `policy`: least-outstanding|round-robin")
	fs.Var(&s.AllowCommand, "allow-command", "let a command denied by default through (`name` or container|sub, e.g. monitor, config|set); repeat for several")

	fs.StringVar(&s.RequirePass, "requirepass", s.RequirePass, "`password` clients must AUTH with (default user); empty = no auth")
	fs.Var(&s.User, "user", "client user as `name:password`; repeat for several")
	fs.IntVar(&s.MaxClients, "maxclients", s.MaxClients, "maximum client connections")
	fs.IntVar(&s.MaxDedicated, "max-dedicated-conns", s.MaxDedicated, "maximum master connections held by one client each (blocking calls, MULTI/WATCH, pub/sub)")
	fs.Var(&s.Timeout, "timeout", "close clients idle this long (0 = never)")

	fs.IntVar(&s.Loops, "loops", s.Loops, "event loops (0 = one per CPU the process may use: affinity and cgroup limit; GOMAXPROCS is set to loops+1 unless the environment sets it)")
	fs.IntVar(&s.BackendConns, "backend-conns", s.BackendConns, "shared connections per event loop to each Redis node")
	fs.IntVar(&s.MaxPipeline, "max-pipeline", s.MaxPipeline, "commands one client may have in flight before the proxy stops reading it")
	fs.Var(&s.QueryBufferLimit, "query-buffer-limit", "unparsed request bytes buffered per client")
	fs.Var(&s.OutputBufferLimit, "output-buffer-limit", "unsent reply bytes per client before it is closed")
	fs.Var(&s.ProtoMaxBulkLen, "proto-max-bulk-len", "largest bulk string accepted in a request")
	fs.Var(&s.ConnectTimeout, "connect-timeout", "bound on dialing and handshaking a Redis node")
	fs.Var(&s.ShutdownTimeout, "shutdown-timeout", "how long a graceful shutdown waits for in-flight requests")

	fs.StringVar(&s.MetricsListen, "metrics-listen", s.MetricsListen, "`address` of the /metrics, /healthz, /readyz HTTP server; \"\" disables it")
	fs.BoolVar(&s.Pprof, "pprof", s.Pprof, "serve /debug/pprof/ on --metrics-listen")
	fs.StringVar(&s.LogFormat, "log-format", s.LogFormat, "log `format`: text|json")
	fs.StringVar(&s.CPUPolicy, "cpu-policy", s.CPUPolicy, "scheduling `policy` of the proxy's threads: normal, or batch (SCHED_BATCH: no preempting on wake-up, for a proxy sharing its CPUs with busy clients)")
	fs.StringVar(&s.LogLevel, "log-level", s.LogLevel, "log `level`: debug|info|warn|error")

	fs.StringVar(&o.configPath, "config", "", "YAML config `file`; flags given on the command line override it")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.BoolVar(&o.showHelp, "help", false, "print this help and exit")
	return fs
}

// cmdOnlyFlags have no YAML key: a config file naming another config file,
// or asking for --help, would mean nothing.
var cmdOnlyFlags = []string{"config", "version", "help"}

// buildConfig turns the command line (without the program name) and the
// config file it may name into a proxy.Config. lookupFile reads the file
// (os.ReadFile in main, a map in tests). Every error it returns is the
// user's to fix: a bad flag, file or value.
func buildConfig(args []string, lookupFile func(string) ([]byte, error)) (proxy.Config, options, error) {
	cli := defaultSettings()
	var opts options
	fs := newFlagSet(&cli, &opts)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) { // -h, which we do not define
			opts.showHelp = true
			return proxy.Config{}, opts, nil
		}
		// The flag package names flags with one dash; users are told to
		// type two, so show them what they typed.
		return proxy.Config{}, opts, errors.New(strings.Replace(err.Error(), " -", " --", 1))
	}
	if opts.showHelp || opts.showVersion {
		return proxy.Config{}, opts, nil
	}
	if fs.NArg() > 0 {
		return proxy.Config{}, opts, fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}

	s := defaultSettings()
	if opts.configPath != "" {
		data, err := lookupFile(opts.configPath)
		if err != nil {
			return proxy.Config{}, opts, fmt.Errorf("config file: %v", err)
		}
		if err := decodeYAML(data, &s); err != nil {
			return proxy.Config{}, opts, fmt.Errorf("config file %s: %v", opts.configPath, err)
		}
	}
	mergeCLI(&s, &cli, fs)

	if err := s.validate(); err != nil {
		return proxy.Config{}, opts, err
	}
	opts.metricsListen = s.MetricsListen
	opts.pprof = s.Pprof
	opts.logFormat = s.LogFormat
	opts.cpuPolicy = s.CPUPolicy
	if err := opts.logLevel.UnmarshalText([]byte(s.LogLevel)); err != nil {
		return proxy.Config{}, opts, fmt.Errorf("--log-level: %q is not one of debug|info|warn|error", s.LogLevel)
	}
	cfg := s.proxyConfig()
	if err := s.loadTLS(&cfg, &opts, lookupFile); err != nil {
		return proxy.Config{}, opts, err
	}
	return cfg, opts, nil
}

// decodeYAML fills s from a config file. Unknown keys are errors: a
// misspelt "min-replica-to-write" silently ignored would leave writes ungated.
func decodeYAML(data []byte, s *settings) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(s); err != nil {
		if errors.Is(err, io.EOF) { // empty file: nothing to override
			return nil
		}
		return err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return errors.New("more than one YAML document; expected one mapping")
	}
	return nil
}

// mergeCLI copies into s every setting the user gave on the command line,
// found by the yaml tag equal to the flag name.
func mergeCLI(s, cli *settings, fs *flag.FlagSet) {
	dst, src := reflect.ValueOf(s).Elem(), reflect.ValueOf(cli).Elem()
	fs.Visit(func(f *flag.Flag) {
		if i, ok := fieldByKey[f.Name]; ok {
			dst.Field(i).Set(src.Field(i))
		}
	})
}

// fieldByKey maps each yaml key of settings to its field index.
var fieldByKey = func() map[string]int {
	t := reflect.TypeFor[settings]()
	m := make(map[string]int, t.NumField())
	for i := range t.NumField() {
		m[t.Field(i).Tag.Get("yaml")] = i
	}
	return m
}()

func (s *settings) validate() error {
	if s.Master == "" && len(s.Sentinel) == 0 {
		return errors.New("--master is required (host:port of the Redis master), or --sentinel with --sentinel-master")
	}
	masters := []string{s.Master}
	if s.Master == "" {
		masters = nil
	}
	addrs := map[string][]string{
		"master":   masters,
		"replica":  s.Replica,
		"sentinel": s.Sentinel,
	}
	if s.MetricsListen != "" {
		addrs["metrics-listen"] = []string{s.MetricsListen}
	}
	for _, name := range slices.Sorted(maps.Keys(addrs)) {
		for _, addr := range addrs[name] {
			if err := checkAddr(addr); err != nil {
				return fmt.Errorf("--%s %q: %v", name, addr, err)
			}
		}
	}
	if len(s.Sentinel) > 0 && s.SentinelMaster == "" {
		return errors.New("--sentinel needs --sentinel-master (the master name the Sentinels monitor)")
	}
	if s.SentinelMaster != "" && len(s.Sentinel) == 0 {
		return errors.New("--sentinel-master needs at least one --sentinel host:port")
	}
	if !slices.Contains(consistencyModes, s.Consistency) {
		return fmt.Errorf("--consistency %q: must be one of %s", s.Consistency, strings.Join(consistencyModes, "|"))
	}
	if s.UpstreamUser != "" && s.UpstreamPassword == "" {
		return errors.New("--upstream-user needs --upstream-password")
	}
	if _, ok := s.User["default"]; ok {
		return errors.New(`--user default:...: set the default user's password with --requirepass`)
	}

	// Zero means "proxy default" in proxy.Config; for these settings the user
	// writing 0 almost certainly meant something else, so refuse it rather
	// than silently substituting the default.
	positive := []struct {
		flag string
		v    int64
	}{
		{"maxclients", int64(s.MaxClients)},
		{"max-dedicated-conns", int64(s.MaxDedicated)},
		{"backend-conns", int64(s.BackendConns)},
		{"max-pipeline", int64(s.MaxPipeline)},
		{"query-buffer-limit", int64(s.QueryBufferLimit)},
		{"output-buffer-limit", int64(s.OutputBufferLimit)},
		{"proto-max-bulk-len", int64(s.ProtoMaxBulkLen)},
		{"replication-backlog", int64(s.ReplBacklog)},
		{"max-lag", int64(s.MaxLag)},
		{"min-replicas-max-lag", int64(s.MinReplicasMaxLag)},
		{"connect-timeout", int64(s.ConnectTimeout)},
		{"shutdown-timeout", int64(s.ShutdownTimeout)},
		{"poll-interval", int64(s.PollInterval)},
		{"health-timeout", int64(s.HealthTimeout)},
		{"read-timeout", int64(s.ReadTimeout)},
		{"causal-wait", int64(s.CausalWait)},
		{"write-gate-timeout", int64(s.WriteGateTimeout)},
		{"sync-timeout", int64(s.SyncTimeout)},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("--%s must be greater than 0", p.flag)
		}
	}
	nonNegative := []struct {
		flag string
		v    int64
	}{
		{"min-replicas-to-write", int64(s.MinReplicasToWrite)},
		{"loops", int64(s.Loops)},
		{"timeout", int64(s.Timeout)},
		{"sync-replicas", int64(s.SyncReplicas)},
	}
	for _, p := range nonNegative {
		if p.v < 0 {
			return fmt.Errorf("--%s must not be negative", p.flag)
		}
	}
	if s.MinReplicasToWrite > 0 && len(s.Replica) == 0 && !s.DiscoverReplicas && len(s.Sentinel) == 0 {
		return fmt.Errorf("--min-replicas-to-write %d with no --replica, --discover-replicas=false and no --sentinel would refuse every write", s.MinReplicasToWrite)
	}
	// The proxy's limits are ints; on a 32-bit build a "4gb" would wrap.
	for _, p := range []struct {
		flag string
		v    size
	}{{"query-buffer-limit", s.QueryBufferLimit}, {"output-buffer-limit", s.OutputBufferLimit}} {
		if int64(p.v) > math.MaxInt {
			return fmt.Errorf("--%s %s is larger than this platform supports", p.flag, p.v)
		}
	}
	switch {
	case s.CPUPolicy != "normal" && s.CPUPolicy != "batch":
		return fmt.Errorf("--cpu-policy %q: must be normal or batch", s.CPUPolicy)
	case s.CPUPolicy == "batch" && !cpuPolicySupported:
		return errors.New("--cpu-policy batch: only supported on Linux")
	}
	if s.Witness != "on" && s.Witness != "off" {
		return fmt.Errorf("--witness %q: must be on or off", s.Witness)
	}
	if s.EmptyMasterGuard != "on" && s.EmptyMasterGuard != "off" {
		return fmt.Errorf("--empty-master-guard %q: must be on or off", s.EmptyMasterGuard)
	}
	if err := checkAddr(s.GuardParkAddr); err != nil {
		return fmt.Errorf("--guard-park-addr %q: %v", s.GuardParkAddr, err)
	}
	if s.WriteGate != "reject" && s.WriteGate != "wait" {
		return fmt.Errorf("--write-gate %q: must be reject or wait", s.WriteGate)
	}
	if s.SyncTimeoutAction != "error" && s.SyncTimeoutAction != "pass" {
		return fmt.Errorf("--sync-timeout-action %q: must be error or pass", s.SyncTimeoutAction)
	}
	if !s.ReplicationLink && s.MinReplicasToWrite > 0 {
		return errors.New("--min-replicas-to-write needs the replication link for replica lag: drop --replication-link=false")
	}
	if s.ReadBalance != "least-outstanding" && s.ReadBalance != "round-robin" {
		return fmt.Errorf("--read-balance %q: must be least-outstanding or round-robin", s.ReadBalance)
	}
	if s.LogFormat != "text" && s.LogFormat != "json" {
		return fmt.Errorf("--log-format %q: must be text or json", s.LogFormat)
	}
	return s.validateHardening()
}

func checkAddr(addr string) error {
	// An empty host is fine: it means every interface, as with net.Listen.
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want host:port")
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("port %q is not a number in 0..65535", port)
	}
	return nil
}

func (s *settings) proxyConfig() proxy.Config {
	discover := s.DiscoverReplicas
	guard := s.EmptyMasterGuard == "on"
	witness := s.Witness == "on"
	var users map[string]string
	if len(s.User) > 0 {
		users = map[string]string(s.User)
	}
	cfg := proxy.Config{
		Master:                  s.Master,
		Replicas:                slices.Clone([]string(s.Replica)),
		DiscoverReplicas:        &discover,
		UpstreamUser:            s.UpstreamUser,
		UpstreamPassword:        s.UpstreamPassword,
		RequirePass:             s.RequirePass,
		Users:                   users,
		Loops:                   s.Loops,
		BackendConns:            s.BackendConns,
		MaxClients:              s.MaxClients,
		MaxDedicatedConns:       s.MaxDedicated,
		IdleTimeout:             time.Duration(s.Timeout),
		MaxPipeline:             s.MaxPipeline,
		QueryBufferLimit:        int(s.QueryBufferLimit),
		OutputBufferLimit:       int(s.OutputBufferLimit),
		MaxBulkBytes:            int64(s.ProtoMaxBulkLen),
		ConnectTimeout:          time.Duration(s.ConnectTimeout),
		ShutdownTimeout:         time.Duration(s.ShutdownTimeout),
		Consistency:             s.Consistency,
		MaxLag:                  time.Duration(s.MaxLag),
		MinReplicasToWrite:      s.MinReplicasToWrite,
		MinReplicasMaxLag:       time.Duration(s.MinReplicasMaxLag),
		Sentinels:               slices.Clone([]string(s.Sentinel)),
		SentinelMaster:          s.SentinelMaster,
		SentinelUser:            s.SentinelUser,
		SentinelPassword:        s.SentinelPassword,
		FailoverHold:            time.Duration(s.FailoverHold),
		EmptyMasterGuard:        &guard,
		Witness:                 &witness,
		WitnessTimeout:          time.Duration(s.WitnessTimeout),
		GuardParkAddr:           s.GuardParkAddr,
		PollInterval:            time.Duration(s.PollInterval),
		HealthTimeout:           time.Duration(s.HealthTimeout),
		ReadTimeout:             time.Duration(s.ReadTimeout),
		ReadBalance:             s.ReadBalance,
		AllowCommands:           slices.Clone([]string(s.AllowCommand)),
		CausalWait:              time.Duration(s.CausalWait),
		WriteGate:               s.WriteGate,
		WriteGateTimeout:        time.Duration(s.WriteGateTimeout),
		SyncReplicas:            s.SyncReplicas,
		SyncTimeout:             time.Duration(s.SyncTimeout),
		SyncTimeoutAction:       s.SyncTimeoutAction,
		NoReplicationLink:       !s.ReplicationLink,
		ReplicationBacklogBytes: int(s.ReplBacklog),
		ReplicationBacklogMax:   backlogMax(s.ReplBacklogMax),
	}
	s.hardeningConfig(&cfg)
	return cfg
}

// stringList is a repeatable flag; in YAML it is a sequence (a single
// scalar is accepted too, so "replica: host:port" does what it says).
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	*l = append(*l, v)
	return nil
}

func (l *stringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*l = stringList{n.Value}
		return nil
	}
	var v []string
	if err := n.Decode(&v); err != nil {
		return err
	}
	*l = v
	return nil
}

// userMap holds client users. On the command line each --user is
// name:password (split at the first colon, so passwords may contain colons);
// in YAML it is a mapping name: password.
type userMap map[string]string

func (m *userMap) String() string {
	if m == nil || len(*m) == 0 {
		return ""
	}
	names := make([]string, 0, len(*m))
	for name := range *m {
		names = append(names, name+":***") // --help must never print passwords
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

func (m *userMap) Set(v string) error {
	name, pass, ok := strings.Cut(v, ":")
	if !ok || name == "" {
		return errors.New("want name:password")
	}
	if *m == nil {
		*m = userMap{}
	}
	if _, dup := (*m)[name]; dup {
		return fmt.Errorf("user %q given twice", name)
	}
	(*m)[name] = pass
	return nil
}

func (m *userMap) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: user must be a mapping of name: password", n.Line)
	}
	var v map[string]string
	if err := n.Decode(&v); err != nil {
		return err
	}
	for name := range v {
		if name == "" {
			return fmt.Errorf("line %d: empty user name", n.Line)
		}
	}
	*m = v
	return nil
}

// scalarYAML decodes a YAML scalar with a flag value's own Set, so a
// config file and the command line accept exactly the same spellings.
func scalarYAML(n *yaml.Node, want string, set func(string) error) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: want %s", n.Line, want)
	}
	if err := set(n.Value); err != nil {
		return fmt.Errorf("line %d: %q: %v", n.Line, n.Value, err)
	}
	return nil
}

// duration is a time.Duration written as Go durations ("100ms", "10s").
// A bare number is refused: "max-lag: 100" is ambiguous between ms and s.
type duration time.Duration

func (d duration) String() string { return time.Duration(d).String() }

func (d *duration) Set(v string) error {
	p, err := time.ParseDuration(v)
	if err != nil {
		return errors.New("not a duration (write e.g. 100ms, 10s, 1m)")
	}
	*d = duration(p)
	return nil
}

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	return scalarYAML(n, "a duration such as 100ms", d.Set)
}

// size is a byte count written as in redis.conf: plain bytes, or a number
// with k/m/g (powers of 1000) or kb/mb/gb (powers of 1024), any case.
type size int64

func (z size) String() string {
	v := int64(z)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}} {
		if v != 0 && v%u.mult == 0 {
			return strconv.FormatInt(v/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatInt(v, 10)
}

func (z *size) Set(v string) error {
	n, err := parseSize(v)
	if err != nil {
		return err
	}
	*z = size(n)
	return nil
}

func (z *size) UnmarshalYAML(n *yaml.Node) error { return scalarYAML(n, "a size such as 64mb", z.Set) }

// parseSize follows redis.conf's memtoull: the multipliers, case-insensitivity
// and the refusal of fractions and signs are the same, so values copied from
// a redis.conf mean the same thing here.
func parseSize(v string) (int64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
		{"k", 1000}, {"m", 1000 * 1000}, {"g", 1000 * 1000 * 1000},
		{"b", 1},
	} {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	bad := errors.New("not a size (write bytes, or e.g. 512kb, 64mb, 1gb)")
	if s == "" || strings.ContainsAny(s, "+-") {
		return 0, bad
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, bad
	}
	if n > math.MaxInt64/mult {
		return 0, errors.New("too large")
	}
	return n * mult, nil
}

// flagGroups orders --help by topic. TestUsageCoversEveryFlag keeps it in
// step with newFlagSet.
var flagGroups = []struct {
	title string
	flags []string
}{
	{"Topology", []string{"master", "replica", "discover-replicas", "sentinel", "sentinel-master", "sentinel-user", "sentinel-password", "failover-hold", "empty-master-guard", "guard-park-addr", "witness", "witness-timeout", "upstream-user", "upstream-password"}},
	{"Consistency and write safety", []string{"consistency", "max-lag", "causal-wait", "min-replicas-to-write", "min-replicas-max-lag", "write-gate", "write-gate-timeout", "sync-replicas", "sync-timeout", "sync-timeout-action", "replication-link", "replication-backlog", "replication-backlog-max"}},
	{"Replica health and routing", []string{"poll-interval", "health-timeout", "read-timeout", "read-balance", "allow-command"}},
	{"Clients", []string{"listen", "unixsocketperm", "protected-mode", "requirepass", "user", "maxclients", "max-dedicated-conns", "timeout", "auth-timeout", "client-output-buffer-limit"}},
	{"TLS", []string{"tls-listen", "tls-cert-file", "tls-key-file", "tls-ca-cert-file", "tls-auth-clients", "upstream-tls", "upstream-tls-ca-cert-file", "upstream-tls-cert-file", "upstream-tls-key-file", "upstream-tls-server-name", "sentinel-tls"}},
	{"Limits and performance", []string{"loops", "backend-conns", "max-pipeline", "query-buffer-limit", "output-buffer-limit", "proto-max-bulk-len", "connect-timeout", "shutdown-timeout", "cpu-policy"}},
	{"Observability", []string{"metrics-listen", "pprof", "log-format", "log-level"}},
	{"General", []string{"config", "version", "help"}},
}

const usageHeader = `replproxy: a replication-aware Redis proxy. Clients talk to it as to one
Redis; writes go to the master, reads to replicas that satisfy --consistency.

Usage:
  replproxy --master HOST:PORT [--replica HOST:PORT]... [flags]
  replproxy --config FILE [flags]

Flags are written --flag value or --flag=value (booleans: --flag=false).
Every flag except --config, --version and --help has a YAML key of the same
name for the --config file; flags on the command line override the file.
Durations: 100ms, 10s, 1m. Sizes: bytes, or 512kb, 64mb, 1gb (powers of
1024; k, m, g are powers of 1000, as in redis.conf).
`

// printUsage writes --help. It is ours rather than flag.PrintDefaults so that
// flags come grouped by topic and spelt with the -- users are told to type.
func printUsage(w io.Writer) {
	s := defaultSettings()
	fs := newFlagSet(&s, &options{})
	var b strings.Builder
	b.WriteString(usageHeader)
	for _, g := range flagGroups {
		fmt.Fprintf(&b, "\n%s:\n", g.title)
		for _, name := range g.flags {
			f := fs.Lookup(name)
			arg, text := flag.UnquoteUsage(f)
			switch f.Value.(type) { // UnquoteUsage calls every flag.Value "value"
			case *duration:
				arg = "duration"
			case *size:
				arg = "size"
			}
			fmt.Fprintf(&b, "  --%s", name)
			if arg != "" {
				fmt.Fprintf(&b, " %s", arg)
			}
			fmt.Fprintf(&b, "\n        %s", text)
			if f.DefValue != "" && f.DefValue != "false" && !slices.Contains(cmdOnlyFlags, name) {
				fmt.Fprintf(&b, " (default %s)", f.DefValue)
			}
			b.WriteString("\n")
		}
	}
	io.WriteString(w, b.String())
}

// backlogMax maps --replication-backlog-max to proxy.Config: 0 (off) is
// -1 there, where 0 means the default.
func backlogMax(n size) int {
	if n == 0 {
		return -1
	}
	return int(n)
}
