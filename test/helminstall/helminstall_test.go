// Package helminstall installs vpcnat with its Helm chart on the one-node test cluster
// (hack/cluster, the same one test/e2e uses) as a user would — helm install, helm upgrade, helm
// uninstall with the pinned helm of hack/build-helm.sh — and checks what each step leaves on
// the cluster. test/e2e installs from deploy/ and sends packets; test/chart checks that the two
// sources render the same objects.
//
// Address plan (test/topo's NewSeedOnNode, the seed's addresses, as in test/e2e): the external
// network is the host bridge vnhelm-ext (the ConfigMap's nic) and the seed Subnet's segment the
// host bridge br-sn, both without an address; the test hosts on them (EIP gateway
// 192.168.0.254, outside client 192.168.0.50, VPC hosts 10.0.1.0/24, 198.51.100.0/24 and
// 203.0.113.0/24 behind routers) live in namespaces of their own named vnhelm-*. The links and
// namespaces are registered with the cluster, so stop.sh removes them even after a crash, and
// the host must be left as it was found.
package helminstall

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/e2e"
	"github.com/vpcnat/vpcnat/test/topo"
)

var repoRoot = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

const (
	release = "vpcnat"
	ns      = "kube-system"
	// controllerMetricsPort: the controller runs in the node's network namespace here (there is
	// no kube-proxy to route the kubernetes Service), where the port must be one no one else
	// uses (test/e2e uses 10361).
	controllerMetricsPort = 10363
	// The seed topology on the node: prefix of its namespaces and links, the external bridge
	// (the ConfigMap's nic) and examples/seed.yaml's Subnet bridge.
	netPrefix = "vnhelm"
	extBridge = "vnhelm-ext"
	vpcBridge = "br-sn"
	// examples/seed.yaml's port forward: 192.168.0.112:8888/tcp -> 10.0.1.10:80.
	seedDNAT = "192.168.0.112:8888"
)

// helmRunner runs the pinned helm against the cluster, with a private home (no repository
// list, cache or plugin of whoever runs the test).
type helmRunner struct {
	bin, kubeconfig, home string
}

