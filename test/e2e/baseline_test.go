package e2e

// The one-replica node-failure baseline, measured with vpcnat on the multi-node cluster
// (test/multinode, hack/cluster/lib-multi.sh): not part of `make test` (a run takes minutes);
// `make baseline-failover` runs it.
//
// Address plan: the seed's, inside namespaces the test creates: a client 192.168.0.10/24 on the
// external L2 (host bridge vpcnat-ext, where every node's "ext" NIC is: net1's master) and the
// seed's DNAT target 10.0.1.10/24 (default route via the lanIp 10.0.1.254) on the tenant L2
// (host bridge vpcnat-vpc, where every node's br-sn has its uplink). The host-side ends of their
// veths have no address.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"

	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/multinode"
)

// TestBaselineNodeFailure: the seed example with one replica on node 3 of a 3-node cluster;
// node 3 is powered off; how long until a new connection through the DNAT
// (192.168.0.112:8888 -> 10.0.1.10:80) is answered again, first with the shortest tolerations a
// user can set (not-ready and unreachable, NoExecute, tolerationSeconds 0), then with the
// defaults (300 s, added by the DefaultTolerationSeconds admission plugin).
func TestBaselineNodeFailure(t *testing.T) {
	if os.Getenv("VPCNAT_BASELINE") == "" {
		t.Skip("minutes long: VPCNAT_BASELINE=1 (make baseline-failover)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute) // a hang guard
	defer cancel()
	b := startMultiNode(t, ctx)
	c := b.c
	b.buildNetworks()
	b.install()
	const victim = 3
	b.cordonAllBut(victim)
	b.applySeed(nil)

	var results []string
	shortest := []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64)},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: new(int64)},
	}
	for i, run := range []struct {
		name        string
		tolerations []corev1.Toleration
	}{{"tolerationSeconds 0 (not-ready, unreachable)", shortest}, {"default tolerations (300 s)", nil}} {
		if i > 0 {
			if err := c.PowerOn(ctx, victim); err != nil {
				t.Fatal(err)
			}
			b.cordonAllBut(victim)
		}
		b.setTolerations(run.tolerations)
		pod := b.gatewayOn(c.NodeName(victim), run.tolerations)
		b.waitDNAT(5 * time.Minute)
		b.uncordon()
		t.Logf("%s: gateway pod %s on %s answers; powering off %s", run.name, pod, c.NodeName(victim), c.NodeName(victim))
		mark := time.Now()
		if err := c.PowerOff(ctx, victim); err != nil {
			t.Fatal(err)
		}
		if _, err := b.dnat(); err == nil {
			t.Fatalf("%s: the DNAT still answers right after its node was powered off", run.name)
		}
		b.waitDNAT(15 * time.Minute)
		loss := time.Since(mark)
		now := b.gateway()
		line := fmt.Sprintf("%-46s traffic through the DNAT again after %6.1f s (new gateway pod %s on %s)", run.name, loss.Seconds(), now.Name, now.Spec.NodeName)
		t.Log(line)
		results = append(results, line)
	}
	report := "one replica, gateway node powered off:\n" + strings.Join(results, "\n") + "\n"
	t.Log(report)
	_ = os.WriteFile(filepath.Join(c.Env["LOG_DIR"], "baseline-failover.txt"), []byte(report), 0o644)
}

// startMultiNode starts the 3-node cluster of hack/cluster (refusing one that runs already) and
// stops it when the test ends, with a diagnosis first if the test failed.
func startMultiNode(t *testing.T, ctx context.Context) *baseline {
	t.Helper()
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	c, err := multinode.NewCluster(ctx, repo, 3)
	if err != nil {
		t.Fatal(err)
	}
	if exists, alive := c.Running(); alive {
		t.Fatalf("a multi-node cluster is running from %s: stop it with hack/cluster/stop.sh first", c.Env["RUN_DIR"])
	} else if exists {
		if _, err := c.Stop(); err != nil {
			t.Fatalf("cleaning an earlier run's state: %v", err)
		}
	}
	if _, err := c.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	b := &baseline{t: t, ctx: ctx, c: c}
	t.Cleanup(func() {
		if t.Failed() {
			b.diagnose()
		}
		if out, err := c.Stop(); err != nil {
			t.Errorf("stop: %v\n%s", err, out)
		}
	})
	if b.client, err = c.Client(); err != nil {
		t.Fatal(err)
	}
	return b
}

