package annotations

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// External NIC and subnet NIC checks, shared by ValidateNICPlan and ValidateDesired.

// MacvlanModeBridge is the only macvlan mode used: bridge lets the gateway's EIPs and other
// macvlans on the same master reach each other.
const MacvlanModeBridge = "bridge"

func validateExternal(e *ExternalNIC, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if e.IfName != ExternalIfName {
		errs = append(errs, field.NotSupported(path.Child("ifname"), e.IfName, []string{ExternalIfName}))
	}
	if fe := CheckIfName(e.Master, path.Child("master")); fe != nil {
		errs = append(errs, fe)
	}
	if e.Mode != MacvlanModeBridge {
		errs = append(errs, field.NotSupported(path.Child("mode"), e.Mode, []string{MacvlanModeBridge}))
	}
	if fe := CheckMTU(e.MTU, path.Child("mtu")); fe != nil {
		errs = append(errs, fe)
	}
	if fe := CheckMAC(e.MAC, path.Child("mac")); fe != nil {
		errs = append(errs, fe)
	}
	return errs
}

// subnetChecker carries the uniqueness maps across the subnet NICs of one document.
type subnetChecker struct {
	errs     field.ErrorList
	names    map[string]int
	ifnames  map[string]int
	hostIfs  map[string]int
	addrs    map[netip.Addr]string
	primary  int
	prefixes []netip.Prefix
}

func validateSubnetNICs(nics []SubnetNIC, path *field.Path) field.ErrorList {
	c := &subnetChecker{
		names: map[string]int{}, ifnames: map[string]int{}, hostIfs: map[string]int{},
		addrs: map[netip.Addr]string{}, primary: -1, prefixes: make([]netip.Prefix, len(nics)),
	}
	if len(nics) == 0 {
		c.add(field.Required(path, "at least one subnet"))
	}
	if len(nics) > MaxSubnets {
		c.add(field.TooMany(path, len(nics), MaxSubnets))
	}
	for i := range nics {
		c.nic(&nics[i], i, path.Index(i))
	}
	for _, pair := range OverlappingPairs(c.prefixes) {
		a, b := &nics[pair[0]], &nics[pair[1]]
		c.add(field.Invalid(path.Index(pair[1]).Child("cidr"), b.CIDR,
			fmt.Sprintf("overlaps subnet %s (%s)", a.Subnet, a.CIDR)))
	}
	return c.errs
}

func (c *subnetChecker) add(fe *field.Error) {
	if fe != nil {
		c.errs = append(c.errs, fe)
	}
}

// unique records key in seen and reports a Duplicate when it was there already.
func (c *subnetChecker) unique(seen map[string]int, key string, i int, path *field.Path) {
	if _, dup := seen[key]; dup {
		c.add(field.Duplicate(path, key))
		return
	}
	seen[key] = i
}

func (c *subnetChecker) nic(n *SubnetNIC, i int, p *field.Path) {
	if n.Subnet == "" {
		c.add(field.Required(p.Child("subnet"), "the Subnet's name"))
	} else {
		if msgs := validation.IsDNS1123Subdomain(n.Subnet); len(msgs) > 0 {
			c.add(field.Invalid(p.Child("subnet"), n.Subnet, strings.Join(msgs, "; ")))
		}
		c.unique(c.names, n.Subnet, i, p.Child("subnet"))
	}
	cidr, fe := ParseIPv4Prefix(n.CIDR, p.Child("cidr"))
	c.add(fe)
	c.prefixes[i] = cidr
	c.attachment(n, i, p)
	if n.MAC != "" {
		c.add(CheckMAC(n.MAC, p.Child("mac")))
	}

	for j, a := range n.Addresses {
		c.address(a, cidr, n.Subnet, p.Child("addresses").Index(j))
	}
	if n.IP == "" {
		if n.Attachment.Type == AttachPrimary {
			c.add(field.Required(p.Child("ip"), "the address the primary CNI gives eth0"))
		}
		return
	}
	ip, fe := ParseIPv4(n.IP, p.Child("ip"))
	switch {
	case fe != nil:
		c.add(fe)
	case n.Attachment.Type == AttachPrimary:
		if cidr.IsValid() {
			c.add(CheckHost(ip, cidr, n.IP, p.Child("ip")))
		}
	case !hasAddress(n.Addresses, ip):
		c.add(field.Invalid(p.Child("ip"), n.IP, "must be one of addresses"))
	}
}

