package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/replproxy/replproxy/metrics"
)

// notYetBuilt are the metric names the dashboard and the alert rules use
// before replproxy exposes them; none today. Expressions naming one of them
// may return no series in the live test, and only those.
// TestNotYetBuiltIsShrinking fails once a name lands in metrics.Names():
// then delete it here, so that the live test demands data for it. (A
// labelled counter should expose every label value at 0 from the start, as
// replproxy_read_fallbacks_total does, or its panels stay empty until the
// first event.)
var notYetBuilt = []string{}

// untilFirstSwitch are exposed, but only from the first master switch on
// (the switch-time histogram has no series before there is a switch to
// time). The live test with Sentinel makes a failover, so it demands data
// for them; the one with a static topology cannot.
var untilFirstSwitch = []string{
	"replproxy_master_switch_seconds",
}

// histogramSuffixes name the series of a histogram or summary family.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// familyOf returns the family a series name belongs to, if it is in known
// (as itself, or as a histogram's _bucket/_sum/_count).
func familyOf(name string, known []string) (string, bool) {
	if slices.Contains(known, name) {
		return name, true
	}
	for _, s := range histogramSuffixes {
		if base, ok := strings.CutSuffix(name, s); ok && slices.Contains(known, base) {
			return base, true
		}
	}
	return "", false
}

func isNotYetBuilt(name string) bool {
	_, ok := familyOf(name, notYetBuilt)
	return ok
}

func isUntilFirstSwitch(name string) bool {
	_, ok := familyOf(name, untilFirstSwitch)
	return ok
}

var (
	quotedString = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// A metric name: replproxy's own, the Go client's runtime and process
	// families, and Prometheus's up. Label names never start so.
	metricName = regexp.MustCompile(`(?:^|[^A-Za-z0-9_:])((?:replproxy|go|process)_[A-Za-z0-9_:]+|up)\b`)
)

// metricNames returns the metric names an expression uses.
func metricNames(expr string) []string {
	expr = quotedString.ReplaceAllString(expr, `""`) // label values and label_replace arguments
	var names []string
	for _, m := range metricName.FindAllStringSubmatch(expr, -1) {
		names = append(names, m[1])
	}
	slices.Sort(names)
	return slices.Compact(names)
}

func TestMetricNames(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string
	}{
		{`sum by (target) (rate(replproxy_commands_total{instance=~"$instance",class="read"}[5m]))`, []string{"replproxy_commands_total"}},
		{`histogram_quantile(0.99, sum by (le) (rate(replproxy_command_duration_seconds_bucket[5m])))`, []string{"replproxy_command_duration_seconds_bucket"}},
		{`max(replproxy_node_persistence) == 0 and on (node) label_replace(replproxy_backend_up{role="master"}, "node", "$1", "addr", "(.*)")`,
			[]string{"replproxy_backend_up", "replproxy_node_persistence"}},
		{`up{job="replproxy"} + go_goroutines + process_open_fds`, []string{"go_goroutines", "process_open_fds", "up"}},
		{`rate(x{reason="up"}[1m])`, nil}, // a label value is no metric
	} {
		if got := metricNames(tc.expr); !slices.Equal(got, tc.want) {
			t.Errorf("metricNames(%q) = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// checkKnownNames fails for every metric an expression names that replproxy
// does not expose and that is not in notYetBuilt: a typo, or a metric that
// was renamed.
func checkKnownNames(t *testing.T, where, expr string) {
	t.Helper()
	known := append(metrics.Names(), "up")
	for _, name := range metricNames(expr) {
		if _, ok := familyOf(name, known); ok || isNotYetBuilt(name) {
			continue
		}
		t.Errorf("%s: %q names %s, which replproxy does not expose (metrics.Names) and is not in notYetBuilt", where, expr, name)
	}
	if len(metricNames(expr)) == 0 {
		t.Errorf("%s: %q names no metric", where, expr)
	}
}

func TestNotYetBuiltIsShrinking(t *testing.T) {
	names := metrics.Names()
	for _, n := range notYetBuilt {
		if slices.Contains(names, n) {
			t.Errorf("%s is exposed now (metrics.Names): remove it from notYetBuilt so the live test demands data for it", n)
		}
	}
}

// An alert rule, as Prometheus's rule files hold it.
type alertRule struct {
	Alert       string            `yaml:"alert"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

const rulesFile = "prometheus/rules/replproxy.yml"

func loadRules(t testing.TB) []alertRule {
	t.Helper()
	b, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", rulesFile, err)
	}
	var rules []alertRule
	for _, g := range f.Groups {
		rules = append(rules, g.Rules...)
	}
	if len(rules) == 0 {
		t.Fatalf("%s: no rules", rulesFile)
	}
	return rules
}

func TestAlertRules(t *testing.T) {
	rules := loadRules(t)
	byName := map[string]alertRule{}
	for _, r := range rules {
		if r.Alert == "" {
			t.Errorf("a recording rule or a rule without a name: %+v", r)
			continue
		}
		if _, dup := byName[r.Alert]; dup {
			t.Errorf("alert %s defined twice", r.Alert)
		}
		byName[r.Alert] = r
		if r.For == "" {
			t.Errorf("%s: no for: (write for: 0m for an alert that fires at once)", r.Alert)
		}
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("%s: severity %q, want warning or critical", r.Alert, s)
		}
		// The summary is what the operator reads first: it must say what to
		// do, which every summary here does after a colon.
		if sum := r.Annotations["summary"]; !strings.Contains(sum, ": ") || len(sum) < 60 {
			t.Errorf("%s: summary %q does not say what to do", r.Alert, sum)
		}
		checkKnownNames(t, r.Alert, r.Expr)
	}
	// The list: the rules docs/metrics.md had, plus master switched,
	// guard acted (and acting for long), witness timeouts, persistence off
	// on the master, backlog too small.
	for _, name := range []string{
		"ReplproxyReplicaLagHigh", "ReplproxyNoEligibleReplica", "ReplproxyWriteGateRejecting",
		"ReplproxyBackendDown", "ReplproxyStreamLinkDown", "ReplproxyStreamHistoryReset",
		"ReplproxyClientsRejected", "ReplproxyReadsFallingBackToMaster", "ReplproxyLatencyHigh",
		"ReplproxyMasterSwitched", "ReplproxyGuardActed", "ReplproxyGuardActing", "ReplproxyWitnessTimeouts",
		"ReplproxyMasterPersistenceOff", "ReplproxyWitnessBacklogShort", "ReplproxyFailoverWritesLost", "ReplproxyWitnessFailed",
	} {
		if _, ok := byName[name]; !ok {
			t.Errorf("no alert %s", name)
		}
	}
}

func promtool(t *testing.T, args ...string) string {
	t.Helper()
	bin := needProgram(t, "promtool", "prometheus")
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestPromtool runs Prometheus's own checker on the config (which loads the
// rule files it names) and the rules, and the rules' unit tests: every alert
// fires on the series it is for, not before its for:, with the labels and
// rendered text it should have.
func TestPromtool(t *testing.T) {
	out := promtool(t, "check", "config", "prometheus/prometheus.yml")
	if !strings.Contains(out, "1 rule files found") {
		t.Errorf("promtool check config found no rule file:\n%s", out)
	}
	promtool(t, "check", "rules", rulesFile)
	promtool(t, "test", "rules", "prometheus/tests/replproxy_test.yml")

	// Every alert has its unit test.
	b, err := os.ReadFile("prometheus/tests/replproxy_test.yml")
	if err != nil {
		t.Fatal(err)
	}
	var tests struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []any  `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(b, &tests); err != nil {
		t.Fatal(err)
	}
	fired := map[string]bool{}
	for _, tc := range tests.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fired[a.Alertname] = true
			}
		}
	}
	for _, r := range loadRules(t) {
		if !fired[r.Alert] {
			t.Errorf("%s: no promtool test makes it fire", r.Alert)
		}
	}
}

