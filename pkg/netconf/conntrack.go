package netconf

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
)

// mappingFilter matches the conntrack entries of one FIP or DNAT mapping: the NAT decision is
// taken on a flow's first packet and stored in its entry, so an entry outlives a removed or
// changed rule and keeps the old mapping alive until it is deleted.
type mappingFilter struct {
	proto        uint8 // 0: any protocol (a FIP takes all of them)
	eip          net.IP
	port         uint16
	internal     net.IP // nil: any
	internalPort uint16 // 0: any
}

func newMappingFilter(m nat.Mapping) (mappingFilter, error) {
	f := mappingFilter{eip: net.ParseIP(m.EIP).To4(), port: uint16(m.Port), internalPort: uint16(m.InternalPort)}
	if f.eip == nil {
		return f, fmt.Errorf("conntrack clean-up of %s: EIP %q is not IPv4", mappingString(m), m.EIP)
	}
	if m.InternalIP != "" {
		if f.internal = net.ParseIP(m.InternalIP).To4(); f.internal == nil {
			return f, fmt.Errorf("conntrack clean-up of %s: internal IP %q is not IPv4", mappingString(m), m.InternalIP)
		}
	}
	switch m.Protocol {
	case "":
	case "tcp":
		f.proto = unix.IPPROTO_TCP
	case "udp":
		f.proto = unix.IPPROTO_UDP
	default:
		return f, fmt.Errorf("conntrack clean-up of %s: unknown protocol %q", mappingString(m), m.Protocol)
	}
	return f, nil
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter. Inbound flows are those sent to
// the EIP (and port) and answered by the internal address (the old DNAT target); for a FIP also
// the outbound flows of the internal address that were SNATed to the EIP.
func (f mappingFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	in := fl.Forward.DstIP.Equal(f.eip) &&
		(f.internal == nil || fl.Reverse.SrcIP.Equal(f.internal))
	if f.proto != 0 {
		return in && fl.Forward.Protocol == f.proto && fl.Forward.DstPort == f.port &&
			(f.internalPort == 0 || fl.Reverse.SrcPort == f.internalPort)
	}
	out := f.internal != nil && fl.Forward.SrcIP.Equal(f.internal) && fl.Reverse.DstIP.Equal(f.eip)
	return in || out
}

// cleanConntrack is the conntrack step of a converge: it deletes the entries of the stale
// mappings (mappingFilter narrowed by keepValid) and, when sweep is set, every entry sweepFilter
// finds stale, with at most one dump of the table.
//
// A dump is the expensive part, and its cost is the kernel's: it walks the whole conntrack hash
// table, shared by every netns of the machine (262 144 buckets here: ~10 ms with no entry at
// all), then sends and we parse each of the gateway's entries (~4.5 ms more per 1 000). So the
// stale mappings and the sweep share one dump, and when the gateway netns holds no entry at all
// (the kernel's per-netns count, one round trip) there is nothing to dump for.
//
// An entry the desired state d still translates exactly so is kept: e.g. the outbound flows of
// a removed FIP whose internal IP an SNAT rule sends out with the same EIP.
//
// scope (nftables backend only, else nil) lets a change of mappings be cleaned up by the
// connections' marks instead of a dump (cleanByMarks, when nft.CtPlan allows it), and learns
// from a sweep of the whole table whether every entry a mapping translates carries its mark.
func cleanConntrack(netNS ns.NetNS, h *Handles, stale []nat.Mapping, d *annotations.Desired, sweep bool, scope *markScope) ([]string, error) {
	if len(stale) == 0 && !sweep {
		return nil, nil
	}
	if scope.usable() {
		lines, err := cleanByMarks(netNS, h, scope, stale, d)
		if !errors.Is(err, errFlushFilterUnsupported) {
			return lines, err
		}
		klog.V(2).InfoS("Conntrack flush by mark and EIP unsupported by the kernel: the clean-up dumps the table")
	}
	mappings := make([]mappingFilter, 0, len(stale))
	for _, m := range stale {
		f, err := newMappingFilter(m)
		if err != nil {
			return nil, err
		}
		mappings = append(mappings, f)
	}
	if n, known, err := conntrackEntries(netNS); err != nil {
		return nil, err
	} else if known && n == 0 {
		if scope != nil && sweep {
			scope.applied.marked = true // no entry: every one the table makes is marked
		}
		return nil, nil
	}
	own, err := localAddrs(h.Gateway)
	if err != nil {
		return nil, err
	}
	f := &cleanFilter{sweep: newSweepFilter(d, own), sweeping: sweep, checkMarks: scope != nil && sweep}
	for _, m := range mappings {
		f.mappings = append(f.mappings, keepValid{m, f.sweep})
	}
	if _, err := deleteConntrack(h.GatewayNS, f); err != nil {
		if len(stale) > 0 {
			return nil, fmt.Errorf("deleting conntrack entries of %d removed mappings: %w", len(stale), err)
		}
		return nil, fmt.Errorf("deleting conntrack entries that contradict the desired mappings: %w", err)
	}
	if f.checkMarks {
		scope.applied.marked = f.unmarked == 0
		if f.unmarked > 0 {
			klog.V(2).InfoS("Conntrack entries that cannot carry the mark of the mappings that translate them: the clean-up keeps dumping the table", "entries", f.unmarked)
		}
	}
	var lines []string
	if f.mapped > 0 {
		lines = append(lines, fmt.Sprintf("conntrack: deleted %d entries of %s", f.mapped, mappingsString(stale)))
	}
	if f.remarked > 0 {
		lines = append(lines, fmt.Sprintf("conntrack: marked %d entries with the mark of the mapping that translates them", f.remarked))
	}
	switch s := f.sweep; {
	case s.stale+s.untranslated == 0:
	case s.untranslated == 0:
		lines = append(lines, fmt.Sprintf("conntrack: deleted %d entries translated by mappings or SNATs no longer desired", s.stale))
	default:
		lines = append(lines, fmt.Sprintf("conntrack: deleted %d entries (%d translated by mappings or SNATs no longer desired, %d never translated by mappings or SNATs desired now)",
			s.stale+s.untranslated, s.stale, s.untranslated))
	}
	return lines, nil
}

// cleanFilter is the one filter of cleanConntrack's dump: an entry of a stale mapping first
// (counted as the mapping's), else, when sweeping, an entry the sweep finds stale.
//
// checkMarks also marks the entries kept that a mapping of the desired state translated but
// that do not carry its mark (remark; remarked counts those marked), and counts in unmarked
// those that cannot carry it.
type cleanFilter struct {
	mappings   []keepValid
	sweep      *sweepFilter
	sweeping   bool
	mapped     int
	checkMarks bool
	unmarked   int
	remarked   int
}

func (c *cleanFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	for _, m := range c.mappings {
		if m.MatchConntrackFlow(fl) {
			c.mapped++
			return true
		}
	}
	if c.sweeping && c.sweep.MatchConntrackFlow(fl) {
		return true
	}
	return false
}

// remark implements remarker: a kept entry that a mapping of the desired state translates but
// that does not carry its mark (made before the table marked, replicated from a replica on a
// release without the mark maps, or translated alike by the mapping before) is given the mark,
// so the next change can be cleaned up by marks; an entry two mappings translated cannot carry
// both marks, and counts as unmarked.
func (c *cleanFilter) remark(fl *netlink.ConntrackFlow) (uint32, bool) {
	if !c.checkMarks {
		return 0, false
	}
	m, ok := c.sweep.wantMark(fl)
	switch {
	case !ok || (m != 0 && fl.Mark == m):
		return 0, false
	case m == 0:
		c.unmarked++
		return 0, false
	}
	return m, true
}

func (c *cleanFilter) marked() { c.remarked++ }

// conntrackCountSysctl is the number of conntrack entries of the reader's netns (the kernel's
// per-netns count: every entry allocated there, of any family, in the table or not yet).
const conntrackCountSysctl = "net/netfilter/nf_conntrack_count"

// conntrackEntries is the number of conntrack entries of the gateway netns, read without
// walking the table. ok=false: the kernel does not say (no conntrack sysctls in the netns).
func conntrackEntries(netNS ns.NetNS) (n uint64, ok bool, err error) {
	v, err := getSysctl(netNS, conntrackCountSysctl)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("counting conntrack entries: %w", err)
	}
	if n, err = strconv.ParseUint(v, 10, 64); err != nil {
		return 0, false, fmt.Errorf("counting conntrack entries: %s is %q: %w", conntrackCountSysctl, v, err)
	}
	return n, true, nil
}

