package kstate

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// The nat table, modelled here from the spec (docs/design.md, "NAT": the seed's chain names,
// one DNAT_EIP_<eip> chain per EIP with port forwards, SNAT grouped per prefix length and /16,
// longest prefix first) and written without pkg/nat on purpose: a renderer bug (a wrong target,
// a lost rule, SNAT in the wrong order) then shows as a difference instead of being expected.
// The crash, racing-flow and quick-edit tests judge the kernel with it.
const (
	chainDNATFilter = "DNAT_FILTER"
	chainSNATFilter = "SNAT_FILTER"
	chainFIPDNAT    = "EXCLUSIVE_DNAT"
	chainFIPSNAT    = "EXCLUSIVE_SNAT"
	chainPortFwd    = "SHARED_DNAT"
	chainSNAT       = "SHARED_SNAT"
	chainHairpin    = "HAIRPIN_SNAT"
	// snatGroupBits: a SNAT prefix at least this long lies in one /16 and goes into a group
	// chain reached by one jump on that /16.
	snatGroupBits = 16
)

// natModel is the expected content of every chain of the nat table.
type natModel map[string][]string

func (m natModel) add(chain string, rules ...string) { m[chain] = append(m[chain], rules...) }

// expectedNAT is the whole expected nat table: the built-in chains with vpcnat's two hooks at
// their head, and vpcnat's chains, each with its rules in order. Entries that are not IPv4 (or
// not tcp/udp) are not rendered (validation refuses them before; the renderer skips them).
func expectedNAT(d *annotations.Desired) map[string][]string {
	ext := d.External.IfName
	if ext == "" {
		ext = annotations.ExternalIfName
	}
	m := natModel{"PREROUTING": {"-j " + chainDNATFilter}, "INPUT": {}, "OUTPUT": {}, "POSTROUTING": {"-j " + chainSNATFilter}}
	for _, c := range []string{chainFIPDNAT, chainPortFwd, chainHairpin, chainFIPSNAT, chainSNAT} {
		m[c] = []string{}
	}
	// Inbound: every packet tries the floating IPs, then the port forwards; outbound: hairpin
	// for every packet, the two SNAT chains only for packets leaving on the external NIC.
	m.add(chainDNATFilter, "-j "+chainFIPDNAT, "-j "+chainPortFwd)
	m.add(chainSNATFilter, "-j "+chainHairpin, "-o "+ext+" -j "+chainFIPSNAT, "-o "+ext+" -j "+chainSNAT)

	type fip struct{ eip, ip netip.Addr }
	var fips []fip
	for _, f := range d.FloatingIPs {
		if eip, ip := v4(f.EIP), v4(f.InternalIP); eip.IsValid() && ip.IsValid() {
			fips = append(fips, fip{eip, ip})
		}
	}
	// A floating IP is a 1:1 map: inbound by EIP, outbound by internal IP (two FIPs of one
	// internal IP: the lower EIP wins outbound, as it comes first).
	slices.SortFunc(fips, func(a, b fip) int { return cmp.Or(a.eip.Compare(b.eip), a.ip.Compare(b.ip)) })
	for _, f := range fips {
		m.add(chainFIPDNAT, fmt.Sprintf("-d %s/32 -j DNAT --to-destination %s", f.eip, f.ip))
	}
	slices.SortFunc(fips, func(a, b fip) int { return cmp.Or(a.ip.Compare(b.ip), a.eip.Compare(b.eip)) })
	for _, f := range fips {
		m.add(chainFIPSNAT, fmt.Sprintf("-s %s/32 -j SNAT --to-source %s", f.ip, f.eip))
	}

	// Port forwards: one chain per EIP, entered from SHARED_DNAT by destination.
	type fwd struct {
		proto    string
		port, to int
		ip       netip.Addr
	}
	perEIP := map[netip.Addr][]fwd{}
	for _, r := range d.DNATs {
		eip, ip := v4(r.EIP), v4(r.InternalIP)
		if !eip.IsValid() || !ip.IsValid() || (r.Protocol != "tcp" && r.Protocol != "udp") {
			continue
		}
		perEIP[eip] = append(perEIP[eip], fwd{r.Protocol, r.ExternalPort, r.InternalPort, ip})
	}
	for _, eip := range sortedAddrs(perEIP) {
		chain := "DNAT_EIP_" + eip.String()
		m.add(chainPortFwd, fmt.Sprintf("-d %s/32 -j %s", eip, chain))
		fs := perEIP[eip]
		slices.SortFunc(fs, func(a, b fwd) int {
			return cmp.Or(cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port), a.ip.Compare(b.ip), cmp.Compare(a.to, b.to))
		})
		m[chain] = []string{}
		for _, f := range fs {
			// iptables-save names the protocol's match module before --dport.
			m.add(chain, fmt.Sprintf("-p %s -m %s --dport %d -j DNAT --to-destination %s:%d", f.proto, f.proto, f.port, f.ip, f.to))
		}
	}

	// Hairpin: a DNATed flow from a subnet back into the same subnet leaves with the gateway's
	// address, so the server answers through the gateway.
	type nic struct {
		name string
		cidr netip.Prefix
	}
	var nics []nic
	for _, s := range d.Subnets {
		if p, err := netip.ParsePrefix(s.CIDR); err == nil && p.Addr().Is4() && s.IfName != "" {
			nics = append(nics, nic{s.IfName, p.Masked()})
		}
	}
	slices.SortFunc(nics, func(a, b nic) int {
		return cmp.Or(cmp.Compare(a.name, b.name), a.cidr.Addr().Compare(b.cidr.Addr()), cmp.Compare(a.cidr.Bits(), b.cidr.Bits()))
	})
	for _, n := range nics {
		m.add(chainHairpin, srcMatch(n.cidr)+"-o "+n.name+" -m conntrack --ctstate DNAT -j MASQUERADE")
	}

	// SNAT: SNAT is terminal, so the longest prefix must come first. Prefixes of /16 or longer
	// live in a group chain per (length, /16); shorter ones stay inline after every group.
	type snat struct {
		cidr netip.Prefix
		eip  netip.Addr
	}
	var snats []snat
	for _, r := range d.SNATs {
		cidr, ok := prefixOrHost(r.InternalCIDR)
		if eip := v4(r.EIP); ok && eip.IsValid() {
			snats = append(snats, snat{cidr, eip})
		}
	}
	slices.SortFunc(snats, func(a, b snat) int {
		return cmp.Or(cmp.Compare(b.cidr.Bits(), a.cidr.Bits()), a.cidr.Addr().Compare(b.cidr.Addr()), a.eip.Compare(b.eip))
	})
	for _, s := range snats {
		rule := srcMatch(s.cidr) + "-j SNAT --to-source " + s.eip.String()
		if s.cidr.Bits() < snatGroupBits {
			m.add(chainSNAT, rule)
			continue
		}
		a := s.cidr.Addr().As4()
		group := fmt.Sprintf("SNAT_%d_%d.%d", s.cidr.Bits(), a[0], a[1])
		if _, ok := m[group]; !ok {
			m[group] = []string{}
			m.add(chainSNAT, fmt.Sprintf("-s %d.%d.0.0/16 -j %s", a[0], a[1], group))
		}
		m.add(group, rule)
	}
	return m
}

// v4 parses an IPv4 address; the zero Addr otherwise.
func v4(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}
	}
	return a
}

// prefixOrHost parses an IPv4 CIDR (masked, as the kernel keeps it) or a bare address (/32).
func prefixOrHost(s string) (netip.Prefix, bool) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), p.Addr().Is4()
	}
	a := v4(s)
	return netip.PrefixFrom(a, 32), a.IsValid()
}

// srcMatch is "-s <cidr> ", nothing for 0.0.0.0/0 (iptables-save leaves out a match on all).
func srcMatch(p netip.Prefix) string {
	if p.Bits() == 0 {
		return ""
	}
	return "-s " + p.String() + " "
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
