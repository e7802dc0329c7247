package main

import (
	"bytes"
	"flag"
	"io/fs"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/replproxy/replproxy/proxy"
)

// files is a lookupFile over an in-memory set of files.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		s, ok := m[name]
		if !ok {
			return nil, &os.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		return []byte(s), nil
	}
}

func boolPtr(b bool) *bool { return &b }

// defaultConfig is what `replproxy --master m:1` builds.
func defaultConfig() proxy.Config {
	return proxy.Config{
		ListenAddrs:   []string{"127.0.0.1:6380"},
		ProtectedMode: boolPtr(true),
		AuthTimeout:   10 * time.Second,
		ClientOutputBufferLimits: map[string]proxy.OutputLimit{
			"normal": {},
			"pubsub": {HardBytes: 32 << 20, SoftBytes: 8 << 20, SoftFor: time.Minute},
		},
		Master:                  "m:1",
		DiscoverReplicas:        boolPtr(true),
		EmptyMasterGuard:        boolPtr(true),
		Witness:                 boolPtr(true),
		WitnessTimeout:          100 * time.Millisecond,
		GuardParkAddr:           "127.0.0.1:1",
		BackendConns:            1,
		MaxClients:              10000,
		MaxDedicatedConns:       10000,
		MaxPipeline:             100000,
		QueryBufferLimit:        1 << 30,
		OutputBufferLimit:       1 << 30,
		MaxBulkBytes:            512 << 20,
		ConnectTimeout:          2 * time.Second,
		ShutdownTimeout:         5 * time.Second,
		Consistency:             "causal",
		MaxLag:                  100 * time.Millisecond,
		MinReplicasMaxLag:       10 * time.Second,
		PollInterval:            100 * time.Millisecond,
		HealthTimeout:           time.Second,
		ReadTimeout:             time.Second,
		ReadBalance:             "least-outstanding",
		CausalWait:              2 * time.Millisecond,
		WriteGate:               "reject",
		WriteGateTimeout:        100 * time.Millisecond,
		SyncTimeout:             time.Second,
		SyncTimeoutAction:       "error",
		ReplicationBacklogBytes: 1 << 20,
		ReplicationBacklogMax:   256 << 20,
	}
}