// address checks one "IP/prefix" of a NIC against its subnet's (valid) cidr.
func (c *subnetChecker) address(a string, cidr netip.Prefix, subnet string, p *field.Path) {
	hp, fe := ParseIPv4HostPrefix(a, p)
	if fe != nil {
		c.add(fe)
		return
	}
	if cidr.IsValid() {
		switch {
		case !cidr.Contains(hp.Addr()):
			c.add(field.Invalid(p, a, fmt.Sprintf("must be inside the subnet's cidr %s", cidr)))
			return
		case hp.Bits() != cidr.Bits():
			c.add(field.Invalid(p, a, fmt.Sprintf("must have the subnet's prefix length /%d", cidr.Bits())))
			return
		}
	}
	if other, dup := c.addrs[hp.Addr()]; dup {
		c.add(field.Invalid(p, a, fmt.Sprintf("the address is already on the NIC in subnet %s", other)))
		return
	}
	c.addrs[hp.Addr()] = subnet
}

func (c *subnetChecker) attachment(n *SubnetNIC, i int, p *field.Path) {
	a, ap := &n.Attachment, p.Child("attachment")
	forbid := func(name, v, why string) {
		if v != "" {
			c.add(field.Forbidden(ap.Child(name), why))
		}
	}
	switch a.Type {
	case AttachBridge:
		c.add(CheckIfName(a.Bridge, ap.Child("bridge")))
		c.ownIfName(a.HostIfName, HostIfNamePrefix, c.hostIfs, i, ap.Child("hostIfname"))
		forbid("master", a.Master, "only a macvlan attachment has a master")
	case AttachMacvlan:
		c.add(CheckIfName(a.Master, ap.Child("master")))
		forbid("bridge", a.Bridge, "only a bridge attachment has a bridge")
		forbid("hostIfname", a.HostIfName, "only a bridge attachment has a node-side veth")
	case AttachPrimary:
		c.primaryNIC(n, i, p)
		return
	case "":
		c.add(field.Required(ap.Child("type"), "bridge, macvlan or primary"))
	default:
		c.add(field.NotSupported(ap.Child("type"), a.Type, []string{AttachBridge, AttachMacvlan, AttachPrimary}))
	}
	c.add(CheckMTU(a.MTU, ap.Child("mtu")))
	c.ownIfName(n.IfName, SubnetIfNamePrefix, c.ifnames, i, p.Child("ifname"))
}

// primaryNIC: the primary CNI created eth0 and owns its addresses, L2 and MTU; there is one.
func (c *subnetChecker) primaryNIC(n *SubnetNIC, i int, p *field.Path) {
	a, ap := &n.Attachment, p.Child("attachment")
	if c.primary >= 0 {
		c.add(field.Invalid(ap.Child("type"), a.Type,
			fmt.Sprintf("only one subnet can be the pod's primary network (eth0): subnets[%d] already is", c.primary)))
	} else {
		c.primary = i
	}
	if n.IfName != PrimaryIfName {
		c.add(field.Invalid(p.Child("ifname"), n.IfName, "a primary attachment is "+PrimaryIfName))
	}
	if len(n.Addresses) > 0 {
		c.add(field.Forbidden(p.Child("addresses"), "the primary CNI owns eth0's addresses: list none"))
	}
	for _, f := range [...]struct{ name, v string }{{"bridge", a.Bridge}, {"master", a.Master}, {"hostIfname", a.HostIfName}} {
		if f.v != "" {
			c.add(field.Forbidden(ap.Child(f.name), "a primary attachment creates nothing"))
		}
	}
	if a.MTU != 0 {
		c.add(field.Forbidden(ap.Child("mtu"), "the primary CNI sets eth0's MTU"))
	}
}

// ownIfName checks the name of an interface vpcnat creates: valid, unique, and with its prefix.
func (c *subnetChecker) ownIfName(s, prefix string, seen map[string]int, i int, p *field.Path) {
	if fe := CheckIfName(s, p); fe != nil {
		c.add(fe)
		return
	}
	if !strings.HasPrefix(s, prefix) {
		c.add(field.Invalid(p, s, fmt.Sprintf("must start with %q, which marks the interfaces vpcnat owns", prefix)))
		return
	}
	c.unique(seen, s, i, p)
}

func hasAddress(addrs []string, ip netip.Addr) bool {
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr() == ip {
			return true
		}
	}
	return false
}
