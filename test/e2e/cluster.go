// Package e2e runs the project on a real one-node Kubernetes cluster: the one hack/cluster/
// builds, starts and stops (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a
// kubelet, containerd + runc, the reference bridge/host-local/loopback CNI plugins).
//
// Address plan: pods get addresses in the node's pod network, 10.244.0.0/24 on the bridge
// vpcnat-cni0 (host side 10.244.0.1), made by the bridge plugin; it is the one host-side link
// with an address, as a real node's cni0 is, and no other test uses that subnet. The tests add
// no address, route or iptables rule to the host's namespace, and send traffic only to pod IPs
// on that bridge, after checking that the host routes them there. TestVpcNat's networks (see its
// comment) add links to the host's namespace, registered with the cluster and without any
// address, and carry traffic only between namespaces the test created.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Cluster is the hack/cluster cluster as its scripts describe it (hack/cluster/env.sh).
type Cluster struct {
	Repo string
	// Env holds env.sh's KEY=VALUE lines: KUBECONFIG, KUBE_BIN, CRICTL, CONTAINERD_SOCKET,
	// RUN_DIR, LOG_DIR, STATE_DIR, CNI_BIN_DIR, CNI_CONF_DIR, NODE_NAME, NODE_BRIDGE, POD_CIDR,
	// CGROUP_ROOT, HOST_SYSCTLS, HOST_DIRS, ...
	Env map[string]string
}

// NewCluster reads the cluster's description from the scripts in repo.
func NewCluster(ctx context.Context, repo string) (*Cluster, error) {
	c := &Cluster{Repo: repo}
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
	for _, k := range []string{"KUBECONFIG", "RUN_DIR", "STATE_DIR", "LOG_DIR", "NODE_BRIDGE", "POD_CIDR", "CGROUP_ROOT"} {
		if c.Env[k] == "" {
			return nil, fmt.Errorf("hack/cluster/env.sh did not print %s:\n%s", k, out)
		}
	}
	return c, nil
}

// script runs hack/cluster/NAME and returns its combined output (in the error too, when it
// fails: the scripts say what failed on stderr).
func (c *Cluster) script(ctx context.Context, name string, args ...string) (string, error) {
	path := filepath.Join(c.Repo, "hack", "cluster", name)
	cmd := exec.CommandContext(ctx, path, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// The scripts start daemons that outlive them with their output in files; should one
	// inherit our pipe, Wait would not return while it lives.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("hack/cluster/%s: %w\n%s", name, err, out.String())
	}
	return out.String(), nil
}

// Setup runs setup.sh (idempotent: seconds when everything is built).
func (c *Cluster) Setup(ctx context.Context) (string, error) { return c.script(ctx, "setup.sh") }

// Start runs start.sh and returns its output (with the per-step timings).
func (c *Cluster) Start(ctx context.Context) (string, error) { return c.script(ctx, "start.sh") }

// Stop runs stop.sh. It gets its own context: it must run even when the test's has expired.
func (c *Cluster) Stop() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	return c.script(ctx, "stop.sh")
}

// Running reports whether a cluster's state directory exists, and whether any process it
// recorded is still alive (a stale directory is what a killed test run leaves).
func (c *Cluster) Running() (exists, alive bool) {
	if _, err := os.Stat(c.Env["RUN_DIR"]); err != nil {
		return false, false
	}
	pids, _ := c.RecordedPIDs()
	for name, p := range pids {
		// The PID must still be the binary start.sh ran: after a reboot it may be anyone's.
		b, _ := os.ReadFile(filepath.Join(c.Env["RUN_DIR"], "pids", name+".pid"))
		fs := strings.Fields(string(b))
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p))
		if err == nil && len(fs) == 2 && processAlive(p) {
			if want, err := filepath.EvalSymlinks(fs[1]); err == nil && want == exe {
				return true, true
			}
		}
	}
	return true, false
}

// RecordedPIDs are the PIDs start.sh recorded (run/pids/*.pid: "PID BINARY").
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
		var pid int
		if _, err := fmt.Sscan(string(b), &pid); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		pids[strings.TrimSuffix(filepath.Base(f), ".pid")] = pid
	}
	return pids, nil
}

// OwnLink and OwnNetns register a host-side link or a network namespace a test is about to
// create on the node (an external network's bridge, a test host), so that stop.sh removes it
// even when the test dies before its own clean-up. Register before creating.
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

// Kubectl runs the cluster's kubectl with the admin kubeconfig.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) (string, error) {
	args = append([]string{"--kubeconfig", c.Env["KUBECONFIG"]}, args...)
	cmd := exec.CommandContext(ctx, filepath.Join(c.Env["KUBE_BIN"], "kubectl"), args...)
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

// LogTails logs the end of every component's log, for a failed test.
func (c *Cluster) LogTails(t *testing.T, lines int) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(c.Env["LOG_DIR"], "*.log"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		all := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(all) > lines {
			all = all[len(all)-lines:]
		}
		t.Logf("--- %s (last %d lines)\n%s", f, len(all), strings.Join(all, "\n"))
	}
}

// processAlive: the process exists and is not a zombie waiting for init to reap it.
func processAlive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": comm may hold spaces and parentheses; the state follows the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
