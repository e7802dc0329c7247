package deploy_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/redis/go-redis/v9"

	"github.com/replproxy/replproxy/internal/redistest"
)

// Bounds of the live test's waits. They are deadlines for polls, never
// expectations of speed: the machines running this are shared and slow.
const (
	proxyReadyTimeout = 90 * time.Second
	promReadyTimeout  = 90 * time.Second
	// Long enough for a few scrapes of a workload that has run a while, so
	// that every rate() window of the dashboard holds several samples.
	warmupTimeout = 3 * time.Minute
	// The lag alert has for: 30s and Prometheus evaluates every 5s.
	alertTimeout = 4 * time.Minute
	demoTimeout  = 3 * time.Minute
	httpTimeout  = 5 * time.Second
	pollEvery    = 250 * time.Millisecond
	// The workload is bounded in count and time whatever happens.
	workloadMaxOps   = 40000
	workloadMaxTime  = 12 * time.Minute
	workloadInterval = 20 * time.Millisecond
)

// TestComposeStackLive runs the Compose stack as docker-compose.yml
// describes it, on loopback: a master, two replicas and three Sentinels
// with the stack's redis.conf and sentinel.conf, replproxy with the
// stack's own command line (--sentinel x3, --sentinel-master, no --master)
// and config file, and Prometheus with the stack's prometheus.yml and rules.
// It then proves the dashboard and the alert rules against that live data:
// it fires the lag alert by pausing a replica, and the master-switch alert
// with a Sentinel failover.
func TestComposeStackLive(t *testing.T) {
	runStack(t, []string{composeFile}, true)
}

// TestComposeStackStaticTopology is TestComposeStackLive with the
// docker-compose.static.yml override: the proxy is given the master and
// replicas (--master, --replica) instead of the Sentinels, with the same
// config file. It cannot follow a failover, so it makes none.
func TestComposeStackStaticTopology(t *testing.T) {
	runStack(t, []string{composeFile, "docker-compose.static.yml"}, false)
}

// confDirectives reads a redis.conf-style file: one directive per line,
// comments and blank lines skipped. Quoting is refused rather than guessed:
// the deployment files need none.
func confDirectives(t testing.TB, path string) [][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out [][]string
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.ContainsAny(line, `"'`) {
			t.Fatalf("%s:%d: quoted values are not supported by this test: %s", path, i+1, line)
		}
		out = append(out, strings.Fields(line))
	}
	return out
}

// asArgs turns directives into redis-server argv pieces, which it applies
// after its config file as if they were more lines of it.
func asArgs(ds [][]string) []string {
	var args []string
	for _, d := range ds {
		args = append(args, "--"+d[0])
		args = append(args, d[1:]...)
	}
	return args
}

// placement are the directives that say where a node listens and keeps its
// files: the harness decides those (loopback, a free port, a temp dir).
var placement = []string{"bind", "port", "dir"}

