package plan

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// subnetNICs picks the gateway's subnets (every Subnet of its Vpc: spec.subnet first, the others
// by name, so adding a subnet never reorders the existing ones), checks each Subnet and lanIp,
// and returns one NIC per subnet.
func (b *builder) subnetNICs() []annotations.SubnetNIC {
	spec := &b.gw.Spec
	byName := make(map[string]*v1.Subnet, len(b.in.Subnets))
	var mine []*v1.Subnet
	for _, s := range b.in.Subnets {
		if s == nil {
			continue
		}
		if _, dup := byName[s.Name]; dup {
			fe := field.Duplicate(subnetPath(s.Name), s.Name)
			fe.Detail = "two Subnets have this name"
			b.add(fe)
			continue
		}
		byName[s.Name] = s
		if s.Spec.Vpc != "" && s.Spec.Vpc == spec.Vpc {
			mine = append(mine, s)
		}
	}
	first, p := spec.Subnet, specPath.Child("subnet")
	switch s := byName[first]; {
	case first == "":
		b.add(field.Required(p, "the gateway's subnet in its Vpc"))
	case s == nil:
		fe := field.NotFound(p, first)
		fe.Detail = "no Subnet of this name"
		b.add(fe)
	case !b.vpcOK:
		// spec.vpc is already reported; which Vpc the subnet should be in is unknown.
	case s.Spec.Vpc != spec.Vpc:
		b.add(field.Invalid(p, first, fmt.Sprintf("Subnet %s belongs to Vpc %q, not %q", first, s.Spec.Vpc, spec.Vpc)))
	default:
		b.subnetsKnown = true
	}
	slices.SortFunc(mine, func(x, y *v1.Subnet) int {
		if (x.Name == first) != (y.Name == first) {
			if x.Name == first {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Name, y.Name)
	})
	if len(mine) > annotations.MaxSubnets {
		fe := field.TooMany(specPath.Child("vpc"), len(mine), annotations.MaxSubnets)
		fe.Detail = fmt.Sprintf("Vpc %s has %d Subnets; a gateway joins at most %d", spec.Vpc, len(mine), annotations.MaxSubnets)
		b.add(fe)
	}
	lan, fe := annotations.ParseIPv4(spec.LanIP, specPath.Child("lanIp"))
	b.add(fe)

	nics := make([]annotations.SubnetNIC, len(mine))
	prefixes := make([]netip.Prefix, len(mine))
	for i, s := range mine {
		nics[i], prefixes[i] = b.subnetNIC(s, s.Name == first, lan)
	}
	b.acrossSubnets(mine, nics, prefixes)
	return nics
}

// subnetNIC checks one Subnet and turns it into the gateway's NIC there. On spec.subnet the NIC
// also holds lanIp, when it is not the subnet's gateway already.
func (b *builder) subnetNIC(s *v1.Subnet, isFirst bool, lan netip.Addr) (annotations.SubnetNIC, netip.Prefix) {
	p := subnetPath(s.Name)
	sp := p.Child("spec")
	b.checkObjectName(s.Name, p.Child("metadata", "name"))
	cidr, fe := annotations.ParseIPv4Prefix(s.Spec.CIDRBlock, sp.Child("cidrBlock"))
	b.add(fe)
	gw, fe := annotations.ParseIPv4(s.Spec.Gateway, sp.Child("gateway"))
	if fe == nil && cidr.IsValid() {
		fe = annotations.CheckHost(gw, cidr, s.Spec.Gateway, sp.Child("gateway"))
	}
	b.add(fe)
	if fe != nil {
		gw = netip.Addr{}
	}
	own := gw
	if isFirst {
		own = lan
		if lan.IsValid() && cidr.IsValid() {
			if fe := annotations.CheckHost(lan, cidr, b.gw.Spec.LanIP, specPath.Child("lanIp")); fe != nil {
				b.add(fe)
				lan, own = netip.Addr{}, netip.Addr{}
			}
		}
	}
	nic := annotations.SubnetNIC{
		Subnet:     s.Name,
		IfName:     SubnetIfName(s.Name),
		CIDR:       s.Spec.CIDRBlock,
		Attachment: b.attachment(s, sp.Child("natGatewayAttachment")),
	}
	if own.IsValid() {
		nic.IP = own.String()
	}
	if nic.Attachment.Type == annotations.AttachPrimary {
		nic.IfName = annotations.PrimaryIfName // the primary CNI owns eth0 and its addresses
		return nic, cidr
	}
	nic.MAC = SubnetMAC(b.gw.Name, s.Name)
	if gw.IsValid() && cidr.IsValid() {
		nic.Addresses = append(nic.Addresses, netip.PrefixFrom(gw, cidr.Bits()).String())
	}
	if isFirst && lan.IsValid() && lan != gw && cidr.IsValid() {
		nic.Addresses = append(nic.Addresses, netip.PrefixFrom(lan, cidr.Bits()).String())
	}
	return nic, cidr
}

// attachment reads natGatewayAttachment: absent is the primary CNI's eth0; otherwise exactly one
// of bridge (a veth into a node bridge) or master (a macvlan on a node NIC).
func (b *builder) attachment(s *v1.Subnet, p *field.Path) annotations.Attachment {
	a := s.Spec.NatGatewayAttachment
	if a == nil {
		return annotations.Attachment{Type: annotations.AttachPrimary}
	}
	out := annotations.Attachment{MTU: int(a.MTU)}
	b.add(annotations.CheckMTU(out.MTU, p.Child("mtu")))
	switch {
	case a.Bridge != "" && a.Master != "":
		b.add(field.Invalid(p.Child("master"), a.Master, "bridge is set too: set exactly one of bridge or master"))
	case a.Bridge != "":
		b.add(annotations.CheckIfName(a.Bridge, p.Child("bridge")))
		out.Type, out.Bridge, out.HostIfName = annotations.AttachBridge, a.Bridge, HostIfName(b.gw.Name, s.Name)
	case a.Master != "":
		b.add(annotations.CheckIfName(a.Master, p.Child("master")))
		out.Type, out.Master = annotations.AttachMacvlan, a.Master
	default:
		b.add(field.Required(p, "set exactly one of bridge (a node bridge to veth into) or master "+
			"(a node NIC for a macvlan); leave natGatewayAttachment out to join through the primary CNI"))
	}
	return out
}

// acrossSubnets checks what involves several subnets: overlaps, one primary network, and the
// (hash-derived, so barely possible) collision of two NIC names.
func (b *builder) acrossSubnets(mine []*v1.Subnet, nics []annotations.SubnetNIC, prefixes []netip.Prefix) {
	for _, pair := range annotations.OverlappingPairs(prefixes) {
		x, y := mine[pair[0]], mine[pair[1]]
		b.add(field.Invalid(subnetPath(y.Name).Child("spec", "cidrBlock"), y.Spec.CIDRBlock,
			fmt.Sprintf("overlaps Subnet %s (%s) of the same Vpc", x.Name, x.Spec.CIDRBlock)))
	}
	primary := ""
	ifnames := make(map[string]string, len(nics))
	for i, n := range nics {
		name := mine[i].Name
		if n.Attachment.Type == annotations.AttachPrimary {
			if primary != "" {
				b.add(field.Required(subnetPath(name).Child("spec", "natGatewayAttachment"), fmt.Sprintf(
					"only one subnet can be the pod's primary network (eth0) and Subnet %s already is: give this one a bridge or master", primary)))
			}
			primary = name
			continue
		}
		for _, ifname := range []string{n.IfName, n.Attachment.HostIfName} {
			if other, dup := ifnames[ifname]; dup && ifname != "" {
				b.add(field.Invalid(subnetPath(name).Child("metadata", "name"), name, fmt.Sprintf(
					"its interface name %s, derived from the name, collides with Subnet %s's: rename one of them", ifname, other)))
			}
			ifnames[ifname] = name
		}
	}
}
