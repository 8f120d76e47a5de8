package e2e

import (
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
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/topo"
)

// TestVpcNat installs the project on the one-node cluster exactly as a user would (kubectl
// apply of deploy/: CRDs, the controller, the DaemonSet whose init container installs and
// chains the CNI plugin, the ConfigMap), applies examples/seed.yaml and checks the gateway with
// real packets between test hosts on an external network and a VPC subnet attached to the
// node; then edits every rule kind, restarts the daemon under an open connection, deletes the
// gateway pod, kills its sandbox (the kubelet recreates it under the same pod), rolls the gateway
// image, runs a normal pod and an impostor, and deletes the gateway, checking what each leaves on
// the node. A failed step logs what it left (diagnoseStep) before the next one starts. The
// cluster is stopped at the end and nothing of it, or of the test networks, may be left.
//
// Address plan (test/topo's NewSeedOnNode, the seed's addresses): the external network is the
// bridge vne2e-ext and the subnet sn the bridge br-sn (the seed's Subnet names it), both in the
// host's namespace, with no address; every address is inside the test hosts' namespaces
// (vne2e-<role>): rtr 192.168.0.254 (the EIPs' gateway) and cli 192.168.0.50 on the external
// network, inet 198.51.100.10 behind rtr; pod1 10.0.1.5, pod2 10.0.1.10 and pod3 10.0.1.20
// (default via lanIp 10.0.1.254) and the VPC router vr 10.0.1.100 on br-sn, lab 203.0.113.10
// behind vr. The gateway holds the seed's EIPs 192.168.0.111 and .112, and .113 after the SNAT
// edit. The node's pod network is the cluster's (10.244.0.0/24); the host sends only to pod IPs
// it routes over the node bridge.
func TestVpcNat(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs containerd, a kubelet, and network namespaces")
	}
	ctx, cancel := testContext(t)
	defer cancel()
	e := startVpcEnv(ctx, t)
	e.startIPv6Watch()
	e.buildNetworks()
	e.install()
	now := e.applySeed()

	for _, p := range []struct {
		name string
		run  func() flows
	}{
		{"normal pod", func() flows { e.normalPod(); return now }},
		{"impostor", func() flows { e.impostor(now); return now }},
		{"tenants", func() flows { e.tenants(now); return now }},
		{"edits", func() flows { return e.edits(now) }},
		{"daemon restart", func() flows { e.daemonRestart(now); return now }},
		{"gateway pod deleted", func() flows { e.gatewayPodDeleted(now); return now }},
		{"sandbox reboot", func() flows { e.sandboxReboot(now); return now }},
		{"image roll", func() flows { e.imageRoll(now); return now }},
		{"pod cannot start", func() flows { e.podCannotStart(now); return now }},
		{"gateway deleted", func() flows { e.gatewayDeleted(); return now }},
	} {
		// A failed step goes on to the next: each starts from the gateway as it is, and one
		// that cannot (no gateway pod) says so.
		name := strings.ReplaceAll(p.name, " ", "_")
		t.Run(name, func(t *testing.T) {
			e.t = t
			defer func() { e.t = e.top }()
			// Before the next step changes the gateway: what the failed step left.
			defer func() {
				if t.Failed() {
					e.diagnoseStep(t, name)
				}
			}()
			now = p.run()
		})
	}
	e.checkIPv6()
}

// Names and ports of the test's installation.
const (
	netPrefix = "vne2e"
	extBridge = "vne2e-ext" // the ConfigMap's nic
	vpcBridge = "br-sn"     // examples/seed.yaml's Subnet sn: natGatewayAttachment.bridge
	gwName    = "ngw"
	vpcName   = "test-vpc-1"
	// daemonMetricsPort is deploy/daemonset's --metrics-addr (host network); the controller's
	// is moved to controllerMetricsPort (hostNetwork here). Both must be free on the host.
	daemonMetricsPort     = 9490
	controllerMetricsPort = 10361
	gatewayImage          = "vpcnat.local/vpcnat-gateway:dev" // deploy/daemonset/20-configmap.yaml's
	gatewayImageV2        = "vpcnat.local/vpcnat-gateway:v2"
	daemonLabel           = "app.kubernetes.io/name=vpcnat-daemon"
	// daemonVerbosity: the daemon logs every sync's outcome at 4 (a failure's log must show
	// which path a sync took).
	daemonVerbosity = 4
)

// vpcEnv is TestVpcNat's world: the cluster, clients, the test networks and servers, timings.
type vpcEnv struct {
	t, top *testing.T
	ctx    context.Context
	c      *Cluster
	client kubernetes.Interface
	kovn   *kubeovn.Client
	net    *topo.NodeTopology
	times  timings
	began  time.Time
	// fp is the union of what the running cluster owned at each moment it was recorded:
	// stop.sh must remove all of it.
	fp *Footprint
	// installed is when deploy/ (the CRDs with it) was applied.
	installed time.Time
	// ipv6 watches for IPv6 frames from the gateways' links over the whole test.
	ipv6    *ipv6Watch
	dir     string
	apiHost string
	apiPort string
	// dataplane is the NAT backend the ConfigMaps applied name ("": the key left out).
	dataplane string
}

