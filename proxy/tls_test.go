package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/redistest"
)

// tlsClient is a go-redis client of the proxy's TLS listener.
func tlsClient(t *testing.T, addr string, cfg *tls.Config) *redis.Client {
	t.Helper()
	return client(t, addr, &redis.Options{TLSConfig: cfg, MaxRetries: -1, PoolSize: 1})
}

// Clients over TLS, with each --tls-auth-clients mode: a certificate
// signed by the CA is required (yes), checked when given (optional), or not
// asked for (no); a certificate from another CA is refused when checked.
func TestTLSClients(t *testing.T) {
	topo := startTopologyOnly(t)
	pki := redistest.NewTLS(t)
	stranger := redistest.NewTLS(t) // another CA: its certificate is not ours
	strangerCfg := pki.ClientConfig(false)
	strangerCfg.Certificates = []tls.Certificate{stranger.ClientCert}
	cases := []struct {
		mode                         tls.ClientAuthType
		noCert, ownCert, strangeCert bool // accepted?
	}{
		{tls.RequireAndVerifyClientCert, false, true, false},
		{tls.VerifyClientCertIfGiven, true, true, false},
		{tls.NoClientCert, true, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.mode.String(), func(t *testing.T) {
			srv := startProxy(t, Config{Master: topo.Master.Addr(), TLSListen: []string{"127.0.0.1:0"}, TLS: pki.ServerConfig(tc.mode)})
			addr := srv.TLSAddrs()[0]
			ctx := context.Background()
			for _, c := range []struct {
				name string
				cfg  *tls.Config
				ok   bool
			}{
				{"no certificate", pki.ClientConfig(false), tc.noCert},
				{"our certificate", pki.ClientConfig(true), tc.ownCert},
				{"another CA's certificate", strangerCfg, tc.strangeCert},
			} {
				cl := tlsClient(t, addr, c.cfg)
				err := cl.Set(ctx, "tls:"+c.name, c.name, 0).Err()
				if c.ok && err != nil {
					t.Fatalf("%s: refused: %v", c.name, err)
				}
				if !c.ok && err == nil {
					t.Fatalf("%s: accepted", c.name)
				}
				if c.ok {
					if v, err := cl.Get(ctx, "tls:"+c.name).Result(); err != nil || v != c.name {
						t.Fatalf("%s: GET = %q, %v", c.name, v, err)
					}
				}
			}
			// The plaintext listener still serves next to the TLS one.
			if err := client(t, srv.Addr(), nil).Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// A pipeline over TLS comes back complete and in order, large values too
// (they cross many TLS records and the relay's buffers).
func TestTLSPipelineAndLargeValues(t *testing.T) {
	topo := startTopologyOnly(t)
	pki := redistest.NewTLS(t)
	srv := startProxy(t, Config{Master: topo.Master.Addr(), TLSListen: []string{"127.0.0.1:0"}, TLS: pki.ServerConfig(tls.NoClientCert)})
	cl := tlsClient(t, srv.TLSAddrs()[0], pki.ClientConfig(false))
	ctx := context.Background()
	big := strings.Repeat("0123456789abcdef", 1<<16) // 1 MiB
	pipe := cl.Pipeline()
	var gets []*redis.StringCmd
	for i := range 2000 {
		k := "tp" + strconv.Itoa(i)
		v := strconv.Itoa(i)
		if i%500 == 0 {
			v = big + v
		}
		pipe.Set(ctx, k, v, 0)
		gets = append(gets, pipe.Get(ctx, k))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	for i, g := range gets {
		want := strconv.Itoa(i)
		if i%500 == 0 {
			want = big + want
		}
		if g.Val() != want {
			t.Fatalf("GET tp%d = %d bytes, want %d", i, len(g.Val()), len(want))
		}
	}
}

// New certificates apply to the next handshake; connections made with the
// old ones keep working.
func TestTLSCertificateReloadKeepsConnections(t *testing.T) {
	topo := startTopologyOnly(t)
	oldPKI, newPKI := redistest.NewTLS(t), redistest.NewTLS(t)
	cfg := Config{Master: topo.Master.Addr(), TLSListen: []string{"127.0.0.1:0"}, TLS: oldPKI.ServerConfig(tls.NoClientCert)}
	srv := startProxy(t, cfg)
	addr := srv.TLSAddrs()[0]
	ctx := context.Background()
	before := tlsClient(t, addr, oldPKI.ClientConfig(false))
	if err := before.Set(ctx, "k", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}

	cfg.TLS = newPKI.ServerConfig(tls.NoClientCert)
	applied, _, err := srv.Reload(cfg)
	if err != nil || !strings.Contains(strings.Join(applied, ","), "TLS") {
		t.Fatalf("Reload = %v, %v; want TLS applied", applied, err)
	}
	if err := before.Incr(ctx, "k").Err(); err != nil {
		t.Fatalf("connection made before the reload: %v", err)
	}
	if err := tlsClient(t, addr, oldPKI.ClientConfig(false)).Ping(ctx).Err(); err == nil {
		t.Fatal("a client trusting only the old CA still accepted the new certificate")
	}
	if err := tlsClient(t, addr, newPKI.ClientConfig(false)).Ping(ctx).Err(); err != nil {
		t.Fatalf("new certificate: %v", err)
	}
}

// Connections that open TCP to the TLS port and never handshake are closed
// at the auth timeout and do not hold up real TLS clients.
func TestTLSHandshakeTimeout(t *testing.T) {
	topo := startTopologyOnly(t)
	pki := redistest.NewTLS(t)
	srv := startProxy(t, Config{Master: topo.Master.Addr(), TLSListen: []string{"127.0.0.1:0"},
		TLS: pki.ServerConfig(tls.NoClientCert), AuthTimeout: 300 * time.Millisecond})
	addr := srv.TLSAddrs()[0]
	var silent []net.Conn
	for range 200 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		silent = append(silent, c)
	}
	if err := tlsClient(t, addr, pki.ClientConfig(false)).Ping(context.Background()).Err(); err != nil {
		t.Fatalf("TLS client among silent connections: %v", err)
	}
	for i, c := range silent {
		if err := waitClosed(c, 10*time.Second); err != nil {
			t.Fatalf("silent connection %d not closed: %v", i, err)
		}
	}
}

// startTLSNode starts a redis-server serving TLS on a second port (its
// plaintext port stays for the harness) with extra args, and returns the
// node and its TLS address.
func startTLSNode(t *testing.T, pki *redistest.TLS, args ...string) (*redistest.Node, string) {
	t.Helper()
	port := redistest.FreePort(t)
	n := redistest.StartServer(t, append(pki.RedisArgs(port), args...)...)
	return n, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
}

// Upstream TLS against real TLS Redis nodes: the proxy reaches the master
// only on its TLS port, for the data path and for its own replication link
// (Redis's tls-replication), and the replica follows the master over TLS.
// The control plane polls the master over TLS too: it must see it
// reachable, with its replica.
func TestUpstreamTLS(t *testing.T) {
	pki := redistest.NewTLS(t)
	master, masterTLS := startTLSNode(t, pki)
	_, masterPort, _ := net.SplitHostPort(masterTLS)
	replica, _ := startTLSNode(t, pki, "--replicaof", "127.0.0.1", masterPort)
	(&redistest.Topology{Master: master, Replicas: []*redistest.Node{replica}}).WaitSynced(t, 20*time.Second)

	// No ServerName: the proxy checks the node's certificate against the
	// address it dials (127.0.0.1 is in the certificate).
	up := &tls.Config{RootCAs: pki.CAPool, Certificates: []tls.Certificate{pki.ClientCert}}
	srv := startProxy(t, Config{Master: masterTLS, UpstreamTLS: up, DiscoverReplicas: new(bool), Consistency: "strong"})
	ctx := context.Background()
	c := client(t, srv.Addr(), nil)
	for i := range 100 {
		if err := c.Set(ctx, "up"+strconv.Itoa(i), i, 0).Err(); err != nil {
			t.Fatalf("SET through the proxy to a TLS master: %v", err)
		}
	}
	if v, err := c.Get(ctx, "up99").Result(); err != nil || v != "99" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	// Blocking commands and pub/sub use dedicated TLS connections.
	if err := c.Do(ctx, "BLPOP", "nothing", "0.01").Err(); err != redis.Nil {
		t.Fatalf("BLPOP = %v", err)
	}
	mOff := func() int64 {
		n, _ := strconv.ParseInt(master.Info(t, "replication")["master_repl_offset"], 10, 64)
		return n
	}
	want := mOff()
	waitFor(t, "the replication link to follow the TLS master", 20*time.Second, func() bool {
		return srv.link.Connected() && srv.link.Offset() >= want
	})
	if v, err := replica.Client().Get(ctx, "up99").Result(); err != nil || v != "99" {
		t.Fatalf("replica (over TLS replication) has %q, %v", v, err)
	}
	if snap := srv.topo.Load(); snap == nil || !snap.Master.Reachable {
		t.Fatalf("the topology monitor does not reach the TLS master: %+v", snap)
	}

	// The wrong CA is refused: the proxy verifies the nodes it talks to.
	other := redistest.NewTLS(t)
	bad := startProxy(t, Config{Master: masterTLS, UpstreamTLS: &tls.Config{RootCAs: other.CAPool},
		DiscoverReplicas: new(bool), NoReplicationLink: true, ConnectTimeout: time.Second})
	err := client(t, bad.Addr(), &redis.Options{MaxRetries: -1}).Set(ctx, "x", 1, 0).Err()
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("SET through a proxy that cannot verify the master = %v, want a certificate error", err)
	}
}

// The control plane over TLS: a Sentinel reached only on its TLS port,
// nodes reached only on theirs. The proxy follows the Sentinel's master,
// discovers the replica the master lists (it announces its TLS port), and
// after SENTINEL FAILOVER writes reach the promoted node, witnessed by the
// replication link, which follows it over TLS too.
func TestUpstreamTLSSentinel(t *testing.T) {
	t.Parallel()
	pki := redistest.NewTLS(t)
	master, masterTLS := startTLSNode(t, pki)
	_, mp, _ := net.SplitHostPort(masterTLS)
	replica, replicaTLS := startTLSNode(t, pki, "--replicaof", "127.0.0.1", mp)
	(&redistest.Topology{Master: master, Replicas: []*redistest.Node{replica}}).WaitSynced(t, 20*time.Second)
	masterPort, _ := strconv.Atoi(mp)
	sentinel, sentinelTLS := pki.StartSentinel(t, masterPort)

	up := &tls.Config{RootCAs: pki.CAPool, Certificates: []tls.Certificate{pki.ClientCert}}
	srv := startProxy(t, Config{Sentinels: []string{sentinelTLS}, SentinelMaster: redistest.SentinelMasterName,
		UpstreamTLS: up, SentinelTLS: up, Consistency: "strong"})
	ctx := context.Background()
	waitFor(t, "the proxy to follow the master the TLS Sentinel names", 20*time.Second, func() bool {
		return srv.mon.Master() == masterTLS
	})
	waitFor(t, "the replica the master lists, on its TLS port, to be eligible", 20*time.Second, func() bool {
		snap := srv.topo.Load()
		return snap != nil && len(snap.Replicas) == 1 && snap.Replicas[0].Addr == replicaTLS && snap.Replicas[0].Eligible
	})
	c := client(t, srv.Addr(), nil)
	if err := c.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatalf("SET before the failover: %v", err)
	}
	// The Sentinel must know the replica before it can promote it.
	waitFor(t, "the Sentinel to list the replica", 20*time.Second, func() bool {
		r, err := sentinel.Client().Do(ctx, "SENTINEL", "REPLICAS", redistest.SentinelMasterName).Slice()
		return err == nil && len(r) == 1
	})
	// Listed is not yet suitable: the Sentinel also needs a fresh INFO
	// from the replica itself (NOGOODSLAVE until then).
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		err := sentinel.Client().Do(ctx, "SENTINEL", "FAILOVER", redistest.SentinelMasterName).Err()
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "NOGOODSLAVE") || time.Now().After(deadline) {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
	}
	waitFor(t, "the proxy to follow the promoted replica", 30*time.Second, func() bool {
		return srv.mon.Master() == replicaTLS
	})
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if err = c.Set(ctx, "after", "2", 0).Err(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("SET after the failover: %v", err)
	}
	if v, err := replica.Client().Get(ctx, "after").Result(); err != nil || v != "2" {
		t.Fatalf("the promoted node has after=%q, %v", v, err)
	}
	if v, err := c.Get(ctx, "before").Result(); err != nil || v != "1" {
		t.Fatalf("GET before = %q, %v", v, err)
	}
	waitFor(t, "the replication link to follow the new master over TLS", 20*time.Second, func() bool {
		return srv.link.Connected() && srv.link.Master() == replicaTLS
	})
}
