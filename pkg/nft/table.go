// Package nft turns a gateway's desired state into the one nftables table vpcnat owns in the
// gateway netns (family ip, named "vpcnat"), as a model of chains, rules and maps, and diffs two
// models into the changes of one netlink batch. It is pure: no netlink, no exec, no files; the
// kernel side is pkg/netconf (nftables.go).
//
// The layout reads like the seed's iptables chains: PREROUTING -> DNAT_FILTER -> EXCLUSIVE_DNAT
// (floating IPs) and SHARED_DNAT (port forwards); POSTROUTING -> SNAT_FILTER -> HAIRPIN_SNAT,
// EXCLUSIVE_SNAT and SHARED_SNAT. Where iptables needs one rule per mapping, each of those chains
// holds one rule that looks the packet up in a map, so a packet costs one hash (or interval)
// lookup whatever the number of mappings, and a one-mapping change is one map element.
package nft

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
)

// TableName is the table vpcnat owns in each gateway netns (family ip). Everything in it is
// ours and everything outside it is not: a converge never reads or writes another table. Never
// rename it: a renamed table would be foreign to the next daemon version and left behind.
const TableName = "vpcnat"

// Base chains, named after the iptables built-in chains they stand for. Their priorities are
// the kernel's dstnat (-100) and srcnat (100), the priorities of the iptables nat table.
const (
	Prerouting  = "PREROUTING"
	Postrouting = "POSTROUTING"
	// PriorityDstNAT and PrioritySrcNAT are NF_IP_PRI_NAT_DST and NF_IP_PRI_NAT_SRC.
	PriorityDstNAT = -100
	PrioritySrcNAT = 100
)

// Maps. Names are lowercase so they stand apart from the chains in `nft list table`.
const (
	// MapFIPDNAT: EIP -> internal IP, every protocol and port (floating IPs, inbound).
	MapFIPDNAT = "fip_dnat"
	// MapFIPSNAT: internal IP -> EIP (floating IPs, outbound).
	MapFIPSNAT = "fip_snat"
	// MapPortDNAT: EIP . protocol . port -> internal IP . port (port forwards).
	MapPortDNAT = "port_dnat"
	// MapSNAT: source address ranges -> EIP, an interval map. SNAT rules may nest (a /32 inside
	// a /24): the ranges are flattened so each address maps to the EIP of its longest prefix.
	MapSNAT = "snat_prefixes"
	// MapPortMark: EIP . protocol . port -> the conntrack mark of the port forward (PortMark),
	// set on the connections it translates, so that the connections of a removed or changed
	// port forward can be deleted by their mark, in the kernel, without a dump of the table.
	MapPortMark = "port_mark"
	// MapFIPDNATMark: EIP -> the mark of its floating IP (FIPMark), set on the connections
	// fip_dnat translates; MapFIPSNATMark: internal IP -> the mark of the floating IP fip_snat
	// sends it out with. Both directions of one floating IP carry one mark.
	MapFIPDNATMark = "fip_dnat_mark"
	MapFIPSNATMark = "fip_snat_mark"
	// MapSNATMark: source address ranges -> the mark of the SNAT rule that wins for them
	// (SNATMark, a function of the rule's prefix), an interval map: ranges split at every rule's
	// boundary, unlike snat_prefixes, which merges neighbours with one EIP.
	MapSNATMark = "snat_mark"
)

// MapKind is the key and data layout of a map.
type MapKind int

const (
	// AddrMap maps ipv4_addr to ipv4_addr.
	AddrMap MapKind = iota
	// PortMap maps ipv4_addr . inet_proto . inet_service to ipv4_addr . inet_service.
	PortMap
	// IntervalMap maps ranges of ipv4_addr to ipv4_addr.
	IntervalMap
	// PortMarkMap maps ipv4_addr . inet_proto . inet_service to mark.
	PortMarkMap
	// AddrMarkMap maps ipv4_addr to mark.
	AddrMarkMap
	// IntervalMarkMap maps ranges of ipv4_addr to mark.
	IntervalMarkMap
)

