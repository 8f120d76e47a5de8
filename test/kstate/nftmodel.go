package kstate

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// The nftables layout (docs/nftables.md, "Layout"), modelled here from the spec and written
// without pkg/nft on purpose, like natmodel.go for iptables: one table ip vpcnat, the seed's
// chain names, floating IPs as two address maps, port forwards as one map keyed by
// EIP . protocol . port, SNAT as one interval map in which every address maps to the EIP of the
// longest prefix that holds it. The semantics of duplicates follow the iptables layout's first
// match (a lower internal IP, port or EIP first), so both backends translate alike. Every
// translation also marks its connections (ct mark set from a map keyed like the translation's
// own), so a removed or changed floating IP, port forward or SNAT rule has its connections
// deleted by mark: port_mark, fip_dnat_mark, fip_snat_mark and snat_mark.
const (
	mapFIPDNAT     = "fip_dnat"
	mapFIPSNAT     = "fip_snat"
	mapPortDNAT    = "port_dnat"
	mapSNAT        = "snat_prefixes"
	mapPortMark    = "port_mark"
	mapFIPDNATMark = "fip_dnat_mark"
	mapFIPSNATMark = "fip_snat_mark"
	mapSNATMark    = "snat_mark"
)

// builtinNAT is the iptables nat table a gateway on the nftables backend holds: the built-in
// chains, empty (or the table absent, which iptables-save lists the same way).
func builtinNAT() map[string][]string {
	return map[string][]string{"PREROUTING": {}, "INPUT": {}, "OUTPUT": {}, "POSTROUTING": {}}
}

