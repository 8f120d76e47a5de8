// Package multinode runs the multi-node cluster of hack/cluster (start-multi.sh): a control
// plane in the host's network namespace and N nodes, each a network namespace with its own
// containerd, kubelet and cgroup root, on a shared node network; and the node operations tests
// need (power off, partition, heal, power on: hack/cluster/node.sh).
//
// Address plan (hack/cluster/lib-multi.sh has the layout): the node network 172.31.250.0/24 on
// the host bridge vpcnat-phys (host side .1, node N .(10+N)), pod CIDRs 10.250.N.0/24 inside the
// node namespaces, routed by the host and the nodes via the node IPs; vpcnat-phys with its
// address and routes is the one host-side link with an address, and no other test uses these
// subnets. The external (vpcnat-ext) and tenant (vpcnat-vpc) bridges in the host have no
// address. Traffic flows only between namespaces the cluster created.
package multinode

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is the multi-node cluster as hack/cluster/env.sh (with NODES set) describes it.
type Cluster struct {
	Repo  string
	Nodes int
	// Env holds env.sh's KEY=VALUE lines: KUBECONFIG, KUBE_BIN, RUN_DIR, STATE_DIR, NODE_NAMES,
	// NODE_IPS, POD_CIDRS, CGROUP_ROOTS, CONTAINERD_SOCKETS, EXTERNAL_BRIDGE, ...
	Env map[string]string
}

// NewCluster reads the description of a cluster of nodes nodes (2..9) from the scripts in repo.
func NewCluster(ctx context.Context, repo string, nodes int) (*Cluster, error) {
	if nodes < 2 || nodes > 9 {
		return nil, fmt.Errorf("nodes %d: the multi-node cluster has 2 to 9", nodes)
	}
	c := &Cluster{Repo: repo, Nodes: nodes}
	out, err := c.script(ctx, "env.sh")
	if err != nil {
		return nil, err
	}
	c.Env = map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), "="); ok {
			c.Env[k] = v
		}
	}
	for _, k := range []string{"KUBECONFIG", "KUBE_BIN", "RUN_DIR", "STATE_DIR", "NODE_NAMES", "NODE_IPS", "POD_CIDRS", "CGROUP_ROOTS", "CONTAINERD_SOCKETS"} {
		if c.Env[k] == "" {
			return nil, fmt.Errorf("hack/cluster/env.sh (NODES=%d) did not print %s:\n%s", nodes, k, out)
		}
	}
	return c, nil
}

// script runs hack/cluster/NAME with NODES set and returns its combined output (also in the
// error: the scripts say on stderr what failed).
func (c *Cluster) script(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.Repo, "hack", "cluster", name), args...)
	cmd.Env = append(os.Environ(), "NODES="+strconv.Itoa(c.Nodes))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The scripts start daemons that outlive them, with their output in files; should one
	// inherit our pipe, Wait would not return while it lives.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("hack/cluster/%s %s: %w\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

// Setup runs setup.sh (idempotent: seconds when everything is built).
func (c *Cluster) Setup(ctx context.Context) (string, error) { return c.script(ctx, "setup.sh") }

// Start runs start.sh with NODES set (start-multi.sh) and returns its output with the timings.
func (c *Cluster) Start(ctx context.Context) (string, error) { return c.script(ctx, "start.sh") }

// Stop runs stop.sh, which stops either cluster. It gets its own context: it must run even
// when the test's has expired.
func (c *Cluster) Stop() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return c.script(ctx, "stop.sh")
}

// PowerOff kills everything node n (1-based) runs and cuts its NICs: nothing of it answers.
func (c *Cluster) PowerOff(ctx context.Context, n int) error { return c.node(ctx, "poweroff", n) }

// PowerOn boots node n again (its containerd and kubelet; it does not wait for Ready).
func (c *Cluster) PowerOn(ctx context.Context, n int) error { return c.node(ctx, "poweron", n) }

// Partition cuts node n's NICs ("node", "ext", "tenant"; all when none is named); it keeps
// running.
func (c *Cluster) Partition(ctx context.Context, n int, nics ...string) error {
	return c.node(ctx, "partition", n, nics...)
}

// Heal brings every NIC of node n up again.
func (c *Cluster) Heal(ctx context.Context, n int) error { return c.node(ctx, "heal", n) }

// NodePIDs lists every process node n runs (its namespace's and its cgroup root's).
func (c *Cluster) NodePIDs(ctx context.Context, n int) ([]int, error) {
	out, err := c.script(ctx, "node.sh", "pids", strconv.Itoa(n))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		p, err := strconv.Atoi(f)
		if err != nil {
			return nil, fmt.Errorf("node.sh pids %d printed %q: %w", n, f, err)
		}
		pids = append(pids, p)
	}
	return pids, nil
}