func TestBuildConfig(t *testing.T) {
	const fullFile = `
master: file-master:6379
replica: [r1:1, r2:2]
discover-replicas: false
consistency: bounded
max-lag: 250ms
min-replicas-to-write: 1
min-replicas-max-lag: 3s
user: {alice: a-pw, bob: "b:pw"}
query-buffer-limit: 64mb
output-buffer-limit: 1048576
timeout: 30s
loops: 2
metrics-listen: ""
log-format: json
log-level: debug
`
	tests := []struct {
		name  string
		args  []string
		files map[string]string
		// edit turns defaultConfig() into the expected Config.
		edit     func(c *proxy.Config)
		wantOpts func(o *options)
	}{
		{
			name: "defaults",
			args: []string{"--master", "m:1"},
		},
		{
			name: "single dash and equals forms",
			args: []string{"-master=m:1", "--listen=0.0.0.0:7000", "--consistency", "eventual"},
			edit: func(c *proxy.Config) {
				c.ListenAddrs = []string{"0.0.0.0:7000"}
				c.Consistency = "eventual"
			},
		},
		{
			name: "repeatable flags keep order",
			args: []string{"--master", "m:1", "--replica", "r1:1", "--replica=r2:2",
				"--sentinel", "s1:26379", "--sentinel", "s2:26379", "--sentinel-master", "mymaster"},
			edit: func(c *proxy.Config) {
				c.Replicas = []string{"r1:1", "r2:2"}
				c.Sentinels = []string{"s1:26379", "s2:26379"}
				c.SentinelMaster = "mymaster"
			},
		},
		{
			name: "users split at the first colon",
			args: []string{"--master", "m:1", "--user", "alice:pa:ss", "--user", "bob:", "--requirepass", "secret"},
			edit: func(c *proxy.Config) {
				c.Users = map[string]string{"alice": "pa:ss", "bob": ""}
				c.RequirePass = "secret"
			},
		},
		{
			name: "sizes as in redis.conf",
			args: []string{"--master", "m:1", "--query-buffer-limit", "512kb",
				"--output-buffer-limit", "1GB", "--proto-max-bulk-len", "1000"},
			edit: func(c *proxy.Config) {
				c.QueryBufferLimit = 512 << 10
				c.OutputBufferLimit = 1 << 30
				c.MaxBulkBytes = 1000
			},
		},
		{
			name: "durations, counts and switches",
			args: []string{"--master", "m:1", "--max-lag", "5ms", "--min-replicas-to-write", "2",
				"--min-replicas-max-lag", "1500ms", "--timeout", "1m", "--connect-timeout", "1s",
				"--shutdown-timeout", "30s", "--loops", "4", "--backend-conns", "2", "--maxclients", "50",
				"--max-pipeline", "1000", "--discover-replicas=false", "--replica", "r:1",
				"--upstream-user", "proxy", "--upstream-password", "pw"},
			edit: func(c *proxy.Config) {
				c.MaxLag = 5 * time.Millisecond
				c.MinReplicasToWrite = 2
				c.MinReplicasMaxLag = 1500 * time.Millisecond
				c.IdleTimeout = time.Minute
				c.ConnectTimeout = time.Second
				c.ShutdownTimeout = 30 * time.Second
				c.Loops = 4
				c.BackendConns = 2
				c.MaxClients = 50
				c.MaxPipeline = 1000
				c.DiscoverReplicas = boolPtr(false)
				c.Replicas = []string{"r:1"}
				c.UpstreamUser = "proxy"
				c.UpstreamPassword = "pw"
			},
		},
		{
			name: "cmd-only options",
			args: []string{"--master", "m:1", "--metrics-listen", "", "--log-format", "json", "--log-level", "warn", "--cpu-policy", "batch"},
			wantOpts: func(o *options) {
				o.metricsListen = ""
				o.logFormat = "json"
				o.logLevel = slog.LevelWarn
				o.cpuPolicy = "batch"
			},
		},
		{
			name:  "file only",
			args:  []string{"--config", "c.yaml"},
			files: map[string]string{"c.yaml": fullFile},
			edit: func(c *proxy.Config) {
				c.Master = "file-master:6379"
				c.Replicas = []string{"r1:1", "r2:2"}
				c.DiscoverReplicas = boolPtr(false)
				c.Consistency = "bounded"
				c.MaxLag = 250 * time.Millisecond
				c.MinReplicasToWrite = 1
				c.MinReplicasMaxLag = 3 * time.Second
				c.Users = map[string]string{"alice": "a-pw", "bob": "b:pw"}
				c.QueryBufferLimit = 64 << 20
				c.OutputBufferLimit = 1 << 20
				c.IdleTimeout = 30 * time.Second
				c.Loops = 2
			},
			wantOpts: func(o *options) {
				o.configPath = "c.yaml"
				o.metricsListen = ""
				o.logFormat = "json"
				o.logLevel = slog.LevelDebug
			},
		},
		{
			name: "flags override the file, lists and maps replaced not merged",
			args: []string{"--replica", "cli:9", "--config=c.yaml", "--consistency", "strong",
				"--user", "carol:c-pw", "--discover-replicas=true", "--metrics-listen", "127.0.0.1:1",
				"--master", "m:1"},
			files: map[string]string{"c.yaml": fullFile},
			edit: func(c *proxy.Config) {
				c.Master = "m:1"
				c.Replicas = []string{"cli:9"}
				c.DiscoverReplicas = boolPtr(true)
				c.Consistency = "strong"
				c.MaxLag = 250 * time.Millisecond
				c.MinReplicasToWrite = 1
				c.MinReplicasMaxLag = 3 * time.Second
				c.Users = map[string]string{"carol": "c-pw"}
				c.QueryBufferLimit = 64 << 20
				c.OutputBufferLimit = 1 << 20
				c.IdleTimeout = 30 * time.Second
				c.Loops = 2
			},
			wantOpts: func(o *options) {
				o.configPath = "c.yaml"
				o.metricsListen = "127.0.0.1:1"
				o.logFormat = "json"
				o.logLevel = slog.LevelDebug
			},
		},
		{
			name:  "a flag set to its default still overrides the file",
			args:  []string{"--config", "c.yaml", "--consistency", "causal"},
			files: map[string]string{"c.yaml": "master: m:1\nconsistency: eventual\n"},
			wantOpts: func(o *options) {
				o.configPath = "c.yaml"
			},
		},
		{
			name:  "scalar replica and empty file section",
			args:  []string{"--config", "c.yaml"},
			files: map[string]string{"c.yaml": "master: m:1\nreplica: r:1\n"},
			edit: func(c *proxy.Config) {
				c.Replicas = []string{"r:1"}
			},
			wantOpts: func(o *options) {
				o.configPath = "c.yaml"
			},
		},
		{
			name:  "empty file",
			args:  []string{"--config", "c.yaml", "--master", "m:1"},
			files: map[string]string{"c.yaml": "# nothing yet\n"},
			wantOpts: func(o *options) {
				o.configPath = "c.yaml"
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, opts, err := buildConfig(tt.args, files(tt.files))
			if err != nil {
				t.Fatalf("buildConfig(%q): %v", tt.args, err)
			}
			want := defaultConfig()
			if tt.edit != nil {
				tt.edit(&want)
			}
			if !reflect.DeepEqual(cfg, want) {
				t.Errorf("config:\n got %+v\nwant %+v\n(DiscoverReplicas got %v want %v)",
					cfg, want, *cfg.DiscoverReplicas, *want.DiscoverReplicas)
			}
			wantOpts := options{metricsListen: "127.0.0.1:9121", logFormat: "text", cpuPolicy: "normal", logLevel: slog.LevelInfo}
			if tt.wantOpts != nil {
				tt.wantOpts(&wantOpts)
			}
			if opts != wantOpts {
				t.Errorf("options: got %+v, want %+v", opts, wantOpts)
			}
		})
	}
}

func TestBuildConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		files   map[string]string
		wantErr string // substring
	}{
		{"no master", nil, nil, "--master is required"},
		{"bad address", []string{"--master", "localhost"}, nil, `--master "localhost": want host:port`},
		{"bad port", []string{"--master", "m:1", "--replica", "r:99999"}, nil, `--replica "r:99999"`},
		{"bad consistency", []string{"--master", "m:1", "--consistency", "sequential"}, nil, `--consistency "sequential": must be one of strong|linearizable|causal|bounded|eventual`},
		{"unknown flag", []string{"--master", "m:1", "--frobnicate"}, nil, "not defined: --frobnicate"},
		{"missing value", []string{"--master"}, nil, "flag needs an argument: --master"},
		{"positional argument", []string{"--master", "m:1", "6380"}, nil, `unexpected argument "6380"`},
		{"negative int", []string{"--master", "m:1", "--min-replicas-to-write", "-1"}, nil, "--min-replicas-to-write must not be negative"},
		{"negative loops", []string{"--master", "m:1", "--loops=-2"}, nil, "--loops must not be negative"},
		{"bad cpu-policy", []string{"--master", "m:1", "--cpu-policy", "fifo"}, nil, `--cpu-policy "fifo": must be normal or batch`},
		{"not an int", []string{"--master", "m:1", "--maxclients", "many"}, nil, `invalid value "many" for flag --maxclients`},
		{"zero maxclients", []string{"--master", "m:1", "--maxclients", "0"}, nil, "--maxclients must be greater than 0"},
		{"negative duration", []string{"--master", "m:1", "--timeout", "-1s"}, nil, "--timeout must not be negative"},
		{"zero max-lag", []string{"--master", "m:1", "--max-lag", "0s"}, nil, "--max-lag must be greater than 0"},
		{"duration without unit", []string{"--master", "m:1", "--max-lag", "100"}, nil, `invalid value "100" for flag --max-lag: not a duration`},
		{"bad size suffix", []string{"--master", "m:1", "--query-buffer-limit", "64tb"}, nil, `invalid value "64tb" for flag --query-buffer-limit: not a size`},
		{"negative size", []string{"--master", "m:1", "--output-buffer-limit", "-1mb"}, nil, "not a size"},
		{"fractional size", []string{"--master", "m:1", "--proto-max-bulk-len", "1.5gb"}, nil, "not a size"},
		{"size overflow", []string{"--master", "m:1", "--proto-max-bulk-len", "99999999999gb"}, nil, "too large"},
		{"user without colon", []string{"--master", "m:1", "--user", "alice"}, nil, "want name:password"},
		{"user twice", []string{"--master", "m:1", "--user", "a:1", "--user", "a:2"}, nil, `user "a" given twice`},
		{"default user", []string{"--master", "m:1", "--user", "default:x"}, nil, "--requirepass"},
		{"sentinel without name", []string{"--master", "m:1", "--sentinel", "s:26379"}, nil, "--sentinel needs --sentinel-master"},
		{"sentinel name alone", []string{"--master", "m:1", "--sentinel-master", "mymaster"}, nil, "--sentinel-master needs"},
		{"upstream user alone", []string{"--master", "m:1", "--upstream-user", "u"}, nil, "--upstream-user needs --upstream-password"},
		{"gate with no replicas possible", []string{"--master", "m:1", "--min-replicas-to-write", "1", "--discover-replicas=false"}, nil, "would refuse every write"},
		{"bad log format", []string{"--master", "m:1", "--log-format", "xml"}, nil, `--log-format "xml"`},
		{"bad log level", []string{"--master", "m:1", "--log-level", "loud"}, nil, `--log-level: "loud"`},
		{"bad metrics address", []string{"--master", "m:1", "--metrics-listen", "9121"}, nil, `--metrics-listen "9121"`},
		{"missing file", []string{"--config", "nope.yaml"}, nil, "config file: open nope.yaml"},
		{"unknown yaml key", []string{"--config", "c.yaml"}, map[string]string{"c.yaml": "master: m:1\nmin-replica-to-write: 2\n"}, "field min-replica-to-write not found"},
		{"yaml type error", []string{"--config", "c.yaml"}, map[string]string{"c.yaml": "master: m:1\nmaxclients: lots\n"}, "line 2"},
		{"yaml bad duration", []string{"--config", "c.yaml"}, map[string]string{"c.yaml": "master: m:1\nmax-lag: 100\n"}, `line 2: "100": not a duration`},
		{"yaml bad size", []string{"--config", "c.yaml"}, map[string]string{"c.yaml": "master: m:1\nquery-buffer-limit: lots\n"}, `line 2: "lots": not a size`},
		{"yaml user list", []string{"--config", "c.yaml"}, map[string]string{"c.yaml": "master: m:1\nuser: [alice]\n"}, "user must be a mapping"},
		{"yaml two documents", []string{"--config", "c.yaml"}, map[string]string{"c.yaml": "master: m:1\n---\nmaster: m:2\n"}, "more than one YAML document"},
		{"yaml validated too", []string{"--config", "c.yaml"}, map[string]string{"c.yaml": "master: m:1\nconsistency: strict\n"}, `--consistency "strict"`},
		{"yaml names the file", []string{"--config", "c.yaml"}, map[string]string{"c.yaml": "master: [\n"}, "config file c.yaml:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := buildConfig(tt.args, files(tt.files))
			if err == nil {
				t.Fatalf("buildConfig(%q): no error, want one containing %q", tt.args, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("buildConfig(%q) error %q, want it to contain %q", tt.args, err, tt.wantErr)
			}
		})
	}
}

