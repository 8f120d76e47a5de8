package nat

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// groupMinBits is the shortest prefix that goes into a SNAT_<len>_<a>.<b> group: such a prefix
// lies inside exactly one /16, so the group can be reached with one "-s a.b.0.0/16" jump. With
// thousands of SNAT rules, a one-rule change then rewrites one small chain instead of all of
// SHARED_SNAT, and a packet skips whole /16s it is not in.
const groupMinBits = 16

type snat struct {
	cidr netip.Prefix
	eip  netip.Addr
}

type snatGroup struct {
	bits int
	a, b byte
}

// sharedSNAT returns SHARED_SNAT and its group chains. Longest prefix wins because SNAT is a
// terminal target and the rules (and groups) come in decreasing prefix length: all /32 groups,
// then all /31 groups, ... then the /16 groups, then the inline rules shorter than /16.
func sharedSNAT(in []annotations.SNAT) ([]string, []Chain) {
	rules := make([]snat, 0, len(in))
	for _, r := range in {
		p, err1 := ParseCIDR(r.InternalCIDR)
		eip, err2 := netip.ParseAddr(r.EIP)
		if err1 != nil || err2 != nil || !p.Addr().Is4() || !eip.Is4() {
			continue
		}
		rules = append(rules, snat{cidr: p, eip: eip})
	}
	slices.SortFunc(rules, func(x, y snat) int {
		// Longest prefix first; within one length the validator makes CIDRs disjoint, so
		// address order is only for determinism (EIP breaks ties between duplicates).
		return cmp.Or(cmp.Compare(y.cidr.Bits(), x.cidr.Bits()), x.cidr.Addr().Compare(y.cidr.Addr()), x.eip.Compare(y.eip))
	})

	shared := []string{}
	var chains []Chain
	i := 0
	for i < len(rules) && rules[i].cidr.Bits() >= groupMinBits {
		g := groupOf(rules[i].cidr)
		start := i
		for i < len(rules) && rules[i].cidr.Bits() >= groupMinBits && groupOf(rules[i].cidr) == g {
			i++
		}
		// The sort already keeps a group together: same length, then address, and all
		// addresses of one /16 are contiguous.
		name := snatGroupChain(g.bits, g.a, g.b)
		body := make([]string, 0, i-start)
		for _, r := range rules[start:i] {
			body = append(body, snatRule(r))
		}
		chains = append(chains, Chain{Name: name, Rules: body})
		shared = append(shared, "-s "+netip.PrefixFrom(netip.AddrFrom4([4]byte{g.a, g.b, 0, 0}), 16).String()+" -j "+name)
	}
	for _, r := range rules[i:] {
		shared = append(shared, snatRule(r))
	}
	return shared, chains
}

func groupOf(p netip.Prefix) snatGroup {
	a4 := p.Addr().As4()
	return snatGroup{bits: p.Bits(), a: a4[0], b: a4[1]}
}

func snatRule(r snat) string {
	return sourceMatch(r.cidr) + "-j SNAT --to-source " + r.eip.String()
}

// ParseCIDR accepts a CIDR or a bare address (stored as /32) and returns it masked, as the
// kernel stores it and iptables-save prints it.
func ParseCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}
