package proxy

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/metrics"
)

// gauge finds one sample of a family by labels.
func sample(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) (*dto.Metric, bool) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue next
				}
			}
			return m, true
		}
	}
	return nil, false
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	}
	return 0
}

func TestMetricsDuringAWorkload(t *testing.T) {
	topo, srv := splitTopology(t, Config{Consistency: "causal"})
	reg := metrics.NewRegistry(srv.Stats)
	ctx := context.Background()
	c := client(t, srv.Addr(), nil)
	stop := make(chan struct{})
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			c.Set(ctx, "mk", i, 0)
			c.Get(ctx, "mk")
			time.Sleep(time.Millisecond)
		}
	}()
	defer close(stop)
	_, replicas := topo.Addrs()
	waitFor(t, "command counters", 10*time.Second, func() bool {
		w, ok1 := sample(t, reg, "replproxy_commands_total", map[string]string{"class": "write", "target": "master"})
		r, ok2 := sample(t, reg, "replproxy_commands_total", map[string]string{"class": "read", "target": "replica"})
		return ok1 && ok2 && value(w) > 0 && value(r) > 0
	})
	for _, name := range []string{"replproxy_command_duration_seconds", "replproxy_clients_connected", "replproxy_backend_up",
		"replproxy_replica_lag_bytes", "replproxy_replica_eligible", "replproxy_master_replication_offset_bytes",
		"replproxy_read_fallbacks_total", "replproxy_read_retries_total", "replproxy_write_gate_rejections_total",
		"replproxy_wait_calls_total", "replproxy_topology_changes_total", "replproxy_stream_connected",
		"replproxy_stream_offset_bytes", "go_goroutines", "process_resident_memory_bytes"} {
		if _, ok := sample(t, reg, name, nil); !ok {
			t.Errorf("series %s missing", name)
		}
	}
	if m, ok := sample(t, reg, "replproxy_stream_connected", nil); !ok || value(m) != 1 {
		t.Errorf("replication link not connected in metrics")
	}

	// Lag rises while a replica is paused, eligibility flips with a reason.
	lag := func() float64 {
		m, ok := sample(t, reg, "replproxy_replica_lag_seconds", map[string]string{"addr": replicas[0]})
		if !ok {
			return -1
		}
		return value(m)
	}
	waitFor(t, "lag known", 10*time.Second, func() bool { return lag() >= 0 })
	topo.Replicas[0].Pause()
	waitFor(t, "lag rising past 300ms while paused", 10*time.Second, func() bool { return lag() > 0.3 })
	waitFor(t, "paused replica ineligible with a reason", 10*time.Second, func() bool {
		m, ok := sample(t, reg, "replproxy_replica_ineligible", map[string]string{"addr": replicas[0], "reason": "unreachable"})
		e, ok2 := sample(t, reg, "replproxy_replica_eligible", map[string]string{"addr": replicas[0]})
		return ok && value(m) == 1 && ok2 && value(e) == 0
	})
	topo.Replicas[0].Resume()
	waitFor(t, "lag falling after resume", 10*time.Second, func() bool { l := lag(); return l >= 0 && l < 0.3 })
	waitFor(t, "eligible again", 10*time.Second, func() bool {
		e, ok := sample(t, reg, "replproxy_replica_eligible", map[string]string{"addr": replicas[0]})
		return ok && value(e) == 1
	})
}

func TestHealthAndReadiness(t *testing.T) {
	topo, srv := splitTopology(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, wait, err := metrics.Listen(ctx, metrics.ServerConfig{Addr: "127.0.0.1:0", Registry: metrics.NewRegistry(srv.Stats), Ready: srv.Readiness})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wait() }()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "/readyz 200", 10*time.Second, func() bool { code, _ := get("/readyz"); return code == 200 })
	topo.Master.Kill()
	waitFor(t, "/readyz 503 with the master down", 10*time.Second, func() bool { code, _ := get("/readyz"); return code == 503 })
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz = %d while the master is down", code)
	}
	_, body := get("/readyz")
	if !strings.Contains(body, "unreachable") {
		t.Fatalf("/readyz body %q does not say why", body)
	}
	topo.Master.Start()
	waitFor(t, "/readyz 200 after the master is back", 15*time.Second, func() bool { code, _ := get("/readyz"); return code == 200 })
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, "replproxy_backend_up") {
		t.Fatalf("/metrics = %d", code)
	}
}

func TestProxyInfoAndInfoSection(t *testing.T) {
	topo, srv := splitTopology(t, Config{})
	ctx := context.Background()
	_, replicas := topo.Addrs()
	for _, proto := range []int{2, 3} {
		c := client(t, srv.Addr(), &redis.Options{Protocol: proto})
		v, err := c.Do(ctx, "PROXY", "INFO").Result()
		if err != nil {
			t.Fatalf("RESP%d PROXY INFO: %v", proto, err)
		}
		var nodes []any
		switch x := v.(type) {
		case map[any]any: // RESP3 map
			nodes, _ = x["nodes"].([]any)
		case []any: // RESP2 flat key/value list
			for i := 0; i+1 < len(x); i += 2 {
				if x[i] == "nodes" {
					nodes, _ = x[i+1].([]any)
				}
			}
		default:
			t.Fatalf("RESP%d PROXY INFO is %T", proto, v)
		}
		if len(nodes) != 3 {
			t.Fatalf("RESP%d PROXY INFO lists %d nodes, want 3: %v", proto, len(nodes), v)
		}
		text := sprint(nodes)
		for _, want := range append([]string{topo.Master.Addr(), "role", "offset", "lag_bytes", "lag_ms", "eligible", "reason"}, replicas...) {
			if !strings.Contains(text, want) {
				t.Errorf("RESP%d PROXY INFO lacks %q: %s", proto, want, text)
			}
		}
		info, err := c.Info(ctx).Result()
		if err != nil || !strings.Contains(info, "# Proxy") || !strings.Contains(info, "role:master") || !strings.Contains(info, "proxy_replicas_eligible:2") {
			t.Fatalf("RESP%d INFO through the proxy lacks the proxy section or role:master: %v\n%s", proto, err, info)
		}
	}
}