// IsMark says whether maps of kind k hold conntrack marks.
func (k MapKind) IsMark() bool { return k == PortMarkMap || k == AddrMarkMap || k == IntervalMarkMap }

// IsInterval says whether maps of kind k map address ranges.
func (k MapKind) IsInterval() bool { return k == IntervalMap || k == IntervalMarkMap }

// Element is one map entry. Addr is the key address (AddrMap, PortMap, PortMarkMap,
// AddrMarkMap) or the first address of the range (IntervalMap and IntervalMarkMap, whose last
// address is End); Proto and Port complete a PortMap or PortMarkMap key. To (and ToPort for a
// PortMap) is the data. The data of a mark map's element is MarkValue: Build gives the port mark
// map the port map's own elements (no copy: the marks follow from them) and the other mark maps
// elements with Mark set; a read-back has the kernel's marks in Mark.
type Element struct {
	Addr, End netip.Addr
	Proto     uint8
	Port      uint16
	To        netip.Addr
	ToPort    uint16
	Mark      uint32
}

// Map is one named map and its elements, sorted as `nft list` prints them (see sortElements).
type Map struct {
	Name     string
	Kind     MapKind
	Elements []Element
}

// Verb is what a rule does once its matches hold.
type Verb int

const (
	// Jump to Rule.Target.
	Jump Verb = iota
	// DNATMap translates the destination to the data of Rule.Map looked up by its key.
	DNATMap
	// SNATMap translates the source to the data of Rule.Map looked up by the source address.
	SNATMap
	// Masquerade translates the source to the address of the outgoing interface.
	Masquerade
	// MarkMap sets the conntrack mark to the data of Rule.Map (a PortMarkMap) looked up by the
	// destination address, protocol and port.
	MarkMap
	// MarkDstMap sets the conntrack mark to the data of Rule.Map (an AddrMarkMap) looked up by
	// the destination address.
	MarkDstMap
	// MarkSrcMap sets the conntrack mark to the data of Rule.Map (an AddrMarkMap or an
	// IntervalMarkMap) looked up by the source address.
	MarkSrcMap
)

// Rule is one rule of the closed set of forms vpcnat writes: optional matches on the source
// prefix, the output interface and the conntrack DNAT status bit, then a verb.
type Rule struct {
	SAddr   netip.Prefix // invalid: any source
	OIfName string       // "": any output interface
	CtDNAT  bool         // ct status dnat
	Verb    Verb
	Target  string // Jump
	Map     string // DNATMap, SNATMap
}

// Chain is one chain; Hook is "prerouting" or "postrouting" for a base chain, "" otherwise.
type Chain struct {
	Name     string
	Hook     string
	Priority int
	Rules    []Rule
}

// Table is everything vpcnat owns in a gateway netns, in creation (and listing) order: maps
// first, then chains, as `nft list table` prints them.
type Table struct {
	Maps   []Map
	Chains []Chain
}

// Chain returns the chain named name, nil if none.
func (t *Table) Chain(name string) *Chain {
	for i := range t.Chains {
		if t.Chains[i].Name == name {
			return &t.Chains[i]
		}
	}
	return nil
}

// Map returns the map named name, nil if none.
func (t *Table) Map(name string) *Map {
	for i := range t.Maps {
		if t.Maps[i].Name == name {
			return &t.Maps[i]
		}
	}
	return nil
}

// Build computes the table of a gateway. The input must have passed annotations.ValidateDesired;
// an entry that still does not parse as IPv4 is left out, as pkg/nat does. Input order does not
// matter.
func Build(d *annotations.Desired) *Table {
	t, _, _ := build(d)
	return t
}