func (h helmRunner) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, h.bin, append(args, "--kubeconfig", h.kubeconfig)...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+h.home, "HELM_CONFIG_HOME="+h.home, "HELM_DATA_HOME="+h.home)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// poll calls cond every 200 ms until it returns true or ctx ends (a hang guard, not a timing).
func poll(ctx context.Context, what string, cond func() (bool, error)) error {
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: not reached (%v)", what, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func TestHelmInstallUpgradeUninstall(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs containerd, a kubelet and the node's bridge")
	}
	// A hang guard: the whole test takes well under a minute when the cluster is built.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, filepath.Join(repoRoot, "hack", "build-helm.sh")).Output()
	if err != nil {
		t.Fatalf("hack/build-helm.sh: %v", err)
	}
	helmBin := strings.TrimSpace(string(out))

	c, err := e2e.NewCluster(ctx, repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	switch exists, alive := c.Running(); {
	case alive:
		t.Fatalf("a cluster is running from %s (started by hand?): stop it with hack/cluster/stop.sh first", c.Env["RUN_DIR"])
	case exists:
		if out, err := c.Stop(); err != nil {
			t.Fatalf("cleaning an earlier run's state: %v", err)
		} else {
			t.Logf("cleaned an earlier run's state:\n%s", out)
		}
	}
	if _, err := c.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	before, err := c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		c.LogTails(t, 15)
		if out, err := c.Stop(); err != nil {
			t.Errorf("stop after a failure: %v", err)
		} else {
			t.Logf("stopped after a failure:\n%s", out)
		}
	})
	if out, err := c.Start(ctx); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("start.sh:\n%s", out)
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", c.Env["KUBECONFIG"])
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(cfg.Host)
	if err != nil {
		t.Fatal(err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := helmRunner{bin: helmBin, kubeconfig: c.Env["KUBECONFIG"], home: t.TempDir()}
	chart := filepath.Join(repoRoot, "charts", "vpcnat")

	// What this node needs that a chart cannot know, all through values: the cluster's own CNI
	// directories; the API server's loopback address (no kube-proxy), hence the controller on
	// the host network with one replica and a free metrics port.
	n, err := topo.NewSeedOnNode(netPrefix, extBridge, vpcBridge, c)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = n.Close()
		}
	})
	values := []string{
		"--set", "config.nic=" + extBridge,
		"--set", "cni.binDir=" + c.Env["CNI_BIN_DIR"] + ",cni.confDir=" + c.Env["CNI_CONF_DIR"],
		"--set", fmt.Sprintf("controller.hostNetwork=true,controller.replicas=1,controller.metricsPort=%d", controllerMetricsPort),
	}
	for _, who := range []string{"controller", "daemon"} {
		values = append(values, "--set-string", fmt.Sprintf(
			"%[1]s.env[0].name=KUBERNETES_SERVICE_HOST,%[1]s.env[0].value=%[2]s,%[1]s.env[1].name=KUBERNETES_SERVICE_PORT,%[1]s.env[1].value=%[3]s",
			who, u.Hostname(), u.Port()))
	}

	// --- install -----------------------------------------------------------------------
	args := append([]string{"install", release, chart, "--namespace", ns, "--wait", "--timeout", "5m"}, values...)
	if out, err := h.run(ctx, args...); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("helm install:\n%s", out)
	}
	// The daemon's init container chained the plugin into the node's configuration.
	conflists, _ := filepath.Glob(filepath.Join(c.Env["CNI_CONF_DIR"], "*.conflist"))
	chained := false
	for _, f := range conflists {
		b, _ := os.ReadFile(f)
		chained = chained || bytes.Contains(b, []byte(`"type": "vpcnat"`)) || bytes.Contains(b, []byte(`"type":"vpcnat"`))
	}
	if !chained {
		t.Errorf("no conflist in %s chains vpcnat after install: %q", c.Env["CNI_CONF_DIR"], conflists)
	}
	for _, bin := range []string{"vpcnat", "vpcnat-gateway"} {
		if _, err := os.Stat(filepath.Join(c.Env["CNI_BIN_DIR"], bin)); err != nil {
			t.Errorf("plugin binary after install: %v", err)
		}
	}
	cm, err := client.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Get(ctx, plan.ConfigMapName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["nic"] != extBridge || cm.Data["image"] != "vpcnat.local/vpcnat-gateway:dev" || cm.Data["enable-vpc-nat-gw"] != "true" {
		t.Errorf("ConfigMap after install: %v", cm.Data)
	}
	// The leading controller issues the webhook's certificate and writes its CA bundle into the
	// configuration the chart installed.
	var caBundle []byte
	err = poll(ctx, "the webhook configuration's CA bundle", func() (bool, error) {
		vwc, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "vpcnat", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		caBundle = vwc.Webhooks[0].ClientConfig.CABundle
		return len(caBundle) > 0, nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// --- the seed example, as the README's install section has it: examples/seed.yaml without
	// its ConfigMap (the chart's holds this node's nic and the gateway image) ----------------
	seedFile := seedWithoutConfigMap(t)
	if out, err := c.Kubectl(ctx, "apply", "-f", seedFile); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("kubectl apply of the seed:\n%s", out)
	}
	if err := poll(ctx, "gateway ngw Ready", func() (bool, error) {
		out, err := c.Kubectl(ctx, "get", "vpc-nat-gw", "ngw", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		return out == "True", fmt.Errorf("Ready=%q (%v)", out, err)
	}); err != nil {
		out, _ := c.Kubectl(ctx, "get", "vpc-nat-gw", "ngw", "-o", "yaml")
		t.Fatalf("%v\n%s", err, out)
	}
	n.ListenFor(t, topo.Pod2, "tcp", topo.Pod2IP+":80")
	// Ready means applied; the client's first SYN may still race its own ARP for the EIP.
	if err := poll(ctx, "the seed's port forward answering", func() (bool, error) {
		_, err := n.Request(topo.Client, "tcp", seedDNAT, time.Second)
		return err == nil, err
	}); err != nil {
		t.Fatal(err)
	}
	n.Expect(t, topo.Client, "tcp", seedDNAT, topo.ClientIP, topo.Pod2IP+":80")
	// Gateways go before the release. The garbage collector would delete the gateway's
	// Deployment too, but watches CRDs this young only from its next discovery (30 s): delete it
	// here, and wait for the pod, whose sandbox's CNI DEL removes the node-side links.
	if out, err := c.Kubectl(ctx, "delete", "-f", seedFile, "--wait"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("kubectl delete of the seed:\n%s", out)
	}
	if _, err := c.Kubectl(ctx, "-n", ns, "delete", "deployment", plan.DeploymentName("ngw"), "--ignore-not-found", "--wait"); err != nil {
		t.Fatal(err)
	}
	if err := poll(ctx, "the gateway pod gone", func() (bool, error) {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway})
		if err != nil {
			return false, err
		}
		return len(pods.Items) == 0, fmt.Errorf("%d gateway pods", len(pods.Items))
	}); err != nil {
		t.Fatal(err)
	}

	// --- upgrade: a ConfigMap key and a daemon flag change; the CA bundle stays ------------
	args = []string{"upgrade", release, chart, "--namespace", ns, "--reuse-values", "--wait", "--timeout", "5m",
		"--set", "config.nic=eth7,daemon.resync=7m"}
	if out, err := h.run(ctx, args...); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("helm upgrade:\n%s", out)
	}
	if cm, err := client.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Get(ctx, plan.ConfigMapName, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if cm.Data["nic"] != "eth7" {
		t.Errorf("ConfigMap nic after upgrade: %q, want eth7", cm.Data["nic"])
	}
	// --wait waited for the DaemonSet's rollout: every daemon pod runs the new flag.
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=vpcnat-daemon"})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, ctr := range p.Spec.Containers {
			if ctr.Name == "vpcnat-daemon" && !slices.Contains(ctr.Args, "--resync=7m") {
				t.Errorf("daemon pod %s after upgrade: args %q lack --resync=7m", p.Name, ctr.Args)
			}
		}
	}
	if len(pods.Items) == 0 {
		t.Errorf("no daemon pod after upgrade")
	}
	vwc, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "vpcnat", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(vwc.Webhooks[0].ClientConfig.CABundle, caBundle) {
		t.Errorf("the webhook's CA bundle changed or was cleared by helm upgrade (%d bytes, was %d)",
			len(vwc.Webhooks[0].ClientConfig.CABundle), len(caBundle))
	}
	if out, err := h.run(ctx, "status", release, "--namespace", ns); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(out, "STATUS: deployed") || !strings.Contains(out, "REVISION: 2") {
		t.Errorf("helm status after upgrade:\n%s", out)
	}

	// --- uninstall: every object of the release goes; the CRDs stay (Helm never deletes them) -
	if out, err := h.run(ctx, "uninstall", release, "--namespace", ns, "--wait", "--timeout", "5m"); err != nil {
		t.Fatal(err)
	} else {
		t.Logf("helm uninstall:\n%s", out)
	}
	gone := map[string]func() error{
		"Deployment vpcnat-controller": func() error {
			_, err := client.AppsV1().Deployments(ns).Get(ctx, "vpcnat-controller", metav1.GetOptions{})
			return err
		},
		"DaemonSet vpcnat-daemon": func() error {
			_, err := client.AppsV1().DaemonSets(ns).Get(ctx, "vpcnat-daemon", metav1.GetOptions{})
			return err
		},
		"ConfigMap " + plan.ConfigMapName: func() error {
			_, err := client.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Get(ctx, plan.ConfigMapName, metav1.GetOptions{})
			return err
		},
		"Service vpcnat-webhook": func() error {
			_, err := client.CoreV1().Services(ns).Get(ctx, "vpcnat-webhook", metav1.GetOptions{})
			return err
		},
		"ValidatingWebhookConfiguration vpcnat": func() error {
			_, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, "vpcnat", metav1.GetOptions{})
			return err
		},
		"ValidatingAdmissionPolicy vpcnat-daemon-pod-patches": func() error {
			_, err := client.AdmissionregistrationV1().ValidatingAdmissionPolicies().Get(ctx, "vpcnat-daemon-pod-patches", metav1.GetOptions{})
			return err
		},
		"ClusterRole vpcnat-controller": func() error {
			_, err := client.RbacV1().ClusterRoles().Get(ctx, "vpcnat-controller", metav1.GetOptions{})
			return err
		},
		"Role vpcnat-daemon": func() error {
			_, err := client.RbacV1().Roles(ns).Get(ctx, "vpcnat-daemon", metav1.GetOptions{})
			return err
		},
		"ServiceAccount vpcnat-daemon": func() error {
			_, err := client.CoreV1().ServiceAccounts(ns).Get(ctx, "vpcnat-daemon", metav1.GetOptions{})
			return err
		},
	}
	for what, get := range gone {
		if err := get(); !apierrors.IsNotFound(err) {
			t.Errorf("%s after helm uninstall: %v, want NotFound", what, err)
		}
	}
	if err := poll(ctx, "daemon and controller pods gone", func() (bool, error) {
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, p := range pods.Items {
			if strings.HasPrefix(p.Name, "vpcnat-") {
				return false, fmt.Errorf("pod %s still there", p.Name)
			}
		}
		return true, nil
	}); err != nil {
		t.Error(err)
	}
	if out, err := c.Kubectl(ctx, "get", "crd", "vpcnatgateways.kubeovn.io", "vpcs.kubeovn.io", "subnets.kubeovn.io", "-o", "name"); err != nil {
		t.Errorf("the CRDs after helm uninstall: %v", err)
	} else {
		t.Logf("CRDs kept by helm uninstall (delete them with kubectl delete -f charts/vpcnat/crds/):\n%s", out)
	}
	// What the controller made at run time is not the release's: the README's uninstall says
	// to delete it.
	if _, err := client.CoreV1().Secrets(ns).Get(ctx, "vpcnat-webhook-cert", metav1.GetOptions{}); err != nil {
		t.Errorf("the webhook certificate Secret the controller made: %v (the README's uninstall names it)", err)
	}

	links := n.HostLinks()
	if err := n.Close(); err != nil {
		// A veth's host end goes with its peer's namespace, which the kernel tears down
		// asynchronously: Close can see one listed and then fail to delete it. Only a link still
		// there is a leftover.
		gctx, gcancel := context.WithTimeout(ctx, 30*time.Second) // a hang guard
		defer gcancel()
		if perr := poll(gctx, "the seed topology's host links gone", func() (bool, error) {
			for _, l := range links {
				if exec.Command("ip", "link", "show", "dev", l).Run() == nil {
					return false, fmt.Errorf("%s still there", l)
				}
			}
			return true, nil
		}); perr != nil {
			t.Errorf("removing the seed topology: %v; %v", err, perr)
		} else {
			t.Logf("removing the seed topology: %v (the links went with their namespaces)", err)
		}
	}
	closed = true
	out2, err := c.Stop()
	stopped = true
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stop.sh:\n%s", out2)
	after, err := c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range before.Diff(after) {
		t.Errorf("host changed by the cluster: %s", d)
	}
}

// seedWithoutConfigMap writes examples/seed.yaml without its ConfigMap to a temporary file.
func seedWithoutConfigMap(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "examples", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	dropped := 0
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if strings.Contains(doc, "\nkind: ConfigMap\n") || strings.HasPrefix(doc, "kind: ConfigMap\n") {
			dropped++
			continue
		}
		keep = append(keep, doc)
	}
	if dropped != 1 || len(keep) != 3 {
		t.Fatalf("examples/seed.yaml: want a ConfigMap and 3 other documents, found %d and %d", dropped, len(keep))
	}
	f := filepath.Join(t.TempDir(), "seed.yaml")
	if err := os.WriteFile(f, []byte(strings.Join(keep, "\n---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}