func stackRedis(t *testing.T, p *types.Project) (*redistest.Topology, map[string]string) {
	t.Helper()
	redisConf := hostPath(service(t, p, "redis-master"), "/usr/local/etc/redis/redis.conf")
	var data [][]string
	for _, d := range confDirectives(t, redisConf) {
		if !slices.Contains(placement, strings.ToLower(d[0])) {
			data = append(data, d)
		}
	}
	sentinelConf := hostPath(service(t, p, "sentinel-1"), "/usr/local/etc/redis/sentinel.conf")
	var sent [][]string
	var monitor []string
	for _, d := range confDirectives(t, sentinelConf) {
		switch {
		case slices.Contains(placement, strings.ToLower(d[0])):
		case len(d) >= 2 && d[0] == "sentinel" && d[1] == "monitor":
			monitor = d
		default:
			sent = append(sent, d)
		}
	}
	// The harness writes its own monitor line (the master's loopback
	// address); it must be the file's in all else.
	if want := []string{"sentinel", "monitor", redistest.SentinelMasterName, "redis-master", "6379", strconv.Itoa(len(sentinels)/2 + 1)}; !slices.Equal(monitor, want) {
		t.Fatalf("%s: monitor line %q, want %q (what the harness runs)", sentinelConf, monitor, want)
	}
	topo := redistest.Start(t, redistest.Options{
		Replicas:     len(dataNodes) - 1,
		Sentinels:    len(sentinels),
		Args:         asArgs(data),
		SentinelArgs: asArgs(sent),
	})
	ctx := context.Background()
	// The files' settings are in force: persistence on the master, the
	// Sentinels' timing.
	for _, kv := range [][2]string{{"appendonly", "yes"}, {"appendfsync", "everysec"}} {
		got, err := topo.Master.Client().ConfigGet(ctx, kv[0]).Result()
		if err != nil || got[kv[0]] != kv[1] {
			t.Fatalf("master CONFIG GET %s = %v, %v; want %s (redis.conf)", kv[0], got, err, kv[1])
		}
	}
	m, err := topo.Sentinels[0].Client().Do(ctx, "SENTINEL", "MASTER", redistest.SentinelMasterName).Result()
	if err != nil {
		t.Fatalf("SENTINEL MASTER: %v", err)
	}
	if got := sentinelField(m, "down-after-milliseconds"); got != "5000" {
		t.Fatalf("SENTINEL MASTER %v: want down-after-milliseconds 5000 from sentinel.conf", m)
	}

	// Compose service addresses to loopback ones.
	addrs := map[string]string{"redis-master:6379": topo.Master.Addr()}
	for i, r := range topo.Replicas {
		addrs[dataNodes[i+1]+":6379"] = r.Addr()
	}
	for i, s := range topo.Sentinels {
		addrs[sentinels[i]+":26379"] = s.Addr()
	}
	return topo, addrs
}

