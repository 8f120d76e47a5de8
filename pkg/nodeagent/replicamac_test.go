package nodeagent

import (
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// TestReplicaMACs: each replica of a replicated gateway gets its own MACs on every NIC that has
// a planned one; a single gateway keeps the planned MACs.
func TestReplicaMACs(t *testing.T) {
	doc := func(replicas int) *annotations.Desired {
		return &annotations.Desired{Replicas: replicas,
			External: annotations.ExternalNIC{MAC: plan.ExternalMAC("gw1")},
			Subnets:  []annotations.SubnetNIC{{MAC: plan.SubnetMAC("gw1", "sn")}, {MAC: ""}}}
	}
	single := doc(0)
	withReplicaMACs(single, "pod-a")
	if single.External.MAC != plan.ExternalMAC("gw1") || single.Subnets[0].MAC != plan.SubnetMAC("gw1", "sn") {
		t.Fatalf("a single gateway's MACs changed: %+v", single)
	}
	a, b := doc(2), doc(2)
	withReplicaMACs(a, "pod-a")
	withReplicaMACs(b, "pod-b")
	if a.External.MAC != plan.ReplicaMAC(plan.ExternalMAC("gw1"), "pod-a") || a.Subnets[0].MAC != plan.ReplicaMAC(plan.SubnetMAC("gw1", "sn"), "pod-a") {
		t.Fatalf("replica a: %+v", a)
	}
	if a.External.MAC == b.External.MAC || a.Subnets[0].MAC == b.Subnets[0].MAC {
		t.Fatalf("two replicas share a MAC: %+v %+v", a, b)
	}
	if a.Subnets[1].MAC != "" {
		t.Fatalf("a NIC without a planned MAC (primary) got one: %q", a.Subnets[1].MAC)
	}
}