// keepValid narrows a stale mapping's filter to the entries d does not translate the same way
// any more. Only translations involving d's EIP networks can be judged against d; an entry of an
// EIP whose whole network is gone always goes.
type keepValid struct {
	mappingFilter
	sweep *sweepFilter
}

func (k keepValid) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	if !k.mappingFilter.MatchConntrackFlow(fl) {
		return false
	}
	eip, ok := netip.AddrFromSlice(k.eip.To4())
	return !ok || !k.sweep.inExt(eip) || k.sweep.translatedStale(fl) || k.sweep.untranslatedStale(fl)
}

// flushConntrack empties the gateway netns's conntrack table.
func flushConntrack(h *Handles) error {
	ct, err := h.Conntrack()
	if err != nil {
		return err
	}
	if err := ct.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
		return fmt.Errorf("flushing the conntrack table of the gateway netns: %w", err)
	}
	return nil
}

func mappingString(m nat.Mapping) string {
	if m.Protocol == "" {
		return "fip " + m.EIP + " -> " + m.InternalIP
	}
	return m.Protocol + " " + m.EIP + ":" + strconv.Itoa(m.Port) + " -> " + m.InternalIP + ":" + strconv.Itoa(m.InternalPort)
}

func mappingsString(ms []nat.Mapping) string {
	const show = 5
	parts := make([]string, 0, show+1)
	for i, m := range ms {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(ms)-show))
			break
		}
		parts = append(parts, mappingString(m))
	}
	return strings.Join(parts, ", ")
}

