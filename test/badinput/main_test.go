package badinput

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/kubeenv"
	"github.com/vpcnat/vpcnat/test/topo"
)

var (
	// daemonBin is vpcnat-daemon built once for the package; cniPaths hold vpcnat (built from
	// plugins/vpcnat) and the upstream reference plugins.
	daemonBin string
	cniPaths  []string

	// apiServer is the package's API server (etcd + kube-apiserver), started on first use and
	// shared by the CR and annotation layers (each works on objects and namespaces of its own).
	apiServer = &kubeenv.Shared{RepoRoot: repoRoot()}
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "vpcnat-badinput-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	daemonBin = filepath.Join(dir, "vpcnat-daemon")
	build := exec.Command("go", "build", "-o", daemonBin, "./daemon")
	build.Dir = repoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building vpcnat-daemon: %v\n%s", err, out)
		return 1
	}
	if os.Geteuid() == 0 {
		if cniPaths, err = cnichain.PluginDirs(repoRoot(), dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	code := m.Run()
	if err := apiServer.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return code
}

// dump is a netns's kernel state as text (topo.Dump).
func dump(t *testing.T, tp *topo.Topology, role string) string {
	t.Helper()
	out, err := tp.Dump(role)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// links lists the link names of a role's netns.
func links(t *testing.T, tp *topo.Topology, role string) []string {
	t.Helper()
	out, err := tp.Exec(role, "ip", "-o", "link", "show")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Fields(l)
		if len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			names = append(names, name)
		}
	}
	return names
}

// seedInputs are examples/seed.yaml with the node's NIC eth1.
func seedInputs(t *testing.T) plan.Inputs {
	t.Helper()
	in, err := plan.LoadFile(filepath.Join(repoRoot(), "examples", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in.Config.NIC = "eth1"
	in.Gateway.Generation = 1
	return in
}

// ngw2Inputs is the healthy gateway of the data-plane layers: its own Vpc, subnet sn2
// (10.0.2.0/24 on br-sn2), SNAT to 192.168.0.113.
func ngw2Inputs(t *testing.T) plan.Inputs {
	t.Helper()
	in := seedInputs(t)
	in.Gateway = &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: "ngw2", Generation: 1},
		Spec: v1.VpcNatGatewaySpec{Vpc: "vpc2", Subnet: "sn2", LanIP: "10.0.2.254",
			Eips:      []v1.Eip{{EipCIDR: "192.168.0.113/24", Gateway: topo.RouterIP}},
			SnatRules: []v1.SnatRule{{Eip: "192.168.0.113", InternalCIDR: "10.0.2.0/24"}}}}
	in.Vpc = &v1.Vpc{ObjectMeta: metav1.ObjectMeta{Name: "vpc2"}}
	in.Subnets = []*v1.Subnet{{ObjectMeta: metav1.ObjectMeta{Name: "sn2"},
		Spec: v1.SubnetSpec{Vpc: "vpc2", CIDRBlock: "10.0.2.0/24", Gateway: "10.0.2.1",
			NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-sn2"}}}}
	return in
}
