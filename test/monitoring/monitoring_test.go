// Package monitoring checks deploy/monitoring (the Grafana dashboard and the Prometheus alerting
// rules) against the metrics vpcnat registers: the daemon's (pkg/nodeagent), the controller's
// (pkg/controller), the admission webhook's (pkg/admission) and the failover agent's (pkg/ha),
// collected from the registries the real constructors register on, plus the Go and process
// collectors the programs' mains add. A rule or panel naming a metric no program exports would
// never fire or draw.
// No cluster, no root, no address: the clients built here point at nothing and are never used.
package monitoring

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"sort"
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
	"github.com/vpcnat/vpcnat/pkg/ha"
	"github.com/vpcnat/vpcnat/pkg/nodeagent"
)

var monitoringDir = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "deploy", "monitoring")
}()

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

// notMetrics are the words of PromQL that are not metric names: functions, aggregations,
// operators and modifiers.
var notMetrics = map[string]bool{}

func init() {
	for _, w := range strings.Fields(`sum min max avg count stddev stdvar topk bottomk quantile group
		count_values rate irate increase delta idelta deriv predict_linear histogram_quantile time
		timestamp vector scalar abs ceil floor round clamp clamp_min clamp_max exp ln log2 log10 sqrt
		absent absent_over_time changes resets sort sort_desc label_replace label_join
		avg_over_time min_over_time max_over_time sum_over_time count_over_time last_over_time
		quantile_over_time stddev_over_time present_over_time day_of_month day_of_week hour minute
		month year days_in_month and or unless by without on ignoring group_left group_right bool
		offset inf nan`) {
		notMetrics[w] = true
	}
}

var (
	stringLit     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	matcherBlock  = regexp.MustCompile(`\{[^{}]*\}`)
	rangeBlock    = regexp.MustCompile(`\[[^\[\]]*\]`)
	groupingBlock = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	variable      = regexp.MustCompile(`\$\{?[A-Za-z_][A-Za-z0-9_]*\}?`)
	identifier    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
)

// metricNames returns the metric names a PromQL expression selects: every identifier that is
// not a PromQL word, a label name (inside {…} or a by/without/on/ignoring list), a string, a
// duration or a Grafana variable.
func metricNames(expr string) []string {
	e := stringLit.ReplaceAllString(expr, `""`)
	e = variable.ReplaceAllString(e, " ")
	e = matcherBlock.ReplaceAllString(e, " ")
	e = rangeBlock.ReplaceAllString(e, " ")
	e = groupingBlock.ReplaceAllString(e, "$1 ")
	var names []string
	for _, loc := range identifier.FindAllStringIndex(e, -1) {
		w := e[loc[0]:loc[1]]
		// A number's exponent or unit (1e3, 5m) starts inside a number: skip it.
		if loc[0] > 0 && strings.ContainsRune("0123456789.", rune(e[loc[0]-1])) {
			continue
		}
		if !notMetrics[w] && !slices.Contains(names, w) {
			names = append(names, w)
		}
	}
	return names
}

// unknown returns the metric names of expr that no program registers.
func unknown(expr string, known map[string]bool) []string {
	var out []string
	for _, n := range metricNames(expr) {
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
	var alerts []string
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			alerts = append(alerts, r.Alert)
			if r.Alert == "" || r.Expr == "" {
				t.Errorf("group %s: a rule without alert or expr: %+v", g.Name, r)
				continue
			}
			if len(metricNames(r.Expr)) == 0 {
				t.Errorf("alert %s: expr %q names no metric", r.Alert, r.Expr)
			}
			if u := unknown(r.Expr, known); len(u) > 0 {
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
	used := map[string]bool{}
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
				if len(metricNames(tg.Expr)) == 0 {
					t.Errorf("panel %q: expr %q names no metric", p.Title, tg.Expr)
				}
				if u := unknown(tg.Expr, known); len(u) > 0 {
					t.Errorf("panel %q: expr %q names metrics no vpcnat program registers: %q", p.Title, tg.Expr, u)
				}
				for _, n := range metricNames(tg.Expr) {
					used[strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_count")] = true
				}
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
		if u := unknown(m[1], known); len(u) > 0 {
			t.Errorf("variable %s: %q names unknown metrics %q", v.Name, v.Definition, u)
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

// TestMetricNamesOfExpressions: the name extraction the two tests rely on finds a misspelt
// metric and leaves labels, strings, durations, functions and Grafana variables alone.
func TestMetricNamesOfExpressions(t *testing.T) {
	known := map[string]bool{"vpcnat_daemon_syncs_total": true, "vpcnat_daemon_sync_duration_seconds_bucket": true}
	for _, c := range []struct {
		expr string
		want []string
	}{
		{`sum by (instance) (rate(vpcnat_daemon_syncs_total{result=~"error|invalid"}[5m])) > 0`, nil},
		{`histogram_quantile(0.99, sum by (le, full) (rate(vpcnat_daemon_sync_duration_seconds_bucket{instance=~"$instance"}[$__rate_interval]))) > 1e3`, nil},
		{`sum(rate(vpcnat_daemon_sync_total[5m]))`, []string{"vpcnat_daemon_sync_total"}},
		{`vpcnat_daemon_syncs_total and on (instance) kube_node_info`, []string{"kube_node_info"}},
		{`time() - vpcnat_daemon_last_sync > 900`, []string{"vpcnat_daemon_last_sync"}},
	} {
		if got := unknown(c.expr, known); !slices.Equal(got, c.want) {
			t.Errorf("unknown(%q) = %q, want %q", c.expr, got, c.want)
		}
	}
}