// startVpcEnv starts a fresh cluster (cleaning a killed run's state first) and registers the
// clean-up: diagnostics on failure, the test networks, stop.sh, and the checks that nothing is
// left behind on the host.
func startVpcEnv(ctx context.Context, t *testing.T) *vpcEnv {
	e := &vpcEnv{t: t, top: t, ctx: ctx, began: time.Now(), dir: t.TempDir()}
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if e.c, err = NewCluster(ctx, repo); err != nil {
		t.Fatal(err)
	}
	switch exists, alive := e.c.Running(); {
	case alive:
		t.Fatalf("a cluster is running from %s (started by hand?): stop it with hack/cluster/stop.sh first", e.c.Env["RUN_DIR"])
	case exists:
		if out, err := e.c.Stop(); err != nil {
			t.Fatalf("cleaning an earlier run's state: %v", err)
		} else {
			t.Logf("cleaned an earlier run's state:\n%s", out)
		}
	}
	for _, p := range []int{daemonMetricsPort, controllerMetricsPort} {
		l, err := net.Listen("tcp", fmt.Sprintf(":%d", p))
		if err != nil {
			t.Fatalf("port %d is taken on the host (the daemon or the controller would listen there): %v", p, err)
		}
		l.Close()
	}
	mark := time.Now()
	if _, err := e.c.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	e.times.add("setup (warm: checks only)", time.Since(mark))
	before, err := e.c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lockBefore := exists("/run/xtables.lock")
	t.Cleanup(func() { e.stopAndCheck(before, lockBefore) })

	mark = time.Now()
	out, err := e.c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	e.times.add("start: empty etcd to node Ready", time.Since(mark))
	t.Logf("start.sh:\n%s", out)

	cfg, err := clientcmd.BuildConfigFromFlags("", e.c.Env["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	e.apiHost, e.apiPort = u.Hostname(), u.Port()
	if e.client, err = kubernetes.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if e.kovn, err = kubeovn.NewForConfig(cfg); err != nil {
		t.Fatal(err)
	}
	// Runs first: while everything is still there to look at.
	t.Cleanup(func() {
		if t.Failed() {
			e.diagnose()
		}
	})
	return e
}

// stopAndCheck stops the cluster and fails the test for anything left behind.
func (e *vpcEnv) stopAndCheck(before *HostState, lockBefore bool) {
	t := e.top
	ctx := context.Background()
	e.ctx = ctx // the test's own has ended
	e.recordFootprint()
	e.saveLogs()
	if e.net != nil && e.fp != nil {
		// stop.sh removes them (registered with the cluster), after the pods whose CNI DEL
		// still needs the bridges.
		e.fp.Links = appendNew(e.fp.Links, e.net.HostLinks()...)
		e.fp.Netns = appendNew(e.fp.Netns, e.net.Namespaces()...)
	}
	mark := time.Now()
	out, err := e.c.Stop()
	if err != nil {
		t.Errorf("stop: %v", err)
	} else {
		t.Logf("stop.sh:\n%s", out)
	}
	e.times.add("stop: all torn down", time.Since(mark))
	if e.fp != nil {
		// What the check below looks for must have been there, or it proves nothing.
		t.Logf("checking that stop.sh removed: %d processes, netns %v, links %v", len(e.fp.PIDs), e.fp.Netns, e.fp.Links)
		for _, l := range e.c.Leftovers(ctx, e.fp) {
			t.Errorf("left behind after stop.sh: %s", l)
		}
	}
	if after, err := e.c.Snapshot(ctx); err != nil {
		t.Error(err)
	} else {
		for _, d := range before.Diff(after) {
			t.Errorf("host changed by the cluster: %s", d)
		}
	}
	if lockAfter := exists("/run/xtables.lock"); lockAfter != lockBefore {
		t.Errorf("/run/xtables.lock existed %v before, %v after", lockBefore, lockAfter)
	}
	e.times.add("TestVpcNat: start to stopped", time.Since(e.began))
	e.times.report(t, filepath.Join(e.c.Env["LOG_DIR"], "e2e-vpcnat-timings.txt"))
}

// saveLogs keeps the controller's and the daemon's logs beside the cluster's (stop.sh removes
// the pods' own).
func (e *vpcEnv) saveLogs() {
	if exists, alive := e.c.Running(); !exists || !alive {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for file, sel := range map[string]string{"vpcnat-daemon.log": daemonLabel, "vpcnat-controller.log": "app=vpcnat-controller"} {
		out, err := e.c.Kubectl(ctx, "-n", "kube-system", "logs", "-l", sel, "--all-containers", "--prefix", "--timestamps", "--tail=-1")
		if err != nil {
			out += "\n" + err.Error()
		}
		_ = os.WriteFile(filepath.Join(e.c.Env["LOG_DIR"], file), []byte(out), 0o644)
	}
}

// recordFootprint adds what the running cluster owns now (processes, pod netns, links) and the
// gateway's node-side links to e.fp.
func (e *vpcEnv) recordFootprint() {
	if exists, alive := e.c.Running(); !exists || !alive {
		return
	}
	fp, err := e.c.Footprint(context.Background())
	if err != nil {
		e.top.Errorf("footprint: %v", err)
		return
	}
	if pod, err := e.gatewayPod(); err == nil && pod != nil {
		if g := e.gatewayNoFail(pod); g != nil {
			fp.Links = append(fp.Links, strings.Split(g.hostLinks, ",")...)
			fp.Netns = append(fp.Netns, netnsName(g.netns))
		}
	}
	if e.fp == nil {
		e.fp = &Footprint{}
	}
	// Processes: only those of the latest record. One that ended since an earlier record may
	// have had its PID reused by now (Leftovers also finds any process in the cluster's cgroups).
	e.fp.PIDs = fp.PIDs
	e.fp.Netns = appendNew(e.fp.Netns, fp.Netns...)
	e.fp.Links = appendNew(e.fp.Links, fp.Links...)
	e.fp.Cgroups = appendNew(e.fp.Cgroups, fp.Cgroups...)
}

func appendNew(s []string, more ...string) []string {
	for _, m := range more {
		if m != "" && !slices.Contains(s, m) {
			s = append(s, m)
		}
	}
	return s
}

// diagnose logs what a failure needs: pods, the gateway, Events, the components' logs.
func (e *vpcEnv) diagnose() {
	t := e.top
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, args := range [][]string{
		{"get", "pods", "-A", "-o", "wide"},
		{"get", "vpc-nat-gw", "-o", "yaml"},
		{"get", "events", "-A", "--sort-by=.lastTimestamp"},
		{"-n", "kube-system", "logs", "-l", daemonLabel, "--all-containers", "--tail=60"},
		// A daemon pod stuck in its init container has no log above (PodInitializing).
		{"-n", "kube-system", "logs", "-l", daemonLabel, "-c", "install-cni", "--tail=30"},
		{"-n", "kube-system", "logs", "-l", daemonLabel, "-c", "install-cni", "--previous", "--tail=30"},
		{"-n", "kube-system", "logs", "deploy/vpcnat-controller", "--tail=60"},
	} {
		out, err := e.c.Kubectl(ctx, args...)
		t.Logf("kubectl %s:\n%s%v", strings.Join(args, " "), out, errOrEmpty(err))
	}
	if recs, err := records(); err == nil {
		t.Logf("attachment records on the node: %v", recs)
	}
	e.c.LogTails(t, 20)
}

func errOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// buildNetworks attaches the external network and the VPC subnet to the node, with their test
// hosts and servers.
func (e *vpcEnv) buildNetworks() {
	t := e.t
	n, err := topo.NewSeedOnNode(netPrefix, extBridge, vpcBridge, e.c)
	if err != nil {
		t.Fatal(err)
	}
	// No Close: stop.sh removes the networks (registered), after the pods; stopAndCheck checks.
	e.net = n
	listen := []struct{ role, proto, addr string }{
		{topo.Inet, "tcp", topo.InetIP + ":8080"},
		{topo.Inet, "udp", topo.InetIP + ":8081"},
		{topo.Pod1, "tcp", topo.Pod1IP + ":7000"},
		{topo.Pod2, "tcp", topo.Pod2IP + ":80"},
		{topo.Pod3, "tcp", topo.Pod3IP + ":7000"},
		{topo.Lab, "tcp", topo.LabIP + ":8080"},
	}
	for _, l := range listen {
		if l.proto == "tcp" {
			s, err := n.ListenStream(l.role, l.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
		} else {
			s, err := n.Listen(l.role, l.proto, l.addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
		}
	}
}

// kubectlApply writes docs to a file and applies it.
func (e *vpcEnv) kubectlApply(name string, docs []*unstructured.Unstructured) string {
	e.t.Helper()
	path := filepath.Join(e.dir, name)
	if err := writeManifests(path, docs); err != nil {
		e.t.Fatal(err)
	}
	out, err := e.c.Kubectl(e.ctx, "apply", "-f", path)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *vpcEnv) kubectl(args ...string) string {
	e.t.Helper()
	out, err := e.c.Kubectl(e.ctx, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

func (e *vpcEnv) adaptation() nodeAdaptation {
	return nodeAdaptation{
		cniBinDir: e.c.Env["CNI_BIN_DIR"], cniConfDir: e.c.Env["CNI_CONF_DIR"],
		apiHost: e.apiHost, apiPort: e.apiPort, controllerMetricsPort: controllerMetricsPort,
		nic: extBridge, gatewayImage: gatewayImage, daemonVerbosity: daemonVerbosity,
		controllerVerbosity: 2, dataplane: e.dataplane,
	}
}

// install applies deploy/ (adapted to the node, see nodeAdaptation) and waits for the daemon
// (CNI plugin installed and chained) and the controller.
func (e *vpcEnv) install() {
	t := e.t
	docs, err := loadManifests(filepath.Join(e.c.Repo, "deploy", "crds"), filepath.Join(e.c.Repo, "deploy", "controller"),
		filepath.Join(e.c.Repo, "deploy", "daemonset"))
	if err != nil {
		t.Fatal(err)
	}
	changes, err := e.adaptation().adapt(docs)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) < 3 {
		t.Fatalf("deploy/ adapted in %d places, want the DaemonSet, the controller and the ConfigMap: %q", len(changes), changes)
	}
	t.Logf("deploy/ (%d objects) adapted to the node:\n  %s", len(docs), strings.Join(changes, "\n  "))
	// The wait for the controller below means "caches synced" only through this probe.
	if err := probesReadyz(docs, "vpcnat-controller"); err != nil {
		t.Fatal(err)
	}
	mark := time.Now()
	e.installed = mark
	t.Logf("kubectl apply deploy/:\n%s", e.kubectlApply("deploy.yaml", docs))

	daemonReady := pollWithin(e.ctx, t, waitLimit, "DaemonSet vpcnat-daemon ready", func() (bool, error) {
		ds, err := e.client.AppsV1().DaemonSets("kube-system").Get(e.ctx, "vpcnat-daemon", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return ds.Status.DesiredNumberScheduled == 1 && ds.Status.NumberReady == 1, nil
	})
	e.times.add("apply deploy/ -> daemon pod Ready", daemonReady.Sub(mark))
	healthy := pollWithin(e.ctx, t, waitLimit, "daemon /readyz (caches synced)", func() (bool, error) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", daemonMetricsPort))
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	e.times.add("apply deploy/ -> daemon synced", healthy.Sub(mark))
	// The controller is Ready (its one pod, through the kubelet's readinessProbe on /readyz)
	// once it leads and its caches have synced, which can be a second after it took the Lease:
	// its informers of the CRDs applied with it start before the API server serves them, and
	// their first list is retried after the reflector's backoff. A seed applied before then
	// would count the controller's start in "seed apply -> ...".
	ready := pollWithin(e.ctx, t, waitLimit, "Deployment vpcnat-controller Available (its pod Ready)", func() (bool, error) {
		return deploymentAvailable(e.ctx, e.client, "kube-system", "vpcnat-controller")
	})
	e.times.add("apply deploy/ -> controller Ready (leader, caches synced)", ready.Sub(mark))
	// A standby is Ready too (pkg/controller Readiness); this one replica must be the leader.
	if code, body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/readyz", controllerMetricsPort)); err != nil || code != http.StatusOK || body != "ok: leader\n" {
		t.Fatalf("controller Ready, but its /readyz answers %d %q (%v), want the leader's ok", code, body, err)
	}

	// The init container installed the plugin and chained it last in the node's conflist.
	bin := filepath.Join(e.c.Env["CNI_BIN_DIR"], "vpcnat")
	if st, err := os.Stat(bin); err != nil || st.Mode()&0o111 == 0 {
		t.Errorf("plugin %s not installed as an executable: %v", bin, err)
	}
	conf := filepath.Join(e.c.Env["CNI_CONF_DIR"], "10-vpcnat-node.conflist")
	if types, err := chainTypes(conf); err != nil {
		t.Fatal(err)
	} else if !slices.Equal(types, []string{"bridge", "vpcnat"}) {
		t.Errorf("%s chains %v, want [bridge vpcnat]", conf, types)
	}
	e.primaryRewritesConflist(conf)
}

// chainTypes are the plugin types of a conflist, in order.
func chainTypes(conf string) ([]string, error) {
	b, err := os.ReadFile(conf)
	if err != nil {
		return nil, err
	}
	var list struct {
		Plugins []struct {
			Type string `json:"type"`
		} `json:"plugins"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("%s: %w", conf, err)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Type)
	}
	return types, nil
}

// primaryRewritesConflist does what a primary CNI's agent does when it (re)writes its network
// configuration: the conflist without the vpcnat entry, written to a temporary file and renamed
// over it. The DaemonSet's cni-keeper must chain vpcnat again; the gateway created next goes
// through the restored chain.
func (e *vpcEnv) primaryRewritesConflist(conf string) {
	t := e.t
	b, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("%s: %v", conf, err)
	}
	plugins, _ := list["plugins"].([]any)
	var kept []any
	for _, p := range plugins {
		if m, ok := p.(map[string]any); ok && m["type"] != "vpcnat" {
			kept = append(kept, p)
		}
	}
	list["plugins"] = kept
	out, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tmp := conf + ".primary-tmp"
	if err := os.WriteFile(tmp, out, 0o644); err != nil {
		t.Fatal(err)
	}
	mark := time.Now()
	if err := os.Rename(tmp, conf); err != nil {
		t.Fatal(err)
	}
	back := pollWithin(e.ctx, t, 30*time.Second, "cni-keeper chains vpcnat again after the primary CNI rewrote "+conf, func() (bool, error) {
		types, err := chainTypes(conf)
		return err == nil && slices.Equal(types, []string{"bridge", "vpcnat"}), err
	})
	e.times.add("primary CNI rewrites its conflist -> vpcnat chained again (cni-keeper)", back.Sub(mark))
}

// probesReadyz checks that the Deployment's containers have a readinessProbe GETting /readyz.
func probesReadyz(docs []*unstructured.Unstructured, name string) error {
	for _, o := range docs {
		if o.GetKind() != "Deployment" || o.GetName() != name {
			continue
		}
		containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
		if err != nil || len(containers) == 0 {
			return fmt.Errorf("Deployment %s: no containers (%v)", name, err)
		}
		for _, c := range containers {
			path, _, _ := unstructured.NestedString(c.(map[string]any), "readinessProbe", "httpGet", "path")
			if path != "/readyz" {
				return fmt.Errorf("Deployment %s: container %v probes readiness on %q, want /readyz", name, c.(map[string]any)["name"], path)
			}
		}
		return nil
	}
	return fmt.Errorf("no Deployment %s in deploy/", name)
}

// httpGet returns the status code and body of a GET.
func httpGet(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// seedRules are the status rule keys of examples/seed.yaml.
var seedRules = []string{"eip 192.168.0.111/24", "eip 192.168.0.112/24", "fip 192.168.0.111",
	"dnat 192.168.0.112:8888/tcp", "snat 10.0.1.0/24"}

// applySeed applies examples/seed.yaml as is but for its ConfigMap (this node's nic, an image
// the node has), measures CR apply -> first NATed packet, and checks every rule with packets.
func (e *vpcEnv) applySeed() flows {
	t := e.t
	docs, err := loadManifests(filepath.Join(e.c.Repo, "examples", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	changes, err := e.adaptation().adapt(docs)
	if err != nil || len(changes) != 1 {
		t.Fatalf("adapting the seed's ConfigMap: %q, %v", changes, err)
	}
	t.Logf("examples/seed.yaml (%d objects) adapted: %s", len(docs), changes[0])

	// From before kubectl starts until the first packet arrives NATed, from outside (the client
	// to the DNAT) and from inside (pod3 to the internet host, SNAT: not pod2, which the DNAT
	// makes the gateway ARP for, teaching it the gateway's MAC): probes every 10 ms, each given
	// 200 ms. Each side's first packet also waits for its own ARP: the client's is answered by
	// the gateway's gratuitous ARP for the EIP, pod3's only by its next ARP retry (every second)
	// unless something announces the gateway's subnet addresses.
	firstSNAT, firstDNAT := make(chan time.Time, 1), make(chan time.Time, 1)
	pctx, stop := context.WithCancel(e.ctx)
	defer stop()
	mark := time.Now()
	t.Logf("applying examples/seed.yaml at %s", mark.UTC().Format(time.RFC3339Nano))
	for f, ch := range map[string]chan time.Time{"static route (pod3)": firstSNAT, "dnat": firstDNAT} {
		go func() {
			for pctx.Err() == nil {
				if probe(e.net, seedFlows.get(f), 200*time.Millisecond) == "" {
					ch <- time.Now()
					return
				}
				time.Sleep(10 * time.Millisecond)
			}
		}()
	}
	steps := e.watchSteps(pctx)
	t.Logf("kubectl apply examples/seed.yaml:\n%s", e.kubectlApply("seed.yaml", docs))
	running := pollWithin(e.ctx, t, waitLimit, "gateway pod Running", func() (bool, error) {
		p, err := e.gatewayPod()
		return p != nil, err
	})
	var snatAt, dnatAt time.Time
	for _, w := range []struct {
		ch  chan time.Time
		at  *time.Time
		who string
	}{{firstSNAT, &snatAt, "SNATed packet from pod3"}, {firstDNAT, &dnatAt, "DNATed packet from the client"}} {
		select {
		case *w.at = <-w.ch:
		case <-time.After(60 * time.Second):
			t.Fatalf("no %s 60 s after applying the seed", w.who)
		}
	}
	firstNAT := snatAt
	if dnatAt.Before(firstNAT) {
		firstNAT = dnatAt
	}
	pollWithin(e.ctx, t, waitLimit, "VpcNatGateway Ready", func() (bool, error) {
		gw, err := e.gatewayCR()
		if err != nil {
			return false, err
		}
		ok, _ := appliedGeneration(gw)
		return ok, nil
	})
	for _, st := range steps.sorted() {
		e.times.add("seed apply -> "+st.what, st.at.Sub(mark))
	}
	e.times.add("seed apply -> gateway pod Running", running.Sub(mark))
	e.times.add("seed apply -> first DNATed packet (cli)", dnatAt.Sub(mark))
	e.times.add("seed apply -> first SNATed packet (pod3)", snatAt.Sub(mark))
	e.times.add("seed apply -> first NATed packet", firstNAT.Sub(mark))
	if d := firstNAT.Sub(mark); d > 3*time.Second {
		t.Logf("CR apply -> first NATed packet took %v, over the 3 s target", d)
	}

	// What a user sees.
	table := e.kubectl("get", "vpc-nat-gw")
	t.Logf("kubectl get vpc-nat-gw:\n%s", table)
	if col := tableColumn(table, gwName, "READY"); col != "True" {
		t.Errorf("kubectl get vpc-nat-gw: READY of %s is %q, want True", gwName, col)
	}
	gw := e.waitApplied("seed", seedRules)
	g := e.gateway()
	if gw.Status.Pod != "kube-system/"+g.name || gw.Status.Node != e.c.Env["NODE_NAME"] {
		t.Errorf("status names pod %q on node %q, want kube-system/%s on %s", gw.Status.Pod, gw.Status.Node, g.name, e.c.Env["NODE_NAME"])
	}
	vpc, err := e.kovn.Vpcs.Get(e.ctx, vpcName, metav1.GetOptions{})
	if err != nil || !slices.Contains(vpc.Status.NatGateways, gwName) {
		t.Errorf("Vpc %s status lists gateways %v (%v), want %s", vpcName, vpc.Status.NatGateways, err, gwName)
	}
	checkFlows(t, e.net, "examples/seed.yaml", seedFlows)
	e.checkNetworkStatus(g)
	e.recordFootprint()
	return seedFlows
}

// steps records when the test first saw each step from a VpcNatGateway to its applied state
// (to the millisecond: the objects' own timestamps have seconds).
type steps struct {
	mu    sync.Mutex
	first map[string]time.Time
}

type step struct {
	what string
	at   time.Time
}

func (s *steps) saw(what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.first[what]; !ok {
		s.first[what] = time.Now()
	}
}

func (s *steps) sorted() []step {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []step
	for w, at := range s.first {
		out = append(out, step{w, at})
	}
	slices.SortFunc(out, func(a, b step) int { return a.at.Compare(b.at) })
	return out
}

// watchSteps watches the gateway's Deployment and pods until ctx ends.
func (e *vpcEnv) watchSteps(ctx context.Context) *steps {
	s := &steps{first: map[string]time.Time{}}
	dw, err := e.client.AppsV1().Deployments(plan.GatewayNamespace).Watch(ctx, metav1.ListOptions{
		FieldSelector: "metadata.name=" + plan.DeploymentName(gwName)})
	if err != nil {
		e.t.Fatal(err)
	}
	pw, err := e.client.CoreV1().Pods(plan.GatewayNamespace).Watch(ctx, metav1.ListOptions{
		LabelSelector: plan.LabelGateway + "=" + gwName})
	if err != nil {
		e.t.Fatal(err)
	}
	gw, err := e.kovn.VpcNatGateways.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + gwName})
	if err != nil {
		e.t.Fatal(err)
	}
	go func() {
		defer gw.Stop()
		for ev := range gw.ResultChan() {
			if g, ok := ev.Object.(*v1.VpcNatGateway); ok {
				if ok, _ := appliedGeneration(g); ok {
					s.saw("status Ready, every rule Applied")
				}
			}
		}
	}()
	go func() {
		defer dw.Stop()
		for range dw.ResultChan() {
			s.saw("Deployment created")
		}
	}()
	go func() {
		defer pw.Stop()
		for ev := range pw.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			s.saw("pod created")
			if p.Spec.NodeName != "" {
				s.saw("pod scheduled")
			}
			if p.Status.PodIP != "" {
				s.saw("pod IP reported")
			}
			if _, ok := p.Annotations[annotations.DesiredKey]; ok {
				s.saw("desired annotation on the pod")
			}
			if _, ok := p.Annotations[annotations.AppliedKey]; ok {
				s.saw("applied annotation on the pod")
			}
		}
	}()
	return s
}

// tableColumn is the value of column col in the row whose first column is row, in kubectl's
// table output.
func tableColumn(table, row, col string) string {
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if len(lines) < 2 {
		return ""
	}
	i := slices.Index(strings.Fields(lines[0]), col)
	for _, l := range lines[1:] {
		if fs := strings.Fields(l); len(fs) > i && i >= 0 && fs[0] == row {
			return fs[i]
		}
	}
	return ""
}

// normalPod: a normal workload still starts through the chain and gets no extra interface
// (runProbe checks exactly eth0 and lo) and no attachment record.
func (e *vpcEnv) normalPod() {
	t := e.t
	name := runProbe(e.ctx, t, e.c, &e.times)
	pod, err := e.client.CoreV1().Pods("default").Get(e.ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if recs, _ := records(); slices.Contains(recs, string(pod.UID)) {
		t.Errorf("the normal pod %s got an attachment record", name)
	}
	e.recordFootprint()
	e.kubectl("delete", "-f", filepath.Join("testdata", "probe.yaml"), "--wait=false")
}

// impostor: a pod outside the gateway namespace with every gateway annotation of the real
// gateway pod (desired state included) and its labels gets nothing: only eth0 and lo, no
// record, no applied annotation, and the real gateway is unharmed (the impostor's net1 would
// carry the same MAC and EIPs).
func (e *vpcEnv) impostor(now flows) {
	t := e.t
	gw, err := e.gatewayPod()
	if err != nil || gw == nil {
		t.Fatalf("gateway pod: %v", err)
	}
	ann := map[string]string{}
	for _, k := range annotationsOfGateway {
		if v, ok := gw.Annotations[k]; ok {
			ann[k] = v
		}
	}
	if len(ann) != len(annotationsOfGateway) {
		t.Fatalf("the gateway pod has %d of the %d gateway annotations", len(ann), len(annotationsOfGateway))
	}
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "impostor", Namespace: "default", Annotations: ann, Labels: gw.Labels},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "probe", Image: "vpcnat.local/e2e-probe:dev", ImagePullPolicy: corev1.PullNever,
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/", Port: intstr8080}}, PeriodSeconds: 1},
			}},
		},
	}
	b, err := json.Marshal(pod)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, "impostor.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	e.kubectl("apply", "-f", path)
	defer func() { _, _ = e.c.Kubectl(e.ctx, "delete", "-f", path, "--wait=false") }()
	var p *corev1.Pod
	pollWithin(e.ctx, t, waitLimit, "impostor pod Ready", func() (bool, error) {
		var err error
		p, err = e.client.CoreV1().Pods("default").Get(e.ctx, "impostor", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	e.recordFootprint()
	names := e.podInterfaces(p.Status.PodIP)
	if !slices.Equal(names, []string{"eth0", "lo"}) {
		t.Errorf("impostor has interfaces %v, want exactly eth0 and lo", names)
	}
	if recs, _ := records(); slices.Contains(recs, string(p.UID)) {
		t.Errorf("impostor got an attachment record")
	}
	// The daemon would have answered within milliseconds; give it a second.
	time.Sleep(time.Second)
	p, err = e.client.CoreV1().Pods("default").Get(e.ctx, "impostor", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := p.Annotations[annotations.AppliedKey]; ok {
		t.Errorf("impostor got an applied annotation: %s", v)
	}
	checkFlows(t, e.net, "with the impostor running", now)
}

// intstr8080 is the probe's port.
var intstr8080 = intstr.FromInt32(8080)

// podInterfaces asks the probe image at ip for its interfaces (sorted), after checking the host
// routes ip over the node bridge.
func (e *vpcEnv) podInterfaces(ip string) []string {
	t := e.t
	route, err := exec.CommandContext(e.ctx, "ip", "-o", "route", "get", ip).Output()
	if err != nil || !slices.Contains(strings.Fields(string(route)), e.c.Env["NODE_BRIDGE"]) {
		t.Fatalf("the host routes pod IP %s via %q (%v), not the node bridge: not sending", ip, route, err)
	}
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + net.JoinHostPort(ip, "8080") + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep struct {
		Interfaces []struct{ Name string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range rep.Interfaces {
		names = append(names, i.Name)
	}
	slices.Sort(names)
	return names
}

// edit patches the cluster (kubectl patch args), waits for wait to behave as wanted (within
// 2 s), for the status to report the rules want, then checks every flow of now and that the
// gateway pod was neither restarted nor recreated.
func (e *vpcEnv) edit(what string, args []string, wait flow, now flows, rules []string) flows {
	t := e.t
	was := e.gateway()
	start := time.Now()
	e.kubectl(append([]string{"patch"}, args...)...)
	took := waitFlow(t, e.net, wait, start, 15*time.Second)
	e.times.add("edit "+what+" -> traffic follows", took)
	if took > 2*time.Second {
		// A figure, not a verdict (timings are benchmarks): the timings table reports it.
		t.Logf("%s edit: traffic followed after %v, over the 2 s target", what, took)
	}
	e.waitApplied(what+" edit", rules)
	checkFlows(t, e.net, "after the "+what+" edit", now)
	e.sameGateway(was, "the "+what+" edit")
	return now
}

// edits changes each rule kind in turn: FIP, DNAT, SNAT with a new EIP, and a Vpc static route.
func (e *vpcEnv) edits(now flows) flows {
	tcp := func(name, from, to, at, seen string) flow {
		return flow{name: name, from: from, proto: "tcp", to: to, wantAt: at, wantSeen: seen}
	}
	inet := topo.InetIP + ":8080"

	// FIP: 192.168.0.111 moves from pod1 to pod3; pod1 falls back to SNAT.
	now = now.with(
		tcp("fip in", topo.Client, eipFIP+":7000", topo.Pod3IP+":7000", topo.ClientIP),
		tcp("fip out", topo.Pod3, inet, inet, eipFIP),
		tcp("snat (pod1)", topo.Pod1, inet, inet, eipShared),
		tcp("static route (pod3)", topo.Pod3, inet, inet, eipFIP),
	)
	now = e.edit("fip", []string{"vpc-nat-gw", gwName, "--type=json", "-p",
		`[{"op":"replace","path":"/spec/floatingIpRules/0/internalIp","value":"10.0.1.20"}]`},
		now.get("fip in"), now, seedRules)

	// DNAT: 192.168.0.112:8888 now forwards to pod1:7000.
	now = now.with(
		tcp("dnat", topo.Client, eipShared+":8888", topo.Pod1IP+":7000", topo.ClientIP),
		tcp("hairpin", topo.Pod2, eipShared+":8888", topo.Pod1IP+":7000", subnetGW),
	)
	now = e.edit("dnat", []string{"vpc-nat-gw", gwName, "--type=json", "-p",
		`[{"op":"replace","path":"/spec/dnatRules/0/internalIp","value":"10.0.1.5"},` +
			`{"op":"replace","path":"/spec/dnatRules/0/internalPort","value":7000}]`},
		now.get("dnat"), now, seedRules)

	// SNAT (and EIPs): a third EIP, 192.168.0.113, becomes the subnet's SNAT address.
	now = now.with(
		tcp("snat", topo.Pod2, inet, inet, eipAdded),
		flow{name: "snat (udp)", from: topo.Pod2, proto: "udp", to: topo.InetIP + ":8081", wantAt: topo.InetIP + ":8081", wantSeen: eipAdded},
		tcp("snat (pod1)", topo.Pod1, inet, inet, eipAdded),
	)
	now = e.edit("snat+eip", []string{"vpc-nat-gw", gwName, "--type=json", "-p",
		`[{"op":"add","path":"/spec/eips/-","value":{"eipCIDR":"192.168.0.113/24","gateway":"192.168.0.254"}},` +
			`{"op":"replace","path":"/spec/snatRules/0/eip","value":"192.168.0.113"}]`},
		now.get("snat"), now, append(slices.Clone(seedRules), "eip 192.168.0.113/24"))

	// Vpc static route: the lab network behind the VPC router vr, through the subnet (no SNAT:
	// it does not leave on net1).
	now = now.with(tcp("vpc route (lab)", topo.Pod3, topo.LabIP+":8080", topo.LabIP+":8080", topo.Pod3IP))
	return e.edit("vpc static route", []string{"vpc", vpcName, "--type=json", "-p",
		`[{"op":"add","path":"/spec/staticRoutes/-","value":{"cidr":"203.0.113.0/25","nextHopIP":"10.0.1.100","policy":"policyDst"}}]`},
		now.get("vpc route (lab)"), now, append(slices.Clone(seedRules), "eip 192.168.0.113/24"))
}

// daemonRestart deletes the daemon's pod under an open connection through the DNAT: the new
// daemon changes nothing in the gateway's netns and the connection carries on.
func (e *vpcEnv) daemonRestart(now flows) {
	t := e.t
	was := e.gateway()
	dnat := now.get("dnat")
	conn, err := e.net.Dial(dnat.from, dnat.to, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r0, err := conn.Exchange(2 * time.Second)
	if err != nil || r0.Local != dnat.wantAt {
		t.Fatalf("open connection through the DNAT: %+v, %v (want it answered by %s)", r0, err, dnat.wantAt)
	}
	before, err := kernelState(e.ctx, was.netns)
	if err != nil {
		t.Fatal(err)
	}
	gwPod, _ := e.gatewayPod()
	appliedBefore := gwPod.Annotations[annotations.AppliedKey]
	old, err := e.client.CoreV1().Pods("kube-system").List(e.ctx, metav1.ListOptions{LabelSelector: daemonLabel})
	if err != nil || len(old.Items) != 1 {
		t.Fatalf("daemon pods: %v (%d)", err, len(old.Items))
	}

	mark := time.Now()
	e.kubectl("-n", "kube-system", "delete", "pod", old.Items[0].Name)
	gone := time.Now()
	pollWithin(e.ctx, t, waitLimit, "a new daemon pod Ready", func() (bool, error) {
		pods, err := e.client.CoreV1().Pods("kube-system").List(e.ctx, metav1.ListOptions{LabelSelector: daemonLabel})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if p.UID != old.Items[0].UID && p.Status.Phase == corev1.PodRunning && podReady(&p) {
				return true, nil
			}
		}
		return false, nil
	})
	var m map[string]float64
	synced := pollWithin(e.ctx, t, waitLimit, "the new daemon's first sync of the gateway", func() (bool, error) {
		var err error
		m, err = daemonMetrics(e.ctx)
		return err == nil && m[`vpcnat_daemon_syncs_total{result="success"}`] >= 1, err
	})
	e.times.add("daemon pod deleted -> old one gone", gone.Sub(mark))
	e.times.add("daemon pod deleted -> new one synced", synced.Sub(mark))
	if c := m["vpcnat_daemon_kernel_changes_total"]; c != 0 {
		t.Errorf("the restarted daemon made %v kernel changes in a gateway in sync, want 0", c)
	}

	after, err := kernelState(e.ctx, was.netns)
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("the gateway's netns changed across the daemon restart:\n%s", lineDiff(before, after))
	}
	r1, err := conn.Exchange(2 * time.Second)
	if err != nil {
		t.Errorf("the connection opened before the daemon restart: %v", err)
	} else if r1 != r0 {
		t.Errorf("the connection opened before the daemon restart now gets %+v, got %+v", r1, r0)
	}
	gwPod, _ = e.gatewayPod()
	if a := gwPod.Annotations[annotations.AppliedKey]; a != appliedBefore {
		t.Errorf("applied annotation rewritten by the restarted daemon: %s, was %s", a, appliedBefore)
	}
	e.sameGateway(was, "the daemon restart")
	checkFlows(t, e.net, "after the daemon restart", now)
	e.recordFootprint()
}

// waitLimit bounds every wait for the cluster (a pod, a sync, a deletion): each takes seconds;
// a hang must fail the test, not run into go test's timeout.
const waitLimit = 2 * time.Minute

// pollWithin is poll that gives up (failing the test) after limit.
func pollWithin(ctx context.Context, t *testing.T, limit time.Duration, what string, f func() (bool, error)) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	return poll(ctx, t, what, f)
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// replaced waits until the gateway runs a pod other than was's and traffic flows through it
// again, with no manual step. It returns the new incarnation; it records when the first flow
// (the DNAT from the outside client) came back and when the last one did. Every flow must come
// back; one that follows the first more than flowsFollow later is logged with the hosts' ARP
// caches (a VPC host or the EIP gateway that kept an old MAC would wait for its cache to
// expire, up to a minute).
func (e *vpcEnv) replaced(was gatewayState, now flows, what string, mark time.Time) gatewayState {
	t := e.t
	const limit, flowsFollow = 60 * time.Second, 5 * time.Second
	pollWithin(e.ctx, t, waitLimit, "a new gateway pod", func() (bool, error) {
		p, err := e.gatewayPod()
		return p != nil && string(p.UID) != was.uid, err
	})
	first := waitFlow(t, e.net, now.get("dnat"), mark, limit)
	e.times.add(what+" -> DNAT back", first)
	// The VPC hosts' ARP caches when the new pod first forwards, for a failure's message.
	var caches []string
	for _, r := range []string{topo.Pod1, topo.Pod2, topo.Pod3} {
		caches = append(caches, fmt.Sprintf("%s: %s", r, neighbours(e.ctx, e.net.Name(r))))
	}
	// Every flow, probed in rounds until each works (or limit), to measure the whole outage:
	// when each one came back.
	back := map[string]time.Duration{}
	bad := map[string]string{}
	for {
		pending := 0
		for _, f := range now {
			if _, ok := back[f.name]; ok || f.noAnswer {
				continue
			}
			if bad[f.name] = probe(e.net, f, 300*time.Millisecond); bad[f.name] == "" {
				back[f.name] = time.Since(mark)
			} else {
				pending++
			}
		}
		if pending == 0 || time.Since(mark) > limit {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	last := first
	var late []string
	for _, f := range now {
		took, ok := back[f.name]
		switch {
		case f.noAnswer:
			continue
		case !ok:
			t.Errorf("%s: %s not back %v after: %s", what, f, limit, bad[f.name])
			took = limit
		case took > first+flowsFollow:
			late = append(late, fmt.Sprintf("%s (%.1fs)", f.name, took.Seconds()))
		}
		last = max(last, took)
	}
	e.times.add(what+" -> every flow back", last)
	g := e.gateway()
	if len(late) > 0 {
		// A figure with its likely cause, not a verdict (timings are benchmark figures; every flow
		// coming back at all is the check above).
		t.Logf("%s: the new gateway pod forwarded after %.1fs, but these flows came back more than %v later: %s.\n"+
			"A VPC host or the EIP gateway kept the old sandbox's MAC in its ARP cache (nothing told it the new one):\n"+
			"  gateway interfaces before: %s\n  after: %s\n  VPC hosts' ARP caches when the new pod first forwarded:\n    %s",
			what, first.Seconds(), flowsFollow, strings.Join(late, ", "), was.macs, g.macs, strings.Join(caches, "\n    "))
	}
	// Not a failure in itself (the kubelet retries), but where the time went.
	if evs, err := e.client.CoreV1().Events(plan.GatewayNamespace).List(e.ctx, metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + g.name + ",reason=FailedCreatePodSandBox"}); err == nil {
		for _, ev := range evs.Items {
			t.Logf("%s: new gateway pod %s: %s (x%d)", what, g.name, ev.Message, ev.Count)
		}
	}
	if recs, _ := records(); slices.Contains(recs, was.uid) {
		t.Errorf("the old gateway pod's attachment record %s is still on the node", was.uid)
	}
	if exists(was.netns) {
		t.Errorf("the old gateway pod's netns %s is still there", was.netns)
	}
	checkFlows(t, e.net, "through the new gateway pod", now)
	e.recordFootprint()
	return g
}

// gatewayPodDeleted: the Deployment recreates a deleted gateway pod and traffic comes back with
// no manual step.
func (e *vpcEnv) gatewayPodDeleted(now flows) {
	was := e.gateway()
	mark := time.Now()
	e.kubectl("-n", "kube-system", "delete", "pod", was.name, "--wait=false")
	g := e.replaced(was, now, "gateway pod deleted", mark)
	e.t.Logf("gateway pod %s replaced by %s", was.name, g.name)
}

// imageRoll: a new image in the ConfigMap rolls the gateway to it.
func (e *vpcEnv) imageRoll(now flows) {
	t := e.t
	out, err := e.c.script(e.ctx, "load-image.sh", filepath.Join(e.c.Env["IMAGES_DIR"], "vpcnat-gateway.tar"), "--tag", gatewayImageV2)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("load-image.sh: %s", strings.TrimSpace(out))
	was := e.gateway()
	if was.image != gatewayImage {
		t.Fatalf("gateway runs image %s, want %s before the roll", was.image, gatewayImage)
	}
	mark := time.Now()
	e.kubectl("-n", plan.ConfigMapNamespace, "patch", "configmap", plan.ConfigMapName, "--type=merge",
		"-p", fmt.Sprintf(`{"data":{"image":%q}}`, gatewayImageV2))
	g := e.replaced(was, now, "ConfigMap image change", mark)
	if g.image != gatewayImageV2 {
		t.Errorf("after the roll the gateway runs %s, want %s", g.image, gatewayImageV2)
	}
	d, err := e.client.AppsV1().Deployments(plan.GatewayNamespace).Get(e.ctx, plan.DeploymentName(gwName), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img := d.Spec.Template.Spec.Containers[0].Image; img != gatewayImageV2 {
		t.Errorf("Deployment %s has image %s, want %s", d.Name, img, gatewayImageV2)
	}
}

// brokenGateway is a second gateway whose Subnet joins the gateway through a Linux bridge the
// node does not have: the plugin refuses its sandbox, and the kubelet retries for ever.
const brokenGateway = `apiVersion: kubeovn.io/v1
kind: Vpc
metadata:
  name: vpc-broken
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata:
  name: sn-broken
spec:
  vpc: vpc-broken
  cidrBlock: 10.9.1.0/24
  gateway: 10.9.1.1
  natGatewayAttachment:
    bridge: vne2e-nobr
---
apiVersion: kubeovn.io/v1
kind: VpcNatGateway
metadata:
  name: ngw-broken
spec:
  vpc: vpc-broken
  subnet: sn-broken
  lanIp: 10.9.1.254
  eips:
    - eipCIDR: 192.168.0.121/24
      gateway: 192.168.0.254
  snatRules:
    - eip: 192.168.0.121
      internalCIDR: 10.9.1.0/24
`

// podCannotStart: the status of a gateway whose pod the plugin refuses says why, with the
// plugin's own error (the bridge's name) taken from the kubelet's Event; deleted, it leaves
// nothing, and the seed's gateway carries on.
func (e *vpcEnv) podCannotStart(now flows) {
	t := e.t
	path := filepath.Join(e.dir, "broken.yaml")
	if err := os.WriteFile(path, []byte(brokenGateway), 0o644); err != nil {
		t.Fatal(err)
	}
	mark := time.Now()
	e.kubectl("apply", "-f", path)
	var msg string
	said := pollWithin(e.ctx, t, waitLimit, "ngw-broken's Ready condition names the missing bridge", func() (bool, error) {
		gw, err := e.kovn.VpcNatGateways.Get(e.ctx, "ngw-broken", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		c := findCondition(gw.Status.Conditions, "Ready")
		if c == nil {
			return false, nil
		}
		msg = c.Reason + ": " + c.Message
		return c.Status == metav1.ConditionFalse && c.Reason == "PodSandboxFailed" && strings.Contains(c.Message, `subnet sn-broken: natGatewayAttachment.bridge "vne2e-nobr"`), nil
	})
	e.times.add("gateway whose pod cannot start -> status names the plugin's error", said.Sub(mark))
	t.Logf("ngw-broken: Ready=False, %s", msg)
	if strings.Contains(msg, "rpc error") {
		t.Errorf("the condition keeps the runtime's wrapping: %s", msg)
	}
	e.kubectl("delete", "-f", path)
	sel := metav1.ListOptions{LabelSelector: plan.LabelGateway + "=ngw-broken"}
	pollWithin(e.ctx, t, waitLimit, "ngw-broken's Deployment and pod gone", func() (bool, error) {
		_, err := e.client.AppsV1().Deployments(plan.GatewayNamespace).Get(e.ctx, plan.DeploymentName("ngw-broken"), metav1.GetOptions{})
		if !isNotFound(err) {
			return false, err
		}
		pods, err := e.client.CoreV1().Pods(plan.GatewayNamespace).List(e.ctx, sel)
		return err == nil && len(pods.Items) == 0, err
	})
	// The refused ADDs rolled back: no node-side veth of the subnet NIC, no attachment record.
	if hostEnd := plan.HostIfName("ngw-broken", "sn-broken"); exec.CommandContext(e.ctx, "ip", "link", "show", "dev", hostEnd).Run() == nil {
		t.Errorf("the refused sandbox's node-side veth %s is on the node", hostEnd)
	}
	if recs, err := records(); err != nil || len(recs) != 1 {
		t.Errorf("attachment records on the node: %v (%v), want the seed gateway's only", recs, err)
	}
	checkFlows(t, e.net, "after a gateway whose pod cannot start came and went", now)
}

// gatewayDeleted: deleting the VpcNatGateway removes its Deployment and pod, and on the node
// its attachment record, node-side links and netns; the daemon forgets it and the EIPs stop
// answering.
func (e *vpcEnv) gatewayDeleted() {
	t := e.t
	was := e.gateway()
	mark := time.Now()
	crdAge := mark.Sub(e.installed)
	e.kubectl("delete", "vpc-nat-gw", gwName)
	sel := metav1.ListOptions{LabelSelector: plan.LabelGateway + "=" + gwName}
	gone := pollWithin(e.ctx, t, waitLimit, "the gateway's Deployment, ReplicaSet, pod, record, links and netns gone", func() (bool, error) {
		_, err := e.client.AppsV1().Deployments(plan.GatewayNamespace).Get(e.ctx, plan.DeploymentName(gwName), metav1.GetOptions{})
		if !isNotFound(err) {
			return false, err
		}
		rs, err := e.client.AppsV1().ReplicaSets(plan.GatewayNamespace).List(e.ctx, sel)
		if err != nil || len(rs.Items) > 0 {
			return false, err
		}
		pods, err := e.client.CoreV1().Pods(plan.GatewayNamespace).List(e.ctx, sel)
		if err != nil || len(pods.Items) > 0 {
			return false, err
		}
		if recs, err := records(); err != nil || len(recs) > 0 {
			return false, err
		}
		for _, l := range strings.Split(was.hostLinks, ",") {
			if l != "" && exec.CommandContext(e.ctx, "ip", "link", "show", "dev", l).Run() == nil {
				return false, nil
			}
		}
		return !exists(was.netns), nil
	})
	e.times.add("VpcNatGateway deleted -> all gone", gone.Sub(mark))
	if took := gone.Sub(mark); took > 5*time.Second {
		// kube-controller-manager's garbage collector watches a resource type installed after it
		// started only from its next discovery resync (every 30 s, fixed); until then it retries
		// the Deployment's owner, which it cannot look up, with exponential backoff (to ~20 s
		// apart), and deletes the Deployment at the first retry after that resync. Not ours to
		// fix; with CRDs older than that, the deletion is seen at once.
		t.Logf("VpcNatGateway deletion took %.1fs: the CRDs were installed %.1fs before it (kube-controller-manager's "+
			"garbage collector watches new resource types from its next discovery resync, every 30 s; see kcm.log)",
			took.Seconds(), crdAge.Seconds())
	}
	pollWithin(e.ctx, t, 10*time.Second, "the Vpc's status no longer lists the gateway", func() (bool, error) {
		vpc, err := e.kovn.Vpcs.Get(e.ctx, vpcName, metav1.GetOptions{})
		return err == nil && !slices.Contains(vpc.Status.NatGateways, gwName), err
	})
	pollWithin(e.ctx, t, waitLimit, "the daemon tracks no gateway", func() (bool, error) {
		m, err := daemonMetrics(e.ctx)
		return err == nil && m["vpcnat_daemon_gateways"] == 0, err
	})
	checkFlows(t, e.net, "after the gateway is deleted", flows{
		{name: "dnat", from: topo.Client, proto: "tcp", to: eipShared + ":8888", noAnswer: true},
		{name: "snat", from: topo.Pod2, proto: "tcp", to: topo.InetIP + ":8080", noAnswer: true},
	})
}