// build is Build, whether two port forwards shared a key, and the SNAT rules' index
// (snatIndex) the interval map was flattened from.
func build(d *annotations.Desired) (t *Table, sharedPorts bool, snats []snatPrefix) {
	ext := d.External.IfName
	if ext == "" {
		ext = annotations.ExternalIfName
	}
	t = &Table{Maps: []Map{
		{Name: MapFIPDNAT, Kind: AddrMap},
		{Name: MapFIPSNAT, Kind: AddrMap},
		{Name: MapPortDNAT, Kind: PortMap},
		{Name: MapSNAT, Kind: IntervalMap},
		{Name: MapPortMark, Kind: PortMarkMap},
		{Name: MapFIPDNATMark, Kind: AddrMarkMap},
		{Name: MapFIPSNATMark, Kind: AddrMarkMap},
		{Name: MapSNATMark, Kind: IntervalMarkMap},
	}}
	t.Maps[0].Elements, t.Maps[1].Elements, t.Maps[5].Elements, t.Maps[6].Elements = floatingIPs(d.FloatingIPs)
	t.Maps[2].Elements, sharedPorts = portElements(d.DNATs)
	snats = snatIndex(d.SNATs)
	t.Maps[3].Elements = flattenSNAT(snats, 0, maxAddr)
	t.Maps[4].Elements = t.Maps[2].Elements // the marks are PortMark of the port forwards
	t.Maps[7].Elements = flattenSNATMarks(snats)

	jump := func(target string) Rule { return Rule{Verb: Jump, Target: target} }
	extJump := func(target string) Rule { return Rule{OIfName: ext, Verb: Jump, Target: target} }
	t.Chains = []Chain{
		{Name: Prerouting, Hook: "prerouting", Priority: PriorityDstNAT, Rules: []Rule{jump(nat.DNATFilter)}},
		{Name: nat.DNATFilter, Rules: []Rule{jump(nat.ExclusiveDNAT), jump(nat.SharedDNAT)}},
		// Only a connection's first packet passes the nat hooks: a mark costs one lookup per
		// connection, none per packet.
		{Name: nat.ExclusiveDNAT, Rules: []Rule{{Verb: MarkDstMap, Map: MapFIPDNATMark}, {Verb: DNATMap, Map: MapFIPDNAT}}},
		{Name: nat.SharedDNAT, Rules: []Rule{{Verb: MarkMap, Map: MapPortMark}, {Verb: DNATMap, Map: MapPortDNAT}}},
		{Name: Postrouting, Hook: "postrouting", Priority: PrioritySrcNAT, Rules: []Rule{jump(nat.SNATFilter)}},
		// The output interface sits on the jumps, as in the iptables layout: DNATed traffic
		// going into a subnet skips both SNAT lookups.
		{Name: nat.SNATFilter, Rules: []Rule{jump(nat.HairpinSNAT), extJump(nat.ExclusiveSNAT), extJump(nat.SharedSNAT)}},
		{Name: nat.HairpinSNAT, Rules: hairpin(d.Subnets)},
		{Name: nat.ExclusiveSNAT, Rules: []Rule{{Verb: MarkSrcMap, Map: MapFIPSNATMark}, {Verb: SNATMap, Map: MapFIPSNAT}}},
		{Name: nat.SharedSNAT, Rules: []Rule{{Verb: MarkSrcMap, Map: MapSNATMark}, {Verb: SNATMap, Map: MapSNAT}}},
	}
	return t, sharedPorts, snats
}

// floatingIPs returns the elements of the two FIP maps (sorted) and of their mark maps.
func floatingIPs(in []annotations.FloatingIP) (dnat, snat, dnatMarks, snatMarks []Element) {
	dnat, snat = fipElements(in)
	SortElements(AddrMap, dnat)
	SortElements(AddrMap, snat)
	dnatMarks, snatMarks = make([]Element, len(dnat)), make([]Element, len(snat))
	for i, e := range dnat {
		dnatMarks[i] = Element{Addr: e.Addr, Mark: FIPMark(e.Addr, e.To)}
	}
	for i, e := range snat {
		snatMarks[i] = Element{Addr: e.Addr, Mark: FIPMark(e.To, e.Addr)}
	}
	return dnat, snat, dnatMarks, snatMarks
}

