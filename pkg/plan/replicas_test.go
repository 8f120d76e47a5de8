package plan

import (
	"net"
	"strings"
	"testing"
)

// TestReplicaMAC: a replica's MAC is a valid unicast, locally administered MAC starting with 06,
// the same for the same pod, and different between the pods of one NIC and between the NICs of
// one pod.
func TestReplicaMAC(t *testing.T) {
	ext := ExternalMAC("gw1")
	a, b := ReplicaMAC(ext, "vpc-nat-gw-gw1-7d9c-a"), ReplicaMAC(ext, "vpc-nat-gw-gw1-7d9c-b")
	sub := ReplicaMAC(SubnetMAC("gw1", "net1"), "vpc-nat-gw-gw1-7d9c-a")
	for _, m := range []string{a, b, sub} {
		hw, err := net.ParseMAC(m)
		if err != nil || len(hw) != 6 || hw[0] != 0x06 || hw.String() != m {
			t.Fatalf("ReplicaMAC = %q: want a canonical 6-byte MAC starting with 06 (%v)", m, err)
		}
	}
	if a == b || a == sub || a == ext {
		t.Fatalf("replica MACs collide: %s %s %s (planned %s)", a, b, sub, ext)
	}
	if again := ReplicaMAC(ext, "vpc-nat-gw-gw1-7d9c-a"); again != a {
		t.Fatalf("ReplicaMAC is not stable: %s then %s", a, again)
	}
}

// TestBuildReplicas: the desired state carries spec.replicas for a replicated gateway and
// nothing for one replica (its document, and so its hash, is what it was before replicas
// existed).
func TestBuildReplicas(t *testing.T) {
	for replicas, want := range map[int32]int{0: 0, 1: 0, 2: 2, 5: 5} {
		in := withSubnets(t)
		in.Gateway.Spec.Replicas = replicas
		_, d, errs := Build(in)
		if len(errs) > 0 {
			t.Fatalf("replicas %d: %v", replicas, errs)
		}
		if d.Replicas != want {
			t.Errorf("replicas %d: desired replicas %d, want %d", replicas, d.Replicas, want)
		}
	}
}

// TestReplicasNeedAttachedSubnets: a replicated gateway with a subnet on the primary network is
// refused on spec.replicas, naming the subnet; the same gateway with one replica builds.
func TestReplicasNeedAttachedSubnets(t *testing.T) {
	in := withSubnets(t)
	in.Subnets = append(in.Subnets, subnet("p-sub", "10.1.3.0/24", "10.1.3.1", nil))
	if _, _, errs := Build(in); len(errs) > 0 {
		t.Fatalf("one replica: %v", errs)
	}
	in.Gateway.Spec.Replicas = 2
	_, _, errs := Build(in)
	if len(errs) != 1 || errs[0].Field != "spec.replicas" || !strings.Contains(errs[0].Error(), `subnet "p-sub"`) {
		t.Fatalf("two replicas with a primary subnet: %v", errs)
	}
}
