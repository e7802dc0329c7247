package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Protected mode refuses, at New, to expose an unprotected proxy to the
// network; everything reachable only from this host is fine.
func TestProtectedMode(t *testing.T) {
	no := false
	cases := []struct {
		name    string
		cfg     Config
		refused string // "" = accepted; else the address the error names
	}{
		{"loopback v4", Config{Listen: "127.0.0.1:0"}, ""},
		{"loopback v6", Config{Listen: "[::1]:0"}, ""},
		{"localhost", Config{Listen: "localhost:0"}, ""},
		{"unix socket", Config{ListenAddrs: []string{"unix:/tmp/replproxy-never-bound.sock"}}, ""},
		{"every interface", Config{Listen: "0.0.0.0:6380"}, "0.0.0.0:6380"},
		{"empty host", Config{Listen: ":6380"}, ":6380"},
		{"v6 any", Config{Listen: "[::]:6380"}, "[::]:6380"},
		{"lan address", Config{Listen: "10.1.2.3:6380"}, "10.1.2.3:6380"},
		{"one of several", Config{ListenAddrs: []string{"127.0.0.1:0", "0.0.0.0:6380"}}, "0.0.0.0:6380"},
		{"with requirepass", Config{Listen: "0.0.0.0:6380", RequirePass: "pw"}, ""},
		{"with a user", Config{Listen: "0.0.0.0:6380", Users: map[string]string{"app": "pw"}}, ""},
		{"protected-mode no", Config{Listen: "0.0.0.0:6380", ProtectedMode: &no}, ""},
		{"tls, certificates required", Config{TLSListen: []string{"0.0.0.0:6390"}, TLS: &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert}}, ""},
		{"tls, certificates optional", Config{TLSListen: []string{"0.0.0.0:6390"}, TLS: &tls.Config{ClientAuth: tls.VerifyClientCertIfGiven}}, "0.0.0.0:6390"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Master = "127.0.0.1:1"
			cfg.NoReplicationLink = true
			_, err := New(cfg)
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrProxyBadConfig) || !strings.Contains(err.Error(), "protected mode") ||
				!strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), "--protected-mode no") {
				t.Fatalf("New = %v; want a protected mode error naming %s and what to do", err, tc.refused)
			}
		})
	}
}

func TestListenAddrsRejected(t *testing.T) {
	for _, addrs := range [][]string{{"unix:"}, {"nohostport"}, {"127.0.0.1:0", "127.0.0.1:0"}} {
		_, err := New(Config{Master: "127.0.0.1:1", NoReplicationLink: true, ListenAddrs: addrs})
		if !errors.Is(err, ErrProxyBadConfig) {
			t.Errorf("ListenAddrs %q: New = %v, want ErrProxyBadConfig", addrs, err)
		}
	}
}

// One proxy on TCP and a unix socket: both serve, the socket has the
// configured mode, and a stale socket file from an earlier run is replaced.
func TestListenTCPAndUnixSocket(t *testing.T) {
	topo := startTopologyOnly(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "replproxy.sock")
	// A socket left behind by a process that died without unlinking it.
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close()

	srv := startProxy(t, Config{Master: topo.Master.Addr(), ListenAddrs: []string{"127.0.0.1:0", "unix:" + sock}, UnixSocketPerm: 0o660})
	addrs := srv.Addrs()
	if len(addrs) != 2 || addrs[1] != "unix:"+sock || strings.HasSuffix(addrs[0], ":0") {
		t.Fatalf("Addrs = %q", addrs)
	}
	if srv.Addr() != addrs[0] {
		t.Fatalf("Addr = %q, want the first listener %q", srv.Addr(), addrs[0])
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o660 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket %s: %v %v; want a socket with mode 0660", sock, fi.Mode(), err)
	}
	ctx := context.Background()
	viaTCP := client(t, addrs[0], nil)
	viaUnix := client(t, sock, &redis.Options{Network: "unix"})
	if err := viaUnix.Set(ctx, "k", "over unix", 0).Err(); err != nil {
		t.Fatalf("SET over the unix socket: %v", err)
	}
	if v, err := viaTCP.Get(ctx, "k").Result(); err != nil || v != "over unix" {
		t.Fatalf("GET over TCP = %q, %v", v, err)
	}
}

// A path that exists and is not a socket is never deleted.
func TestListenUnixRefusesToReplaceAFile(t *testing.T) {
	topo := startTopologyOnly(t)
	path := filepath.Join(t.TempDir(), "data")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Master: topo.Master.Addr(), ListenAddrs: []string{"unix:" + path}, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := srv.Serve(ctx); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("Serve = %v, want a refusal", err)
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "precious" {
		t.Fatalf("file changed: %q, %v", b, err)
	}
}