// fipElements returns both directions of the floating IPs. Outbound, with two FIPs on one
// internal IP the lower EIP wins, as in the iptables backend (EXCLUSIVE_SNAT's rule order).
func fipElements(in []annotations.FloatingIP) (dnat, snat []Element) {
	byInternal := map[netip.Addr]netip.Addr{}
	for _, f := range in {
		eip, err1 := netip.ParseAddr(f.EIP)
		ip, err2 := netip.ParseAddr(f.InternalIP)
		if err1 != nil || err2 != nil || !eip.Is4() || !ip.Is4() {
			continue
		}
		dnat = append(dnat, Element{Addr: eip, To: ip})
		if cur, ok := byInternal[ip]; !ok || eip.Less(cur) {
			byInternal[ip] = eip
		}
	}
	// The validator allows one FIP per EIP; a duplicate EIP keeps its lowest internal IP, the
	// rule iptables would meet first.
	slices.SortFunc(dnat, func(a, b Element) int { return cmp.Or(a.Addr.Compare(b.Addr), a.To.Compare(b.To)) })
	dnat = slices.CompactFunc(dnat, func(a, b Element) bool { return a.Addr == b.Addr })
	for ip, eip := range byInternal {
		snat = append(snat, Element{Addr: ip, To: eip})
	}
	return dnat, snat
}

// portElement is the element of one port forward; false when it renders none.
func portElement(r annotations.DNAT) (Element, bool) {
	eip, err1 := netip.ParseAddr(r.EIP)
	ip, err2 := netip.ParseAddr(r.InternalIP)
	proto, ok := protoNumbers[r.Protocol]
	if err1 != nil || err2 != nil || !eip.Is4() || !ip.Is4() || !ok ||
		r.ExternalPort < 1 || r.ExternalPort > 65535 || r.InternalPort < 1 || r.InternalPort > 65535 {
		return Element{}, false
	}
	return Element{Addr: eip, Proto: proto, Port: uint16(r.ExternalPort), To: ip, ToPort: uint16(r.InternalPort)}, true
}

// portElements returns the port map's elements, and whether two port forwards shared a key (one
// of them was left out).
func portElements(in []annotations.DNAT) (els []Element, shared bool) {
	out := make([]Element, 0, len(in))
	for _, r := range in {
		if e, ok := portElement(r); ok {
			out = append(out, e)
		}
	}
	// Sorted in listing order here (so Build's SortElements finds it sorted), through small
	// keys computed once: sorting 100 000 elements of 80 bytes with a comparator that derives
	// the key each time cost 30 ms. One key, one element: a duplicate keeps the lowest
	// destination, the first iptables rule.
	type sortKey struct {
		key, tie uint64
		i        int32
	}
	keys := make([]sortKey, len(out))
	for i, e := range out {
		keys[i] = sortKey{key: listOrder(e), tie: uint64(u32(e.To))<<16 | uint64(e.ToPort), i: int32(i)}
	}
	slices.SortFunc(keys, func(a, b sortKey) int { return cmp.Or(cmp.Compare(a.key, b.key), cmp.Compare(a.tie, b.tie)) })
	sorted := make([]Element, 0, len(out))
	for j, k := range keys {
		if j == 0 || k.key != keys[j-1].key {
			sorted = append(sorted, out[k.i])
		}
	}
	return sorted, len(sorted) < len(out)
}

// PortMark is the conntrack mark of the connections a port forward translates: FNV-1a (32
// bits) of its key as the kernel stores it (PortKey) followed by its target address and port,
// 0 read as 1. It is a function of the port forward alone, so a restarted daemon, another
// replica of the gateway (whose conntrack entries are replicated with their marks) and a
// rebuilt table all give a port forward the same mark, and a changed target a new one: the
// connections of the old target are deleted by its mark without touching those the new target
// translates. Two port forwards with one mark (a 2^-32 chance per pair) are detected where it
// matters: a mark still used by a port forward is never flushed (see pkg/netconf).
func PortMark(e Element) uint32 {
	to := e.To.As4()
	return fnv1a(append(PortKey(e), to[0], to[1], to[2], to[3], byte(e.ToPort>>8), byte(e.ToPort))...)
}

// FIPMark is the conntrack mark of the connections a floating IP translates, inbound and
// outbound: FNV-1a (32 bits) of the byte 'F', the EIP and the internal IP, 0 read as 1. As
// PortMark, a function of the floating IP alone.
func FIPMark(eip, internal netip.Addr) uint32 {
	a, b := eip.As4(), internal.As4()
	return fnv1a('F', a[0], a[1], a[2], a[3], b[0], b[1], b[2], b[3])
}

