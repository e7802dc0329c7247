package proxy

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
)

// A reload applies users, the default consistency, limits and allowed
// commands to a running proxy at once, reports what needs a restart, and
// leaves authenticated clients alone.
func TestReloadAppliesLiveSettings(t *testing.T) {
	topo := startTopologyOnly(t)
	cfg := Config{Master: topo.Master.Addr(), RequirePass: "old", MaxPipeline: 1000}
	srv := startProxy(t, cfg)
	ctx := context.Background()
	before := client(t, srv.Addr(), &redis.Options{Password: "old", PoolSize: 1})
	setSlowlog := func() error { return before.Do(ctx, "CONFIG", "SET", "slowlog-max-len", "128").Err() }
	if err := setSlowlog(); err == nil || !strings.Contains(err.Error(), "not allowed through the proxy") {
		t.Fatalf("CONFIG SET before the reload = %v, want denied", err)
	}

	next := cfg
	next.Listen = "127.0.0.1:0" // what startProxy listened on: not reported
	next.RequirePass = "new"
	next.Users = map[string]string{"carol": "c-pw"}
	next.Consistency = "eventual"
	next.AllowCommands = []string{"config|set"}
	next.MaxPipeline = 10
	next.MaxClients = 7
	next.Loops = 1 // not live
	applied, notLive, err := srv.Reload(next)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(applied)
	if want := []string{"AllowCommands", "Consistency", "MaxClients", "MaxPipeline", "RequirePass", "Users"}; !reflect.DeepEqual(applied, want) {
		t.Errorf("applied = %q, want %q", applied, want)
	}
	// MaxDedicatedConns follows MaxClients when 0, but only at start.
	if !reflect.DeepEqual(notLive, []string{"Loops", "MaxDedicatedConns"}) {
		t.Errorf("notLive = %q, want [Loops MaxDedicatedConns]", notLive)
	}

	if err := before.Ping(ctx).Err(); err != nil {
		t.Fatalf("client authenticated before the reload: %v", err)
	}
	if err := client(t, srv.Addr(), &redis.Options{Password: "old"}).Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Fatalf("old password after the reload: %v", err)
	}
	fresh := client(t, srv.Addr(), &redis.Options{Username: "carol", Password: "c-pw"})
	if mode, err := fresh.Do(ctx, "PROXY", "CONSISTENCY").Text(); err != nil || mode != "eventual" {
		t.Fatalf("new connection's consistency = %q, %v", mode, err)
	}
	if err := client(t, srv.Addr(), &redis.Options{Password: "new"}).Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "CONFIG SET to be allowed", 5*time.Second, func() bool { return setSlowlog() == nil })
	// The pipeline bound applies at once: 50 in flight still complete, a
	// dozen at a time.
	pipe := before.Pipeline()
	for range 50 {
		pipe.Incr(ctx, "n")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if srv.live().maxPipeline != 10 || srv.live().maxClients != 7 {
		t.Fatalf("live %+v", srv.live())
	}
}

// An invalid configuration changes nothing and says why.
func TestReloadRefusesBadConfig(t *testing.T) {
	topo := startTopologyOnly(t)
	cfg := Config{Master: topo.Master.Addr(), RequirePass: "pw"}
	srv := startProxy(t, cfg)
	ctx := context.Background()
	before := srv.live()
	bad := []struct {
		name string
		edit func(*Config)
		want string
	}{
		{"unknown consistency", func(c *Config) { c.Consistency = "sequential"; c.RequirePass = "changed" }, "consistency"},
		{"default in users", func(c *Config) { c.Users = map[string]string{"default": "x"} }, "RequirePass"},
		{"bad output class", func(c *Config) { c.ClientOutputBufferLimits = map[string]OutputLimit{"replica": {}} }, "replica"},
		{"no master", func(c *Config) { c.Master = "" }, "master"},
		{"TLS listeners without TLS", func(c *Config) { c.TLSListen = []string{"127.0.0.1:0"} }, ""},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			next := cfg
			tc.edit(&next)
			applied, notLive, err := srv.Reload(next)
			if tc.name == "TLS listeners without TLS" {
				// Listeners are not live: reported, nothing else refused.
				if err != nil || !slices.Contains(notLive, "TLSListen") {
					t.Fatalf("= %q %q %v", applied, notLive, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Reload = %v, want an error naming %q", err, tc.want)
			}
			if applied != nil || srv.live() != before {
				t.Fatalf("a refused reload changed something: applied %q", applied)
			}
		})
	}
	if err := client(t, srv.Addr(), &redis.Options{Password: "pw"}).Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
}