// expectedNFT is the whole expected table ip vpcnat of d.
func expectedNFT(d *annotations.Desired) *NFTable {
	ext := d.External.IfName
	if ext == "" {
		ext = annotations.ExternalIfName
	}
	t := &NFTable{ChainHeader: map[string]string{}, Rules: map[string][]string{}, Elements: map[string][]string{},
		Maps: map[string]string{
			mapFIPDNAT:  "map ipv4_addr : ipv4_addr",
			mapFIPSNAT:  "map ipv4_addr : ipv4_addr",
			mapPortDNAT: "map ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service",
			mapSNAT:     "map ipv4_addr : ipv4_addr flags interval",
			mapPortMark: "map ipv4_addr . inet_proto . inet_service : mark",
			// The floating IPs' marks, keyed as fip_dnat and fip_snat; the SNAT rules' marks,
			// keyed by address ranges as snat_prefixes.
			mapFIPDNATMark: "map ipv4_addr : mark",
			mapFIPSNATMark: "map ipv4_addr : mark",
			mapSNATMark:    "map ipv4_addr : mark flags interval",
		}}
	chain := func(name, header string, rules ...string) {
		t.Chains = append(t.Chains, name)
		t.ChainHeader[name] = header
		t.Rules[name] = append([]string{}, rules...)
	}
	chain("PREROUTING", "type nat hook prerouting priority -100 policy accept", "jump "+chainDNATFilter)
	chain(chainDNATFilter, "", "jump "+chainFIPDNAT, "jump "+chainPortFwd)
	chain(chainFIPDNAT, "", "ct mark set ip daddr map @"+mapFIPDNATMark, "dnat to ip daddr map @"+mapFIPDNAT)
	chain(chainPortFwd, "", "ct mark set ip daddr . meta l4proto . th dport map @"+mapPortMark,
		"dnat ip to ip daddr . meta l4proto . th dport map @"+mapPortDNAT)
	chain("POSTROUTING", "type nat hook postrouting priority 100 policy accept", "jump "+chainSNATFilter)
	chain(chainSNATFilter, "", "jump "+chainHairpin,
		"meta oifname == "+ext+"; jump "+chainFIPSNAT, "meta oifname == "+ext+"; jump "+chainSNAT)
	chain(chainHairpin, "", hairpinNFT(d.Subnets)...)
	chain(chainFIPSNAT, "", "ct mark set ip saddr map @"+mapFIPSNATMark, "snat to ip saddr map @"+mapFIPSNAT)
	chain(chainSNAT, "", "ct mark set ip saddr map @"+mapSNATMark, "snat to ip saddr map @"+mapSNAT)

	// Floating IPs: inbound the lowest internal IP of an EIP, outbound the lowest EIP of an
	// internal IP (the first iptables rule of each).
	dnat, snat := map[netip.Addr]netip.Addr{}, map[netip.Addr]netip.Addr{}
	for _, f := range d.FloatingIPs {
		eip, ip := v4(f.EIP), v4(f.InternalIP)
		if !eip.IsValid() || !ip.IsValid() {
			continue
		}
		if cur, ok := dnat[eip]; !ok || ip.Less(cur) {
			dnat[eip] = ip
		}
		if cur, ok := snat[ip]; !ok || eip.Less(cur) {
			snat[ip] = eip
		}
	}
	t.Elements[mapFIPDNAT] = pairs(dnat)
	t.Elements[mapFIPSNAT] = pairs(snat)
	// Each floating IP's connections carry the mark of the EIP . internal IP pair that
	// translated them, whichever way they started: inbound the pair fip_dnat holds for the EIP,
	// outbound the pair fip_snat holds for the internal IP.
	dnatMarks, snatMarks := []string{}, []string{}
	for eip, ip := range dnat {
		dnatMarks = append(dnatMarks, fmt.Sprintf("%s : %d", eip, listedMark(fipMark(eip, ip))))
	}
	for ip, eip := range snat {
		snatMarks = append(snatMarks, fmt.Sprintf("%s : %d", ip, listedMark(fipMark(eip, ip))))
	}
	sort.Strings(dnatMarks)
	sort.Strings(snatMarks)
	t.Elements[mapFIPDNATMark] = dnatMarks
	t.Elements[mapFIPSNATMark] = snatMarks

	// Port forwards: one element per EIP . protocol . port, the lowest target of duplicates.
	type fwdKey struct {
		eip   netip.Addr
		proto string
		port  int
	}
	type fwdTo struct {
		ip   netip.Addr
		port int
	}
	fwd := map[fwdKey]fwdTo{}
	for _, r := range d.DNATs {
		eip, ip := v4(r.EIP), v4(r.InternalIP)
		if !eip.IsValid() || !ip.IsValid() || (r.Protocol != "tcp" && r.Protocol != "udp") ||
			r.ExternalPort < 1 || r.ExternalPort > 65535 || r.InternalPort < 1 || r.InternalPort > 65535 {
			continue
		}
		k, to := fwdKey{eip, r.Protocol, r.ExternalPort}, fwdTo{ip, r.InternalPort}
		if cur, ok := fwd[k]; !ok || cmp.Or(to.ip.Compare(cur.ip), cmp.Compare(to.port, cur.port)) < 0 {
			fwd[k] = to
		}
	}
	ports, marks := []string{}, []string{}
	for k, to := range fwd {
		ports = append(ports, fmt.Sprintf("%s . %s . %d : %s . %d", k.eip, k.proto, k.port, to.ip, to.port))
		marks = append(marks, fmt.Sprintf("%s . %s . %d : %d", k.eip, k.proto, k.port,
			listedMark(portMark(k.eip, k.proto, k.port, to.ip, to.port))))
	}
	sort.Strings(ports)
	sort.Strings(marks)
	t.Elements[mapPortDNAT] = ports
	t.Elements[mapPortMark] = marks

	t.Elements[mapSNAT] = snatRanges(d.SNATs)
	t.Elements[mapSNATMark] = snatMarkRanges(d.SNATs)
	return t
}

// fnv1a is 32-bit FNV-1a (offset basis 2166136261, prime 16777619), written out here so the
// model's marks rest on the published algorithm alone; 0 (which reads as no mark) becomes 1.
func fnv1a(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	if h == 0 {
		return 1
	}
	return h
}

