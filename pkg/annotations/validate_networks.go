package annotations

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// networks is where internal addresses may be: the gateway's subnets, and what lies behind the
// Vpc's policyDst routes. Rules and routes are placed against it with a few map lookups each.
type networks struct {
	names   []string       // subnet name by index
	cidrs   []netip.Prefix // subnet cidr by index, masked; zero when it does not parse
	subnets prefixSet      // subnet cidrs -> index
	behind  prefixSet      // policyDst route cidrs (not the default route) -> route index
	own     map[netip.Addr]bool

	// An address outside every subnet is only reported when every subnet (and, for internal
	// IPs, every policyDst route) has a usable cidr: otherwise the broken cidr is the one error.
	subnetsComplete, routesComplete bool
}

// newNetworks reads the subnets leniently (10.0.1.5/24 counts as 10.0.1.0/24): whether they are
// well-formed is checked elsewhere, once.
func newNetworks(nics []SubnetNIC) *networks {
	n := &networks{
		names: make([]string, len(nics)), cidrs: make([]netip.Prefix, len(nics)),
		own: map[netip.Addr]bool{}, subnetsComplete: len(nics) > 0, routesComplete: true,
	}
	for i := range nics {
		nic := &nics[i]
		n.names[i] = nic.Subnet
		p, err := netip.ParsePrefix(nic.CIDR)
		if err != nil || !p.Addr().Is4() {
			n.subnetsComplete = false
			continue
		}
		n.cidrs[i] = p.Masked()
		n.subnets.add(n.cidrs[i], i)
		for _, a := range nic.Addresses {
			if hp, err := netip.ParsePrefix(a); err == nil {
				n.own[hp.Addr()] = true
			}
		}
		if ip, err := netip.ParseAddr(nic.IP); err == nil {
			n.own[ip] = true
		}
	}
	return n
}

// subnetOf returns the index of the subnet holding a.
func (n *networks) subnetOf(a netip.Addr) (int, bool) { return n.subnets.lookup(a) }

// describe lists the subnets for a message: "sn 10.0.1.0/24, sn2 10.0.2.0/24".
func (n *networks) describe() string {
	parts := make([]string, 0, min(len(n.names), 4))
	for i, name := range n.names {
		if i == 4 {
			parts = append(parts, "...")
			break
		}
		parts = append(parts, fmt.Sprintf("%s %s", name, n.cidrs[i]))
	}
	return strings.Join(parts, ", ")
}

// internalIP checks an address a rule sends traffic to: inside a subnet (a host address of it)
// or behind a policyDst route (hosts behind a VPC router), and not the gateway itself.
func (n *networks) internalIP(s string, path *field.Path) (netip.Addr, *field.Error) {
	ip, fe := ParseIPv4(s, path)
	if fe != nil {
		return ip, fe
	}
	if n.own[ip] {
		return ip, field.Invalid(path, s, "is the gateway's own address")
	}
	if i, ok := n.subnetOf(ip); ok {
		return ip, CheckHost(ip, n.cidrs[i], s, path)
	}
	if _, ok := n.behind.lookup(ip); ok || !n.subnetsComplete || !n.routesComplete {
		return ip, nil
	}
	return ip, field.Invalid(path, s, fmt.Sprintf(
		"must be inside one of the gateway's subnets (%s) or behind one of the Vpc's policyDst static routes", n.describe()))
}

// prefixSet answers "which stored prefix holds this address" with one map lookup per distinct
// prefix length (at most 33) instead of a scan of every prefix.
type prefixSet struct {
	byPrefix map[netip.Prefix]int
	bits     []int // distinct lengths, longest first
}

// add stores p (masked) with value v; the first value stored for a prefix wins.
func (s *prefixSet) add(p netip.Prefix, v int) {
	if s.byPrefix == nil {
		s.byPrefix = map[netip.Prefix]int{}
	}
	if _, ok := s.byPrefix[p]; ok {
		return
	}
	s.byPrefix[p] = v
	if !slices.Contains(s.bits, p.Bits()) {
		s.bits = append(s.bits, p.Bits())
		slices.SortFunc(s.bits, func(a, b int) int { return b - a })
	}
}

// lookup returns the value of the longest stored prefix that contains a.
func (s *prefixSet) lookup(a netip.Addr) (int, bool) {
	for _, b := range s.bits {
		p, err := a.Prefix(b)
		if err != nil {
			continue
		}
		if v, ok := s.byPrefix[p]; ok {
			return v, true
		}
	}
	return 0, false
}