// sweepFilter matches, level-based, the conntrack entries whose translation contradicts the
// desired state. The NAT decision is taken on a flow's first packet and kept in its entry for
// as long as the flow goes on (a client retrying from one UDP source port refreshes it for
// ever), so an entry made under other rules keeps those rules alive until it is deleted:
//   - translated by a FIP or port forward the state no longer has (or to another target), or
//     source-NATed to an EIP other than the one the state picks for the source now (a changed or
//     removed SNAT or FIP, an EIP gone);
//   - never translated, although the state now translates it: sent to an EIP that now has a FIP,
//     or to an EIP, protocol and port that now have a port forward (the flow began before the
//     mapping existed, Kube-OVN 4193 for rules added later); or sent from a VPC subnet address
//     that an SNAT or FIP now covers to a destination the gateway routes out of the external NIC.
//
// Diff-based clean-up (deleteMappings) cannot see what a crash between the nat commit and the
// clean-up left behind (the restart's diff is empty), nor SNAT changes (SNAT leaves no mapping
// in the DNAT chains), nor mappings added; this can.
//
// Only translations that can be vpcnat's are judged: a destination translated while addressed to
// the EIPs' networks, or a source translated into them; the hairpin MASQUERADE (its new source is
// a subnet address) is left alone. Untranslated entries are judged only where the state's rules
// would have matched the flow's first packet: never an entry whose source is an address of the
// gateway itself (its own traffic: nat OUTPUT has no DNAT rule, and our SNAT rules are meant for
// the VPC), never one to the gateway's own addresses on a port without a port forward, and, on
// the way out, only flows the state's routing sends out of the external NIC (our SNAT rules
// match "-o <external NIC>" only).
type sweepFilter struct {
	extNets []netip.Prefix
	fipIn   map[netip.Addr]netip.Addr // EIP -> internal IP
	fipOut  map[netip.Addr]netip.Addr // internal IP -> EIP (the lowest, as EXCLUSIVE_SNAT picks)
	dnat    map[sweepKey]netip.AddrPort
	snat    []sweepSNAT // longest prefix first, as SHARED_SNAT matches
	// own are the gateway's addresses: desired and in the kernel.
	own map[netip.Addr]bool
	// vpc are the subnet CIDRs the gateway is on: the sources whose packets enter by a subnet
	// NIC, so are policy-routed by our rules.
	vpc []netip.Prefix
	// routing is the state's policy routing, nil when it cannot be planned (then no outbound
	// untranslated entry is judged).
	routing *sweepRouting
	// stale and untranslated count the matches of each kind, for the report.
	stale, untranslated int
}

type sweepKey struct {
	proto uint8
	eip   netip.Addr
	port  uint16
}

type sweepSNAT struct {
	pfx netip.Prefix
	eip netip.Addr
}

