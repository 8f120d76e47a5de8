// Package chart checks the Helm chart charts/vpcnat with the real helm binary (pinned, built
// from the Go module proxy and cached by hack/build-helm.sh): it lints, it renders, and with its
// default values it renders exactly the objects of deploy/, so the chart and the plain manifests
// are one installation. No cluster, no root, no address: nothing here touches the network.
package chart

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

var chartDir = filepath.Join(repoRoot, "charts", "vpcnat")

// chartOnlyLabels are the labels the chart adds to every object's metadata (never to a selector
// or a pod template) that deploy/ does not carry.
var chartOnlyLabels = []string{"helm.sh/chart", "app.kubernetes.io/managed-by", "app.kubernetes.io/instance"}

// helmBin builds (once, cached outside the checkout) and returns the pinned helm.
func helmBin(t *testing.T) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(repoRoot, "hack", "build-helm.sh")).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("hack/build-helm.sh: %v\n%s", err, stderr)
	}
	return strings.TrimSpace(string(out))
}

func helm(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	// A private home: no repository list, cache or plugin of whoever runs the test is read.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+home, "HELM_CONFIG_HOME="+home, "HELM_DATA_HOME="+home)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// object is one Kubernetes object, as the API server would decode its YAML.
type object = map[string]any

var docSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// parseObjects splits a multi-document YAML stream into objects, skipping empty documents.
func parseObjects(t *testing.T, source string, data []byte) []object {
	t.Helper()
	var objs []object
	for i, doc := range docSeparator.Split(string(data), -1) {
		var o object
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("%s: document %d: %v", source, i, err)
		}
		if o != nil {
			objs = append(objs, o)
		}
	}
	return objs
}

// identity names an object as kubectl does: kind, namespace and name.
func identity(o object) string {
	meta, _ := o["metadata"].(map[string]any)
	ns, _ := meta["namespace"].(string)
	name, _ := meta["name"].(string)
	return fmt.Sprintf("%v %s/%s", o["kind"], ns, name)
}

// deployObjects reads every manifest of deploy/ (CRDs, controller, DaemonSet).
func deployObjects(t *testing.T) []object {
	t.Helper()
	// deploy/monitoring holds Prometheus and Grafana files, not Kubernetes objects.
	var files []string
	for _, dir := range []string{"crds", "controller", "daemonset"} {
		fs, err := filepath.Glob(filepath.Join(repoRoot, "deploy", dir, "*.yaml"))
		if err != nil || len(fs) == 0 {
			t.Fatalf("no manifest in deploy/%s: %v", dir, err)
		}
		files = append(files, fs...)
	}
	var objs []object
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		objs = append(objs, parseObjects(t, f, b)...)
	}
	return objs
}

// render runs helm template with the given --set/--values arguments, CRDs included.
func render(t *testing.T, args ...string) []object {
	t.Helper()
	// --kube-version: what helm assumes offline; the test cluster's version (the chart needs
	// 1.30, ValidatingAdmissionPolicy).
	base := []string{"template", "vpcnat", chartDir, "--include-crds", "--namespace", "kube-system", "--kube-version", "1.37.2"}
	return parseObjects(t, "helm template", helm(t, append(base, args...)...))
}

// withoutChartLabels returns o without the chart's own metadata labels.
func withoutChartLabels(o object) object {
	b, _ := json.Marshal(o)
	var c object
	_ = json.Unmarshal(b, &c)
	meta, _ := c["metadata"].(map[string]any)
	if labels, ok := meta["labels"].(map[string]any); ok {
		for _, l := range chartOnlyLabels {
			delete(labels, l)
		}
		if len(labels) == 0 {
			delete(meta, "labels")
		}
	}
	return c
}

// differences compares two sets of objects by identity and content and says what differs.
func differences(want, got []object) []string {
	index := func(objs []object) map[string]object {
		m := map[string]object{}
		for _, o := range objs {
			m[identity(o)] = withoutChartLabels(o)
		}
		return m
	}
	w, g := index(want), index(got)
	var diffs []string
	for id, wo := range w {
		goObj, ok := g[id]
		switch {
		case !ok:
			diffs = append(diffs, "missing from the chart: "+id)
		case !reflect.DeepEqual(wo, goObj):
			wj, _ := json.MarshalIndent(wo, "", "  ")
			gj, _ := json.MarshalIndent(goObj, "", "  ")
			diffs = append(diffs, fmt.Sprintf("%s differs:\ndeploy/:\n%s\nchart:\n%s", id, wj, gj))
		}
	}
	for id := range g {
		if _, ok := w[id]; !ok {
			diffs = append(diffs, "only in the chart: "+id)
		}
	}
	sort.Strings(diffs)
	return diffs
}