// sentinelField reads a field of a SENTINEL MASTER reply: a map in RESP3,
// a flat name/value list in RESP2.
func sentinelField(reply any, name string) string {
	switch r := reply.(type) {
	case map[any]any:
		return fmt.Sprint(r[name])
	case []any:
		for i := 0; i+1 < len(r); i += 2 {
			if fmt.Sprint(r[i]) == name {
				return fmt.Sprint(r[i+1])
			}
		}
	}
	return ""
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// rewriteArgs turns a service's command into one for this machine: Compose
// addresses become loopback ones, paths inside the container become the
// repository files they are mounted from. A token naming another Compose
// service that has no loopback address is an error.
func rewriteArgs(t testing.TB, p *types.Project, s types.ServiceConfig, args []string, addrs map[string]string) []string {
	t.Helper()
	var out []string
	for _, a := range args {
		if v, ok := addrs[a]; ok {
			out = append(out, v)
			continue
		}
		if strings.HasPrefix(a, "/") {
			if h := hostPath(s, a); h != "" {
				out = append(out, h)
				continue
			}
		}
		for name := range p.Services {
			if strings.HasPrefix(a, name+":") {
				t.Fatalf("%s command: %q names service %s, which this test has no address for", s.Name, a, name)
			}
		}
		out = append(out, a)
	}
	return out
}

// runStack runs the stack the Compose files describe; with failover, it
// also has Sentinel fail the master over once the lag alert has fired.
func runStack(t *testing.T, files []string, failover bool) {
	p := loadComposeFiles(t, files...)
	bin := buildImageBinary(t)
	needProgram(t, "redis-cli", "redis-tools")
	promBin := needProgram(t, "prometheus", "prometheus")
	needProgram(t, "wget", "wget") // the health checks of the proxy and Prometheus

	topo, addrs := stackRedis(t, p)

	// replproxy, with the Compose file's command: its config file, and where
	// Redis is. The listen addresses of the file are replaced by loopback
	// ports (flags override the file).
	rp := service(t, p, "replproxy")
	args := rewriteArgs(t, p, rp, rp.Command, addrs)
	proxyAddr, metricsAddr := loopback(freePort(t)), loopback(freePort(t))
	args = append(args, "--listen", proxyAddr, "--metrics-listen", metricsAddr)
	proxy := startProc(t, "replproxy", append([]string{bin}, args...), t.TempDir())
	waitHTTP(t, proxy, "http://"+metricsAddr+"/readyz", proxyReadyTimeout)

	// Prometheus, with the Compose file's command and a copy of its config
	// whose scrape target is the proxy's loopback metrics port.
	promSvc := service(t, p, "prometheus")
	promDir := t.TempDir()
	promCfgPath := hostPath(promSvc, "/etc/prometheus/prometheus.yml")
	promCfg := rewritePromConfig(t, promCfgPath, hostPath(promSvc, "/etc/prometheus/rules"), promDir, metricsAddr)
	promAddr := loopback(freePort(t))
	promArgs := []string{promBin}
	for _, a := range promSvc.Command {
		switch {
		case a == "--config.file=/etc/prometheus/prometheus.yml":
			a = "--config.file=" + promCfg
		case a == "--storage.tsdb.path=/prometheus":
			a = "--storage.tsdb.path=" + filepath.Join(promDir, "data")
		case strings.Contains(a, "=/"):
			t.Fatalf("prometheus command %q: a path this test does not map", a)
		}
		promArgs = append(promArgs, a)
	}
	promArgs = append(promArgs, "--web.listen-address="+promAddr)
	prom := startProc(t, "prometheus", promArgs, promDir)
	waitHTTP(t, prom, "http://"+promAddr+"/-/ready", promReadyTimeout)
	pc := promClient{base: "http://" + promAddr, hc: &http.Client{Timeout: httpTimeout}}

	// A bounded workload through the proxy, and the example app once.
	wl := startWorkload(t, proxyAddr)
	runDemo(t, p, proxyAddr)

	// The Compose health checks pass against the real programs.
	hc := map[string]map[string]string{
		"replproxy":  {"http://127.0.0.1:9121/": "http://" + metricsAddr + "/"},
		"app":        {"-p 6380": "-p " + portOf(proxyAddr)},
		"prometheus": {"http://127.0.0.1:9090/": "http://" + promAddr + "/"},
	}
	hc["redis-master"] = map[string]string{"-p 6379": "-p " + strconv.Itoa(topo.Master.Port())}
	for i, r := range topo.Replicas {
		hc[dataNodes[i+1]] = map[string]string{"-p 6379": "-p " + strconv.Itoa(r.Port())}
	}
	for i, s := range topo.Sentinels {
		hc[sentinels[i]] = map[string]string{"-p 26379": "-p " + strconv.Itoa(s.Port())}
	}
	for name, repl := range hc {
		runHealthcheck(t, service(t, p, name), repl)
	}

	// Prometheus has scraped the proxy for a while, under load.
	prom1 := loadPromConfig(t, promCfgPath)
	scrape, err := time.ParseDuration(prom1.Global.ScrapeInterval)
	if err != nil {
		t.Fatal(err)
	}
	waitQuery(t, pc, `count_over_time(up{job="replproxy"}[2m]) >= 6 and up{job="replproxy"} == 1`, warmupTimeout, prom, proxy)
	waitQuery(t, pc, `sum(increase(replproxy_commands_total{class="write"}[1m])) > 0 and sum(increase(replproxy_commands_total{class="read"}[1m])) > 0`, warmupTimeout, prom, proxy)

	d := loadDashboard(t)
	rules := loadRules(t)
	// Every expression parses and evaluates (an error here is what Grafana
	// or the rule manager would show).
	evalAll := func() map[string]int {
		series := map[string]int{}
		for _, e := range d.exprs() {
			q, err := grafanaToPromQL(e.expr, scrape, d.varNames())
			if err != nil {
				t.Fatalf("%s: %v", e.where, err)
			}
			n, err := pc.count(q)
			if err != nil {
				t.Errorf("dashboard %s: %q: %v", e.where, q, err)
			}
			series[e.where] = n
		}
		for _, r := range rules {
			if _, err := pc.count(r.Expr); err != nil {
				t.Errorf("alert %s: %q: %v", r.Alert, r.Expr, err)
			}
		}
		return series
	}
	evalAll()
	if t.Failed() {
		t.FailNow()
	}

	// Pause a replica: its lag grows (the proxy keeps its last offset while
	// writes go on) until the lag alert fires.
	paused := topo.Replicas[0]
	paused.Pause()
	t.Cleanup(paused.Resume)
	pausedAt := time.Now()
	t.Logf("paused %s; waiting for ReplproxyReplicaLagHigh", paused)
	alert := waitAlert(t, pc, "ReplproxyReplicaLagHigh", map[string]string{"addr": paused.Addr()}, alertTimeout, prom, proxy)
	t.Logf("ReplproxyReplicaLagHigh firing %v after the pause (for: 30s, evaluation every %v)", time.Since(pausedAt).Round(time.Second), prom1.Global.EvaluationInterval)
	if s := alert.Annotations["summary"]; !strings.Contains(s, paused.Addr()) {
		t.Errorf("ReplproxyReplicaLagHigh summary %q does not name the replica", s)
	}

	// A panel must have data at one of the two moments at least: a replica
	// lagging and ineligible (now), or just after a master switch.
	series := []map[string]int{evalAll()}

	if failover {
		// Sentinel fails the master over (the paused replica back first, so
		// that the other one is promoted cleanly); the proxy follows and
		// the switch alert fires.
		paused.Resume()
		failoverAt := time.Now()
		sentinelFailover(t, topo.Sentinels[0])
		waitAlert(t, pc, "ReplproxyMasterSwitched", map[string]string{"cause": "sentinel"}, alertTimeout, prom, proxy)
		t.Logf("ReplproxyMasterSwitched firing %v after SENTINEL FAILOVER", time.Since(failoverAt).Round(time.Second))
		waitQuery(t, pc, `sum(replproxy_master_switch_seconds_count) > 0`, alertTimeout, prom, proxy)
		series = append(series, evalAll())
	}
	allowedEmpty := func(name string) (string, bool) {
		switch {
		case isNotYetBuilt(name):
			return "not yet built", true
		case !failover && isUntilFirstSwitch(name):
			return "no master switch in this run", true
		}
		return "", false
	}
	for _, e := range d.exprs() {
		if e.kind != "panel" || slices.ContainsFunc(series, func(m map[string]int) bool { return m[e.where] > 0 }) {
			continue
		}
		if slices.ContainsFunc(metricNames(e.expr), func(n string) bool { _, ok := allowedEmpty(n); return ok }) {
			t.Logf("no data, as allowed: dashboard %s", e.where)
			continue
		}
		t.Errorf("dashboard %s: no series for %q", e.where, e.expr)
	}
	// Every metric a rule, an annotation or a variable names has series.
	checkNamesHaveSeries := func(where, expr string) {
		for _, n := range metricNames(expr) {
			c, err := pc.count(fmt.Sprintf(`{__name__=%q}`, n))
			why, allowed := allowedEmpty(n)
			switch {
			case err != nil:
				t.Errorf("%s: %s: %v", where, n, err)
			case c == 0 && allowed:
				t.Logf("no data (%s): %s names %s", why, where, n)
			case c == 0:
				t.Errorf("%s names %s, which has no series in Prometheus", where, n)
			}
		}
	}
	for _, r := range rules {
		checkNamesHaveSeries("alert "+r.Alert, r.Expr)
	}
	for _, e := range d.exprs() {
		if e.kind != "panel" {
			checkNamesHaveSeries("dashboard "+e.where, e.expr)
		}
	}

	// The rule manager evaluated every rule without error (a join that
	// matches many-to-many only fails here, at run time).
	states, err := pc.ruleHealth()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rules {
		if h, ok := states[r.Alert]; !ok || h != "ok" {
			t.Errorf("alert %s: rule health %q in Prometheus", r.Alert, h)
		}
	}
	ok, failed := wl.stop()
	t.Logf("workload: %d commands ok, %d failed", ok, failed)
	if ok == 0 {
		t.Errorf("the workload got no command through the proxy")
	}
}

// sentinelFailover asks a Sentinel for a failover, retrying while it has no
// replica it would promote yet (one that was just paused is not good until
// its link has been seen again).
func sentinelFailover(t *testing.T, s *redistest.Node) {
	t.Helper()
	deadline := time.Now().Add(alertTimeout)
	for {
		err := s.Client().Do(context.Background(), "SENTINEL", "FAILOVER", redistest.SentinelMasterName).Err()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
		time.Sleep(pollEvery)
	}
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// waitHTTP polls url until it answers 200, failing at once if p exits.
func waitHTTP(t *testing.T, p *proc, url string, timeout time.Duration) {
	t.Helper()
	hc := &http.Client{Timeout: httpTimeout}
	deadline := time.Now().Add(timeout)
	var last string
	for {
		resp, err := hc.Get(url)
		if err == nil {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = fmt.Sprintf("%s: %s", resp.Status, strings.TrimSpace(string(b)))
		} else {
			last = err.Error()
		}
		if !p.running() {
			t.Fatalf("%s exited (%s) before %s answered 200 (last: %s)\n%s", p.name, p.exitStatus(), url, last, p.logTail())
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not answer 200 within %v (last: %s)\n%s", url, timeout, last, p.logTail())
		}
		time.Sleep(pollEvery)
	}
}

// runHealthcheck runs a service's Compose health check here, with the
// container's addresses replaced as repl says (each must occur).
func runHealthcheck(t *testing.T, s types.ServiceConfig, repl map[string]string) {
	t.Helper()
	test := slices.Clone([]string(s.HealthCheck.Test))
	for from, to := range repl {
		found := false
		for i := range test {
			if strings.Contains(test[i], from) {
				test[i] = strings.ReplaceAll(test[i], from, to)
				found = true
			}
		}
		if !found {
			t.Fatalf("%s health check %q does not contain %q", s.Name, s.HealthCheck.Test, from)
		}
	}
	var argv []string
	switch test[0] {
	case "CMD":
		argv = test[1:]
	case "CMD-SHELL":
		argv = []string{"sh", "-c", strings.Join(test[1:], " ")}
	default:
		t.Fatalf("%s health check %q", s.Name, test)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Errorf("%s health check %q fails against the running stack: %v\n%s", s.Name, argv, err, out)
	}
}

type workload struct {
	cancel   context.CancelFunc
	done     chan struct{}
	ok, fail atomic.Int64
	once     sync.Once
}

// startWorkload writes, reads and WAITs through the proxy until stopped,
// at most workloadMaxOps rounds and workloadMaxTime.
func startWorkload(t *testing.T, addr string) *workload {
	ctx, cancel := context.WithTimeout(context.Background(), workloadMaxTime)
	w := &workload{cancel: cancel, done: make(chan struct{})}
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second})
	count := func(err error) {
		if err != nil && err != redis.Nil {
			w.fail.Add(1)
		} else {
			w.ok.Add(1)
		}
	}
	go func() {
		defer close(w.done)
		defer c.Close()
		tick := time.NewTicker(workloadInterval)
		defer tick.Stop()
		for i := 0; i < workloadMaxOps; i++ {
			key := "deploytest:" + strconv.Itoa(i%100)
			count(c.Set(ctx, key, i, 0).Err())
			count(c.Get(ctx, key).Err())
			if i%25 == 0 {
				count(c.Do(ctx, "WAIT", 1, 50).Err())
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { w.stop() })
	return w
}

func (w *workload) stop() (ok, failed int64) {
	w.once.Do(func() {
		w.cancel()
		<-w.done
	})
	return w.ok.Load(), w.fail.Load()
}

// runDemo runs the Compose stack's example app (its command and
// environment) against the proxy for a bounded number of rounds: every
// write must succeed and every read see it.
func runDemo(t *testing.T, p *types.Project, proxyAddr string) {
	t.Helper()
	app := service(t, p, "app")
	argv := rewriteArgs(t, p, app, app.Command, nil)
	var env []string
	for k, v := range app.Environment {
		if v == nil {
			continue
		}
		val := *v
		if k == "REDIS_PORT" {
			val = portOf(proxyAddr)
		}
		env = append(env, k+"="+val)
	}
	env = append(env, "ROUNDS=30", "INTERVAL=0.05")
	demo := startProc(t, "demo app", argv, t.TempDir(), env...)
	exited, err := demo.wait(demoTimeout)
	if !exited {
		t.Fatalf("the demo app did not finish 30 rounds in %v\n%s", demoTimeout, demo.logTail())
	}
	if err != nil {
		t.Fatalf("the demo app failed (%v)\n%s", err, demo.logTail())
	}
	b, _ := os.ReadFile(demo.logPath)
	t.Logf("demo app: %s", strings.TrimSpace(lastLine(string(b))))
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

type promClient struct {
	base string
	hc   *http.Client
}

func (c promClient) get(path string, q url.Values) (promResult, error) {
	u := c.base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	resp, err := c.hc.Get(u)
	if err != nil {
		return promResult{}, err
	}
	defer resp.Body.Close()
	var r promResult
	if err := json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&r); err != nil {
		return promResult{}, fmt.Errorf("%s: %s: %v", u, resp.Status, err)
	}
	return r, r.err()
}

// count evaluates expr now and returns how many series it returned (1 for
// a scalar).
func (c promClient) count(expr string) (int, error) {
	r, err := c.get("/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return 0, err
	}
	var data struct {
		ResultType string            `json:"resultType"`
		Result     []json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal(r.Data, &data); err != nil {
		// A scalar or string result is [time, value], not a list of series.
		return 1, nil
	}
	return len(data.Result), nil
}

type promAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	State       string            `json:"state"`
}

func (c promClient) alerts() ([]promAlert, error) {
	r, err := c.get("/api/v1/alerts", nil)
	if err != nil {
		return nil, err
	}
	var data struct {
		Alerts []promAlert `json:"alerts"`
	}
	err = json.Unmarshal(r.Data, &data)
	return data.Alerts, err
}

// ruleHealth maps each loaded alerting rule to its health ("ok", "err",
// "unknown").
func (c promClient) ruleHealth() (map[string]string, error) {
	r, err := c.get("/api/v1/rules", nil)
	if err != nil {
		return nil, err
	}
	var data struct {
		Groups []struct {
			Rules []struct {
				Name      string `json:"name"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(r.Data, &data); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, g := range data.Groups {
		for _, rule := range g.Rules {
			out[rule.Name] = rule.Health
			if rule.LastError != "" {
				out[rule.Name] += ": " + rule.LastError
			}
		}
	}
	return out, nil
}

// waitQuery polls until expr returns a series, failing if a process dies.
func waitQuery(t *testing.T, pc promClient, expr string, timeout time.Duration, procs ...*proc) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		n, err := pc.count(expr)
		if err == nil && n > 0 {
			return
		}
		for _, p := range procs {
			if !p.running() {
				t.Fatalf("%s exited (%s) while waiting for %q\n%s", p.name, p.exitStatus(), expr, p.logTail())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q returned nothing within %v (last error: %v)", expr, timeout, err)
		}
		time.Sleep(pollEvery)
	}
}

// waitAlert polls Prometheus until the alert is firing with the labels.
func waitAlert(t *testing.T, pc promClient, name string, labels map[string]string, timeout time.Duration, procs ...*proc) promAlert {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var seen []promAlert
	for {
		as, err := pc.alerts()
		if err == nil {
			seen = as
			for _, a := range as {
				if a.Labels["alertname"] != name || a.State != "firing" {
					continue
				}
				match := true
				for k, v := range labels {
					match = match && a.Labels[k] == v
				}
				if match {
					return a
				}
			}
		}
		for _, p := range procs {
			if !p.running() {
				t.Fatalf("%s exited (%s) while waiting for alert %s\n%s", p.name, p.exitStatus(), name, p.logTail())
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert %s %v not firing within %v (error %v); alerts: %+v", name, labels, timeout, err, seen)
		}
		time.Sleep(pollEvery)
	}
}