// SNATMark is the conntrack mark of the connections an SNAT rule translates: FNV-1a (32 bits)
// of the byte 'S' and the rule's prefix (network address, then length), 0 read as 1. It leaves
// the EIP out, so changing a rule's EIP leaves the mark map as it is (an interval map, which the
// kernel re-indexes whole at every commit that changes it); the connections the old EIP
// translated are told apart by their reply tuple (see CtPlan).
func SNATMark(prefix netip.Prefix) uint32 {
	a := prefix.Masked().Addr().As4()
	return fnv1a('S', a[0], a[1], a[2], a[3], byte(prefix.Bits()))
}

func fnv1a(bytes ...byte) uint32 {
	const offset, prime = 2166136261, 16777619
	h := uint32(offset)
	for _, b := range bytes {
		h = (h ^ uint32(b)) * prime
	}
	if h == 0 {
		h = 1
	}
	return h
}

// MarkValue is the data of e as an element of a mark map: the mark it holds (Mark: a read-back,
// or an element of a FIP or SNAT mark map), else the mark of the port forward e is (PortMark).
func (e Element) MarkValue() uint32 {
	if e.Mark != 0 {
		return e.Mark
	}
	return PortMark(e)
}

// protoNumbers are the IP protocol numbers of the protocols a port forward may name.
var protoNumbers = map[string]uint8{"tcp": 6, "udp": 17}

// protoNames is the reverse of protoNumbers.
var protoNames = map[uint8]string{6: "tcp", 17: "udp"}

// hairpin masquerades, per subnet NIC, DNATed flows from that subnet that go back out of it.
func hairpin(subnets []annotations.SubnetNIC) []Rule {
	var rules []Rule
	for _, s := range subnets {
		p, err := netip.ParsePrefix(s.CIDR)
		if err != nil || !p.Addr().Is4() || s.IfName == "" {
			continue
		}
		r := Rule{SAddr: p.Masked(), OIfName: s.IfName, CtDNAT: true, Verb: Masquerade}
		if p.Bits() == 0 {
			r.SAddr = netip.Prefix{}
		}
		rules = append(rules, r)
	}
	slices.SortFunc(rules, func(a, b Rule) int {
		return cmp.Or(cmp.Compare(a.OIfName, b.OIfName), a.SAddr.Addr().Compare(b.SAddr.Addr()), cmp.Compare(a.SAddr.Bits(), b.SAddr.Bits()))
	})
	return slices.Compact(rules)
}

// SortElements sorts as `nft list` (1.0.x) prints: a single address numerically, and a
// concatenation as the integer its key bytes (PortKey) make in host (little-endian) order, which
// puts the port's low byte first. Matching it makes our text and the kernel's listing compare
// with ==.
func SortElements(kind MapKind, els []Element) {
	if kind != PortMap && kind != PortMarkMap {
		slices.SortFunc(els, func(a, b Element) int { return a.Addr.Compare(b.Addr) })
		return
	}
	slices.SortFunc(els, func(a, b Element) int { return cmp.Compare(listOrder(a), listOrder(b)) })
}

// listOrder is the significant part of a PortMap key read as a little-endian integer: the port's
// low byte, its high byte, the protocol, then the address from its last byte to its first (the
// padding bytes are zero).
func listOrder(e Element) uint64 {
	a := e.Addr.As4()
	return uint64(e.Port&0xff)<<48 | uint64(e.Port>>8)<<40 | uint64(e.Proto)<<32 |
		uint64(a[3])<<24 | uint64(a[2])<<16 | uint64(a[1])<<8 | uint64(a[0])
}

// PortKey is the key of a PortMap element as the kernel stores it: each field of the
// concatenation padded to 4 bytes, network byte order.
func PortKey(e Element) []byte {
	a := e.Addr.As4()
	return []byte{a[0], a[1], a[2], a[3], e.Proto, 0, 0, 0, byte(e.Port >> 8), byte(e.Port), 0, 0}
}
