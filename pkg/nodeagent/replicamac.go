package nodeagent

import (
	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// withReplicaMACs gives a replicated gateway's NICs this replica's own MACs (plan.ReplicaMAC of
// the planned MAC and the pod's name): the replicas share every segment from different nodes,
// and a MAC that two of them used would be learned by the switches at whichever sent last
// (docs/ha.md). Like the node's master override, it is applied after the applied hash was
// taken: the report is about the document the controller wrote.
func withReplicaMACs(d *annotations.Desired, pod string) {
	if d == nil || d.Replicas < 2 {
		return
	}
	if d.External.MAC != "" {
		d.External.MAC = plan.ReplicaMAC(d.External.MAC, pod)
	}
	for i := range d.Subnets {
		if d.Subnets[i].MAC != "" {
			d.Subnets[i].MAC = plan.ReplicaMAC(d.Subnets[i].MAC, pod)
		}
	}
}