// promConfig is the part of prometheus.yml the tests read.
type promConfig struct {
	Global struct {
		ScrapeInterval     string `yaml:"scrape_interval"`
		EvaluationInterval string `yaml:"evaluation_interval"`
	} `yaml:"global"`
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

// rewritePromConfig writes a copy of prometheus.yml into dir with the
// replproxy scrape target replaced by target, and the rule directory linked
// beside it, so that rule_files (relative to the config) resolve to the
// repository's rule files. Everything else is the file as it is.
func rewritePromConfig(t testing.TB, src, rulesDir, dir, target string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", src, err)
	}
	replaced := 0
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode && n.Value == "replproxy:9121" {
			n.Value = target
			replaced++
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&doc)
	if replaced != 1 {
		t.Fatalf("%s: found the target replproxy:9121 %d times, want once", src, replaced)
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(rulesDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(abs, filepath.Join(dir, "rules")); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadPromConfig(t testing.TB, path string) promConfig {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c promConfig
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return c
}

// promResult is an answer of Prometheus's HTTP API.
type promResult struct {
	Status    string          `json:"status"`
	ErrorType string          `json:"errorType"`
	Error     string          `json:"error"`
	Data      json.RawMessage `json:"data"`
}

func (r promResult) err() error {
	if r.Status != "success" {
		return fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	return nil
}

// TestDocsRulesMatchRulesFile keeps docs/metrics.md's example rules a copy
// of the rules file: each is identical to the file's, and every rule of the
// file on metrics replproxy exposes today is there. (docs/metrics.md may
// only name exposed metrics, which metrics' own docs test enforces; rules on
// notYetBuilt metrics join the copy as their metrics land.)
func TestDocsRulesMatchRulesFile(t *testing.T) {
	b, err := os.ReadFile("../docs/metrics.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(b), "\n## Example Prometheus alert rules\n")
	if !ok {
		t.Fatal("docs/metrics.md: no section Example Prometheus alert rules")
	}
	_, rest, ok = strings.Cut(rest, "```yaml\n")
	block, _, ok2 := strings.Cut(rest, "```")
	if !ok || !ok2 {
		t.Fatal("docs/metrics.md: no ```yaml block in the alert rules section")
	}
	var f struct {
		Groups []struct {
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal([]byte(block), &f); err != nil {
		t.Fatalf("docs/metrics.md rules: %v", err)
	}
	inDocs := map[string]alertRule{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			inDocs[r.Alert] = r
		}
	}
	inFile := map[string]bool{}
	for _, r := range loadRules(t) {
		inFile[r.Alert] = true
		d, ok := inDocs[r.Alert]
		if !ok {
			if !slices.ContainsFunc(metricNames(r.Expr), isNotYetBuilt) {
				t.Errorf("docs/metrics.md lacks %s (its metrics are exposed now): copy it from %s", r.Alert, rulesFile)
			}
			continue
		}
		if fmt.Sprint(d) != fmt.Sprint(r) {
			t.Errorf("docs/metrics.md's %s differs from %s's:\n docs: %+v\n file: %+v", r.Alert, rulesFile, d, r)
		}
	}
	for name := range inDocs {
		if !inFile[name] {
			t.Errorf("docs/metrics.md has %s, which %s does not", name, rulesFile)
		}
	}
}
