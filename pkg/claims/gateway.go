package claims

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// KindEIP is the kind of an EIP's entry in VpcNatGatewayStatus.Rules: the gateway's status lists
// the EIPs of the state in force on its pod.
const KindEIP = "eip"

var specPath = field.NewPath("spec")

// GatewayConflicts are gw's claims that another gateway's (or, for the segments of its Vpc's
// Subnets, another Subnet's) claim beats: an EIP, its Vpc, its lanIp in its subnet, a segment.
func GatewayConflicts(l Lookup, gw *v1.VpcNatGateway) field.ErrorList {
	var errs field.ErrorList
	for i, e := range gw.Spec.Eips {
		addr := EIPKey(e.EipCIDR)
		holds := func(g *v1.VpcNatGateway) bool { return EIPInForce(g, addr) }
		if o := gatewayWinner(gw, l.GatewaysByEIP(addr), holds); o != "" {
			errs = append(errs, field.Invalid(specPath.Child("eips").Index(i).Child("eipCIDR"), e.EipCIDR,
				fmt.Sprintf("EIP %s is already claimed by VpcNatGateway %s", addr, o)))
		}
	}
	// Without an OVN router, a gateway itself holds the gateway address of every subnet of its
	// Vpc: a second gateway of the same Vpc would answer ARP for the same addresses on the same
	// bridges. So a Vpc has one gateway; the claim is in force once its Deployment exists.
	if gw.Spec.Vpc != "" {
		holds := func(g *v1.VpcNatGateway) bool { return l.Deployment(g) != nil }
		if o := gatewayWinner(gw, l.GatewaysByVpc(gw.Spec.Vpc), holds); o != "" {
			errs = append(errs, field.Invalid(specPath.Child("vpc"), gw.Spec.Vpc,
				fmt.Sprintf("VpcNatGateway %s already serves this Vpc (a gateway holds the gateway address of every subnet of its Vpc, so a Vpc has one gateway)", o)))
		}
	}
	if gw.Spec.LanIP != "" {
		key := LanKey(gw)
		holds := func(g *v1.VpcNatGateway) bool { return lanInForce(l, g, key) }
		if o := gatewayWinner(gw, l.GatewaysByLan(key), holds); o != "" {
			errs = append(errs, field.Invalid(specPath.Child("lanIp"), gw.Spec.LanIP,
				fmt.Sprintf("VpcNatGateway %s already has this address in subnet %s", o, gw.Spec.Subnet)))
		}
	}
	// The gateway joins every Subnet of its Vpc: one whose segment is another Vpc's would put
	// it on that Vpc's L2 (answering ARP for its addresses). Overlaps between two Subnets of the
	// same Vpc are the projection's to report (plan.Build refuses any overlap within a Vpc).
	if gw.Spec.Vpc != "" {
		for _, s := range l.SubnetsByVpc(gw.Spec.Vpc) {
			if c := SegmentConflict(l, s); c != nil && c.Other.Spec.Vpc != s.Spec.Vpc {
				errs = append(errs, c.field(field.NewPath("subnet").Key(s.Name).Child("spec")))
			}
		}
	}
	return errs
}

// gatewayWinner names a gateway other than gw whose claim beats gw's; inForce says whether a
// gateway's claim is in force.
func gatewayWinner(gw *v1.VpcNatGateway, others []*v1.VpcNatGateway, inForce func(*v1.VpcNatGateway) bool) string {
	rank := func(g *v1.VpcNatGateway) claimant {
		return claimant{name: g.Name, created: g.CreationTimestamp, inForce: inForce(g), deleting: g.DeletionTimestamp != nil}
	}
	rs := make([]claimant, 0, len(others))
	for _, o := range others {
		if o.Name != gw.Name {
			rs = append(rs, rank(o))
		}
	}
	return winner(rank(gw), rs)
}

// EIPInForce: the gateway's status (written after each projection) lists the EIP among the
// rules of the state in force on its pod.
func EIPInForce(g *v1.VpcNatGateway, addr string) bool {
	for _, r := range g.Status.Rules {
		if r.Kind == KindEIP && EIPKey(r.Key) == addr {
			return true
		}
	}
	return false
}

// lanInForce: the gateway's Deployment, which it controls, was made for this subnet/lanIp (the
// seed's annotations list spec.subnet and lanIp first).
func lanInForce(l Lookup, g *v1.VpcNatGateway, key string) bool {
	d := l.Deployment(g)
	if d == nil {
		return false
	}
	return DeploymentLanKey(d.Spec.Template.Annotations) == key
}

// DeploymentLanKey is the LanKey a gateway Deployment's pod template was made for, "" when its
// annotations do not say.
func DeploymentLanKey(a map[string]string) string {
	sw, _, _ := strings.Cut(a[annotations.LogicalSwitchKey], ",")
	ip, _, _ := strings.Cut(a[annotations.IPAddressKey], ",")
	if sw == "" || ip == "" {
		return ""
	}
	return sw + "/" + ip
}

// GatewaySubnet checks that spec.subnet, when its Subnet exists, belongs to spec.vpc. (A missing
// Subnet may come later; the controller reports it while it is missing.)
func GatewaySubnet(l Lookup, gw *v1.VpcNatGateway) *field.Error {
	s := l.Subnet(gw.Spec.Subnet)
	if s == nil || gw.Spec.Vpc == "" || s.Spec.Vpc == gw.Spec.Vpc {
		return nil
	}
	return field.Invalid(specPath.Child("subnet"), gw.Spec.Subnet,
		fmt.Sprintf("Subnet %s belongs to Vpc %q, not %q", s.Name, s.Spec.Vpc, gw.Spec.Vpc))
}

// RuleEIPs checks that every rule's eip is the address of one of spec.eips. (The CRD's CEL
// rules check it for floatingIpRules and snatRules; dnatRules can be too many for CEL's cost
// budget, so the controller's projection and the webhook check it.)
func RuleEIPs(gw *v1.VpcNatGateway) field.ErrorList {
	held := map[string]bool{}
	for _, e := range gw.Spec.Eips {
		if p, err := netip.ParsePrefix(e.EipCIDR); err == nil {
			held[p.Addr().String()] = true
		}
	}
	var errs field.ErrorList
	check := func(p *field.Path, eip string) {
		a, err := netip.ParseAddr(eip)
		if err == nil && !held[a.String()] {
			errs = append(errs, field.Invalid(p, eip, "not the address of any of spec.eips: this gateway does not hold it"))
		}
	}
	for i, r := range gw.Spec.FloatingIPRules {
		check(specPath.Child("floatingIpRules").Index(i).Child("eip"), r.Eip)
	}
	for i, r := range gw.Spec.DnatRules {
		check(specPath.Child("dnatRules").Index(i).Child("eip"), r.Eip)
	}
	for i, r := range gw.Spec.SnatRules {
		check(specPath.Child("snatRules").Index(i).Child("eip"), r.Eip)
	}
	return errs
}