func (c *Cluster) node(ctx context.Context, op string, n int, extra ...string) error {
	_, err := c.script(ctx, "node.sh", append([]string{op, strconv.Itoa(n)}, extra...)...)
	return err
}

// list returns the n-th (1-based) item of the comma-separated env.sh value key.
func (c *Cluster) list(key string, n int) string {
	items := strings.Split(c.Env[key], ",")
	if n < 1 || n > len(items) {
		return ""
	}
	return items[n-1]
}

// NodeName is node n's Node name (also its network namespace's and cgroup root's name).
func (c *Cluster) NodeName(n int) string { return c.list("NODE_NAMES", n) }

// NodeIP is node n's address on the node network.
func (c *Cluster) NodeIP(n int) string { return c.list("NODE_IPS", n) }

// NodeNetns is the path of node n's network namespace.
func (c *Cluster) NodeNetns(n int) string { return "/run/netns/" + c.NodeName(n) }

// Kubectl runs the cluster's kubectl with the admin kubeconfig.
func (c *Cluster) Kubectl(ctx context.Context, stdin string, args ...string) (string, error) {
	args = append([]string{"--kubeconfig", c.Env["KUBECONFIG"]}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(c.Env["KUBE_BIN"], "kubectl"), args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args[2:], " "), err, errb.String())
	}
	return out.String(), nil
}

// Client is an admin clientset.
func (c *Cluster) Client() (kubernetes.Interface, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Env["KUBECONFIG"])
	if err != nil {
		return nil, fmt.Errorf("kubeconfig %s: %w", c.Env["KUBECONFIG"], err)
	}
	return kubernetes.NewForConfig(cfg)
}

// OwnLink and OwnNetns register a host-side link or a network namespace a test is about to
// create (a test host on the external or tenant network), so that stop.sh removes it even when
// the test dies before its own clean-up. Register before creating.
func (c *Cluster) OwnLink(name string) error  { return c.own("OWNED_LINKS_FILE", name) }
func (c *Cluster) OwnNetns(name string) error { return c.own("OWNED_NETNS_FILE", name) }

func (c *Cluster) own(fileKey, name string) error {
	path := c.Env[fileKey]
	if path == "" {
		return fmt.Errorf("hack/cluster/env.sh did not print %s", fileKey)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("registering %s: %w", name, err)
	}
	if _, err := fmt.Fprintln(f, name); err != nil {
		f.Close()
		return fmt.Errorf("registering %s in %s: %w", name, path, err)
	}
	return f.Close()
}

// List returns the n-th (1-based) item of the comma-separated env.sh value key (NODE_NAMES,
// NODE_IPS, POD_CIDRS, ...).
func (c *Cluster) List(key string, n int) string { return c.list(key, n) }

// Running reports whether the cluster's state directory exists, and whether a process it
// recorded still runs (a stale directory is what a killed test run leaves).
func (c *Cluster) Running() (exists, alive bool) {
	if _, err := os.Stat(c.Env["RUN_DIR"]); err != nil {
		return false, false
	}
	pids, _ := c.RecordedPIDs()
	for _, p := range pids {
		if processAlive(p) {
			return true, true
		}
	}
	return true, false
}

// RecordedPIDs are the PIDs the scripts recorded (run/pids/*.pid: "PID BINARY"), of processes
// that are still that binary.
func (c *Cluster) RecordedPIDs() (map[string]int, error) {
	files, err := filepath.Glob(filepath.Join(c.Env["RUN_DIR"], "pids", "*.pid"))
	if err != nil {
		return nil, err
	}
	pids := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		fs := strings.Fields(string(b))
		if len(fs) != 2 {
			return nil, fmt.Errorf("%s: want \"PID BINARY\", have %q", f, b)
		}
		pid, err := strconv.Atoi(fs[0])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		want, _ := filepath.EvalSymlinks(fs[1])
		if err != nil || exe != want {
			continue // gone, or the PID is someone else's now
		}
		pids[strings.TrimSuffix(filepath.Base(f), ".pid")] = pid
	}
	return pids, nil
}

// processAlive: the process exists and is not a zombie waiting to be reaped.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// ipIn reports whether ip is in cidr (both as strings; false if either does not parse).
func ipIn(ip, cidr string) bool {
	_, n, err := net.ParseCIDR(cidr)
	a := net.ParseIP(ip)
	return err == nil && a != nil && n.Contains(a)
}