// Mark is the conntrack mark the nftables table of d sets on a connection of the mapping a
// test plants an entry for (computed by this model, not by pkg/nft): "fip" with the EIP and the
// internal IP, "dnat" with the EIP, protocol, port, internal IP and port, "snat" with the CIDR;
// 0 for the iptables backend, which sets none, or a mapping that does not parse.
func Mark(d *annotations.Desired, kind string, args ...string) uint32 {
	if d.Dataplane != annotations.DataplaneNFTables {
		return 0
	}
	switch {
	case kind == "fip" && len(args) == 2:
		if eip, ip := v4(args[0]), v4(args[1]); eip.IsValid() && ip.IsValid() {
			return fipMark(eip, ip)
		}
	case kind == "dnat" && len(args) == 5:
		eip, ip := v4(args[0]), v4(args[3])
		port, err1 := strconv.Atoi(args[2])
		toPort, err2 := strconv.Atoi(args[4])
		if eip.IsValid() && ip.IsValid() && err1 == nil && err2 == nil {
			return portMark(eip, args[1], port, ip, toPort)
		}
	case kind == "snat" && len(args) == 1:
		if p, ok := prefixOrHost(args[0]); ok {
			return snatMark(p)
		}
	}
	return 0
}

// fipMark is the conntrack mark of a floating IP's connections (docs/nftables.md): FNV-1a over
// 'F', the EIP's 4 bytes and the internal IP's 4 bytes.
func fipMark(eip, internal netip.Addr) uint32 {
	e, i := eip.As4(), internal.As4()
	return fnv1a([]byte{'F', e[0], e[1], e[2], e[3], i[0], i[1], i[2], i[3]})
}

// snatMark is the conntrack mark of the connections a SNAT rule translates: FNV-1a over 'S',
// the rule's masked prefix address (4 bytes) and its length (1 byte); not the EIP.
func snatMark(p netip.Prefix) uint32 {
	a := p.Masked().Addr().As4()
	return fnv1a([]byte{'S', a[0], a[1], a[2], a[3], byte(p.Bits())})
}

// snatMarkRanges is what snat_mark must hold: every address a SNAT rule covers, with the mark of
// the rule that translates it (the longest prefix; the lowest EIP of identical prefixes), as
// ranges of consecutive addresses with one mark. Unlike snatRanges (which cuts the address space
// at every prefix end and merges by EIP), it walks the prefixes as the tree they form (two
// prefixes are nested or disjoint) in address order, each one's range cut by its children.
func snatMarkRanges(rules []annotations.SNAT) []string {
	type rule struct {
		p    netip.Prefix
		lo   uint64
		hi   uint64
		mark uint32
	}
	// One rule per prefix: the lowest EIP's.
	best := map[netip.Prefix]netip.Addr{}
	for _, r := range rules {
		p, ok := prefixOrHost(r.InternalCIDR)
		eip := v4(r.EIP)
		if !ok || !eip.IsValid() {
			continue
		}
		if cur, ok := best[p]; !ok || eip.Less(cur) {
			best[p] = eip
		}
	}
	var rs []rule
	for p := range best {
		lo := uint64(u32(p.Addr()))
		rs = append(rs, rule{p, lo, lo | (1<<(32-p.Bits()) - 1), snatMark(p)})
	}
	// Address order, an enclosing prefix before the prefixes it holds.
	slices.SortFunc(rs, func(a, b rule) int { return cmp.Or(cmp.Compare(a.lo, b.lo), cmp.Compare(a.p.Bits(), b.p.Bits())) })
	type run struct {
		lo, hi uint64
		mark   uint32
	}
	var runs []run
	emit := func(lo, hi uint64, mark uint32) {
		if lo > hi {
			return
		}
		if n := len(runs); n > 0 && runs[n-1].hi+1 == lo && runs[n-1].mark == mark {
			runs[n-1].hi = hi
			return
		}
		runs = append(runs, run{lo, hi, mark})
	}
	var open []rule                   // the prefixes holding next, innermost last
	var next uint64                   // the first address not yet emitted (within the open prefixes)
	closeUntil := func(addr uint64) { // closes every open prefix that ends before addr
		for len(open) > 0 && open[len(open)-1].hi < addr {
			top := open[len(open)-1]
			emit(next, top.hi, top.mark)
			next = top.hi + 1
			open = open[:len(open)-1]
		}
	}
	for _, r := range rs {
		closeUntil(r.lo)
		if n := len(open); n > 0 && next < r.lo {
			emit(next, r.lo-1, open[n-1].mark) // the part of the enclosing prefix before r
		}
		next = r.lo
		open = append(open, r)
	}
	closeUntil(1 << 32)
	out := []string{}
	for _, r := range runs {
		out = append(out, fmt.Sprintf("%s-%s : %d", addrOf(r.lo), addrOf(r.hi), listedMark(r.mark)))
	}
	return out
}

