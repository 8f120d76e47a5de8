package daemon

import (
	"crypto/sha256"
	"encoding/hex"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

const timeout = 2 * time.Second

const (
	eip111 = "192.168.0.111" // seed: FIP -> 10.0.1.5
	eip112 = "192.168.0.112" // seed: DNAT :8888/tcp -> 10.0.1.10:80, SNAT 10.0.1.0/24
	eip113 = "192.168.0.113" // ngw2's
	eip114 = "192.168.0.114"
)

func hashOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// node is the simulated node: the seed topology, the CNI chain of the node (bridge +
// host-local, then vpcnat for the test's gateway namespace) and its records directory.
type node struct {
	t     *testing.T
	topo  *topo.Topology
	chain *cnichain.Chain
	list  *libcni.NetworkConfigList
}

func newNode(t *testing.T, c *cluster, tp *topo.Topology) *node {
	t.Helper()
	chain := cnichain.New(tp, cniPaths, t.TempDir())
	list, err := chain.ConfList("1.1.0", true, `"gatewayNamespaces": ["`+c.ns+`"]`)
	if err != nil {
		t.Fatal(err)
	}
	return &node{t: t, topo: tp, chain: chain, list: list}
}

// sandbox creates the pod's sandbox in role's netns through the CNI chain, as containerd
// would, with the pod template's annotations; the vpcnat plugin writes the attachment record.
// Cleanup runs DEL.
func (n *node) sandbox(pod *corev1.Pod, role, containerID string) cnichain.Pod {
	n.t.Helper()
	p := cnichain.Pod{Role: role, Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID),
		ContainerID: containerID, Annotations: pod.Annotations}
	if _, err := n.chain.Add(n.list, p); err != nil {
		n.t.Fatalf("CNI ADD for %s: %v", pod.Name, err)
	}
	n.t.Cleanup(func() { _ = n.chain.Del(n.list, p) })
	return p
}

// dataplanes are the NAT backends, the default (nftables) first. Every test that converges a
// gateway's NAT and judges the netns (applied rules, drift repair, restart, sandbox recreated,
// reboot, replacement pod, hot-plug, impostors, bad desired state) runs on each, a subtest per
// backend (a second or two each); the address conflict test runs on the default only: conflict
// detection does not depend on the backend.
var dataplanes = []string{annotations.DataplaneNFTables, annotations.DataplaneIPTables}

// forEachDataplane runs fn as a subtest per NAT backend.
func forEachDataplane(t *testing.T, fn func(t *testing.T, plane string)) {
	for _, plane := range dataplanes {
		t.Run(plane, func(t *testing.T) { fn(t, plane) })
	}
}

// seedInputs are examples/seed.yaml with the node's NIC, at a generation, on the default NAT
// backend (nftables).
func seedInputs(t *testing.T, gen int64) plan.Inputs {
	t.Helper()
	return seedInputsOn(t, gen, annotations.DataplaneNFTables)
}

// seedInputsOn are seedInputs on the NAT backend plane.
func seedInputsOn(t *testing.T, gen int64, plane string) plan.Inputs {
	t.Helper()
	in, err := plan.LoadFile(filepath.Join(repoRoot, "examples", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in.Config.NIC, in.Config.Dataplane = "eth1", plane
	in.Gateway.Generation = gen
	return in
}

// ngw2Inputs is a second gateway, in its own Vpc with subnet sn2 (10.0.2.0/24 on br-sn2):
// SNAT of the subnet to 192.168.0.113, on the NAT backend plane.
func ngw2Inputs(t *testing.T, gen int64, plane string) plan.Inputs {
	t.Helper()
	in := seedInputsOn(t, gen, plane)
	in.Gateway = &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: "ngw2", Generation: gen},
		Spec: v1.VpcNatGatewaySpec{Vpc: "vpc2", Subnet: "sn2", LanIP: "10.0.2.254",
			Eips:      []v1.Eip{{EipCIDR: eip113 + "/24", Gateway: topo.RouterIP}},
			SnatRules: []v1.SnatRule{{Eip: eip113, InternalCIDR: "10.0.2.0/24"}}}}
	in.Vpc = &v1.Vpc{ObjectMeta: metav1.ObjectMeta{Name: "vpc2"}}
	in.Subnets = []*v1.Subnet{{ObjectMeta: metav1.ObjectMeta{Name: "sn2"},
		Spec: v1.SubnetSpec{Vpc: "vpc2", CIDRBlock: "10.0.2.0/24", Gateway: "10.0.2.1",
			NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-sn2"}}}}
	return in
}

// build is plan.Build's NIC plan as template annotations, and the desired state.
func build(t *testing.T, in plan.Inputs) (map[string]string, *annotations.Desired) {
	t.Helper()
	nics, d, errs := plan.Build(in)
	if len(errs) > 0 {
		t.Fatalf("spec invalid: %v", errs.ToAggregate())
	}
	templ, err := plan.TemplateAnnotations(nics, "ovn-vpc-external-network")
	if err != nil {
		t.Fatal(err)
	}
	return templ, d
}

// exec runs a command in a role's netns.
func (n *node) exec(role string, argv ...string) string {
	n.t.Helper()
	out, err := n.topo.Exec(role, argv...)
	if err != nil {
		n.t.Fatal(err)
	}
	return out
}

// dump is a netns's kernel state as text: topo.Dump (links, addresses, rules, routes, the
// iptables nat table, forwarding) and nft's reading of table ip vpcnat through test/kstate
// (with the kernel's handles, so a rule rewritten the same shows as a change).
func (n *node) dump(role string) string {
	n.t.Helper()
	out, err := n.topo.Dump(role)
	if err != nil {
		n.t.Fatal(err)
	}
	st, err := kstate.Dump(n.topo.Path(role))
	if err != nil {
		n.t.Fatal(err)
	}
	return out + "nftables table ip vpcnat: " + st.NFTText + "\n"
}

// natOf is the NAT of a role's netns as test/kstate reads it (iptables-save -t nat, and nft's
// own reading of table ip vpcnat), and whether it holds any of vpcnat's, of either backend.
func (n *node) natOf(role string) (text string, any bool) {
	n.t.Helper()
	st, err := kstate.Dump(n.topo.Path(role))
	if err != nil {
		n.t.Fatal(err)
	}
	return st.NATText + st.NFTText, st.NFT != nil || slices.Contains(st.Chains, "DNAT_FILTER")
}

// check is test/kstate's comparison of a role's netns with d: links, addresses, routes, rules,
// sysctls and the NAT of d's backend (its independent model of each layout), and nothing left
// of the other backend.
func (n *node) check(role string, d *annotations.Desired) kstate.Diff {
	n.t.Helper()
	diff, err := kstate.Check(n.topo.Path(role), d)
	if err != nil {
		n.t.Fatal(err)
	}
	return diff
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// listen starts a receiver for the test's lifetime.
func (n *node) listen(role, proto, addr string) {
	n.t.Helper()
	n.topo.ListenFor(n.t, role, proto, addr)
}

// expect sends one request and checks what the receiver saw (topo.Expect).
func (n *node) expect(from, proto, to, wantSeen, wantLocal string) {
	n.t.Helper()
	n.topo.Expect(n.t, from, proto, to, wantSeen, wantLocal)
}

// expectNoAnswer checks a request gets no answer.
func (n *node) expectNoAnswer(from, proto, to string) {
	n.t.Helper()
	n.topo.ExpectNoAnswer(n.t, from, proto, to)
}
