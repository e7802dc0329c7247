package metrics

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const docsPath = "../docs/metrics.md"

func readDocs(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.FromSlash(docsPath))
	if err != nil {
		t.Fatalf("read %s: %v", docsPath, err)
	}
	return string(b)
}

// section returns the text under the "## title" heading, up to the next
// heading of the same level.
func section(t *testing.T, doc, title string) string {
	t.Helper()
	_, rest, ok := strings.Cut(doc, "\n## "+title+"\n")
	if !ok {
		t.Fatalf("%s: no section %q", docsPath, title)
	}
	body, _, _ := strings.Cut(rest, "\n## ")
	return body
}

type docRow struct {
	name, typ string
	labels    []string
}

var backticked = regexp.MustCompile("`([^`]*)`")

// metricTable parses the table of the "Metrics" section: | `name` | type | `l1`, `l2` or — | meaning |.
func metricTable(t *testing.T, doc string) []docRow {
	t.Helper()
	var rows []docRow
	inTable := false
	for _, line := range strings.Split(section(t, doc, "Metrics"), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break // the table ended
			}
			continue
		}
		if !inTable {
			inTable = true // header row
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		if strings.Trim(cells[0], " -:") == "" {
			continue // separator row
		}
		if len(cells) < 4 {
			t.Errorf("row with %d cells: %s", len(cells), line)
			continue
		}
		m := backticked.FindStringSubmatch(cells[0])
		if m == nil {
			t.Errorf("first cell not a `name`: %s", line)
			continue
		}
		r := docRow{name: m[1], typ: strings.TrimSpace(cells[1])}
		for _, l := range backticked.FindAllStringSubmatch(cells[2], -1) {
			r.labels = append(r.labels, l[1])
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		t.Fatalf("%s: no rows in the Metrics table", docsPath)
	}
	return rows
}

func replproxyNames() []string {
	var out []string
	for _, n := range Names() {
		if strings.HasPrefix(n, namespace+"_") {
			out = append(out, n)
		}
	}
	return out
}

func TestDocsListEveryMetric(t *testing.T) {
	rows := metricTable(t, readDocs(t))
	var documented []string
	for _, r := range rows {
		documented = append(documented, r.name)
	}
	registered := replproxyNames()
	for _, n := range documented {
		if !slices.Contains(registered, n) {
			t.Errorf("%s documents %s, which the registry does not expose", docsPath, n)
		}
	}
	for _, n := range registered {
		if !slices.Contains(documented, n) {
			t.Errorf("registry exposes %s, which %s does not document", n, docsPath)
		}
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.name] {
			t.Errorf("%s documented twice", r.name)
		}
		seen[r.name] = true
		f := familyByName(r.name)
		if f == nil {
			continue
		}
		if r.typ != f.kind.String() {
			t.Errorf("%s: documented as %s, is a %s", r.name, r.typ, f.kind)
		}
		if !slices.Equal(r.labels, f.labels) {
			t.Errorf("%s: documented labels %v, has %v", r.name, r.labels, f.labels)
		}
	}
}

// metricRef finds every name with one of our prefixes.
var metricRef = regexp.MustCompile(`\b(?:replproxy|go|process)_[a-zA-Z0-9_]+`)

// exposedName maps a series name as written in PromQL to its family:
// histogram series carry _bucket, _sum and _count suffixes.
func exposedName(ref string, names []string) (string, bool) {
	if slices.Contains(names, ref) {
		return ref, true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		base, ok := strings.CutSuffix(ref, suffix)
		if !ok {
			continue
		}
		if f := familyByName(base); f != nil && f.kind == kindHistogram {
			return base, true
		}
	}
	return "", false
}

// Every metric name written anywhere in the document (queries, prose) exists.
func TestDocsMentionOnlyRealMetrics(t *testing.T) {
	names := Names()
	for _, ref := range metricRef.FindAllString(readDocs(t), -1) {
		if _, ok := exposedName(ref, names); !ok {
			t.Errorf("%s mentions %s, which the registry does not expose", docsPath, ref)
		}
	}
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func TestDocsAlertRules(t *testing.T) {
	body := section(t, readDocs(t), "Example Prometheus alert rules")
	_, rest, ok := strings.Cut(body, "```yaml\n")
	if !ok {
		t.Fatal("no ```yaml block in the alert rules section")
	}
	block, _, ok := strings.Cut(rest, "```")
	if !ok {
		t.Fatal("unterminated ```yaml block")
	}

	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader([]byte(block)))
	dec.KnownFields(true) // a misspelt key is a rule Prometheus would reject
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alert rules do not parse: %v", err)
	}
	if len(rf.Groups) == 0 {
		t.Fatal("no rule groups")
	}

	names := Names()
	used := map[string]bool{}
	alerts := map[string]bool{}
	for _, g := range rf.Groups {
		if g.Name == "" {
			t.Error("group without a name")
		}
		for _, r := range g.Rules {
			t.Run(r.Alert, func(t *testing.T) {
				if r.Alert == "" || r.Expr == "" {
					t.Fatalf("rule needs alert and expr: %+v", r)
				}
				if alerts[r.Alert] {
					t.Errorf("alert %s defined twice", r.Alert)
				}
				alerts[r.Alert] = true
				if r.For != "" {
					if _, err := time.ParseDuration(r.For); err != nil {
						t.Errorf("for: %v", err)
					}
				}
				if strings.Count(r.Expr, "(") != strings.Count(r.Expr, ")") ||
					strings.Count(r.Expr, "{") != strings.Count(r.Expr, "}") ||
					strings.Count(r.Expr, "[") != strings.Count(r.Expr, "]") {
					t.Errorf("unbalanced brackets in %q", r.Expr)
				}
				refs := metricRef.FindAllString(r.Expr, -1)
				if len(refs) == 0 {
					t.Errorf("expr %q uses no replproxy metric", r.Expr)
				}
				for _, ref := range refs {
					base, ok := exposedName(ref, names)
					if !ok {
						t.Errorf("expr %q uses %s, which is not exposed", r.Expr, ref)
					}
					used[base] = true
				}
				if r.Annotations["summary"] == "" {
					t.Error("no summary annotation")
				}
			})
		}
	}
	// The alerts an operator of a replicated Redis needs first.
	for _, m := range []string{
		"replproxy_replica_lag_seconds", "replproxy_replica_eligible",
		"replproxy_write_gate_rejections_total", "replproxy_backend_up",
		"replproxy_stream_connected", "replproxy_stream_history_resets_total",
	} {
		if !used[m] {
			t.Errorf("no alert rule on %s", m)
		}
	}
}