// --help and --version must work without a master, on a broken command line
// being fixed, and without reading the config file.
func TestHelpAndVersionSkipValidation(t *testing.T) {
	tests := []struct {
		args                  []string
		wantHelp, wantVersion bool
	}{
		{[]string{"--help"}, true, false},
		{[]string{"-h"}, true, false},
		{[]string{"--version"}, false, true},
		{[]string{"--consistency", "bogus", "--config", "missing.yaml", "--version"}, false, true},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, opts, err := buildConfig(tt.args, files(nil))
			if err != nil {
				t.Fatalf("buildConfig(%q): %v", tt.args, err)
			}
			if opts.showHelp != tt.wantHelp || opts.showVersion != tt.wantVersion {
				t.Errorf("help=%v version=%v, want %v %v", opts.showHelp, opts.showVersion, tt.wantHelp, tt.wantVersion)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	tests := []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{[]string{"--version"}, 0, "replproxy dev\n", ""},
		{[]string{"--help"}, 0, "--min-replicas-max-lag duration", ""},
		{[]string{"--master", "m:1", "--consistency", "nope"}, 2, "", "replproxy: --consistency \"nope\""},
		{[]string{"--master", "m:1", "--max-lag", "soon"}, 2, "", "Run 'replproxy --help' for usage."},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if code := run(tt.args, &stdout, &stderr); code != tt.wantCode {
				t.Errorf("exit code %d, want %d (stderr %q)", code, tt.wantCode, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) {
				t.Errorf("stdout %q, want it to contain %q", stdout.String(), tt.wantStdout)
			}
			if !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stderr %q, want it to contain %q", stderr.String(), tt.wantStderr)
			}
		})
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1024", 1024},
		{"10b", 10},
		{"1k", 1000},
		{"1kb", 1024},
		{"512KB", 512 << 10},
		{"64mb", 64 << 20},
		{"2m", 2_000_000},
		{"1gb", 1 << 30},
		{"1G", 1_000_000_000},
		{" 7mb ", 7 << 20},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
	}
	for _, bad := range []string{"", "kb", "-1", "+1", "1.5mb", "1 mb", "1tb", "0x10", "9223372036854775807kb"} {
		if got, err := parseSize(bad); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", bad, got)
		}
	}
}

