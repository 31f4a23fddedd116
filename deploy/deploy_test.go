// Package deploy holds what runs beside Ferry: a Grafana dashboard and
// Prometheus alert rules. Its test keeps them parseable and their metric
// names true to docs/observability.md.
package deploy

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

var metricName = regexp.MustCompile(`\bferry_[a-z_]+`)

// documented is every metric name docs/observability.md lists.
func documented(t *testing.T) map[string]bool {
	doc, err := os.ReadFile("../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for _, n := range metricName.FindAllString(string(doc), -1) {
		out[n] = true
	}
	return out
}

// checkNames fails for each metric of expr that the docs do not list
// (histogram series named by their base name).
func checkNames(t *testing.T, where, expr string, docs map[string]bool) {
	t.Helper()
	for _, n := range metricName.FindAllString(expr, -1) {
		base := n
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			base = strings.TrimSuffix(base, suf)
		}
		if !docs[n] && !docs[base] {
			t.Errorf("%s: %s is no metric docs/observability.md lists", where, n)
		}
	}
}

func TestAlertRules(t *testing.T) {
	raw, err := os.ReadFile("prometheus/ferry-alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
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
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	docs := documented(t)
	seen := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" || r.Expr == "" || r.Labels["severity"] == "" || r.Annotations["summary"] == "" {
				t.Errorf("rule %+v: wants alert, expr, a severity and a summary", r)
			}
			if seen[r.Alert] {
				t.Errorf("alert %s twice", r.Alert)
			}
			seen[r.Alert] = true
			checkNames(t, r.Alert, r.Expr, docs)
		}
	}
	for _, want := range []string{"FerryGroupLagHigh", "FerryDiskFull", "FerryRefusals", "FerryBridgeDown", "FerryReplicaLagging"} {
		if !seen[want] {
			t.Errorf("no alert %s", want)
		}
	}
}

func TestDashboard(t *testing.T) {
	raw, err := os.ReadFile("grafana/ferry-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title  string `json:"title"`
		Panels []struct {
			Type    string `json:"type"`
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatal(err)
	}
	docs := documented(t)
	graphs := 0
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		graphs++
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			checkNames(t, p.Title, q.Expr, docs)
		}
	}
	if d.Title == "" || graphs < 8 {
		t.Fatalf("dashboard %q with %d graphs", d.Title, graphs)
	}
}
