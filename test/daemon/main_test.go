// Package daemon tests vpcnat-daemon's node mode against a real kube-apiserver and etcd
// (test/kubeenv), with real network namespaces and a real CNI chain, and no kubelet: each test
// creates the gateway's Deployment, ReplicaSet and Pod itself (owner references, spec.nodeName,
// the pod template annotations of plan.TemplateAnnotations), runs the CNI chain for the pod
// through libcni (so the attachment record is the plugin's own), writes the desired annotation
// as the controller would, and runs the daemon binary with the ServiceAccount, Role and
// RoleBinding of deploy/daemonset/00-rbac.yaml (in a namespace of the test's own), from the host's
// network namespace (it reaches the API server on loopback) with --node-netns pointing at the
// topology's simulated node.
//
// Address plan: test/topo's seed topology (192.168.0.0/24 external with the EIP gateway
// 192.168.0.254 and the client 192.168.0.50, 198.51.100.10 behind the router, VPC subnets
// 10.0.1.0/24 on br-sn and 10.0.2.0/24 on br-sn2), the primary pod network 203.0.113.128/25 of
// test/cnichain. Gateway ngw (the seed's) holds EIPs 192.168.0.111-.112 (.114 added by updates),
// a second gateway ngw2 in 10.0.2.0/24 holds 192.168.0.113. The API server listens on 127.0.0.1
// only. Everything lives in namespaces the tests create and delete.
package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/kubeenv"
)

var (
	// repoRoot is the checkout's top directory.
	repoRoot = filepath.Join("..", "..")
	// daemonBin is vpcnat-daemon built once for the package; cniPaths hold vpcnat and the
	// reference plugins.
	daemonBin string
	cniPaths  []string

	// apiServer is the package's API server, started on first use (one for all tests: each test
	// works in namespaces and on a node name of its own).
	apiServer = &kubeenv.Shared{RepoRoot: repoRoot}
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vpcnat-test-daemon-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	daemonBin = filepath.Join(dir, "vpcnat-daemon")
	build := exec.Command("go", "build", "-o", daemonBin, "./daemon")
	build.Dir = repoRoot
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building vpcnat-daemon: %v\n%s", err, out)
		os.Exit(1)
	}
	if os.Geteuid() == 0 {
		if cniPaths, err = cnichain.PluginDirs(repoRoot, dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if err := apiServer.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.RemoveAll(dir)
	os.Exit(code)
}
