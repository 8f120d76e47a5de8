package multinode

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/vpcnat/vpcnat/test/e2e"
)

// TestMultiNodeCluster: hack/cluster starts three real nodes that become Ready, a pod on each
// node reaches the pods on the others with its own address (no NAT) over the node network; a
// powered-off node's pod stops answering while the others are unaffected, and nothing of the
// node runs any more; a partitioned node's pod is cut off but keeps running, and answers again
// once healed; a powered-on node is Ready again and runs its pod again; and stop.sh (with a node
// that was powered off) leaves no process, network namespace, link, route, mount, cgroup,
// iptables rule, sysctl or directory behind.
func TestMultiNodeCluster(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs containerd, kubelets and the nodes' network namespaces")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute) // a hang guard
	defer cancel()
	repo, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	const nodes = 3
	c, err := NewCluster(ctx, repo, nodes)
	if err != nil {
		t.Fatal(err)
	}
	switch exists, alive := c.Running(); {
	case alive:
		t.Fatalf("a multi-node cluster is running from %s (started by hand?): stop it with hack/cluster/stop.sh first", c.Env["RUN_DIR"])
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
	before, err := hostView(c).Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}

	fp := &footprint{pids: map[int]string{}, netns: map[string]bool{}}
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		mark := time.Now()
		out, err := c.Stop()
		if err != nil {
			t.Errorf("stop: %v", err)
		}
		t.Logf("stop.sh in %.2fs:\n%s", time.Since(mark).Seconds(), out)
	}
	defer func() {
		if t.Failed() {
			hostView(c).LogTails(t, 15)
		}
		stop()
	}()

	mark := time.Now()
	out, err := c.Start(ctx)
	if err != nil {
		t.Fatal(err)
	}
	startTime := time.Since(mark)
	t.Logf("%d nodes started and Ready in %.2fs:\n%s", nodes, startTime.Seconds(), out)
	cs, err := c.Client()
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= nodes; n++ {
		if !nodeReady(ctx, cs, c.NodeName(n)) {
			t.Fatalf("node %s is not Ready after start.sh", c.NodeName(n))
		}
	}

	// --- a pod per node; every pod reaches the others with its own address -----------------
	for n := 1; n <= nodes; n++ {
		if _, err := cs.CoreV1().Pods("default").Create(ctx, probePod(n, c.NodeName(n)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pods := map[int]*corev1.Pod{}
	for n := 1; n <= nodes; n++ {
		if pods[n], err = waitPodReady(ctx, cs, probeName(n)); err != nil {
			t.Fatal(err)
		}
		if p := pods[n]; p.Spec.NodeName != c.NodeName(n) || !ipIn(p.Status.PodIP, c.list("POD_CIDRS", n)) {
			t.Fatalf("pod %s runs on %s with IP %s; want node %s, an IP in %s", p.Name, p.Spec.NodeName, p.Status.PodIP, c.NodeName(n), c.list("POD_CIDRS", n))
		}
	}
	netnsOf := func(n int) string {
		t.Helper()
		p, err := podNetns(pods[n])
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for from := 1; from <= nodes; from++ {
		src := netnsOf(from)
		for to := 1; to <= nodes; to++ {
			if to == from {
				continue
			}
			rep, err := probe(src, pods[to].Status.PodIP)
			if err != nil {
				t.Fatalf("pod on node %d -> pod on node %d (%s): %v", from, to, pods[to].Status.PodIP, err)
			}
			if host, _, _ := net.SplitHostPort(rep.Remote); rep.Hostname != probeName(to) || host != pods[from].Status.PodIP {
				t.Errorf("pod on node %d -> pod on node %d: answered by %s seeing %s; want %s seeing %s (no NAT)",
					from, to, rep.Hostname, rep.Remote, probeName(to), pods[from].Status.PodIP)
			}
		}
	}
	fp.record(ctx, t, c)

	// --- power off node 3: its pod and its kubelet stop answering; nodes 1 and 2 do not care --
	victim := 3
	oldPIDs, err := c.NodePIDs(ctx, victim)
	if err != nil {
		t.Fatal(err)
	}
	if len(oldPIDs) < 4 { // containerd, kubelet, a shim, pause, the probe
		t.Fatalf("node %d runs %d processes before power off (%v); want its containerd, kubelet, shim and pod", victim, len(oldPIDs), oldPIDs)
	}
	if err := c.PowerOff(ctx, victim); err != nil {
		t.Fatal(err)
	}
	for _, p := range oldPIDs {
		if processAlive(p) {
			t.Errorf("process %d of node %d alive after power off", p, victim)
		}
	}
	if left, err := c.NodePIDs(ctx, victim); err != nil || len(left) > 0 {
		t.Errorf("node %d runs %v after power off (%v)", victim, left, err)
	}
	if _, err := probe(netnsOf(1), pods[victim].Status.PodIP); err == nil {
		t.Errorf("the pod of powered-off node %d still answers", victim)
	}
	if err := dialIn("", net.JoinHostPort(c.NodeIP(victim), c.Env["KUBELET_PORT"])); err == nil {
		t.Errorf("the kubelet of powered-off node %d still answers on %s", victim, c.NodeIP(victim))
	}
	if _, err := probe(netnsOf(1), pods[2].Status.PodIP); err != nil {
		t.Errorf("node 1 -> node 2 with node %d powered off: %v", victim, err)
	}

	// --- partition node 2: cut off, still running; healed: answers again ----------------------
	if err := c.Partition(ctx, 2); err != nil {
		t.Fatal(err)
	}
	probe2, err := containerPID(pods[2])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := probe(netnsOf(1), pods[2].Status.PodIP); err == nil {
		t.Errorf("the pod of partitioned node 2 still answers node 1")
	}
	if !processAlive(probe2) {
		t.Errorf("the pod of partitioned node 2 (pid %d) does not run any more", probe2)
	}
	if err := c.Heal(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if err := until(ctx, func() error { _, err := probe(netnsOf(1), pods[2].Status.PodIP); return err }); err != nil {
		t.Errorf("node 1 -> node 2 after healing: %v", err)
	}

	// --- power on node 3: Ready again (a lease renewed after power-on), its pod runs again ----
	poweredOn := metav1.NowMicro()
	if err := c.PowerOn(ctx, victim); err != nil {
		t.Fatal(err)
	}
	if err := until(ctx, func() error {
		l, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, c.NodeName(victim), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if !renewedAfter(l, poweredOn) {
			return fmt.Errorf("lease last renewed %v, before power-on %v", l.Spec.RenewTime, poweredOn)
		}
		if !nodeReady(ctx, cs, c.NodeName(victim)) {
			return fmt.Errorf("node %s not Ready", c.NodeName(victim))
		}
		return nil
	}); err != nil {
		t.Fatalf("node %d after power on: %v", victim, err)
	}
	if err := until(ctx, func() error {
		p, err := waitPodReady(ctx, cs, probeName(victim))
		if err != nil {
			return err
		}
		rep, err := probe(netnsOf(1), p.Status.PodIP)
		if err != nil {
			return err
		}
		if rep.Hostname != probeName(victim) {
			return fmt.Errorf("%s answered as %s", p.Status.PodIP, rep.Hostname)
		}
		pods[victim] = p
		return nil
	}); err != nil {
		t.Errorf("the pod of node %d after power on: %v", victim, err)
	}
	fp.record(ctx, t, c)
	t.Logf("3-node cluster: start to all Ready %.2fs", startTime.Seconds())

	// --- stop: nothing left --------------------------------------------------------------------
	stop()
	for _, l := range fp.leftovers(ctx, c) {
		t.Errorf("left after stop.sh: %s", l)
	}
	after, err := hostView(c).Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range before.Diff(after) {
		t.Errorf("host state after stop.sh: %s", d)
	}
}

// hostView is the cluster as test/e2e's host-state snapshot and log tails read it (env.sh's
// HOST_SYSCTLS, HOST_DIRS, LOG_DIR).
func hostView(c *Cluster) *e2e.Cluster { return &e2e.Cluster{Repo: c.Repo, Env: c.Env} }

func probeName(n int) string { return "probe-" + strconv.Itoa(n) }

func probePod(n int, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: probeName(n), Namespace: "default"},
		Spec: corev1.PodSpec{
			NodeSelector:                  map[string]string{corev1.LabelHostname: node},
			TerminationGracePeriodSeconds: new(int64),
			Containers: []corev1.Container{{
				Name: "probe", Image: "vpcnat.local/e2e-probe:dev", ImagePullPolicy: corev1.PullNever,
				ReadinessProbe: &corev1.Probe{
					ProbeHandler:  corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(8080)}},
					PeriodSeconds: 1,
				},
			}},
		},
	}
}

