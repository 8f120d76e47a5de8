package claims

import (
	"fmt"
	"net/netip"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// A segment is the L2 network a Subnet's natGatewayAttachment joins on a node: a Linux bridge
// (bridge) or a parent NIC (master). Names are node-local, but the controller cannot know how
// each node is wired, so the same name is the same segment cluster-wide: a platform that wires
// tenant B's br-b on node 1 and tenant C's br-b on node 2 must name them apart.
//
// A segment belongs to one Vpc: every gateway of a Vpc holds the gateway address of each of its
// Subnets, so two Vpcs on one segment answer ARP for each other's addresses (the later one can
// take the earlier one's traffic). Within one Vpc, two Subnets may share a segment when their
// CIDRs do not overlap.

// SegmentKey names the segment a Subnet joins: "bridge/<name>" or "master/<name>", "" for a
// Subnet without natGatewayAttachment (the primary CNI's network, out of these rules' scope).
func SegmentKey(s *v1.Subnet) string {
	a := s.Spec.NatGatewayAttachment
	switch {
	case a == nil:
		return ""
	case a.Bridge != "":
		return "bridge/" + a.Bridge
	case a.Master != "":
		return "master/" + a.Master
	}
	return ""
}

// attachmentKey is SegmentKey of a NIC in a NIC plan.
func attachmentKey(a annotations.Attachment) string {
	switch a.Type {
	case annotations.AttachBridge:
		return "bridge/" + a.Bridge
	case annotations.AttachMacvlan:
		return "master/" + a.Master
	}
	return ""
}

// Segment is a Subnet's conflict on its segment: Other's claim beats the Subnet's.
type Segment struct {
	Subnet *v1.Subnet
	Other  *v1.Subnet
}

// Field is the attachment's field in the Subnet: "bridge" or "master", and its value.
func (c *Segment) Field() (string, string) {
	a := c.Subnet.Spec.NatGatewayAttachment
	if a.Bridge != "" {
		return "bridge", a.Bridge
	}
	return "master", a.Master
}

// Message says what the conflict is, naming the other Subnet and its Vpc.
func (c *Segment) Message() string {
	name, value := c.Field()
	if c.Other.Spec.Vpc == c.Subnet.Spec.Vpc {
		return fmt.Sprintf("%s %s is already used by Subnet %s of the same Vpc %s, whose cidrBlock %s overlaps %s",
			name, value, c.Other.Name, c.Other.Spec.Vpc, c.Other.Spec.CIDRBlock, c.Subnet.Spec.CIDRBlock)
	}
	return fmt.Sprintf("%s %s is already the segment of Subnet %s of Vpc %s (a segment belongs to one Vpc; names are taken as cluster-wide)",
		name, value, c.Other.Name, c.Other.Spec.Vpc)
}

// field is the conflict as an error at p (the Subnet's spec path).
func (c *Segment) field(p *field.Path) *field.Error {
	name, value := c.Field()
	return field.Invalid(p.Child("natGatewayAttachment", name), value, c.Message())
}

// Error is the conflict as an error at the Subnet's own spec.natGatewayAttachment field.
func (c *Segment) Error() *field.Error { return c.field(specPath) }

// SegmentConflict is s's conflict on its segment, nil when s may use it: another Subnet on the
// same segment, of another Vpc or of the same Vpc with an overlapping cidrBlock, whose claim
// beats s's. A Subnet's claim is in force when a gateway of its Vpc runs with a Deployment whose
// NIC plan attaches it to that segment.
func SegmentConflict(l Lookup, s *v1.Subnet) *Segment {
	key := SegmentKey(s)
	if key == "" {
		return nil
	}
	var rivals []claimant
	byName := map[string]*v1.Subnet{}
	for _, o := range l.SubnetsBySegment(key) {
		if o.Name == s.Name || (o.Spec.Vpc == s.Spec.Vpc && !overlap(o.Spec.CIDRBlock, s.Spec.CIDRBlock)) {
			continue
		}
		rivals = append(rivals, subnetClaimant(l, o, key))
		byName[o.Name] = o
	}
	if len(rivals) == 0 {
		return nil // the common case, without reading any Deployment's NIC plan
	}
	if w := winner(subnetClaimant(l, s, key), rivals); w != "" {
		return &Segment{Subnet: s, Other: byName[w]}
	}
	return nil
}

func subnetClaimant(l Lookup, s *v1.Subnet, key string) claimant {
	return claimant{name: s.Name, created: s.CreationTimestamp, inForce: subnetInForce(l, s, key), deleting: s.DeletionTimestamp != nil}
}

// subnetInForce: a gateway of s's Vpc has a Deployment whose NIC plan puts s on this segment.
func subnetInForce(l Lookup, s *v1.Subnet, key string) bool {
	if s.Spec.Vpc == "" {
		return false
	}
	for _, g := range l.GatewaysByVpc(s.Spec.Vpc) {
		if SegmentsInForce(l, g)[s.Name] == key {
			return true
		}
	}
	return false
}

// SegmentsInForce maps each Subnet attached by g's Deployment (its pod template's NIC plan) to
// its SegmentKey; empty when g has no Deployment.
func SegmentsInForce(l Lookup, g *v1.VpcNatGateway) map[string]string {
	d := l.Deployment(g)
	if d == nil {
		return nil
	}
	return DeploymentSegments(d.Spec.Template.Annotations)
}

// DeploymentSegments maps each Subnet a gateway Deployment's pod template attaches (its NIC plan
// annotation) to its SegmentKey.
func DeploymentSegments(a map[string]string) map[string]string {
	p, err := annotations.ParseNICPlan(a[annotations.NICsKey])
	if err != nil {
		return nil
	}
	out := make(map[string]string, len(p.Subnets))
	for _, n := range p.Subnets {
		if k := attachmentKey(n.Attachment); k != "" {
			out[n.Subnet] = k
		}
	}
	return out
}

func overlap(a, b string) bool {
	pa, err1 := netip.ParsePrefix(a)
	pb, err2 := netip.ParsePrefix(b)
	if err1 != nil || err2 != nil {
		return false
	}
	return pa.Overlaps(pb)
}