// newSweepFilter reads d leniently: it is validated, and an entry that does not parse renders no
// rule either (pkg/nat leaves it out), so it maps nothing here. own are the addresses the
// gateway netns holds (see localAddrs), besides those d gives it.
func newSweepFilter(d *annotations.Desired, own []netip.Addr) *sweepFilter {
	f := &sweepFilter{fipIn: map[netip.Addr]netip.Addr{}, fipOut: map[netip.Addr]netip.Addr{}, dnat: map[sweepKey]netip.AddrPort{},
		own: map[netip.Addr]bool{}}
	for _, a := range own {
		f.own[a.Unmap()] = true
	}
	for _, e := range d.EIPs {
		if p, err := netip.ParsePrefix(e.EipCIDR); err == nil && p.Addr().Is4() {
			f.own[p.Addr()] = true
			if !slices.Contains(f.extNets, p.Masked()) {
				f.extNets = append(f.extNets, p.Masked())
			}
		}
	}
	for _, s := range d.Subnets {
		if p, err := netip.ParsePrefix(s.CIDR); err == nil && p.Addr().Is4() {
			f.vpc = append(f.vpc, p.Masked())
		}
		for _, a := range s.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil {
				f.own[p.Addr()] = true
			}
		}
		if a, err := netip.ParseAddr(s.IP); err == nil {
			f.own[a] = true
		}
	}
	for _, r := range d.FloatingIPs {
		eip, err1 := netip.ParseAddr(r.EIP)
		in, err2 := netip.ParseAddr(r.InternalIP)
		if err1 != nil || err2 != nil {
			continue
		}
		f.fipIn[eip] = in
		if cur, ok := f.fipOut[in]; !ok || eip.Less(cur) {
			f.fipOut[in] = eip
		}
	}
	for _, r := range d.DNATs {
		eip, err1 := netip.ParseAddr(r.EIP)
		in, err2 := netip.ParseAddr(r.InternalIP)
		proto := map[string]uint8{"tcp": unix.IPPROTO_TCP, "udp": unix.IPPROTO_UDP}[r.Protocol]
		if err1 != nil || err2 != nil || proto == 0 {
			continue
		}
		f.dnat[sweepKey{proto, eip, uint16(r.ExternalPort)}] = netip.AddrPortFrom(in, uint16(r.InternalPort))
	}
	for _, r := range d.SNATs {
		p, err := nat.ParseCIDR(r.InternalCIDR)
		eip, err2 := netip.ParseAddr(r.EIP)
		if err != nil || err2 != nil {
			continue
		}
		f.snat = append(f.snat, sweepSNAT{pfx: p.Masked(), eip: eip})
	}
	// Longest prefix first; of identical prefixes the lower EIP, which both backends apply.
	slices.SortStableFunc(f.snat, func(a, b sweepSNAT) int { return cmp.Or(b.pfx.Bits()-a.pfx.Bits(), a.eip.Compare(b.eip)) })
	if st, err := planNet(d, own); err == nil {
		f.routing = newSweepRouting(st, extIfName(d))
	} else {
		klog.V(2).InfoS("Conntrack sweep: the desired routing does not plan; untranslated outbound entries are not judged", "err", err)
	}
	return f
}

func (f *sweepFilter) inExt(a netip.Addr) bool {
	return containedIn(f.extNets, a)
}