// waitPodReady waits until pod name is Ready with an IP.
func waitPodReady(ctx context.Context, cs kubernetes.Interface, name string) (*corev1.Pod, error) {
	var pod *corev1.Pod
	err := until(ctx, func() error {
		p, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		pod = p
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue && p.Status.PodIP != "" {
				return nil
			}
		}
		return fmt.Errorf("pod %s not Ready: phase %s, IP %q", name, p.Status.Phase, p.Status.PodIP)
	})
	return pod, err
}

func nodeReady(ctx context.Context, cs kubernetes.Interface, name string) bool {
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return false
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func renewedAfter(l *coordinationv1.Lease, t metav1.MicroTime) bool {
	return l.Spec.RenewTime != nil && l.Spec.RenewTime.After(t.Time)
}

// until retries fn every 100 ms until it succeeds or ctx ends (a hang guard, not a measure).
func until(ctx context.Context, fn func() error) error {
	for {
		err := fn()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// report is the probe's answer (test/e2e/podprobe).
type report struct {
	Hostname string `json:"hostname"`
	Remote   string `json:"remote"`
}

// probe asks the probe at ip:8080 from the network namespace at netnsPath ("" = the test's).
// No answer within 2 s counts as none (a hang guard for a peer that is gone).
func probe(netnsPath, ip string) (*report, error) {
	var body []byte
	err := inNetns(netnsPath, func() error {
		conn, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), 2*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return err
		}
		if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\nHost: probe\r\n\r\n"); err != nil {
			return err
		}
		body, err = io.ReadAll(conn)
		return err
	})
	if err != nil {
		return nil, err
	}
	_, js, ok := bytes.Cut(body, []byte("\r\n\r\n"))
	if !ok {
		return nil, fmt.Errorf("probe %s: no HTTP body in %q", ip, body)
	}
	var rep report
	if err := json.Unmarshal(js, &rep); err != nil {
		return nil, fmt.Errorf("probe %s: %w: %q", ip, err, js)
	}
	return &rep, nil
}

