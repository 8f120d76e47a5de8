package dataplane

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

// daemonBin is vpcnat-daemon built once for the package (TestMain); cniPaths hold the vpcnat
// plugin and the upstream reference plugins.
var (
	daemonBin string
	cniPaths  []string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vpcnat-dataplane-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	daemonBin = filepath.Join(dir, "vpcnat-daemon")
	if out, err := exec.Command("go", "build", "-o", daemonBin, "../../daemon").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building vpcnat-daemon: %v\n%s", err, out)
		os.Exit(1)
	}
	if os.Geteuid() == 0 {
		if cniPaths, err = cnichain.PluginDirs(filepath.Join("..", ".."), dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// writeSpec writes the inputs as a multi-document YAML file, as a user would hand it to apply.
func writeSpec(t *testing.T, in plan.Inputs) string {
	t.Helper()
	var docs []string
	add := func(obj any) {
		b, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, string(b))
	}
	typeMeta := func(kind string) metav1.TypeMeta { return metav1.TypeMeta{APIVersion: "kubeovn.io/v1", Kind: kind} }
	gw, vpc := in.Gateway.DeepCopy(), in.Vpc.DeepCopy()
	gw.TypeMeta, vpc.TypeMeta = typeMeta("VpcNatGateway"), typeMeta("Vpc")
	add(gw)
	add(vpc)
	for _, s := range in.Subnets {
		s = s.DeepCopy()
		s.TypeMeta = typeMeta("Subnet")
		add(s)
	}
	p := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(p, []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// apply runs `vpcnat-daemon apply` on the simulated node.
func (f *fixture) apply(spec string) (string, error) {
	args := []string{"netns", "exec", f.topo.Name(topo.Node), daemonBin, "apply",
		"--netns", f.topo.Path(topo.Gateway), "--spec", spec, "--master", "eth1"}
	if f.in.Config.Dataplane != "" {
		args = append(args, "--dataplane", f.in.Config.Dataplane)
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	return string(out), err
}

// TestBadInputLeavesNamespaceAsIs: a converged gateway, then bad specs through the CLI: each is
// refused with the field path and value, exit status 1, and the namespace stays byte-identical.
// (pkg/plan's tests hold the full corpus of invalid specs; these go through the whole program.)
func TestBadInputLeavesNamespaceAsIs(t *testing.T) { eachBackend(t, testBadInputLeavesNamespaceAsIs) }

func testBadInputLeavesNamespaceAsIs(t *testing.T, f *fixture) {
	good := writeSpec(t, f.in)
	if out, err := f.apply(good); err != nil {
		t.Fatalf("applying the good spec: %v\n%s", err, out)
	}
	before := f.dump()

	cases := []struct {
		name   string
		mutate func(g *v1.VpcNatGatewaySpec, vpc *v1.Vpc)
		want   string
	}{
		{"port 0", func(g *v1.VpcNatGatewaySpec, _ *v1.Vpc) { g.DnatRules[0].ExternalPort = intstr.FromInt32(0) }, "spec.dnatRules[0].externalPort"},
		{"port 65536", func(g *v1.VpcNatGatewaySpec, _ *v1.Vpc) { g.DnatRules[0].InternalPort = intstr.FromInt32(65536) }, "spec.dnatRules[0].internalPort"},
		{"protocol", func(g *v1.VpcNatGatewaySpec, _ *v1.Vpc) { g.DnatRules[0].Protocol = "sctp" }, "spec.dnatRules[0].protocol"},
		{"eip not ours", func(g *v1.VpcNatGatewaySpec, _ *v1.Vpc) { g.SnatRules[0].Eip = "192.168.0.200" }, "spec.snatRules[0].eip"},
		{"two FIPs on one EIP", func(g *v1.VpcNatGatewaySpec, _ *v1.Vpc) {
			g.FloatingIPRules = append(g.FloatingIPRules, v1.FloatingIPRule{Eip: eip111, InternalIP: topo.Pod3IP})
		}, "spec.floatingIpRules[1]"},
		{"internal IP outside", func(g *v1.VpcNatGatewaySpec, _ *v1.Vpc) { g.FloatingIPRules[0].InternalIP = "172.16.0.5" }, "spec.floatingIpRules[0].internalIp"},
		{"lanIp outside", func(g *v1.VpcNatGatewaySpec, _ *v1.Vpc) { g.LanIP = "10.0.9.254" }, "spec.lanIp"},
		{"bad CIDR", func(g *v1.VpcNatGatewaySpec, _ *v1.Vpc) { g.Eips[0].EipCIDR = "192.168.0.300/24" }, "spec.eips[0].eipCIDR"},
		{"hostile string", func(g *v1.VpcNatGatewaySpec, _ *v1.Vpc) { g.SnatRules[0].InternalCIDR = "10.0.1.0/24; iptables -F" }, "spec.snatRules[0].internalCIDR"},
		{"next hop off-link", func(_ *v1.VpcNatGatewaySpec, vpc *v1.Vpc) {
			vpc.Spec.StaticRoutes = []v1.StaticRoute{{CIDR: "203.0.113.0/24", NextHopIP: "172.16.0.1"}}
		}, "staticRoutes[0].nextHopIP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := f.in
			gw := in.Gateway.DeepCopy()
			vpc := in.Vpc.DeepCopy()
			c.mutate(&gw.Spec, vpc)
			in.Gateway, in.Vpc = gw, vpc
			out, err := f.apply(writeSpec(t, in))
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("exit: %v, want status 1\n%s", err, out)
			}
			if !strings.Contains(out, c.want) || !strings.Contains(out, "nothing applied") {
				t.Errorf("output does not name %q and say nothing was applied:\n%s", c.want, out)
			}
			if after := f.dump(); after != before {
				t.Errorf("namespace changed by a refused spec:\n--- before\n%s\n--- after\n%s", before, after)
			}
		})
	}

	// Not YAML at all, and an unknown kind: refused before anything is built.
	for name, body := range map[string]string{
		"not yaml":     "kind: VpcNatGateway\nspec: [unclosed\n",
		"unknown kind": "apiVersion: v1\nkind: Secret\nmetadata: {name: x}\n",
	} {
		p := filepath.Join(t.TempDir(), "bad.yaml")
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := f.apply(p); err == nil {
			t.Errorf("%s: accepted:\n%s", name, out)
		}
	}
	if after := f.dump(); after != before {
		t.Errorf("namespace changed by unparsable specs")
	}
	// The good spec again: in sync.
	if out, err := f.apply(good); err != nil || !strings.Contains(out, "no changes") {
		t.Errorf("re-applying the good spec: %v\n%s", err, out)
	}
}