func TestChartLint(t *testing.T) {
	out := helm(t, "lint", "--strict", chartDir)
	if !bytes.Contains(out, []byte("0 chart(s) failed")) {
		t.Fatalf("helm lint:\n%s", out)
	}
	// The webhook off is a supported configuration too.
	helm(t, "lint", "--strict", chartDir, "--set", "controller.webhook.enabled=false")
}

// TestChartMatchesDeploy: the chart with its default values is deploy/, object by object (the
// chart's own metadata labels aside), CRDs included. Change both in one commit.
func TestChartMatchesDeploy(t *testing.T) {
	want := deployObjects(t)
	got := render(t)
	if len(want) < 15 {
		t.Fatalf("deploy/ holds %d objects; expected the CRDs, the controller and the DaemonSet", len(want))
	}
	for _, d := range differences(want, got) {
		t.Error(d)
	}
	for _, o := range got {
		meta := o["metadata"].(map[string]any)
		labels, _ := meta["labels"].(map[string]any)
		if o["kind"] != "CustomResourceDefinition" && labels["app.kubernetes.io/managed-by"] != "Helm" {
			t.Errorf("%s: no app.kubernetes.io/managed-by=Helm label", identity(o))
		}
	}

	// The comparison sees a one-field change, a missing object and an extra one.
	t.Run("catches differences", func(t *testing.T) {
		changed := render(t, "--set", "daemon.workers=3")
		if d := differences(want, changed); len(d) != 1 || !strings.Contains(d[0], "DaemonSet kube-system/vpcnat-daemon differs") {
			t.Errorf("daemon.workers=3: differences %q, want one naming the DaemonSet", d)
		}
		if d := differences(want, got[1:]); len(d) != 1 || !strings.HasPrefix(d[0], "missing from the chart: ") {
			t.Errorf("an object left out: differences %q", d)
		}
		if d := differences(want[1:], got); len(d) != 1 || !strings.HasPrefix(d[0], "only in the chart: ") {
			t.Errorf("an extra object: differences %q", d)
		}
	})
}

