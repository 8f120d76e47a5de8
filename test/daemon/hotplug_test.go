package daemon

import (
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/topo"
)

// TestDaemonSubnetHotplug: a subnet added to the gateway's Vpc (desired state only: the pod and
// its template stay as they are) gets its NIC, address and routes in the running gateway, and
// its pods egress through the gateway; removed, the NIC goes (with its node-side veth) and so
// does the traffic, while the first subnet keeps working; each step leaves the netns exactly as
// desired (test/kstate: the new subnet's SNAT, routes and rules in, then out). On each NAT
// backend.
func TestDaemonSubnetHotplug(t *testing.T) {
	topo.NeedRoot(t)
	forEachDataplane(t, testDaemonSubnetHotplug)
}

func testDaemonSubnetHotplug(t *testing.T, plane string) {
	g := newSeedGatewayOn(t, plane)
	in := seedInputsOn(t, 2, plane)
	in.Subnets = append(in.Subnets, &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "sn2"},
		Spec: v1.SubnetSpec{Vpc: "test-vpc-1", CIDRBlock: "10.0.2.0/24", Gateway: "10.0.2.1",
			NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-sn2"}}})
	in.Gateway.Spec.SnatRules = append(in.Gateway.Spec.SnatRules, v1.SnatRule{Eip: eip112, InternalCIDR: "10.0.2.0/24"})
	_, d := build(t, in)
	nic := plan.SubnetIfName("sn2")
	hostEnd := plan.HostIfName("ngw", "sn2")

	g.c.waitApplied(g.pod, g.c.setDesired(g.pod, d), "")
	if addrs := g.n.exec(topo.Gateway, "ip", "-o", "-4", "addr", "show", "dev", nic); !strings.Contains(addrs, "10.0.2.1/24") {
		t.Errorf("hot-plugged NIC %s lacks the subnet gateway's address:\n%s", nic, addrs)
	}
	if diff := g.n.check(topo.Gateway, d); !diff.Empty() {
		t.Errorf("with the subnet hot-plugged: %s", diff)
	}
	g.n.expect(topo.Pod4, "tcp", topo.InetIP+":8080", eip112, "")
	g.works()

	in.Gateway.Generation = 3
	in.Subnets = in.Subnets[:1]
	in.Gateway.Spec.SnatRules = in.Gateway.Spec.SnatRules[:1]
	_, d = build(t, in)
	g.c.waitApplied(g.pod, g.c.setDesired(g.pod, d), "")
	if links := g.n.exec(topo.Gateway, "ip", "-o", "link", "show"); strings.Contains(links, nic) {
		t.Errorf("unplugged NIC %s still in the gateway:\n%s", nic, links)
	}
	if links := g.n.exec(topo.Node, "ip", "-o", "link", "show"); strings.Contains(links, hostEnd) {
		t.Errorf("unplugged NIC's node-side veth %s still on the node:\n%s", hostEnd, links)
	}
	if diff := g.n.check(topo.Gateway, d); !diff.Empty() {
		t.Errorf("with the subnet unplugged: %s", diff)
	}
	g.n.expectNoAnswer(topo.Pod4, "tcp", topo.InetIP+":8080")
	g.works()
}