// Protected mode holds on reload: a proxy exposed on a non-loopback
// address cannot drop its last password.
func TestReloadKeepsProtectedMode(t *testing.T) {
	cfg := Config{Master: "127.0.0.1:1", NoReplicationLink: true, Listen: "0.0.0.0:6380", RequirePass: "pw"}
	srv, err := New(cfg) // never served: nothing binds 0.0.0.0
	if err != nil {
		t.Fatal(err)
	}
	next := cfg
	next.RequirePass = ""
	if _, _, err := srv.Reload(next); !errors.Is(err, ErrProxyBadConfig) || !strings.Contains(err.Error(), "protected mode") {
		t.Fatalf("Reload without a password = %v, want protected mode's refusal", err)
	}
	no := false
	next.ProtectedMode = &no
	if _, _, err := srv.Reload(next); err != nil {
		t.Fatalf("with protected mode off: %v", err)
	}
}

// Removing the password lets in, without AUTH, the clients that connected
// while one was required (Redis evaluates the need for AUTH per command).
func TestReloadDroppingThePasswordAuthenticatesEveryone(t *testing.T) {
	topo := startTopologyOnly(t)
	cfg := Config{Master: topo.Master.Addr(), RequirePass: "pw"}
	srv := startProxy(t, cfg)
	r := dialRaw(t, srv.Addr())
	r.send("PING\r\n")
	r.expect("-NOAUTH Authentication required.\r\n")
	cfg.RequirePass = ""
	if _, _, err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.send("PING\r\n")
		got, _ := r.readN(7, 5*time.Second)
		if got == "+PONG\r\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still refused: %q", got)
		}
		time.Sleep(10 * time.Millisecond)
		r.buf = nil
	}
}

// The replicas named in the configuration change live: added ones are
// polled and read from, removed ones leave the topology.
func TestReloadReplicaList(t *testing.T) {
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	master, replicas := topo.Addrs()
	cfg := Config{Master: master, Replicas: replicas, DiscoverReplicas: new(bool), Consistency: "eventual"}
	srv := startProxy(t, cfg)
	waitFor(t, "both replicas listed", 10*time.Second, func() bool { return len(srv.topo.Load().Replicas) == 2 })
	cfg.Replicas = replicas[:1]
	if _, _, err := srv.Reload(cfg); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "one replica left", 10*time.Second, func() bool { return replicaAddrs(srv) == replicas[0] })
	cfg.Replicas = replicas
	applied, _, err := srv.Reload(cfg)
	if err != nil || !slices.Contains(applied, "Replicas") {
		t.Fatalf("Reload = %q, %v", applied, err)
	}
	waitFor(t, "both replicas eligible again", 10*time.Second, func() bool {
		snap := srv.topo.Load()
		n := 0
		for _, r := range snap.Replicas {
			if r.Eligible {
				n++
			}
		}
		return n == 2
	})
}

func replicaAddrs(srv *Server) string {
	var out []string
	for _, r := range srv.topo.Load().Replicas {
		out = append(out, r.Addr)
	}
	return strings.Join(out, ",")
}

// PROXY RELOAD runs the configured Reloader off the loop and answers in
// request order; without one it says what is missing.
func TestProxyReloadCommand(t *testing.T) {
	topo := startTopologyOnly(t)
	var srvp atomic.Pointer[Server]
	base := Config{Master: topo.Master.Addr()}
	calls := 0
	base.Reloader = func() ([]string, []string, error) {
		calls++
		if calls == 2 {
			return nil, nil, errors.New("line 3: bad\nthing")
		}
		srv := srvp.Load()
		next := srv.cfg
		next.Consistency = "strong"
		return srv.Reload(next)
	}
	srv := startProxy(t, base)
	srvp.Store(srv)
	r := dialRaw(t, srv.Addr())
	r.send("PING\r\nPROXY RELOAD\r\nPING\r\n")
	r.expect("+PONG\r\n*4\r\n$7\r\napplied\r\n*1\r\n$11\r\nConsistency\r\n$8\r\nnot_live\r\n*0\r\n+PONG\r\n")
	r.send("PROXY RELOAD\r\n")
	r.expect("-ERR reload refused, nothing changed: line 3: bad thing\r\n")
	if srv.live().consistency.String() != "strong" {
		t.Fatal("first reload not applied")
	}

	plain := startProxy(t, Config{Master: topo.Master.Addr()})
	r2 := dialRaw(t, plain.Addr())
	r2.send("PROXY RELOAD\r\n")
	r2.expect("-ERR replproxy: PROXY RELOAD needs a configuration source")
}