type baseline struct {
	t      *testing.T
	ctx    context.Context
	c      *multinode.Cluster
	client kubernetes.Interface
	cli    string // the client's network namespace (path)
	prefix string // the test hosts' netns names are prefix-cli, prefix-srv (test/topo's naming)
}

const (
	blGateway  = "ngw" // examples/seed.yaml
	blDNAT     = "192.168.0.112:8888"
	blTarget   = "10.0.1.10"
	blClientIP = "192.168.0.10/24"
	// The EIPs' gateway, on the client too: a replicated gateway's agent counts a replica
	// healthy only while that gateway answers its ARP probes.
	blEIPGateway = "192.168.0.254/24"
)

// buildNetworks makes the client on the external L2 and the DNAT target (a TCP server on :80
// answering "ok") on the tenant L2.
func (b *baseline) buildNetworks() {
	t := b.t
	prefix := fmt.Sprintf("bl%d", os.Getpid()%100000)
	b.prefix = prefix
	for _, h := range []struct {
		role, bridge, addr, via string
	}{{"cli", b.c.Env["EXTERNAL_BRIDGE"], blClientIP, ""}, {"srv", b.c.Env["TENANT_HOST_BRIDGE"], blTarget + "/24", "10.0.1.254"}} {
		name, link := prefix+"-"+h.role, prefix+h.role
		if err := b.c.OwnNetns(name); err != nil {
			t.Fatal(err)
		}
		if err := b.c.OwnLink(link); err != nil {
			t.Fatal(err)
		}
		cmds := [][]string{
			{"netns", "add", name},
			{"link", "add", link, "type", "veth", "peer", "name", "eth0", "netns", name},
			{"link", "set", link, "master", h.bridge, "up"},
			{"-n", name, "addr", "add", h.addr, "dev", "eth0"},
			{"-n", name, "link", "set", "eth0", "up"},
			{"-n", name, "link", "set", "lo", "up"},
		}
		if h.role == "cli" {
			cmds = append(cmds, []string{"-n", name, "addr", "add", blEIPGateway, "dev", "eth0"})
		}
		if h.via != "" {
			cmds = append(cmds, []string{"-n", name, "route", "add", "default", "via", h.via})
		}
		for _, args := range cmds {
			if out, err := exec.CommandContext(b.ctx, "ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
			}
		}
		if h.role == "cli" {
			b.cli = "/run/netns/" + name
			continue
		}
		var ln net.Listener
		if err := ns.WithNetNSPath("/run/netns/"+name, func(ns.NetNS) error {
			var err error
			ln, err = net.Listen("tcp", ":80")
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				conn, err := ln.Accept()
				if err != nil {
					return
				}
				io.WriteString(conn, "ok\n")
				conn.Close()
			}
		}()
	}
}

