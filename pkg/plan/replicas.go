package plan

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// ReplicaMAC is the MAC of one replica's NIC of a replicated gateway (spec.replicas ≥ 2):
// replicas share the NIC's segment from different nodes, so each needs its own MAC (a shared one
// would be learned by the switches at whichever replica sent last, docs/ha.md). It is derived from
// the NIC's planned MAC (ExternalMAC, SubnetMAC) and the pod's name, so it is stable for the pod's
// lifetime and differs between replicas. The first byte is 06 (unicast, locally administered),
// where a single gateway's MACs start with 02, so a replica's NIC is told from a single
// gateway's at a glance.
func ReplicaMAC(planned, pod string) string {
	h := hashHex("vpcnat/replica-mac", planned, pod)
	return fmt.Sprintf("06:%s:%s:%s:%s:%s", h[0:2], h[2:4], h[4:6], h[6:8], h[8:10])
}

// checkReplicas refuses what replicas cannot serve: a subnet the primary CNI attaches (eth0)
// gives each pod its own address, so the replicas do not share the subnet's gateway address, and
// the failover agent leaves eth0 alone (docs/ha.md).
func (b *builder) checkReplicas(d *annotations.Desired) {
	if b.gw.Spec.Replicas > annotations.MaxReplicas {
		b.add(field.Invalid(specPath.Child("replicas"), b.gw.Spec.Replicas, fmt.Sprintf("must be 1-%d", annotations.MaxReplicas)))
	}
	for _, s := range d.Subnets {
		if s.Attachment.Type == annotations.AttachPrimary {
			b.add(field.Invalid(specPath.Child("replicas"), b.gw.Spec.Replicas, fmt.Sprintf(
				"a replicated gateway needs every subnet attached by bridge or master: subnet %q has no natGatewayAttachment (the primary network gives each replica its own address)", s.Subnet)))
			return
		}
	}
}