func containedIn(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter: true for a stale entry.
func (f *sweepFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	if f.translatedStale(fl) {
		f.stale++
		return true
	}
	if f.untranslatedStale(fl) {
		f.untranslated++
		return true
	}
	return false
}

// tuple is a conntrack entry's addresses: original source and destination, reply source and
// destination.
func tuple(fl *netlink.ConntrackFlow) (osrc, odst, rsrc, rdst netip.Addr, ok bool) {
	odst, ok1 := netip.AddrFromSlice(fl.Forward.DstIP.To4())
	osrc, ok2 := netip.AddrFromSlice(fl.Forward.SrcIP.To4())
	rsrc, ok3 := netip.AddrFromSlice(fl.Reverse.SrcIP.To4())
	rdst, ok4 := netip.AddrFromSlice(fl.Reverse.DstIP.To4())
	return osrc, odst, rsrc, rdst, ok1 && ok2 && ok3 && ok4
}

// translatedStale: translated by vpcnat, otherwise than d says.
func (f *sweepFilter) translatedStale(fl *netlink.ConntrackFlow) bool {
	osrc, odst, rsrc, rdst, ok := tuple(fl)
	if !ok {
		return false
	}
	if rsrc != odst && f.inExt(odst) { // destination translated: a FIP or a port forward
		if in, ok := f.fipIn[odst]; ok {
			return rsrc != in
		}
		if to, ok := f.dnat[sweepKey{fl.Forward.Protocol, odst, fl.Forward.DstPort}]; ok {
			return rsrc != to.Addr() || fl.Reverse.SrcPort != to.Port()
		}
		return true
	}
	if rdst != osrc && f.inExt(rdst) { // source translated to an EIP: a FIP or an SNAT
		if eip, ok := f.fipOut[osrc]; ok {
			return rdst != eip
		}
		for _, s := range f.snat {
			if s.pfx.Contains(osrc) {
				return rdst != s.eip
			}
		}
		return true
	}
	return false
}

// untranslatedStale: never translated, though d's rules translate the flow's first packet.
func (f *sweepFilter) untranslatedStale(fl *netlink.ConntrackFlow) bool {
	osrc, odst, rsrc, rdst, ok := tuple(fl)
	if !ok || rsrc != odst || rdst != osrc || f.own[osrc] {
		return false
	}
	// Inbound: DNAT_FILTER (PREROUTING, no interface match) translates every packet to a FIP's
	// EIP, and every packet to a port forward's EIP, protocol and port.
	if _, ok := f.fipIn[odst]; ok {
		return true
	}
	if _, ok := f.dnat[sweepKey{fl.Forward.Protocol, odst, fl.Forward.DstPort}]; ok {
		return true
	}
	// Outbound: a VPC source with an SNAT or FIP, to a destination routed out of the external
	// NIC (SNAT_FILTER's "-o <ext>" jumps).
	if f.routing == nil || f.own[odst] || !containedIn(f.vpc, osrc) || !f.covered(osrc) {
		return false
	}
	return f.routing.leavesExt(osrc, odst)
}

// covered says whether an SNAT or FIP of d gives src an EIP.
func (f *sweepFilter) covered(src netip.Addr) bool {
	if _, ok := f.fipOut[src]; ok {
		return true
	}
	return slices.ContainsFunc(f.snat, func(s sweepSNAT) bool { return s.pfx.Contains(src) })
}

// sweepRouting is the policy routing d asks for (planNet's rules and tables), to tell which NIC
// a forwarded packet from a VPC subnet leaves by.
type sweepRouting struct {
	ext    string
	rules  []rule          // by priority
	tables map[int][]route // table -> routes
	// local are the addresses the kernel's local table answers for besides our own addresses:
	// the network and broadcast addresses of our connected networks.
	local map[netip.Addr]bool
}

func newSweepRouting(st *netState, ext string) *sweepRouting {
	r := &sweepRouting{ext: ext, rules: slices.Clone(st.rules), tables: map[int][]route{}, local: map[netip.Addr]bool{}}
	slices.SortStableFunc(r.rules, func(a, b rule) int { return a.Priority - b.Priority })
	for _, rt := range st.routes {
		r.tables[rt.Table] = append(r.tables[rt.Table], rt)
		if !rt.Via.IsValid() && rt.Dst.Bits() < 31 {
			r.local[rt.Dst.Addr()] = true
			r.local[lastAddr(rt.Dst)] = true
		}
	}
	return r
}

// leavesExt says whether a packet from src (which entered by a subnet NIC, so matches our iif
// rules) to dst is routed out of the external NIC: the rules in priority order, each table's
// longest match. A destination our tables do not route (it falls through to tables we do not
// own) or that the gateway itself answers for is never judged to leave.
func (r *sweepRouting) leavesExt(src, dst netip.Addr) bool {
	if !dst.IsGlobalUnicast() || r.local[dst] {
		return false
	}
	for _, ru := range r.rules {
		if ru.Src.IsValid() && !ru.Src.Contains(src) {
			continue
		}
		best := -1
		var dev string
		for _, rt := range r.tables[ru.Table] {
			if rt.Dst.Contains(dst) && rt.Dst.Bits() > best {
				best, dev = rt.Dst.Bits(), rt.Dev
			}
		}
		if best >= 0 {
			return dev == r.ext
		}
	}
	return false
}

// lastAddr is the highest address of p (its broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := 3; i >= 0; i-- {
		a[i] |= byte(host >> (8 * (3 - i)))
	}
	return netip.AddrFrom4(a)
}

// localAddrs are the IPv4 addresses the gateway netns holds, on any link.
func localAddrs(gw *netlink.Handle) ([]netip.Addr, error) {
	list, err := gw.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of the gateway netns: %w", err)
	}
	out := make([]netip.Addr, 0, len(list))
	for _, a := range list {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok {
			out = append(out, ip)
		}
	}
	return out, nil
}
