// Package soak is the churn test: N gateways, each with its own Vpc, Subnet, EIPs and
// rules, created through a real kube-apiserver (test/kubeenv, with kube-controller-manager for
// Deployments, ReplicaSets and garbage collection); the real vpcnat-controller and vpcnat-daemon
// binaries run against it; a simulated kubelet (kubelet_test.go) gives gateway pods real
// sandboxes: a network namespace and the real CNI chain (test/cnichain: upstream bridge +
// host-local, then vpcnat) with the pod's annotations as runtimeConfig, and CNI DEL plus the
// namespace's removal when the pod goes. Rules are then added, edited in place (every field of
// every kind), removed, and created-and-deleted within 10 ms through the API for the churn's
// duration, while UDP datagrams through FIPs and DNATs leave conntrack entries behind. At the
// end, once the controller's status and the daemon's applied annotation report the last spec,
// every gateway's kernel state must equal its spec (derived from what the test wrote, not from
// the annotations), and after the gateways are deleted nothing may be left on the node.
//
// Modes: short by default (4 gateways, 30 s of churn: make test); soak with VPCNAT_SOAK=<duration>
// or -soak.duration (20 gateways unless VPCNAT_SOAK_GATEWAYS or -soak.gateways says otherwise).
//
// Address plan (all inside namespaces the test creates; the host's namespace gets nothing):
//
//	external L2 ("ext" ns, bridge br0) 192.168.0.0/24: node eth1 (the ConfigMap's nic, no
//	  address), the client cli 192.168.0.50; EIP gateways 192.168.0.254 / .253 (routes only:
//	  no host answers for them); gateway i's EIPs from 192.168.0.(60+9i) .. (68+9i)
//	gateway i's subnet 10.1.i.0/24 on node bridge br-g<i> (gateway 10.1.i.1, lanIp .254 or .253),
//	  internal IPs 10.1.i.10-.200, static route next hops 10.1.i.100-.109, policyDst routes to
//	  203.0.113.0/25 sub-prefixes
//	primary pod network 203.0.113.128/25 on node bridge cni0 (test/cnichain)
package soak

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/test/cnichain"
)

var (
	soakDuration = flag.Duration("soak.duration", 0, "churn duration in soak mode (0: short mode, or $VPCNAT_SOAK)")
	soakGateways = flag.Int("soak.gateways", 0, "gateways in soak mode (0: 20, or $VPCNAT_SOAK_GATEWAYS)")
	// plantFault deletes one iptables rule by hand in one gateway namespace after convergence,
	// to show that the comparison catches it (the test must then fail).
	plantFault = flag.String("soak.plant", os.Getenv("VPCNAT_SOAK_PLANT"), "plant a fault before the final check: iptables, addr, route, conntrack")
)

var (
	repoRoot = filepath.Join("..", "..")
	// Binaries built once for the package.
	daemonBin, controllerBin string
	cniPaths                 []string
)

// mode is the size of one run.
type mode struct {
	name     string
	gateways int
	churn    time.Duration
	workers  int           // churn goroutines
	pace     time.Duration // pause of each worker between operations
	resync   time.Duration // the daemon's full converge period
}

func runMode() (mode, error) {
	d := *soakDuration
	if d == 0 {
		if v := os.Getenv("VPCNAT_SOAK"); v != "" {
			var err error
			if d, err = time.ParseDuration(v); err != nil {
				return mode{}, fmt.Errorf("VPCNAT_SOAK=%q: %w", v, err)
			}
		}
	}
	if d == 0 {
		return mode{name: "short", gateways: 4, churn: 30 * time.Second, workers: 2, pace: 40 * time.Millisecond, resync: 15 * time.Second}, nil
	}
	n := *soakGateways
	if n == 0 {
		n = 20
		if v := os.Getenv("VPCNAT_SOAK_GATEWAYS"); v != "" {
			var err error
			if n, err = strconv.Atoi(v); err != nil {
				return mode{}, fmt.Errorf("VPCNAT_SOAK_GATEWAYS=%q: %w", v, err)
			}
		}
	}
	if n < 1 || n > 20 {
		return mode{}, fmt.Errorf("soak gateways: %d is not between 1 and 20 (the address plan has room for 20)", n)
	}
	return mode{name: "soak", gateways: n, churn: d, workers: 3, pace: 30 * time.Millisecond, resync: time.Minute}, nil
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		// Nothing to build: every test skips.
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "vpcnat-test-soak-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	daemonBin = filepath.Join(dir, "vpcnat-daemon")
	controllerBin = filepath.Join(dir, "vpcnat-controller")
	for bin, pkg := range map[string]string{daemonBin: "./daemon", controllerBin: "./controller"} {
		build := exec.Command("go", "build", "-o", bin, pkg)
		build.Dir = repoRoot
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building %s: %v\n%s", pkg, err, out)
			return 1
		}
	}
	if cniPaths, err = cnichain.PluginDirs(repoRoot, dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}
