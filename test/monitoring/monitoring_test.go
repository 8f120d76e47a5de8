// Package monitoring checks deploy/monitoring (the Grafana dashboard and the Prometheus alerting
// rules) against the metrics vpcnat registers: the daemon's (pkg/nodeagent), the controller's
// (pkg/controller), the admission webhook's (pkg/admission) and the failover agent's (pkg/ha),
// collected from the registries the real constructors register on, plus the Go and process
// collectors the programs' mains add. A rule or panel naming a metric no program exports would
// never fire or draw.
// No cluster, no root, no address: the clients built here point at nothing and are never used.
package monitoring

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	"sigs.k8s.io/yaml"

	"github.com/vpcnat/vpcnat/pkg/admission"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
	"github.com/vpcnat/vpcnat/pkg/ctsync"
	"github.com/vpcnat/vpcnat/pkg/ha"
	"github.com/vpcnat/vpcnat/pkg/nodeagent"
)

// testDir is this package's directory; monitoringDir is deploy/monitoring.
var (
	testDir = func() string {
		_, file, _, _ := runtime.Caller(0)
		return filepath.Dir(file)
	}()
	monitoringDir = filepath.Join(testDir, "..", "..", "deploy", "monitoring")
)

// recorder is a Registerer that keeps the names of what is registered on it.
type recorder struct{ names map[string]bool }

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (r *recorder) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc, 64)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		m := fqName.FindStringSubmatch(d.String())
		if m == nil {
			return fmt.Errorf("no name in %s", d)
		}
		r.names[m[1]] = true
	}
	return nil
}

func (r *recorder) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

func (r *recorder) Unregister(prometheus.Collector) bool { return false }

// registeredNames builds the daemon's agent, the controller and the webhook with a recorder as
// their Registerer and returns every metric name they register. Histograms also expose
// _bucket, _sum and _count series; Prometheus adds up.
func registeredNames(t *testing.T) map[string]bool {
	t.Helper()
	rec := &recorder{names: map[string]bool{}}
	rec.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// A real client for a server that is never contacted: New only wires informers.
	cfg := &rest.Config{Host: "https://127.0.0.1:1"}
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := metadata.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ovn, err := kubeovn.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := controller.New(kube, ovn, controller.Options{Registerer: rec}); err != nil {
		t.Fatalf("controller.New: %v", err)
	}
	if _, err := nodeagent.New(nodeagent.Config{
		NodeName: "node-a", GatewayNamespace: "kube-system", StateDir: t.TempDir(),
		Resync: time.Minute, Workers: 1, SyncTimeout: time.Minute, Registerer: rec,
	}, kube, meta, record.NewFakeRecorder(1)); err != nil {
		t.Fatalf("nodeagent.New: %v", err)
	}
	admission.NewWebhook(nil, func() bool { return false }, rec)
	// The failover agent of replicated gateways (cmd/vpcnat-keepalive) serves this registry.
	rec.MustRegister(ha.Registry)
	// ... and, beside it, the conntrack replication's.
	rec.MustRegister(ctsync.Registry)

	names := map[string]bool{"up": true}
	for n := range rec.names {
		names[n] = true
	}
	for n := range rec.names {
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			names[n+s] = true
		}
	}
	for _, want := range []string{"vpcnat_daemon_syncs_total", "vpcnat_controller_syncs_total",
		"vpcnat_controller_admission_reviews_total", "vpcnat_keepalive_active", "process_resident_memory_bytes"} {
		if !rec.names[want] {
			t.Fatalf("%s not registered: the collection of names is broken (got %d names)", want, len(rec.names))
		}
	}
	return names
}

// parsed is what Prometheus's parser made of one expression: the metric names it selects, or
// its error.
type parsed struct {
	names []string
	err   string
}

// parsePromQL parses exprs with Prometheus's own PromQL parser (the promqlcheck module beside
// this file, built here; go's build cache keeps it).
func parsePromQL(t *testing.T, exprs []string) []parsed {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "promqlcheck")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testDir, "promqlcheck")
	build.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building promqlcheck: %v\n%s", err, out)
	}
	var in bytes.Buffer
	for _, e := range exprs {
		b, _ := json.Marshal(e)
		in.Write(append(b, '\n'))
	}
	cmd := exec.Command(bin)
	cmd.Stdin = &in
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("promqlcheck: %v", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != len(exprs) {
		t.Fatalf("promqlcheck answered %d lines for %d expressions:\n%s", len(lines), len(exprs), out)
	}
	res := make([]parsed, len(exprs))
	for i, l := range lines {
		switch verdict, rest, _ := strings.Cut(l, " "); verdict {
		case "ok":
			res[i].names = strings.Fields(rest)
		case "error":
			res[i].err = rest
		default:
			t.Fatalf("promqlcheck: %q", l)
		}
	}
	return res
}

// grafanaVariable is a dashboard variable in an expression ($instance, ${datasource},
// $__rate_interval); Grafana replaces them before Prometheus sees the query.
var grafanaVariable = regexp.MustCompile(`\$\{?(__[a-z_]*interval|[A-Za-z_][A-Za-z0-9_]*)\}?`)

// asPromQL replaces dashboard variables as Grafana would: intervals with a duration, others
// with a value.
func asPromQL(expr string) string {
	return grafanaVariable.ReplaceAllStringFunc(expr, func(v string) string {
		if strings.Contains(v, "interval") {
			return "5m"
		}
		return "x"
	})
}

// unknown returns the names no program registers.
func unknown(names []string, known map[string]bool) []string {
	var out []string
	for _, n := range names {
		if !known[n] {
			out = append(out, n)
		}
	}
	return out
}

