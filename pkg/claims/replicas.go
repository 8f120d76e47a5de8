package claims

import (
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// A replicated gateway (spec.replicas ≥ 2) joins every Subnet of its Vpc, and its replicas share
// each subnet's gateway address on their own NICs (docs/ha.md). A Subnet without
// natGatewayAttachment is reached through the primary CNI's eth0, where each pod has its own
// address, so no replica could take over its gateway address. The projection refuses such a
// gateway in status (pkg/plan, InvalidSpec); these two rules refuse it at admission, from either
// side: the gateway naming the Subnet, and the Subnet naming the gateway.

// ReplicatedSubnets refuses spec.replicas ≥ 2 when a Subnet of the gateway's Vpc has no
// natGatewayAttachment; the error names the first such Subnet (by name).
func ReplicatedSubnets(l Lookup, gw *v1.VpcNatGateway) *field.Error {
	if gw.Spec.Replicas < 2 || gw.Spec.Vpc == "" {
		return nil
	}
	var primary []string
	for _, s := range l.SubnetsByVpc(gw.Spec.Vpc) {
		if s.Spec.NatGatewayAttachment == nil {
			primary = append(primary, s.Name)
		}
	}
	if len(primary) == 0 {
		return nil
	}
	slices.Sort(primary)
	return field.Invalid(specPath.Child("replicas"), gw.Spec.Replicas, fmt.Sprintf(
		"a replicated gateway needs every Subnet of Vpc %q attached by bridge or master: Subnet %s has no natGatewayAttachment (the primary network gives each replica its own address)",
		gw.Spec.Vpc, strings.Join(primary, ", ")))
}

// PrimarySubnetOfReplicated refuses a Subnet without natGatewayAttachment in a Vpc whose gateway
// runs replicas; the error names the gateway.
func PrimarySubnetOfReplicated(l Lookup, s *v1.Subnet) *field.Error {
	if s.Spec.NatGatewayAttachment != nil || s.Spec.Vpc == "" {
		return nil
	}
	var names []string
	for _, g := range l.GatewaysByVpc(s.Spec.Vpc) {
		if g.Spec.Replicas >= 2 {
			names = append(names, fmt.Sprintf("%s (replicas: %d)", g.Name, g.Spec.Replicas))
		}
	}
	if len(names) == 0 {
		return nil
	}
	slices.Sort(names)
	return field.Required(specPath.Child("natGatewayAttachment"), fmt.Sprintf(
		"Vpc %q has the replicated gateway VpcNatGateway %s: its Subnets must be attached by bridge or master, the primary network gives each replica its own address",
		s.Spec.Vpc, strings.Join(names, ", ")))
}