// dialIn connects to addr from the network namespace at netnsPath ("" = the test's).
func dialIn(netnsPath, addr string) error {
	return inNetns(netnsPath, func() error {
		conn, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			conn.Close()
		}
		return err
	})
}

func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	return ns.WithNetNSPath(path, func(ns.NetNS) error { return fn() })
}

// containerPID is a PID of pod's containers: a process whose cgroup is the pod's (the kubelet's
// cgroupfs driver names it pod<UID>).
func containerPID(pod *corev1.Pod) (int, error) {
	want := "/pod" + string(pod.UID) + "/"
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil || !bytes.Contains(b, []byte(want)) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if pid > 0 && processAlive(pid) {
			return pid, nil
		}
	}
	return 0, fmt.Errorf("no process in pod %s's cgroup (pod%s)", pod.Name, pod.UID)
}

// podNetns is the path of pod's network namespace, through one of its processes.
func podNetns(pod *corev1.Pod) (string, error) {
	pid, err := containerPID(pod)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("/proc/%d/ns/net", pid), nil
}

// footprint is what the cluster owns, recorded while it runs, so that after stop.sh each item
// can be checked gone by name (other tests on the machine have processes and namespaces of their
// own).
type footprint struct {
	pids  map[int]string
	netns map[string]bool // node and pod network namespaces (names in /run/netns)
}

