package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestCluster: hack/cluster's scripts bring up a node that runs a normal Deployment from an
// imported image (no registry), the pod answers on its IP from the host over the node bridge,
// and stop.sh leaves no process, mount, cgroup, link, netns, iptables rule, sysctl or
// directory behind.
func TestCluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs containerd, a kubelet and the node's bridge")
	}
	ctx, cancel := testContext(t)
	defer cancel()
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewCluster(ctx, repo)
	if err != nil {
		t.Fatal(err)
	}
	switch exists, alive := c.Running(); {
	case alive:
		t.Fatalf("a cluster is running from %s (started by hand?): stop it with hack/cluster/stop.sh first", c.Env["RUN_DIR"])
	case exists: // a killed test run's state: nothing of it runs, clean it so start can begin
		if out, err := c.Stop(); err != nil {
			t.Fatalf("cleaning an earlier run's state: %v", err)
		} else {
			t.Logf("cleaned an earlier run's state:\n%s", out)
		}
	}

	var times timings
	mark := time.Now()
	if _, err := c.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	times.add("setup (warm: checks only)", time.Since(mark))

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

	mark = time.Now()
	out, err := c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	times.add("start: empty etcd to node Ready", time.Since(mark))
	t.Logf("start.sh:\n%s", out)

	pod := runProbe(ctx, t, c, &times)
	fp, err := c.Footprint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A test network registered with the cluster and never removed by the test (as when the
	// test dies): stop.sh must remove it. A bridge, as an external network would be, with no
	// address, and an empty namespace.
	const testLink, testNetns = "vpcnat-e2e-l0", "vpcnat-e2e-ns0"
	if err := c.OwnLink(testLink); err != nil {
		t.Fatal(err)
	}
	if err := c.OwnNetns(testNetns); err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{{"link", "add", testLink, "type", "bridge"}, {"netns", "add", testNetns}} {
		if out, err := exec.CommandContext(ctx, "ip", argv...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(argv, " "), err, out)
		}
	}
	fp.Links = append(fp.Links, testLink)
	fp.Netns = append(fp.Netns, testNetns)
	// What the leftover check below looks for must have been there, or it proves nothing.
	// 6 daemons, and for the pod 2 containers (sandbox, probe) with 1 shim.
	if len(fp.Netns) != 2 || len(fp.Links) != 3 || len(fp.Cgroups) == 0 || len(fp.PIDs) != 9 {
		t.Errorf("running cluster's footprint is not 1 pod netns + 1 test netns, the bridge + 1 veth + 1 test link, cgroups and 9 processes: %+v", fp)
	}
	if n := podProcesses(c.Env["CGROUP_ROOT"]); n == 0 {
		t.Errorf("no process in cgroup /%s: pod %s runs outside the cluster's cgroup root", c.Env["CGROUP_ROOT"], pod)
	}

	if t.Failed() {
		c.LogTails(t, 15)
	}
	mark = time.Now()
	out, err = c.Stop()
	stopped = true
	if err != nil {
		t.Fatal(err)
	}
	times.add("stop: all torn down", time.Since(mark))
	t.Logf("stop.sh:\n%s", out)

	for _, l := range c.Leftovers(ctx, fp) {
		t.Errorf("left behind after stop.sh: %s", l)
	}
	after, err := c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range before.Diff(after) {
		t.Errorf("host changed by the cluster: %s", d)
	}
	times.report(t, filepath.Join(c.Env["LOG_DIR"], "e2e-timings.txt"))
}

