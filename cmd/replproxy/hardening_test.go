package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/proxy"
)

func TestHardeningFlags(t *testing.T) {
	tests := []struct {
		name  string
		args  []string
		files map[string]string
		check func(t *testing.T, c proxy.Config)
	}{
		{"listen replaces the default and repeats", []string{"--listen", "127.0.0.1:1", "--listen", "unix:/run/p.sock", "--unixsocketperm", "770"}, nil, func(t *testing.T, c proxy.Config) {
			if !reflect.DeepEqual(c.ListenAddrs, []string{"127.0.0.1:1", "unix:/run/p.sock"}) || c.UnixSocketPerm != 0o770 {
				t.Errorf("ListenAddrs %q perm %o", c.ListenAddrs, c.UnixSocketPerm)
			}
		}},
		{"listen list in YAML", []string{"--config", "f"}, map[string]string{"f": "listen: [127.0.0.1:1, unix:/x]\nunixsocketperm: 700\n"}, func(t *testing.T, c proxy.Config) {
			if !reflect.DeepEqual(c.ListenAddrs, []string{"127.0.0.1:1", "unix:/x"}) || c.UnixSocketPerm != 0o700 {
				t.Errorf("ListenAddrs %q perm %o", c.ListenAddrs, c.UnixSocketPerm)
			}
		}},
		{"protected-mode no", []string{"--protected-mode", "no"}, nil, func(t *testing.T, c proxy.Config) {
			if c.ProtectedMode == nil || *c.ProtectedMode {
				t.Errorf("ProtectedMode %v", c.ProtectedMode)
			}
		}},
		{"protected-mode in YAML", []string{"--config", "f"}, map[string]string{"f": "protected-mode: no\n"}, func(t *testing.T, c proxy.Config) {
			if c.ProtectedMode == nil || *c.ProtectedMode {
				t.Errorf("ProtectedMode %v", c.ProtectedMode)
			}
		}},
		{"auth-timeout 0 is never", []string{"--auth-timeout", "0s"}, nil, func(t *testing.T, c proxy.Config) {
			if c.AuthTimeout >= 0 {
				t.Errorf("AuthTimeout %v, want negative (never)", c.AuthTimeout)
			}
		}},
		{"output limits, one class", []string{"--client-output-buffer-limit", "pubsub 64mb 16mb 30"}, nil, func(t *testing.T, c proxy.Config) {
			want := map[string]proxy.OutputLimit{"normal": {}, "pubsub": {HardBytes: 64 << 20, SoftBytes: 16 << 20, SoftFor: 30 * time.Second}}
			if !reflect.DeepEqual(c.ClientOutputBufferLimits, want) {
				t.Errorf("limits %+v", c.ClientOutputBufferLimits)
			}
		}},
		{"output limits, CONFIG SET form", []string{"--client-output-buffer-limit", "normal 1gb 512mb 10 PubSub 0 0 0"}, nil, func(t *testing.T, c proxy.Config) {
			want := map[string]proxy.OutputLimit{"normal": {HardBytes: 1 << 30, SoftBytes: 512 << 20, SoftFor: 10 * time.Second}, "pubsub": {}}
			if !reflect.DeepEqual(c.ClientOutputBufferLimits, want) {
				t.Errorf("limits %+v", c.ClientOutputBufferLimits)
			}
		}},
		{"output limits in YAML", []string{"--config", "f"}, map[string]string{"f": "client-output-buffer-limit:\n  - pubsub 1mb 0 0\n"}, func(t *testing.T, c proxy.Config) {
			if got := c.ClientOutputBufferLimits["pubsub"]; got != (proxy.OutputLimit{HardBytes: 1 << 20}) {
				t.Errorf("pubsub %+v", got)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, _, err := buildConfig(append([]string{"--master", "m:1"}, tt.args...), files(tt.files))
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestHardeningFlagErrors(t *testing.T) {
	pki := redistest.NewTLS(t)
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"bad listen", []string{"--listen", "6380"}, `--listen "6380"`},
		{"empty unix path", []string{"--listen", "unix:"}, "no socket path"},
		{"bad yes/no", []string{"--protected-mode", "maybe"}, "want yes or no"},
		{"bad mode", []string{"--unixsocketperm", "999"}, "octal mode"},
		{"replica class", []string{"--client-output-buffer-limit", "replica 256mb 64mb 60"}, "want normal or pubsub"},
		{"short limit", []string{"--client-output-buffer-limit", "pubsub 32mb"}, "class hard soft seconds"},
		{"bad seconds", []string{"--client-output-buffer-limit", "pubsub 32mb 8mb 1m"}, "whole number of seconds"},
		{"negative auth timeout", []string{"--auth-timeout", "-1s"}, "--auth-timeout must not be negative"},
		{"tls listen without cert", []string{"--tls-listen", "127.0.0.1:6390"}, "needs --tls-cert-file"},
		{"client auth without CA", []string{"--tls-listen", "127.0.0.1:6390", "--tls-cert-file", pki.CertFile, "--tls-key-file", pki.KeyFile}, "needs --tls-ca-cert-file"},
		{"bad auth mode", []string{"--tls-auth-clients", "sometimes"}, "must be yes, optional or no"},
		{"cert without key", []string{"--upstream-tls", "--upstream-tls-cert-file", pki.ClientCertFile}, "go together"},
		{"key does not match", []string{"--tls-listen", "127.0.0.1:6390", "--tls-auth-clients", "no", "--tls-cert-file", pki.CertFile, "--tls-key-file", pki.ClientKeyFile}, "--tls-cert-file"},
		{"CA file without PEM", []string{"--upstream-tls", "--upstream-tls-ca-cert-file", pki.KeyFile}, "no PEM certificate"},
		{"missing file", []string{"--upstream-tls", "--upstream-tls-ca-cert-file", "/nonexistent/ca.crt"}, "--upstream-tls-ca-cert-file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := buildConfig(append([]string{"--master", "m:1"}, tt.args...), os.ReadFile)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// handshake runs one TLS handshake over a pipe between a server with
// srvCfg and a client with cliCfg dialing serverName.
func handshake(srvCfg, cliCfg *tls.Config, serverName string) error {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	// A failing side writes its alert while the other still writes its
	// flight: on an unbuffered pipe only a deadline ends that.
	a.SetDeadline(time.Now().Add(2 * time.Second))
	b.SetDeadline(time.Now().Add(2 * time.Second))
	errc := make(chan error, 1)
	go func() { errc <- tls.Server(a, srvCfg).Handshake() }()
	cc := cliCfg.Clone()
	if cc.ServerName == "" {
		cc.ServerName = serverName
	}
	err := tls.Client(b, cc).Handshake()
	a.Close()
	<-errc
	return err
}

// The upstream TLS configuration verifies nodes against its CA and the
// name dialed (an IP included), and a reload (adopt) renews its client
// certificate for clients that kept the same config; a new CA is reported.
func TestUpstreamTLSVerifiesAndReloads(t *testing.T) {
	pki := redistest.NewTLS(t)
	stranger := redistest.NewTLS(t)
	args := []string{"--master", "m:1", "--upstream-tls", "--upstream-tls-ca-cert-file", pki.CAFile,
		"--upstream-tls-cert-file", pki.ClientCertFile, "--upstream-tls-key-file", pki.ClientKeyFile, "--sentinel-tls"}
	cfg, opts, err := buildConfig(args, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.UpstreamTLS == nil || cfg.SentinelTLS != cfg.UpstreamTLS || opts.upstreamTLS == nil {
		t.Fatalf("upstream TLS not configured: %+v", cfg)
	}
	up := cfg.UpstreamTLS
	if err := handshake(pki.ServerConfig(tls.RequireAndVerifyClientCert), up, "127.0.0.1"); err != nil {
		t.Fatalf("trusted node, client certificate required: %v", err)
	}
	if err := handshake(pki.ServerConfig(tls.NoClientCert), up, "10.9.9.9"); err == nil {
		t.Fatal("a certificate for another address was accepted")
	}
	if err := handshake(stranger.ServerConfig(tls.NoClientCert), up, "127.0.0.1"); err == nil {
		t.Fatal("a node signed by an unknown CA was accepted")
	}
	// A node that only accepts a new client certificate: a reload (same
	// *tls.Config, new file) makes the next handshake present it.
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	newCert, err := pki.Issue("renewed client", certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	args[6], args[8] = certFile, keyFile
	_, next, err := buildConfig(args, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	if opts.upstreamTLS.adopt(next.upstreamTLS) {
		t.Fatal("same CA reported as changed")
	}
	onlyNew := pki.ServerConfig(tls.RequireAndVerifyClientCert)
	onlyNew.VerifyPeerCertificate = func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) == 0 || !bytes.Equal(raw[0], newCert.Certificate[0]) {
			return errors.New("not the renewed certificate")
		}
		return nil
	}
	if err := handshake(onlyNew, up, "127.0.0.1"); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	args[4] = stranger.CAFile
	_, other, err := buildConfig(args, os.ReadFile)
	if err != nil {
		t.Fatal(err)
	}
	if !opts.upstreamTLS.adopt(other.upstreamTLS) {
		t.Fatal("a new CA file not reported")
	}
}

func TestClientTLSConfig(t *testing.T) {
	pki := redistest.NewTLS(t)
	for mode, want := range clientAuth {
		args := []string{"--master", "m:1", "--tls-listen", "127.0.0.1:6390", "--tls-cert-file", pki.CertFile,
			"--tls-key-file", pki.KeyFile, "--tls-ca-cert-file", pki.CAFile, "--tls-auth-clients", mode}
		cfg, _, err := buildConfig(args, os.ReadFile)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.TLS == nil || cfg.TLS.ClientAuth != want || len(cfg.TLS.Certificates) != 1 || cfg.TLS.ClientCAs == nil {
			t.Fatalf("%s: TLS config %+v", mode, cfg.TLS)
		}
		if err := handshake(cfg.TLS, pki.ClientConfig(true), "localhost"); err != nil {
			t.Fatalf("%s: handshake: %v", mode, err)
		}
	}
}

// Every proxy.Config field a reload may name has a flag name.
func TestConfigFlagsCoverConfig(t *testing.T) {
	s := defaultSettings()
	fs := newFlagSet(&s, &options{})
	ty := reflect.TypeFor[proxy.Config]()
	for i := range ty.NumField() {
		name := ty.Field(i).Name
		flagName, ok := configFlags[name]
		if !ok && !notReported[name] {
			t.Errorf("proxy.Config.%s has no flag name in configFlags (or add it to notReported)", name)
		}
		if ok && fs.Lookup(flagName) == nil {
			t.Errorf("configFlags[%s] = --%s, which is not a flag", name, flagName)
		}
	}
}

// SIGHUP re-reads the config file: a new password applies to the next
// AUTH, a client already authenticated stays, a bad file changes nothing,
// and PROXY RELOAD does the same on demand.
func TestSIGHUPAndProxyReload(t *testing.T) {
	master := redistest.StartServer(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	file := filepath.Join(t.TempDir(), "replproxy.yaml")
	write := func(body string) {
		if err := os.WriteFile(file, []byte("master: "+master.Addr()+"\nlisten: "+listen+"\nmetrics-listen: \"\"\ndiscover-replicas: false\n"+body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("requirepass: one\n")
	var stdout, stderr lockedBuffer
	code := make(chan int, 1)
	go func() { code <- run([]string{"--config", file, "--log-format", "json"}, &stdout, &stderr) }()
	ctx := context.Background()
	dial := func(pw string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: listen, Password: pw, Protocol: 2, MaxRetries: -1, PoolSize: 1})
		t.Cleanup(func() { c.Close() })
		return c
	}
	old := dial("one")
	deadline := time.Now().Add(10 * time.Second)
	for old.Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("proxy did not serve; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}

	write("requirepass: two\n")
	// Safe: run installed its SIGHUP handler before serving.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for dial("two").Ping(ctx).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("new password not applied after SIGHUP; stderr:\n%s", stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := dial("one").Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("old password after reload: %v", err)
	}
	if err := old.Ping(ctx).Err(); err != nil {
		t.Fatalf("client authenticated before the reload: %v", err)
	}

	write("requirepass: three\nconsistency: sequential\n")
	if err := old.Do(ctx, "PROXY", "RELOAD").Err(); err == nil || !strings.Contains(err.Error(), "reload refused, nothing changed") {
		t.Fatalf("PROXY RELOAD of a bad file = %v", err)
	}
	if err := dial("two").Ping(ctx).Err(); err != nil {
		t.Fatalf("a refused reload changed the password: %v", err)
	}
	write("requirepass: two\nloops: 7\nconsistency: eventual\ncpu-policy: batch\n")
	res, err := old.Do(ctx, "PROXY", "RELOAD").Slice()
	if err != nil || len(res) != 4 || !reflect.DeepEqual(res[1], []any{"consistency"}) || !reflect.DeepEqual(res[3], []any{"loops", "cpu-policy"}) {
		t.Fatalf("PROXY RELOAD = %#v, %v; want consistency applied, loops and cpu-policy needing a restart", res, err)
	}

	terminateRun(t, code, &stderr)
	if !strings.Contains(stderr.String(), "SIGHUP: configuration reloaded") {
		t.Errorf("no reload logged:\n%s", stderr.String())
	}
}

// Protected mode from the command line: exit status 2 and a message that
// says what to do, before anything listens.
func TestRunRefusesUnprotectedListen(t *testing.T) {
	var stdout, stderr lockedBuffer
	code := run([]string{"--master", "127.0.0.1:1", "--listen", "0.0.0.0:0", "--metrics-listen", ""}, &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "protected mode") || !strings.Contains(stderr.String(), "--requirepass") {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
}
