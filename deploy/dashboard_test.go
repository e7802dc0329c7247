package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const (
	dashboardFile   = "grafana/dashboards/replproxy.json"
	datasourceFile  = "grafana/provisioning/datasources/prometheus.yml"
	dashProviderDir = "grafana/provisioning/dashboards"
)

type dsRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type dashTarget struct {
	Datasource *dsRef `json:"datasource"`
	RefID      string `json:"refId"`
	Expr       string `json:"expr"`
}

type dashPanel struct {
	ID         int          `json:"id"`
	Type       string       `json:"type"`
	Title      string       `json:"title"`
	Datasource *dsRef       `json:"datasource"`
	Targets    []dashTarget `json:"targets"`
	Panels     []dashPanel  `json:"panels"` // a collapsed row's
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
}

type dashboard struct {
	UID           string      `json:"uid"`
	Title         string      `json:"title"`
	SchemaVersion int         `json:"schemaVersion"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string `json:"name"`
			Type       string `json:"type"`
			Datasource *dsRef `json:"datasource"`
			Definition string `json:"definition"`
			Query      any    `json:"query"` // a string or {query: ...}
		} `json:"list"`
	} `json:"templating"`
	Annotations struct {
		List []struct {
			Name       string `json:"name"`
			BuiltIn    int    `json:"builtIn"`
			Datasource *dsRef `json:"datasource"`
			Expr       string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
}

func loadDashboard(t testing.TB) dashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(b)))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// dashExpr is one PromQL expression of the dashboard and where it is.
type dashExpr struct {
	where string
	kind  string // "panel", "annotation" or "variable"
	expr  string
}

var labelValuesQuery = regexp.MustCompile(`^label_values\(\s*(.+?)\s*,\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$`)

// exprs lists every query of the dashboard: panel targets (rows' nested
// panels included), annotation queries, and variable queries; a Grafana
// label_values(metric, label) becomes the PromQL that has the same series.
func (d dashboard) exprs() []dashExpr {
	var out []dashExpr
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			for _, tg := range p.Targets {
				out = append(out, dashExpr{fmt.Sprintf("panel %q target %s", p.Title, tg.RefID), "panel", tg.Expr})
			}
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 0 {
			out = append(out, dashExpr{fmt.Sprintf("annotation %q", a.Name), "annotation", a.Expr})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := v.Definition
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		} else if s, ok := v.Query.(string); ok {
			q = s
		}
		if v.Definition != "" && v.Definition != q {
			// Grafana shows the definition and runs the query: both are checked.
			out = append(out, dashExpr{fmt.Sprintf("variable %q definition", v.Name), "variable", v.Definition})
		}
		if m := labelValuesQuery.FindStringSubmatch(q); m != nil {
			q = fmt.Sprintf("count by (%s) (%s)", m[2], m[1])
		}
		out = append(out, dashExpr{fmt.Sprintf("variable %q", v.Name), "variable", q})
	}
	return out
}

var grafanaVar = regexp.MustCompile(`\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?`)

// grafanaToPromQL replaces Grafana's variables by what Grafana would send:
// $__rate_interval is four scrape intervals at the least, $__interval the
// scrape interval (the datasource's timeInterval), $__range the dashboard's
// range, and $instance "All" (the regex .*). An unknown variable is an error:
// Grafana would send it to Prometheus verbatim.
func grafanaToPromQL(expr string, scrape time.Duration, vars []string) (string, error) {
	var bad []string
	out := grafanaVar.ReplaceAllStringFunc(expr, func(m string) string {
		name := grafanaVar.FindStringSubmatch(m)[1]
		switch {
		case name == "__rate_interval":
			return model(4 * scrape)
		case name == "__interval":
			return model(scrape)
		case name == "__range":
			return "5m"
		case slices.Contains(vars, name):
			return ".*"
		}
		bad = append(bad, m)
		return m
	})
	if len(bad) > 0 {
		return "", fmt.Errorf("unknown Grafana variables %v in %q", bad, expr)
	}
	return out, nil
}

// model writes a duration as PromQL does (whole seconds here).
func model(d time.Duration) string { return fmt.Sprintf("%ds", int(d.Seconds())) }

func (d dashboard) varNames() []string {
	var names []string
	for _, v := range d.Templating.List {
		names = append(names, v.Name)
	}
	return names
}

type grafanaDatasources struct {
	APIVersion  int `yaml:"apiVersion"`
	Datasources []struct {
		Name     string         `yaml:"name"`
		UID      string         `yaml:"uid"`
		Type     string         `yaml:"type"`
		URL      string         `yaml:"url"`
		Access   string         `yaml:"access"`
		JSONData map[string]any `yaml:"jsonData"`
	} `yaml:"datasources"`
}

func TestGrafanaProvisioning(t *testing.T) {
	b, err := os.ReadFile(datasourceFile)
	if err != nil {
		t.Fatal(err)
	}
	var ds grafanaDatasources
	if err := yaml.Unmarshal(b, &ds); err != nil {
		t.Fatalf("%s: %v", datasourceFile, err)
	}
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		t.Fatalf("%s: want apiVersion 1 and one datasource, have %+v", datasourceFile, ds)
	}
	src := ds.Datasources[0]
	if src.Type != "prometheus" || src.UID == "" || src.Access != "proxy" {
		t.Errorf("datasource %+v: want type prometheus, a uid, access proxy", src)
	}
	// The URL names the Compose service, on a network Grafana shares, at
	// the port Prometheus listens on (its default, 9090, as the health check
	// and the published port say).
	p := loadCompose(t)
	if src.URL != "http://prometheus:9090" {
		t.Errorf("datasource url %q, want http://prometheus:9090", src.URL)
	}
	shared := false
	for n := range p.Services["grafana"].Networks {
		if _, ok := p.Services["prometheus"].Networks[n]; ok {
			shared = true
		}
	}
	if !shared {
		t.Errorf("grafana and prometheus share no network")
	}
	prom := loadPromConfig(t, "prometheus/prometheus.yml")
	if got := fmt.Sprint(src.JSONData["timeInterval"]); got != prom.Global.ScrapeInterval {
		t.Errorf("datasource timeInterval %q, Prometheus scrape_interval %q: $__rate_interval would not fit the scrapes", got, prom.Global.ScrapeInterval)
	}

	// The dashboard provider reads the directory the dashboard is mounted
	// in, and the provisioning directory is mounted where Grafana reads it.
	g := p.Services["grafana"]
	if hostPath(g, "/etc/grafana/provisioning/datasources/prometheus.yml") == "" {
		t.Errorf("grafana: provisioning is not mounted at /etc/grafana/provisioning")
	}
	entries, err := os.ReadDir(dashProviderDir)
	if err != nil {
		t.Fatal(err)
	}
	providers := 0
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dashProviderDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		var pv struct {
			APIVersion int `yaml:"apiVersion"`
			Providers  []struct {
				Name    string `yaml:"name"`
				Type    string `yaml:"type"`
				Options struct {
					Path string `yaml:"path"`
				} `yaml:"options"`
			} `yaml:"providers"`
		}
		if err := yaml.Unmarshal(b, &pv); err != nil {
			t.Fatalf("%s: %v", e.Name(), err)
		}
		if pv.APIVersion != 1 {
			t.Errorf("%s: apiVersion %d", e.Name(), pv.APIVersion)
		}
		for _, prov := range pv.Providers {
			providers++
			if prov.Type != "file" {
				t.Errorf("provider %s: type %q", prov.Name, prov.Type)
			}
			host := hostPath(g, filepath.Join(prov.Options.Path, filepath.Base(dashboardFile)))
			if host == "" {
				t.Errorf("provider %s: %s is not a directory the grafana service mounts", prov.Name, prov.Options.Path)
				continue
			}
			if want, _ := filepath.Abs(dashboardFile); host != want {
				t.Errorf("provider %s: %s maps to %s, not %s", prov.Name, prov.Options.Path, host, want)
			}
		}
	}
	if providers == 0 {
		t.Errorf("no dashboard provider")
	}
	if home := g.Environment["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home == nil || hostPath(g, *home) == "" {
		t.Errorf("grafana: the home dashboard path is not a mounted file")
	}
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	var ds grafanaDatasources
	b, err := os.ReadFile(datasourceFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &ds); err != nil || len(ds.Datasources) == 0 {
		t.Fatalf("%s: %v", datasourceFile, err)
	}
	uid := ds.Datasources[0].UID

	// schemaVersion 36 is where datasources became {type, uid} references.
	if d.UID == "" || d.Title == "" || d.SchemaVersion < 36 {
		t.Errorf("dashboard uid %q, title %q, schemaVersion %d: want a uid, a title and schemaVersion >= 36", d.UID, d.Title, d.SchemaVersion)
	}
	checkRef := func(where string, r *dsRef) {
		if r == nil || r.Type != "prometheus" || r.UID != uid {
			t.Errorf("%s: datasource %+v, want {prometheus %s} (the provisioned datasource)", where, r, uid)
		}
	}
	knownTypes := []string{"row", "timeseries", "stat", "table", "state-timeline", "gauge", "bargauge", "text"}
	ids := map[int]bool{}
	var all []dashPanel
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			all = append(all, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, p := range all {
		where := fmt.Sprintf("panel %d %q", p.ID, p.Title)
		if p.ID == 0 || ids[p.ID] {
			t.Errorf("%s: id missing or repeated", where)
		}
		ids[p.ID] = true
		if !slices.Contains(knownTypes, p.Type) {
			t.Errorf("%s: type %q", where, p.Type)
		}
		g := p.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("%s: gridPos %+v outside the 24-column grid", where, g)
		}
		if p.Type == "row" || p.Type == "text" {
			continue
		}
		checkRef(where, p.Datasource)
		if len(p.Targets) == 0 {
			t.Errorf("%s: no query", where)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			checkRef(where+" target "+tg.RefID, tg.Datasource)
			if tg.RefID == "" || refs[tg.RefID] {
				t.Errorf("%s: refId %q missing or repeated", where, tg.RefID)
			}
			refs[tg.RefID] = true
		}
	}
	for i, a := range all {
		for _, b := range all[i+1:] {
			ga, gb := a.GridPos, b.GridPos
			if ga.X < gb.X+gb.W && gb.X < ga.X+ga.W && ga.Y < gb.Y+gb.H && gb.Y < ga.Y+ga.H {
				t.Errorf("panels %q and %q overlap", a.Title, b.Title)
			}
		}
	}
	for _, v := range d.Templating.List {
		if v.Type == "query" {
			checkRef("variable "+v.Name, v.Datasource)
		}
	}
	for _, a := range d.Annotations.List {
		if a.BuiltIn == 1 {
			if a.Datasource == nil || a.Datasource.Type != "grafana" {
				t.Errorf("built-in annotation %q: datasource %+v", a.Name, a.Datasource)
			}
			continue
		}
		checkRef("annotation "+a.Name, a.Datasource)
	}

	prom := loadPromConfig(t, "prometheus/prometheus.yml")
	scrape, err := time.ParseDuration(prom.Global.ScrapeInterval)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	kinds := map[string][]string{}
	for _, e := range d.exprs() {
		if e.expr == "" {
			t.Errorf("%s: empty query", e.where)
			continue
		}
		if _, err := grafanaToPromQL(e.expr, scrape, d.varNames()); err != nil {
			t.Errorf("%s: %v", e.where, err)
		}
		checkKnownNames(t, e.where, e.expr)
		for _, n := range metricNames(e.expr) {
			used[n] = true
			kinds[n] = append(kinds[n], e.kind)
		}
	}
	// The panel list: request rate by class and target, latency
	// quantiles, lag in ms and bytes, eligibility and reasons, replica vs
	// master reads and why, write gate and WAIT, master switches and guard
	// actions (as annotations too), connections, Go runtime.
	for _, n := range []string{
		"replproxy_commands_total", "replproxy_command_duration_seconds_bucket",
		"replproxy_replica_lag_seconds", "replproxy_replica_lag_bytes",
		"replproxy_replica_eligible", "replproxy_replica_ineligible",
		"replproxy_read_fallbacks_total", "replproxy_write_gate_rejections_total", "replproxy_wait_calls_total",
		"replproxy_master_switches_total", "replproxy_guard_actions_total",
		"replproxy_clients_connected", "replproxy_backend_connections",
		"go_goroutines", "process_resident_memory_bytes",
	} {
		if !used[n] {
			t.Errorf("no dashboard query uses %s", n)
		}
	}
	for _, n := range []string{"replproxy_master_switches_total", "replproxy_guard_actions_total"} {
		if !slices.Contains(kinds[n], "annotation") {
			t.Errorf("%s is not drawn as an annotation", n)
		}
	}
}

func TestGrafanaToPromQL(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		bad      bool
	}{
		{`rate(x{instance=~"$instance"}[$__rate_interval])`, `rate(x{instance=~".*"}[20s])`, false},
		{`rate(x{instance=~"${instance}"}[$__interval])`, `rate(x{instance=~".*"}[5s])`, false},
		{`increase(x[$__range])`, `increase(x[5m])`, false},
		{`label_replace(x, "a", "$1", "b", "(.*)")`, `label_replace(x, "a", "$1", "b", "(.*)")`, false},
		{`rate(x{job="$job"}[1m])`, "", true},
	} {
		got, err := grafanaToPromQL(tc.in, 5*time.Second, []string{"instance"})
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("grafanaToPromQL(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}
