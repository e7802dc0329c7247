package clientlibs

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/replproxy/replproxy/internal/proxytest"
	"github.com/replproxy/replproxy/internal/redistest"
	"github.com/replproxy/replproxy/proxy"
)

const password = "clientlibs-pw"

// target is one side of the comparison: where the library connects, and
// the real Redis nodes behind it (where a script kills connections).
type target struct {
	name  string
	addr  string
	nodes []string
}

type env struct {
	plain, proxied target
}

// requireTool finds a tool the test cannot run without: in CI its absence
// fails the test, elsewhere the test is skipped saying what is missing.
func requireTool(t *testing.T, name, install string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not found in PATH (CI=true: the client library test must run): %s", name, install)
	}
	t.Skipf("%s not found in PATH, skipping the client library test (it fails instead when CI=true): %s", name, install)
	return ""
}

var npmOnce sync.Once

// ensureModules runs npm ci when node_modules is missing (make test does it
// first; this covers `go test` alone).
func ensureModules(t *testing.T) {
	t.Helper()
	requireTool(t, "node", "install Node.js 20 or later")
	npm := requireTool(t, "npm", "install npm (it comes with Node.js)")
	var err error
	var out []byte
	npmOnce.Do(func() {
		if _, statErr := os.Stat(filepath.Join("node_modules", ".package-lock.json")); statErr == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		out, err = cmd.CombinedOutput()
	})
	if err != nil {
		t.Fatalf("npm ci in internal/clientlibs: %v\n%s", err, out)
	}
}

func start(t *testing.T) *env {
	t.Helper()
	plain := redistest.Start(t, redistest.Options{Password: password})
	topo := redistest.Start(t, redistest.Options{Replicas: 2})
	srv := proxytest.Start(t, proxy.Config{Master: topo.Master.Addr(), RequirePass: password})
	waitEligible(t, srv.Addr(), 2)
	master, replicas := topo.Addrs()
	return &env{
		plain:   target{name: "redis", addr: plain.Master.Addr(), nodes: []string{plain.Master.Addr()}},
		proxied: target{name: "replproxy", addr: srv.Addr(), nodes: append([]string{master}, replicas...)},
	}
}

// waitEligible waits until reads can go to n replicas, so that every run
// sees the same topology.
func waitEligible(t *testing.T, addr string, n int) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, Password: password, Protocol: 2})
	defer c.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := c.Do(context.Background(), "PROXY", "TOPOLOGY").Slice()
		if err == nil && strings.Count(fmt.Sprint(r), "eligible 1") >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas never eligible: %v %v", r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// runScript runs one Node script against tg and returns its steps' results.
func runScript(t *testing.T, script string, tg target, extraEnv []string) (map[string]json.RawMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	host, port, _ := strings.Cut(tg.addr, ":")
	cmd := exec.CommandContext(ctx, "node", filepath.Join("js", script))
	cmd.Env = append(os.Environ(),
		"TARGET_HOST="+host, "TARGET_PORT="+port, "TARGET_PASSWORD="+password,
		"NODE_ADDRS="+strings.Join(tg.nodes, ","))
	if tg.name == "redis" {
		cmd.Env = append(cmd.Env, "NODE_PASSWORD="+password) // the proxy's nodes have none
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("node %s against %s: %v\nstderr: %s", script, tg.name, err, stderr.String())
	}
	var res map[string]json.RawMessage
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		return nil, fmt.Errorf("node %s against %s printed no JSON (%v): %q\nstderr: %s", script, tg.name, err, stdout.String(), stderr.String())
	}
	return res, nil
}

// canonical re-encodes a JSON value with sorted object keys.
func canonical(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v) // encoding/json sorts map keys
	return string(b)
}

// compareRuns reports every step whose result differs, and every step the
// plain Redis run could not complete (a broken script proves nothing).
func compareRuns(t *testing.T, plain, proxied map[string]json.RawMessage) {
	t.Helper()
	var names []string
	for n := range plain {
		names = append(names, n)
	}
	for n := range proxied {
		if _, ok := plain[n]; !ok {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		want, got := canonical(plain[n]), canonical(proxied[n])
		if strings.Contains(want, "step timed out") {
			t.Errorf("step %s did not complete on the plain Redis: %s", n, trunc(want))
			continue
		}
		if want != got {
			t.Errorf("step %s differs:\n  redis:     %s\n  replproxy: %s", n, trunc(want), trunc(got))
		}
	}
	t.Logf("%d steps compared", len(names))
}

func trunc(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "...(" + strconv.Itoa(len(s)) + " bytes)"
	}
	return s
}

// libs are the library runs: the script, its package (an npm alias for
// each major version, see package.json) and the protocol asked for.
var libs = []struct {
	name, script string
	env          []string
}{
	{"ioredis5", "ioredis.js", []string{"LIB=ioredis"}},
	{"ioredis6", "ioredis.js", []string{"LIB=ioredis6"}}, // RESP3 by default
	{"node-redis4", "noderedis.js", []string{"LIB=redis4"}},
	{"node-redis5-resp2", "noderedis.js", []string{"LIB=redis5", "RESP=2"}},
	{"node-redis5-resp3", "noderedis.js", []string{"LIB=redis5", "RESP=3"}},
}

// TestClientLibs: each library's common surface gives the same results
// through the proxy as on a plain Redis.
func TestClientLibs(t *testing.T) {
	ensureModules(t)
	e := start(t)
	for _, lib := range libs {
		t.Run(lib.name, func(t *testing.T) {
			extra := append([]string{"KEY_PREFIX=" + lib.name + ":"}, lib.env...)
			var wg sync.WaitGroup
			var plain, proxied map[string]json.RawMessage
			var perr, xerr error
			wg.Add(2)
			go func() { defer wg.Done(); plain, perr = runScript(t, lib.script, e.plain, extra) }()
			go func() { defer wg.Done(); proxied, xerr = runScript(t, lib.script, e.proxied, extra) }()
			wg.Wait()
			if perr != nil || xerr != nil {
				t.Fatalf("%v\n%v", perr, xerr)
			}
			compareRuns(t, plain, proxied)
		})
	}
}