// alertRules reads deploy/monitoring/alerts.yaml.
type ruleFile struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []struct {
			Alert       string            `json:"alert"`
			Expr        string            `json:"expr"`
			For         string            `json:"for"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"rules"`
	} `json:"groups"`
}

func TestAlertRulesNameRegisteredMetrics(t *testing.T) {
	known := registeredNames(t)
	b, err := os.ReadFile(filepath.Join(monitoringDir, "alerts.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.UnmarshalStrict(b, &rf); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	var alerts, exprs []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
		}
	}
	results := parsePromQL(t, exprs)
	i := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			p := results[i]
			i++
			alerts = append(alerts, r.Alert)
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("group %s: a rule without alert or expr: %+v", g.Name, r)
				continue
			}
			if p.err != "" {
				t.Errorf("alert %s: expr %q: %s", r.Alert, r.Expr, p.err)
				continue
			}
			if len(p.names) == 0 {
				t.Errorf("alert %s: expr %q names no metric", r.Alert, r.Expr)
			}
			if u := unknown(p.names, known); len(u) > 0 {
				t.Errorf("alert %s: expr %q names metrics no vpcnat program registers: %q", r.Alert, r.Expr, u)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, s)
			}
			if r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
				t.Errorf("alert %s: summary and description are required", r.Alert)
			}
			if r.For != "" {
				if _, err := time.ParseDuration(r.For); err != nil {
					t.Errorf("alert %s: for %q: %v", r.Alert, r.For, err)
				}
			}
		}
	}
	// What the alerts must cover: gateways not converged, converge errors and latency, address
	// conflicts, admission errors.
	for _, want := range []string{"VpcNatGatewayNotConverged", "VpcNatDaemonSyncErrors", "VpcNatControllerSyncErrors",
		"VpcNatConvergeSlow", "VpcNatAddressConflict", "VpcNatAdmissionErrors"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no alert %s (have %q)", want, alerts)
		}
	}
}

// dashboard is the part of Grafana's dashboard JSON this test reads.
type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name       string `json:"name"`
			Definition string `json:"definition"`
		} `json:"list"`
	} `json:"templating"`
}

type panel struct {
	Type    string  `json:"type"`
	Title   string  `json:"title"`
	Panels  []panel `json:"panels"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

var labelValues = regexp.MustCompile(`^label_values\(\s*([^,]+),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$`)

func TestDashboardNamesRegisteredMetrics(t *testing.T) {
	known := registeredNames(t)
	b, err := os.ReadFile(filepath.Join(monitoringDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := yaml.Unmarshal(b, &d); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard without uid or title")
	}
	type query struct{ where, expr string }
	var queries []query
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				queries = append(queries, query{"panel " + strconv.Quote(p.Title), tg.Expr})
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Definition == "" {
			continue
		}
		m := labelValues.FindStringSubmatch(v.Definition)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(metric, label)", v.Name, v.Definition)
			continue
		}
		queries = append(queries, query{"variable " + v.Name, m[1]})
	}
	var exprs []string
	for _, q := range queries {
		exprs = append(exprs, asPromQL(q.expr))
	}
	used := map[string]bool{}
	for i, p := range parsePromQL(t, exprs) {
		q := queries[i]
		switch {
		case p.err != "":
			t.Errorf("%s: expr %q: %s", q.where, q.expr, p.err)
		case len(p.names) == 0:
			t.Errorf("%s: expr %q names no metric", q.where, q.expr)
		}
		if u := unknown(p.names, known); len(u) > 0 {
			t.Errorf("%s: expr %q names metrics no vpcnat program registers: %q", q.where, q.expr, u)
		}
		for _, n := range p.names {
			used[strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count")] = true
		}
	}
	// Every vpcnat metric has a panel.
	var missing []string
	for n := range known {
		if strings.HasPrefix(n, "vpcnat_") && !strings.HasSuffix(n, "_sum") && !strings.HasSuffix(n, "_count") &&
			!strings.HasSuffix(n, "_bucket") && !used[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("vpcnat metrics without a panel: %q", missing)
	}
}

// TestPromQLCheck: the parser the two tests rely on reports a misspelt metric, a syntax error
// and a Grafana variable left in, and takes label names, functions and durations for what they
// are.
func TestPromQLCheck(t *testing.T) {
	known := map[string]bool{"vpcnat_daemon_syncs_total": true, "vpcnat_daemon_sync_duration_seconds_bucket": true}
	cases := []struct {
		expr    string
		unknown []string
		err     bool
	}{
		{expr: `sum by (instance) (rate(vpcnat_daemon_syncs_total{result=~"error|invalid"}[5m])) > 0`},
		{expr: asPromQL(`histogram_quantile(0.99, sum by (le, full) (rate(vpcnat_daemon_sync_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval]))) > 1e3`)},
		{expr: `sum(rate(vpcnat_daemon_sync_total[5m]))`, unknown: []string{"vpcnat_daemon_sync_total"}},
		{expr: `vpcnat_daemon_syncs_total and on (instance) kube_node_info`, unknown: []string{"kube_node_info"}},
		{expr: `sum(rate(vpcnat_daemon_syncs_total[5m])`, err: true},
		{expr: `rate(vpcnat_daemon_syncs_total[$__rate_interval])`, err: true},
	}
	var exprs []string
	for _, c := range cases {
		exprs = append(exprs, c.expr)
	}
	for i, p := range parsePromQL(t, exprs) {
		c := cases[i]
		if (p.err != "") != c.err {
			t.Errorf("%q: error %q, want an error: %v", c.expr, p.err, c.err)
		}
		if got := unknown(p.names, known); !slices.Equal(got, c.unknown) {
			t.Errorf("%q: unknown %q, want %q", c.expr, got, c.unknown)
		}
	}
}