// runProbe applies testdata/probe.yaml as a user would, waits for its pod and talks to it from
// the host; it returns the pod's name.
func runProbe(ctx context.Context, t *testing.T, c *Cluster, times *timings) string {
	t.Helper()
	client, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	mark := time.Now()
	if _, err := c.Kubectl(ctx, "apply", "-f", filepath.Join("testdata", "probe.yaml")); err != nil {
		t.Fatal(err)
	}
	var pod *corev1.Pod
	running := poll(ctx, t, "probe pod Running", func() (bool, error) {
		pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=probe"})
		if err != nil || len(pods.Items) != 1 {
			return false, err
		}
		pod = &pods.Items[0]
		return pod.Status.Phase == corev1.PodRunning, nil
	})
	times.add("kubectl apply -> pod Running", running.Sub(mark))
	available := poll(ctx, t, "Deployment probe Available", func() (bool, error) {
		return deploymentAvailable(ctx, client, "default", "probe")
	})
	times.add("kubectl apply -> Deployment Available", available.Sub(mark))

	pod, err = client.CoreV1().Pods("default").Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ip := net.ParseIP(pod.Status.PodIP)
	_, cidr, err := net.ParseCIDR(c.Env["POD_CIDR"])
	if err != nil {
		t.Fatal(err)
	}
	if ip == nil || !cidr.Contains(ip) {
		t.Fatalf("pod %s has IP %q, outside the node's pod network %s", pod.Name, pod.Status.PodIP, cidr)
	}
	// Safety: only ever send to a pod IP that the host routes over the node bridge.
	route, err := exec.CommandContext(ctx, "ip", "-o", "route", "get", ip.String()).Output()
	if err != nil {
		t.Fatalf("ip route get %s: %v", ip, err)
	}
	if !slices.Contains(strings.Fields(string(route)), c.Env["NODE_BRIDGE"]) {
		t.Fatalf("the host routes pod IP %s via %q, not the node bridge %s: not sending", ip, route, c.Env["NODE_BRIDGE"])
	}
	gw := bridgeAddress(ctx, t, c.Env["NODE_BRIDGE"])

	hc := &http.Client{Timeout: 5 * time.Second}
	mark = time.Now()
	resp, err := hc.Get("http://" + net.JoinHostPort(ip.String(), "8080") + "/")
	if err != nil {
		t.Fatalf("GET the pod from the host: %v", err)
	}
	defer resp.Body.Close()
	times.add("host -> pod HTTP GET", time.Since(mark))
	var rep struct {
		Hostname   string
		Remote     string
		Interfaces []struct {
			Name  string
			Addrs []string
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("pod's answer: status %d, %v", resp.StatusCode, err)
	}
	if rep.Hostname != pod.Name {
		t.Errorf("answer from %q, want the pod %s", rep.Hostname, pod.Name)
	}
	// The pod saw the host's address on the bridge: the packets went over it, unNATed.
	if host, _, _ := net.SplitHostPort(rep.Remote); host != gw {
		t.Errorf("pod saw the request from %s, want the bridge address %s", rep.Remote, gw)
	}
	var names []string
	for _, i := range rep.Interfaces {
		names = append(names, i.Name)
		if i.Name == "eth0" && !slices.ContainsFunc(i.Addrs, func(a string) bool { return strings.HasPrefix(a, ip.String()+"/") }) {
			t.Errorf("pod's eth0 has %v, not its pod IP %s", i.Addrs, ip)
		}
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"eth0", "lo"}) {
		t.Errorf("pod has interfaces %v, want exactly eth0 and lo", names)
	}

	// The API server reaches the kubelet (logs, exec, port-forward go this way).
	logs, err := c.Kubectl(ctx, "logs", "deploy/probe")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs, "podprobe serving on :8080") {
		t.Errorf("kubectl logs deploy/probe: %q, want the probe's start line", logs)
	}
	return pod.Name
}

func deploymentAvailable(ctx context.Context, client kubernetes.Interface, ns, name string) (bool, error) {
	d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false, err
	}
	for _, cond := range d.Status.Conditions {
		if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue {
			return d.Status.AvailableReplicas == 1, nil
		}
	}
	return false, nil
}

// bridgeAddress is the node bridge's IPv4 address (the pods' gateway).
func bridgeAddress(ctx context.Context, t *testing.T, br string) string {
	t.Helper()
	out, err := exec.CommandContext(ctx, "ip", "-o", "-4", "addr", "show", "dev", br).Output()
	if err != nil {
		t.Fatalf("ip addr show dev %s: %v", br, err)
	}
	fs := strings.Fields(string(out)) // "7: vpcnat-cni0    inet 10.244.0.1/24 brd ... "
	if i := slices.Index(fs, "inet"); i >= 0 && i+1 < len(fs) {
		return strings.SplitN(fs[i+1], "/", 2)[0]
	}
	t.Fatalf("bridge %s has no IPv4 address: %q", br, out)
	return ""
}

// podProcesses counts the processes in the cgroup tree /root.
func podProcesses(root string) int {
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		if b, err := os.ReadFile(p); err == nil && inCgroup(string(b), "/"+root) {
			n++
		}
	}
	return n
}

// poll calls f every 50 ms until it reports true and returns when that was; failing or running
// out of time fails the test.
func poll(ctx context.Context, t *testing.T, what string, f func() (bool, error)) time.Time {
	t.Helper()
	var last error
	for {
		ok, err := f()
		if ok {
			return time.Now()
		}
		if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v (last error: %v)", what, ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// testContext ends early enough before the test binary's deadline for the cleanup (stop.sh)
// to run: a test killed by -timeout would leave the cluster running.
func testContext(t *testing.T) (context.Context, context.CancelFunc) {
	if d, ok := t.Deadline(); ok {
		return context.WithDeadline(context.Background(), d.Add(-2*time.Minute))
	}
	return context.WithTimeout(context.Background(), 30*time.Minute)
}

type timings struct{ lines []string }

func (ts *timings) add(what string, d time.Duration) {
	ts.lines = append(ts.lines, fmt.Sprintf("%-40s %6.2fs", what, d.Seconds()))
}

// report logs the timings and keeps them beside the cluster's logs (go test shows a passing
// test's log only with -v).
func (ts *timings) report(t *testing.T, path string) {
	text := strings.Join(ts.lines, "\n") + "\n"
	t.Logf("timings:\n%s", text)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		_ = os.WriteFile(path, []byte(text), 0o644)
	}
}