// find returns the rendered object of that kind and name, or fails.
func find(t *testing.T, objs []object, kind, name string) object {
	t.Helper()
	for _, o := range objs {
		if o["kind"] == kind && o["metadata"].(map[string]any)["name"] == name {
			return o
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

// containers returns a workload's init containers and containers by name.
func containers(t *testing.T, o object) map[string]map[string]any {
	t.Helper()
	spec := o["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	m := map[string]map[string]any{}
	for _, field := range []string{"initContainers", "containers"} {
		list, _ := spec[field].([]any)
		for _, c := range list {
			cm := c.(map[string]any)
			m[cm["name"].(string)] = cm
		}
	}
	return m
}

func jsonOf(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func strs(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, s := range list {
		out = append(out, fmt.Sprint(s))
	}
	return out
}

// TestChartValues: every value reaches the field it names.
func TestChartValues(t *testing.T) {
	objs := render(t,
		"--set", "images.controller.repository=registry.example/vpcnat/controller,images.controller.tag=1.2.3,images.controller.pullPolicy=Always",
		"--set", "images.daemon.repository=registry.example/vpcnat/daemon,images.daemon.tag=1.2.4,images.daemon.pullPolicy=Never",
		"--set", "images.gateway.repository=registry.example/vpcnat/gateway,images.gateway.tag=1.2.5",
		"--set", "config.nic=ens5,config.enableVpcNatGw=false,config.dataplane=iptables",
		"--set", "controller.metricsPort=18080,controller.replicas=3,controller.webhook.port=19443",
		"--set", "daemon.metricsPort=19490,daemon.resync=10m",
		"--set", "daemon.nodeSelector.vpcnat/gateway-node=yes",
		"--set", "daemon.resources.limits.memory=1Gi",
		"--set", "controller.tolerations[0].key=dedicated,controller.tolerations[0].operator=Exists",
		"--set", "cni.binDir=/var/lib/cni/bin,cni.confDir=/var/lib/cni/net.d",
		"--set", "controller.hostNetwork=true,controller.env[0].name=KUBERNETES_SERVICE_HOST,controller.env[0].value=198.51.100.7",
		"--set", "daemon.env[0].name=KUBERNETES_SERVICE_PORT,daemon.env[0].value=6443",
	)
	cm := find(t, objs, "ConfigMap", "ovn-vpc-nat-gw-config")["data"].(map[string]any)
	wantCM := map[string]any{"image": "registry.example/vpcnat/gateway:1.2.5", "enable-vpc-nat-gw": "false", "nic": "ens5", "dataplane": "iptables"}
	if !reflect.DeepEqual(cm, wantCM) {
		t.Errorf("ConfigMap data %v, want %v", cm, wantCM)
	}

	ctl := find(t, objs, "Deployment", "vpcnat-controller")
	c := containers(t, ctl)["controller"]
	if c["image"] != "registry.example/vpcnat/controller:1.2.3" || c["imagePullPolicy"] != "Always" {
		t.Errorf("controller image %v %v", c["image"], c["imagePullPolicy"])
	}
	args := strs(c["args"])
	for _, a := range []string{"--metrics-addr=:18080", "--webhook-addr=:19443"} {
		if !slices.Contains(args, a) {
			t.Errorf("controller args %q lack %s", args, a)
		}
	}
	if p := jsonOf(c["ports"]); !strings.Contains(p, `"containerPort":18080`) || !strings.Contains(p, `"containerPort":19443`) {
		t.Errorf("controller ports %s", p)
	}
	spec := ctl["spec"].(map[string]any)
	if spec["replicas"] != float64(3) {
		t.Errorf("controller replicas %v", spec["replicas"])
	}
	pspec := spec["template"].(map[string]any)["spec"].(map[string]any)
	if tol := jsonOf(pspec["tolerations"]); tol != `[{"key":"dedicated","operator":"Exists"}]` {
		t.Errorf("controller tolerations %s", tol)
	}
	if pspec["hostNetwork"] != true {
		t.Errorf("controller hostNetwork %v", pspec["hostNetwork"])
	}
	if env := jsonOf(c["env"]); env != `[{"name":"KUBERNETES_SERVICE_HOST","value":"198.51.100.7"}]` {
		t.Errorf("controller env %s", env)
	}

	ds := find(t, objs, "DaemonSet", "vpcnat-daemon")
	cs := containers(t, ds)
	for _, name := range []string{"install-cni", "vpcnat-daemon", "cni-keeper"} {
		if cs[name]["image"] != "registry.example/vpcnat/daemon:1.2.4" || cs[name]["imagePullPolicy"] != "Never" {
			t.Errorf("%s image %v %v", name, cs[name]["image"], cs[name]["imagePullPolicy"])
		}
	}
	dargs := strs(cs["vpcnat-daemon"]["args"])
	for _, a := range []string{"--metrics-addr=:19490", "--resync=10m"} {
		if !slices.Contains(dargs, a) {
			t.Errorf("daemon args %q lack %s", dargs, a)
		}
	}
	if r := jsonOf(cs["vpcnat-daemon"]["resources"]); !strings.Contains(r, `"memory":"1Gi"`) {
		t.Errorf("daemon resources %s", r)
	}
	if env := jsonOf(cs["vpcnat-daemon"]["env"]); !strings.HasSuffix(env, `{"name":"KUBERNETES_SERVICE_PORT","value":"6443"}]`) || !strings.Contains(env, "NODE_NAME") {
		t.Errorf("daemon env %s", env)
	}
	dspec := ds["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
	if ns := jsonOf(dspec["nodeSelector"]); ns != `{"kubernetes.io/os":"linux","vpcnat/gateway-node":"yes"}` {
		t.Errorf("daemon nodeSelector %s", ns)
	}
	if v := jsonOf(dspec["volumes"]); !strings.Contains(v, `"path":"/var/lib/cni/bin"`) || !strings.Contains(v, `"path":"/var/lib/cni/net.d"`) {
		t.Errorf("daemon volumes %s", v)
	}
}

// TestChartWithoutWebhook: webhook off leaves out its Service, configuration, flags, port and
// the RBAC that only the webhook needs.
func TestChartWithoutWebhook(t *testing.T) {
	objs := render(t, "--set", "controller.webhook.enabled=false")
	for _, o := range objs {
		switch o["kind"] {
		case "Service", "ValidatingWebhookConfiguration":
			t.Errorf("webhook off, yet %s rendered", identity(o))
		}
	}
	c := containers(t, find(t, objs, "Deployment", "vpcnat-controller"))["controller"]
	for _, a := range strs(c["args"]) {
		if strings.HasPrefix(a, "--webhook-") {
			t.Errorf("webhook off, yet controller arg %s", a)
		}
	}
	if p := jsonOf(c["ports"]); strings.Contains(p, "webhook") {
		t.Errorf("webhook off, yet port %s", p)
	}
	role := jsonOf(find(t, objs, "Role", "vpcnat-controller")["rules"])
	cluster := jsonOf(find(t, objs, "ClusterRole", "vpcnat-controller")["rules"])
	if strings.Contains(role, "secrets") || strings.Contains(cluster, "validatingwebhookconfigurations") {
		t.Errorf("webhook off, yet its RBAC: Role %s ClusterRole %s", role, cluster)
	}
	// Everything else is as with the webhook on.
	if len(objs) != len(render(t))-2 {
		t.Errorf("webhook off renders %d objects, want 2 fewer than with it on", len(objs))
	}
}