// --help shows sizes the way users write them, so the round trip matters.
func TestSizeStringRoundTrips(t *testing.T) {
	for _, v := range []int64{0, 1, 1000, 1024, 512 << 20, 1 << 30, 3 << 30, 1<<30 + 1} {
		z := size(v)
		got, err := parseSize(z.String())
		if err != nil || got != v {
			t.Errorf("size(%d).String() = %q parses to %d, %v", v, z.String(), got, err)
		}
	}
}

func TestEveryFlagHasYAMLKey(t *testing.T) {
	s := defaultSettings()
	fset := newFlagSet(&s, &options{})
	flags := map[string]bool{}
	fset.VisitAll(func(f *flag.Flag) {
		flags[f.Name] = true
		if slices.Contains(cmdOnlyFlags, f.Name) {
			return
		}
		if _, ok := fieldByKey[f.Name]; !ok {
			t.Errorf("flag --%s has no settings field with yaml:%q", f.Name, f.Name)
		}
	})
	for key := range fieldByKey {
		if !flags[key] {
			t.Errorf("yaml key %q has no flag", key)
		}
	}
}

func TestUsageCoversEveryFlag(t *testing.T) {
	s := defaultSettings()
	fset := newFlagSet(&s, &options{})
	seen := map[string]int{}
	for _, g := range flagGroups {
		for _, name := range g.flags {
			seen[name]++
			if fset.Lookup(name) == nil {
				t.Errorf("help group %q lists unknown flag --%s", g.title, name)
			}
		}
	}
	var buf bytes.Buffer
	printUsage(&buf)
	fset.VisitAll(func(f *flag.Flag) {
		if seen[f.Name] != 1 {
			t.Errorf("flag --%s is in %d help groups, want 1", f.Name, seen[f.Name])
		}
		if !strings.Contains(buf.String(), "  --"+f.Name) {
			t.Errorf("--help does not show --%s", f.Name)
		}
	})
	if strings.Contains(buf.String(), "\n  --") && strings.Contains(buf.String(), " value\n") {
		t.Errorf("--help names an argument \"value\"; give it a real name:\n%s", buf.String())
	}
}

func TestExampleConfigLoads(t *testing.T) {
	const path = "../../deploy/replproxy.example.yaml"
	cfg, opts, err := buildConfig([]string{"--config", path}, os.ReadFile)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	if cfg.Master != "127.0.0.1:6379" || len(cfg.Replicas) != 2 || cfg.Consistency != "causal" {
		t.Errorf("example config loaded as %+v", cfg)
	}
	if opts.metricsListen != "127.0.0.1:9121" {
		t.Errorf("metrics-listen = %q", opts.metricsListen)
	}
	// Every key should be shown, even if commented out, so the example
	// doubles as a reference.
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for key := range fieldByKey {
		if !strings.Contains(string(data), key+":") {
			t.Errorf("example config does not mention %q", key)
		}
	}
}

// The README's configuration table is the reference users read; keep it
// complete.
func TestReadmeDocumentsEveryFlag(t *testing.T) {
	data, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := defaultSettings()
	newFlagSet(&s, &options{}).VisitAll(func(f *flag.Flag) {
		if !bytes.Contains(data, []byte("`--"+f.Name+"`")) {
			t.Errorf("README.md does not document `--%s`", f.Name)
		}
	})
}

func TestHelpHidesPasswords(t *testing.T) {
	m := userMap{"alice": "hunter2"}
	if strings.Contains(m.String(), "hunter2") {
		t.Errorf("userMap.String() = %q shows a password", m.String())
	}
}

func TestRoutingFlags(t *testing.T) {
	cfg, _, err := buildConfig([]string{"--master", "m:1", "--poll-interval", "50ms", "--health-timeout", "2s",
		"--read-timeout", "250ms", "--read-balance", "round-robin", "--allow-command", "monitor", "--allow-command", "config|set"}, files(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PollInterval != 50*time.Millisecond || cfg.HealthTimeout != 2*time.Second || cfg.ReadTimeout != 250*time.Millisecond ||
		cfg.ReadBalance != "round-robin" || len(cfg.AllowCommands) != 2 || cfg.AllowCommands[1] != "config|set" {
		t.Fatalf("routing flags not carried: %+v", cfg)
	}
	for _, bad := range [][]string{{"--read-balance", "random"}, {"--read-timeout", "0"}, {"--poll-interval", "-1s"}} {
		if _, _, err := buildConfig(append([]string{"--master", "m:1"}, bad...), files(nil)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
