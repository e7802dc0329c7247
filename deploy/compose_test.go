package deploy_test

import (
	"context"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

const composeFile = "docker-compose.yml"

// The services the Compose stack must have, and which of them are Redis
// data nodes and Sentinels.
var (
	dataNodes    = []string{"redis-master", "redis-replica-1", "redis-replica-2"}
	sentinels    = []string{"sentinel-1", "sentinel-2", "sentinel-3"}
	wantServices = slices.Concat(dataNodes, sentinels, []string{"replproxy", "app", "prometheus", "grafana"})
)

// loadCompose loads docker-compose.yml with compose-go, as `docker compose`
// does: interpolation (with no environment, so the file's own defaults),
// normalisation, path resolution and its consistency checks (every
// depends_on, network and volume a service names must exist).
func loadCompose(t testing.TB) *types.Project {
	t.Helper()
	return loadComposeFiles(t, composeFile)
}

// loadComposeFiles loads a Compose file with overrides, as
// `docker compose -f a -f b` does.
func loadComposeFiles(t testing.TB, files ...string) *types.Project {
	t.Helper()
	opts, err := cli.NewProjectOptions(files,
		cli.WithWorkingDirectory("."),
		cli.WithEnv(nil),
		cli.WithResolvedPaths(true),
		cli.WithConsistency(true),
	)
	if err != nil {
		t.Fatalf("compose-go options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("compose-go cannot load %v: %v", files, err)
	}
	return p
}

func service(t testing.TB, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("%s: no service %q", composeFile, name)
	}
	return s
}

// hostPath maps a path inside a service's container to the file it is
// bind-mounted from, or "" when no bind mount covers it.
func hostPath(s types.ServiceConfig, containerPath string) string {
	for _, v := range s.Volumes {
		if v.Type != types.VolumeTypeBind {
			continue
		}
		if containerPath == v.Target {
			return v.Source
		}
		if rest, ok := strings.CutPrefix(containerPath, v.Target+"/"); ok {
			return filepath.Join(v.Source, rest)
		}
	}
	return ""
}

func TestComposeFile(t *testing.T) {
	p := loadCompose(t)
	if p.Name != "replproxy" {
		t.Errorf("project name %q, want replproxy", p.Name)
	}
	if got := slices.Sorted(maps.Keys(p.Services)); !slices.Equal(got, slices.Sorted(slices.Values(wantServices))) {
		t.Fatalf("services %v, want %v", got, slices.Sorted(slices.Values(wantServices)))
	}
	repoRoot, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range wantServices {
		s := p.Services[name]
		t.Run(name, func(t *testing.T) {
			// Health checks, so that depends_on conditions can wait for them.
			if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 {
				t.Errorf("no health check")
			} else if k := s.HealthCheck.Test[0]; k != "CMD" && k != "CMD-SHELL" {
				t.Errorf("health check test %q: want CMD or CMD-SHELL", s.HealthCheck.Test)
			}
			for dep, d := range s.DependsOn {
				ds, ok := p.Services[dep]
				if !ok {
					t.Errorf("depends_on %q: no such service", dep)
					continue
				}
				switch d.Condition {
				case types.ServiceConditionHealthy:
					if ds.HealthCheck == nil || ds.HealthCheck.Disable {
						t.Errorf("depends_on %s: service_healthy but %s has no health check", dep, dep)
					}
				case types.ServiceConditionStarted:
				default:
					t.Errorf("depends_on %s: condition %q", dep, d.Condition)
				}
			}
			// Config files are mounted read-only from the repository, and
			// every mounted file or directory exists; state lives in named
			// volumes the file declares.
			for _, v := range s.Volumes {
				switch v.Type {
				case types.VolumeTypeBind:
					if !v.ReadOnly {
						t.Errorf("bind mount %s -> %s is writable: config files are mounted :ro", v.Source, v.Target)
					}
					if _, err := os.Stat(v.Source); err != nil {
						t.Errorf("bind mount source: %v", err)
					}
					if !strings.HasPrefix(v.Source, filepath.Join(repoRoot, "deploy")+string(filepath.Separator)) {
						t.Errorf("bind mount source %s is outside deploy/", v.Source)
					}
				case types.VolumeTypeVolume:
					if _, ok := p.Volumes[v.Source]; !ok {
						t.Errorf("named volume %q is not declared", v.Source)
					}
				default:
					t.Errorf("volume %s -> %s of type %s", v.Source, v.Target, v.Type)
				}
			}
			if s.Image == "" {
				t.Errorf("no image")
			}
			if s.Restart != "unless-stopped" {
				t.Errorf("restart %q, want unless-stopped", s.Restart)
			}
		})
	}

	// Redis state is in named volumes, one per node.
	for _, name := range slices.Concat(dataNodes, sentinels) {
		s := p.Services[name]
		var data *types.ServiceVolumeConfig
		for i, v := range s.Volumes {
			if v.Target == "/data" {
				data = &s.Volumes[i]
			}
		}
		if data == nil || data.Type != types.VolumeTypeVolume || data.Source != name+"-data" {
			t.Errorf("%s: /data is not the named volume %s-data: %+v", name, name, data)
		}
	}

	// Start order: master, replicas, Sentinels, proxy, app; Grafana after
	// Prometheus.
	wantHealthy := map[string][]string{
		"redis-replica-1": {"redis-master"},
		"redis-replica-2": {"redis-master"},
		"replproxy":       sentinels,
		"app":             {"replproxy"},
		"grafana":         {"prometheus"},
	}
	for _, s := range sentinels {
		wantHealthy[s] = dataNodes
	}
	for name, deps := range wantHealthy {
		for _, dep := range deps {
			if d, ok := p.Services[name].DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s must depend on %s with condition service_healthy, has %+v", name, dep, p.Services[name].DependsOn)
			}
		}
	}

	// The image builds from deploy/Dockerfile with the repository as context.
	rp := p.Services["replproxy"]
	switch {
	case rp.Build == nil:
		t.Errorf("replproxy: no build section")
	case rp.Build.Context != repoRoot:
		t.Errorf("replproxy: build context %s, want the repository root %s", rp.Build.Context, repoRoot)
	case rp.Build.Dockerfile != "deploy/Dockerfile":
		t.Errorf("replproxy: build dockerfile %q, want deploy/Dockerfile", rp.Build.Dockerfile)
	default:
		if _, err := os.Stat(filepath.Join(rp.Build.Context, rp.Build.Dockerfile)); err != nil {
			t.Errorf("replproxy: %v", err)
		}
		if v := rp.Build.Args["VERSION"]; v == nil || *v != "dev" {
			t.Errorf("replproxy: build arg VERSION = %v, want the ${REPLPROXY_VERSION:-dev} default", v)
		}
	}
	// The proxy follows Sentinel; its config is mounted where the image's
	// CMD looks for it.
	cmd := strings.Join(rp.Command, " ")
	for _, s := range sentinels {
		if !strings.Contains(cmd, "--sentinel "+s+":26379") {
			t.Errorf("replproxy command %q lacks --sentinel %s:26379", cmd, s)
		}
	}
	if !strings.Contains(cmd, "--sentinel-master mymaster") || strings.Contains(cmd, "--master ") {
		t.Errorf("replproxy command %q: want --sentinel-master mymaster and no --master", cmd)
	}
	if hostPath(rp, "/etc/replproxy/replproxy.yaml") == "" {
		t.Errorf("replproxy: /etc/replproxy/replproxy.yaml is not mounted")
	}
	if len(rp.Ports) != 0 {
		t.Errorf("replproxy publishes ports %v: the client port is for the app's namespace only", rp.Ports)
	}
	if !rp.ReadOnly || !slices.Contains(rp.CapDrop, "ALL") {
		t.Errorf("replproxy: want read_only and cap_drop ALL")
	}
	if _, ok := rp.Networks["redis"]; !ok {
		t.Errorf("replproxy is not on the redis network")
	}
	if _, ok := rp.Networks["monitoring"]; !ok {
		t.Errorf("replproxy is not on the monitoring network")
	}

	// The sidecar: the app shares the proxy's network namespace and knows
	// the proxy's loopback address only.
	app := p.Services["app"]
	if app.NetworkMode != "service:replproxy" {
		t.Errorf("app network_mode %q, want service:replproxy", app.NetworkMode)
	}
	if len(app.Networks) != 0 || len(app.Ports) != 0 {
		t.Errorf("app has networks %v / ports %v of its own", app.Networks, app.Ports)
	}
	for k, v := range app.Environment {
		if v != nil && (strings.Contains(*v, "redis-") || strings.Contains(*v, "sentinel")) {
			t.Errorf("app environment %s=%s names a Redis node", k, *v)
		}
	}
	if h, pt := app.Environment["REDIS_HOST"], app.Environment["REDIS_PORT"]; h == nil || *h != "127.0.0.1" || pt == nil || *pt != "6380" {
		t.Errorf("app must be pointed at 127.0.0.1:6380, has %v", app.Environment)
	}

	// Prometheus and Grafana reach no Redis node.
	for _, name := range []string{"prometheus", "grafana"} {
		if _, ok := p.Services[name].Networks["redis"]; ok {
			t.Errorf("%s is on the redis network", name)
		}
	}
	for _, name := range slices.Concat(dataNodes, sentinels) {
		if len(p.Services[name].Ports) != 0 {
			t.Errorf("%s publishes ports to the host", name)
		}
	}
}

// TestComposeStaticOverride: the override only replaces the proxy's
// command, naming the master and both replicas.
func TestComposeStaticOverride(t *testing.T) {
	base := loadCompose(t)
	p := loadComposeFiles(t, composeFile, "docker-compose.static.yml")
	cmd := strings.Join(p.Services["replproxy"].Command, " ")
	want := "--config /etc/replproxy/replproxy.yaml --master redis-master:6379 --replica redis-replica-1:6379 --replica redis-replica-2:6379"
	if cmd != want {
		t.Errorf("replproxy command %q, want %q", cmd, want)
	}
	for name, s := range p.Services {
		b := base.Services[name]
		if name == "replproxy" {
			b.Command = s.Command
		}
		if !reflect.DeepEqual(s, b) {
			t.Errorf("the override changes service %s beyond the proxy's command", name)
		}
	}
}