// install applies deploy/ as TestVpcNat does (nodeAdaptation), with a DaemonSet per node: the
// nodes' CNI configurations and the plugin's state directories are per node here (one host,
// one mount namespace), which one DaemonSet's hostPaths cannot name. The controller runs on
// node 1, which the test never powers off.
func (b *baseline) install() {
	t := b.t
	docs, err := loadManifests(filepath.Join(b.c.Repo, "deploy", "crds"), filepath.Join(b.c.Repo, "deploy", "controller"),
		filepath.Join(b.c.Repo, "deploy", "daemonset"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.adaptation().adapt(docs); err != nil {
		t.Fatal(err)
	}
	var out []*unstructured.Unstructured
	for _, o := range docs {
		switch {
		case o.GetKind() == "DaemonSet" && o.GetName() == "vpcnat-daemon":
			for n := 1; n <= b.c.Nodes; n++ {
				d, err := b.daemonSetFor(o, n)
				if err != nil {
					t.Fatal(err)
				}
				out = append(out, d)
			}
			continue
		case o.GetKind() == "Deployment" && o.GetName() == "vpcnat-controller":
			if err := unstructured.SetNestedStringMap(o.Object, map[string]string{corev1.LabelHostname: b.c.NodeName(1)},
				"spec", "template", "spec", "nodeSelector"); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, o)
	}
	b.apply("deploy.yaml", out)
	b.poll(5*time.Minute, "the daemons Ready and the controller Available", func() error {
		for n := 1; n <= b.c.Nodes; n++ {
			ds, err := b.client.AppsV1().DaemonSets("kube-system").Get(b.ctx, fmt.Sprintf("vpcnat-daemon-%d", n), metav1.GetOptions{})
			if err != nil {
				return err
			}
			if ds.Status.NumberReady != 1 {
				return fmt.Errorf("DaemonSet %s: %d ready", ds.Name, ds.Status.NumberReady)
			}
		}
		if ok, err := deploymentAvailable(b.ctx, b.client, "kube-system", "vpcnat-controller"); !ok {
			return fmt.Errorf("controller not Available (%v)", err)
		}
		return nil
	})
}

func (b *baseline) adaptation() nodeAdaptation {
	host, port, _ := net.SplitHostPort(b.c.Env["API_SERVER"])
	return nodeAdaptation{
		cniBinDir: b.c.Env["CNI_BIN_DIR"], cniConfDir: "/etc/cni/net.d", // per node: daemonSetFor
		apiHost: host, apiPort: port, controllerMetricsPort: controllerMetricsPort,
		nic: b.c.Env["NODE_EXTERNAL_NIC"], gatewayImage: gatewayImage,
	}
}

// daemonSetFor is ds for node n alone: its name and selector say n, it runs only there, and its
// CNI configuration directory and state directory (the plugin's attachment records) are n's.
func (b *baseline) daemonSetFor(ds *unstructured.Unstructured, n int) (*unstructured.Unstructured, error) {
	d := ds.DeepCopy()
	d.SetName(fmt.Sprintf("vpcnat-daemon-%d", n))
	node := fmt.Sprint(n)
	for _, path := range [][]string{{"spec", "selector", "matchLabels"}, {"spec", "template", "metadata", "labels"}} {
		l, _, _ := unstructured.NestedStringMap(d.Object, path...)
		l["vpcnat.test/node"] = node
		if err := unstructured.SetNestedStringMap(d.Object, l, path...); err != nil {
			return nil, err
		}
	}
	if err := unstructured.SetNestedStringMap(d.Object, map[string]string{corev1.LabelHostname: b.c.NodeName(n)},
		"spec", "template", "spec", "nodeSelector"); err != nil {
		return nil, err
	}
	confDir := filepath.Join(b.c.Env["RUN_DIR"], "node"+node, "cni", "net.d")
	stateDir := filepath.Join(b.c.Env["STATE_DIR"], "node"+node, "vpcnat")
	if _, err := replaceHostPaths(d, map[string]string{"/etc/cni/net.d": confDir, "/run/vpcnat": stateDir}); err != nil {
		return nil, err
	}
	// The plugin (on the node) and the daemon (in its container) must name the same directory.
	for _, field := range []string{"initContainers", "containers"} {
		cs, _, err := unstructured.NestedSlice(d.Object, "spec", "template", "spec", field)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			cm := c.(map[string]any)
			args, _ := cm["args"].([]any)
			for i, a := range args {
				if a == "--state-dir=/run/vpcnat" {
					args[i] = "--state-dir=" + stateDir
				}
			}
			mounts, _ := cm["volumeMounts"].([]any)
			for _, m := range mounts {
				if mm := m.(map[string]any); mm["mountPath"] == "/run/vpcnat" {
					mm["mountPath"] = stateDir
				}
			}
		}
		if err := unstructured.SetNestedSlice(d.Object, cs, "spec", "template", "spec", field); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func (b *baseline) apply(name string, docs []*unstructured.Unstructured) {
	path := filepath.Join(b.t.TempDir(), name)
	if err := writeManifests(path, docs); err != nil {
		b.t.Fatal(err)
	}
	if out, err := b.c.Kubectl(b.ctx, "", "apply", "-f", path); err != nil {
		b.t.Fatalf("%v\n%s", err, out)
	}
}

// applySeed applies examples/seed.yaml, its gateway first changed by edit (if not nil).
func (b *baseline) applySeed(edit func(gw *unstructured.Unstructured) error) {
	docs, err := loadManifests(filepath.Join(b.c.Repo, "examples", "seed.yaml"))
	if err != nil {
		b.t.Fatal(err)
	}
	for _, o := range docs {
		if edit != nil && o.GetKind() == "VpcNatGateway" {
			if err := edit(o); err != nil {
				b.t.Fatal(err)
			}
		}
	}
	if _, err := b.adaptation().adapt(docs); err != nil {
		b.t.Fatal(err)
	}
	b.apply("seed.yaml", docs)
}

func (b *baseline) kubectl(args ...string) {
	if out, err := b.c.Kubectl(b.ctx, "", args...); err != nil {
		b.t.Fatalf("%v\n%s", err, out)
	}
}

func (b *baseline) cordonAllBut(keep int) {
	for n := 1; n <= b.c.Nodes; n++ {
		if n != keep {
			b.kubectl("cordon", b.c.NodeName(n))
		}
	}
}

func (b *baseline) uncordon() {
	for n := 1; n <= b.c.Nodes; n++ {
		b.kubectl("uncordon", b.c.NodeName(n))
	}
}

func (b *baseline) setTolerations(tol []corev1.Toleration) {
	patch := []byte(`{"spec":{"tolerations":null}}`)
	if tol != nil {
		var err error
		if patch, err = json.Marshal(map[string]any{"spec": map[string]any{"tolerations": tol}}); err != nil {
			b.t.Fatal(err)
		}
	}
	b.kubectl("patch", "vpc-nat-gw", blGateway, "--type=merge", "-p", string(patch))
}

// gateway is the gateway's pod that is not being deleted (nil if there is none, or not one).
func (b *baseline) gateway() *corev1.Pod {
	pods, err := b.client.CoreV1().Pods("kube-system").List(b.ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway + "=" + blGateway})
	if err != nil {
		return nil
	}
	var live []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			live = append(live, p)
		}
	}
	if len(live) != 1 {
		return nil
	}
	return &live[0]
}