// portMark is the conntrack mark a port forward's connections carry (docs/nftables.md): FNV-1a,
// 32 bits, over the key as the kernel stores it (address, protocol and port, each padded to 4
// bytes) then the target address and port, 0 read as 1.
func portMark(eip netip.Addr, proto string, port int, to netip.Addr, toPort int) uint32 {
	a, t := eip.As4(), to.As4()
	num := map[string]byte{"tcp": 6, "udp": 17}[proto]
	b := []byte{a[0], a[1], a[2], a[3], num, 0, 0, 0, byte(port >> 8), byte(port), 0, 0,
		t[0], t[1], t[2], t[3], byte(toPort >> 8), byte(toPort)}
	return fnv1a(b)
}

// listedMark is a mark as nft lists it in vpcnat's map: the kernel keeps it in host byte order,
// which nft, told no byte order by the map, reads as big endian.
func listedMark(m uint32) uint32 {
	return binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, m))
}

func pairs(m map[netip.Addr]netip.Addr) []string {
	out := []string{}
	for k, v := range m {
		out = append(out, k.String()+" : "+v.String())
	}
	sort.Strings(out)
	return out
}

// hairpinNFT: one rule per IPv4 subnet NIC, as the iptables layout's HAIRPIN_SNAT.
func hairpinNFT(subnets []annotations.SubnetNIC) []string {
	type nic struct {
		name string
		cidr netip.Prefix
	}
	var nics []nic
	for _, s := range subnets {
		if p, err := netip.ParsePrefix(s.CIDR); err == nil && p.Addr().Is4() && s.IfName != "" {
			nics = append(nics, nic{s.IfName, p.Masked()})
		}
	}
	slices.SortFunc(nics, func(a, b nic) int {
		return cmp.Or(cmp.Compare(a.name, b.name), a.cidr.Addr().Compare(b.cidr.Addr()), cmp.Compare(a.cidr.Bits(), b.cidr.Bits()))
	})
	nics = slices.Compact(nics)
	out := []string{}
	for _, n := range nics {
		r := ""
		switch n.cidr.Bits() {
		case 0:
		case 32: // nft lists a /32 match as the bare address
			r = "ip saddr == " + n.cidr.Addr().String() + "; "
		default:
			r = "ip saddr == " + n.cidr.String() + "; "
		}
		out = append(out, r+"meta oifname == "+n.name+"; ct status in dnat; masquerade")
	}
	return out
}