func (f *footprint) record(ctx context.Context, t *testing.T, c *Cluster) {
	t.Helper()
	rec, err := c.RecordedPIDs()
	if err != nil {
		t.Fatal(err)
	}
	for name, p := range rec {
		f.pids[p] = name
	}
	for n := 1; n <= c.Nodes; n++ {
		pids, err := c.NodePIDs(ctx, n)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pids {
			f.pids[p] = fmt.Sprintf("of node %d", n)
		}
		f.netns[c.NodeName(n)] = true
		// "N: vethX@if2: <...> ... master vpcnat-cniN ... link-netns cni-..."
		out, err := exec.CommandContext(ctx, "ip", "-n", c.NodeName(n), "-o", "link", "show").Output()
		if err != nil {
			t.Fatalf("ip -n %s link show: %v", c.NodeName(n), err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			fs := strings.Fields(l)
			if i := slices.Index(fs, "link-netns"); i >= 0 && i+1 < len(fs) {
				f.netns[fs[i+1]] = true
			}
		}
	}
}

// leftovers lists what of f, and of the cluster's links, routes, cgroups, mounts and
// directories, still exists.
func (f *footprint) leftovers(ctx context.Context, c *Cluster) []string {
	var left []string
	for p, name := range f.pids {
		if processAlive(p) {
			left = append(left, fmt.Sprintf("process %d (%s)", p, name))
		}
	}
	for n := range f.netns {
		if _, err := os.Lstat(filepath.Join("/run/netns", n)); err == nil {
			left = append(left, "netns "+n)
		}
	}
	links := []string{c.Env["NODE_NETWORK_BRIDGE"], c.Env["EXTERNAL_BRIDGE"], c.Env["TENANT_HOST_BRIDGE"]}
	for n := 1; n <= c.Nodes; n++ {
		links = append(links, fmt.Sprintf("vpcnat-v%d", n), fmt.Sprintf("vpcnat-e%d", n), fmt.Sprintf("vpcnat-t%d", n))
	}
	for _, l := range links {
		if exec.CommandContext(ctx, "ip", "link", "show", "dev", l).Run() == nil {
			left = append(left, "link "+l)
		}
	}
	routes, _ := exec.CommandContext(ctx, "ip", "-4", "route", "show").Output()
	for _, r := range strings.Split(string(routes), "\n") {
		fs := strings.Fields(r)
		if len(fs) == 0 {
			continue
		}
		for n := 1; n <= c.Nodes; n++ {
			if fs[0] == c.list("POD_CIDRS", n) || strings.Contains(r, c.NodeIP(n)) {
				left = append(left, "route "+r)
			}
		}
	}
	for _, root := range strings.Split(c.Env["CGROUP_ROOTS"], ",") {
		cgs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", root))
		for _, cg := range cgs {
			left = append(left, "cgroup "+cg)
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, l := range strings.Split(string(mounts), "\n") {
		fs := strings.Fields(l)
		if len(fs) < 5 {
			continue
		}
		m := fs[4]
		prefixes := []string{c.Env["RUN_DIR"], c.Env["STATE_DIR"]}
		for n := range f.netns {
			prefixes = append(prefixes, "/run/netns/"+n)
		}
		for _, p := range prefixes {
			if m == p || strings.HasPrefix(m, p+"/") {
				left = append(left, "mount "+m)
			}
		}
	}
	for _, d := range []string{c.Env["RUN_DIR"], c.Env["STATE_DIR"]} {
		if _, err := os.Lstat(d); err == nil {
			left = append(left, "directory "+d)
		}
	}
	slices.Sort(left)
	return left
}
