package nat

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// Chain is one owned chain and its rules. Rules are the text that follows "-A <Name> " in
// iptables-save output, in exactly the canonical form iptables-save (1.8.9, nf_tables backend)
// prints, so a kernel read-back compares equal with string ==.
type Chain struct {
	Name  string
	Rules []string
}

// Ruleset is every chain vpcnat owns in the nat table, in a deterministic order.
type Ruleset struct {
	Chains []Chain
}

// Map returns the rules by chain name.
func (r *Ruleset) Map() map[string][]string {
	m := make(map[string][]string, len(r.Chains))
	for _, c := range r.Chains {
		m[c.Name] = c.Rules
	}
	return m
}

// Render computes the nat rules of a gateway. The input must have passed
// annotations.ValidateDesired; an entry that still does not parse as IPv4 is left out rather than
// rendered into text iptables-restore would refuse as a whole. Input order does not matter: every
// list is sorted numerically, so the same state always renders to the same text and an unchanged
// gateway diffs to nothing.
func Render(d *annotations.Desired) *Ruleset {
	ext := d.External.IfName
	if ext == "" {
		ext = annotations.ExternalIfName
	}
	rs := &Ruleset{}
	add := func(name string, rules []string) { rs.Chains = append(rs.Chains, Chain{Name: name, Rules: rules}) }

	// Both jumps are unconditional: DNAT applies to clients outside and, for hairpin, inside.
	add(DNATFilter, []string{"-j " + ExclusiveDNAT, "-j " + SharedDNAT})
	fips := parseFIPs(d.FloatingIPs)
	add(ExclusiveDNAT, exclusiveDNAT(fips))
	shared, perEIP := sharedDNAT(d.DNATs)
	add(SharedDNAT, shared)
	rs.Chains = append(rs.Chains, perEIP...)

	// "-o ext" sits on the jumps, not on every rule, so a flow leaving on a subnet NIC (DNATed
	// traffic going in) skips all SNAT rules at the cost of one comparison.
	add(SNATFilter, []string{
		"-j " + HairpinSNAT,
		"-o " + ext + " -j " + ExclusiveSNAT,
		"-o " + ext + " -j " + SharedSNAT,
	})
	add(HairpinSNAT, hairpin(d.Subnets))
	add(ExclusiveSNAT, exclusiveSNAT(fips))
	shared, groups := sharedSNAT(d.SNATs)
	add(SharedSNAT, shared)
	rs.Chains = append(rs.Chains, groups...)
	return rs
}

type fip struct{ eip, internal netip.Addr }

func parseFIPs(in []annotations.FloatingIP) []fip {
	out := make([]fip, 0, len(in))
	for _, f := range in {
		eip, err1 := netip.ParseAddr(f.EIP)
		ip, err2 := netip.ParseAddr(f.InternalIP)
		if err1 != nil || err2 != nil || !eip.Is4() || !ip.Is4() {
			continue
		}
		out = append(out, fip{eip: eip, internal: ip})
	}
	return out
}

func exclusiveDNAT(fips []fip) []string {
	slices.SortFunc(fips, func(a, b fip) int {
		return cmp.Or(a.eip.Compare(b.eip), a.internal.Compare(b.internal))
	})
	rules := make([]string, 0, len(fips))
	for _, f := range fips {
		rules = append(rules, "-d "+f.eip.String()+"/32 -j DNAT --to-destination "+f.internal.String())
	}
	return rules
}

// exclusiveSNAT sorts by internal IP: the validator allows one FIP per EIP, not per internal IP,
// so with two FIPs on one internal IP the lower EIP deterministically wins outbound.
func exclusiveSNAT(fips []fip) []string {
	slices.SortFunc(fips, func(a, b fip) int {
		return cmp.Or(a.internal.Compare(b.internal), a.eip.Compare(b.eip))
	})
	rules := make([]string, 0, len(fips))
	for _, f := range fips {
		rules = append(rules, "-s "+f.internal.String()+"/32 -j SNAT --to-source "+f.eip.String())
	}
	return rules
}

type dnat struct {
	eip, internal netip.Addr
	proto         string
	port, toPort  int
}

// sharedDNAT returns SHARED_DNAT (one jump per EIP) and one DNAT_EIP_<eip> chain per EIP.
func sharedDNAT(in []annotations.DNAT) ([]string, []Chain) {
	rules := make([]dnat, 0, len(in))
	for _, r := range in {
		eip, err1 := netip.ParseAddr(r.EIP)
		ip, err2 := netip.ParseAddr(r.InternalIP)
		if err1 != nil || err2 != nil || !eip.Is4() || !ip.Is4() || (r.Protocol != "tcp" && r.Protocol != "udp") {
			continue
		}
		rules = append(rules, dnat{eip: eip, internal: ip, proto: r.Protocol, port: r.ExternalPort, toPort: r.InternalPort})
	}
	slices.SortFunc(rules, func(a, b dnat) int {
		return cmp.Or(a.eip.Compare(b.eip), cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port),
			a.internal.Compare(b.internal), cmp.Compare(a.toPort, b.toPort))
	})
	var jumps []string
	var chains []Chain
	for i := 0; i < len(rules); {
		eip := rules[i].eip
		name := dnatEIPChain(eip)
		jumps = append(jumps, "-d "+eip.String()+"/32 -j "+name)
		var body []string
		for ; i < len(rules) && rules[i].eip == eip; i++ {
			r := rules[i]
			// iptables-save names the protocol match module explicitly ("-m tcp") even though
			// "--dport" was given without it.
			body = append(body, "-p "+r.proto+" -m "+r.proto+" --dport "+strconv.Itoa(r.port)+
				" -j DNAT --to-destination "+r.internal.String()+":"+strconv.Itoa(r.toPort))
		}
		chains = append(chains, Chain{Name: name, Rules: body})
	}
	if jumps == nil {
		jumps = []string{}
	}
	return jumps, chains
}

// hairpin masquerades, per subnet NIC, DNATed flows from that subnet that go back out of it.
// Outside clients do not match "-s <subnet>" and keep their source address.
func hairpin(subnets []annotations.SubnetNIC) []string {
	type nic struct {
		cidr   netip.Prefix
		ifname string
	}
	nics := make([]nic, 0, len(subnets))
	for _, s := range subnets {
		p, err := netip.ParsePrefix(s.CIDR)
		if err != nil || !p.Addr().Is4() || s.IfName == "" {
			continue
		}
		nics = append(nics, nic{cidr: p.Masked(), ifname: s.IfName})
	}
	slices.SortFunc(nics, func(a, b nic) int {
		return cmp.Or(cmp.Compare(a.ifname, b.ifname), comparePrefix(a.cidr, b.cidr))
	})
	rules := make([]string, 0, len(nics))
	for _, n := range nics {
		rules = append(rules, sourceMatch(n.cidr)+"-o "+n.ifname+" -m conntrack --ctstate DNAT -j MASQUERADE")
	}
	return rules
}

// sourceMatch is "-s <cidr> ", or nothing for 0.0.0.0/0, which iptables-save never prints.
func sourceMatch(p netip.Prefix) string {
	if p.Bits() == 0 {
		return ""
	}
	return "-s " + p.String() + " "
}

// comparePrefix orders by address, then by prefix length.
func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