// snatRanges is what the SNAT interval map must cover: for every IPv4 address, the EIP of the
// longest SNAT prefix holding it (the lowest EIP among equal prefixes), as disjoint ranges with
// adjacent equal ones merged. It is computed the plain way: the prefixes' ends cut the address
// space into segments, and each segment's EIP is found by looking at every prefix.
func snatRanges(rules []annotations.SNAT) []string {
	type snat struct {
		lo, hi uint64
		bits   int
		eip    netip.Addr
	}
	var ss []snat
	cuts := map[uint64]bool{}
	for _, r := range rules {
		p, ok := prefixOrHost(r.InternalCIDR)
		eip := v4(r.EIP)
		if !ok || !eip.IsValid() {
			continue
		}
		lo := uint64(u32(p.Addr()))
		hi := lo + (uint64(1) << (32 - p.Bits())) - 1
		ss = append(ss, snat{lo, hi, p.Bits(), eip})
		cuts[lo], cuts[hi+1] = true, true
	}
	points := make([]uint64, 0, len(cuts))
	for c := range cuts {
		points = append(points, c)
	}
	slices.Sort(points)
	type seg struct {
		lo, hi uint64
		eip    netip.Addr
	}
	var segs []seg
	for i := 0; i+1 < len(points); i++ {
		lo, hi := points[i], points[i+1]-1
		best := -1
		for j, s := range ss {
			if s.lo <= lo && hi <= s.hi && (best < 0 || s.bits > ss[best].bits || (s.bits == ss[best].bits && s.eip.Less(ss[best].eip))) {
				best = j
			}
		}
		if best < 0 {
			continue
		}
		if n := len(segs); n > 0 && segs[n-1].eip == ss[best].eip && segs[n-1].hi+1 == lo {
			segs[n-1].hi = hi
			continue
		}
		segs = append(segs, seg{lo, hi, ss[best].eip})
	}
	out := []string{}
	for _, s := range segs {
		out = append(out, fmt.Sprintf("%s-%s : %s", addrOf(s.lo), addrOf(s.hi), s.eip))
	}
	return out
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addrOf(n uint64) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// compareNFT compares the kernel's table with the expected one: chains (and their hook
// headers), each chain's rules as a multiset and in order, maps' declarations, each map's
// elements as a multiset; anything else in the table is foreign.
func compareNFT(have, want *NFTable, add func(kind, what, item string)) {
	for _, c := range have.Chains {
		if _, ok := want.ChainHeader[c]; !ok {
			add(Foreign, "nft chain", c)
		}
	}
	for _, c := range want.Chains {
		h, ok := have.ChainHeader[c]
		switch {
		case !ok:
			add(Missing, "nft chain", c)
			continue
		case countOf(have.Chains, c) > 1:
			add(Duplicate, "nft chain", c)
		case h != want.ChainHeader[c]:
			add(Wrong, "nft chain", fmt.Sprintf("%s is %q, want %q", c, h, want.ChainHeader[c]))
		}
		var problems int
		count := func(kind, what, item string) { problems++; add(kind, what, item) }
		multiset(want.Rules[c], have.Rules[c], "nft rule", "chain "+c+": ", count)
		if problems == 0 && !slices.Equal(want.Rules[c], have.Rules[c]) {
			add(Wrong, "nft rule", "chain "+c+" holds the right rules in the wrong order")
		}
	}
	for c, rules := range have.Rules {
		if _, ok := want.ChainHeader[c]; !ok {
			for _, r := range rules {
				add(Foreign, "nft rule", "chain "+c+": "+r)
			}
		}
	}
	for _, m := range sortedKeys(have.Maps) {
		if _, ok := want.Maps[m]; !ok {
			add(Foreign, "nft map", m+" ("+have.Maps[m]+")")
		}
	}
	for _, m := range sortedKeys(want.Maps) {
		decl, ok := have.Maps[m]
		switch {
		case !ok:
			add(Missing, "nft map", m)
			continue
		case decl != want.Maps[m]:
			add(Wrong, "nft map", fmt.Sprintf("%s is %q, want %q", m, decl, want.Maps[m]))
		}
		multiset(want.Elements[m], have.Elements[m], "nft element", "map "+m+": ", add)
	}
	for _, o := range have.Other {
		add(Foreign, "nft object", o)
	}
}