// gatewayOn waits until the gateway's one pod is Ready on node with the tolerations (nil: the
// defaults) and returns its name.
func (b *baseline) gatewayOn(node string, tol []corev1.Toleration) string {
	var name string
	b.poll(5*time.Minute, "the gateway's pod Ready on "+node, func() error {
		p := b.gateway()
		if p == nil {
			return fmt.Errorf("not exactly one gateway pod")
		}
		if p.Spec.NodeName != node || !podReady(p) {
			return fmt.Errorf("pod %s on %q, ready %v", p.Name, p.Spec.NodeName, podReady(p))
		}
		for _, want := range tol {
			found := false
			for _, have := range p.Spec.Tolerations {
				found = found || (have.Key == want.Key && have.TolerationSeconds != nil && *have.TolerationSeconds == *want.TolerationSeconds)
			}
			if !found {
				return fmt.Errorf("pod %s lacks toleration %s %ds", p.Name, want.Key, *want.TolerationSeconds)
			}
		}
		if tol == nil {
			for _, have := range p.Spec.Tolerations {
				if have.Key == corev1.TaintNodeUnreachable && (have.TolerationSeconds == nil || *have.TolerationSeconds != 300) {
					return fmt.Errorf("pod %s has the unreachable toleration %v, want the default 300 s", p.Name, have.TolerationSeconds)
				}
			}
		}
		name = p.Name
		return nil
	})
	return name
}

// dnat connects from the client to the DNAT and reads the target's answer (a 500 ms guard per
// attempt, so that a probe every few hundred ms sees the moment traffic flows again).
func (b *baseline) dnat() (string, error) {
	var got string
	err := ns.WithNetNSPath(b.cli, func(ns.NetNS) error {
		conn, err := net.DialTimeout("tcp", blDNAT, 500*time.Millisecond)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
			return err
		}
		buf, err := io.ReadAll(conn)
		got = string(buf)
		return err
	})
	if err == nil && got != "ok\n" {
		err = fmt.Errorf("the DNAT answered %q, want the target's ok", got)
	}
	return got, err
}

func (b *baseline) waitDNAT(limit time.Duration) {
	b.poll(limit, "traffic through the DNAT "+blDNAT, func() error { _, err := b.dnat(); return err })
}

// poll retries fn every 100 ms until it succeeds; limit is a hang guard, not a measure.
func (b *baseline) poll(limit time.Duration, what string, fn func() error) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, limit)
	defer cancel()
	for {
		err := fn()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			b.t.Fatalf("%s: not within %v: %v", what, limit, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (b *baseline) diagnose() {
	for _, args := range [][]string{{"get", "nodes", "-o", "wide"}, {"get", "pods", "-A", "-o", "wide"}, {"get", "vpc-nat-gw", "-o", "yaml"}} {
		out, err := b.c.Kubectl(context.Background(), "", args...)
		b.t.Logf("kubectl %s (%v):\n%s", strings.Join(args, " "), err, out)
	}
	(&Cluster{Repo: b.c.Repo, Env: b.c.Env}).LogTails(b.t, 20)
}
