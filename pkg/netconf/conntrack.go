package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

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

// deleteMappings deletes the conntrack entries of stale mappings in the gateway netns, with one
// dump of the table for all of them.
//
// An entry the desired state d still translates exactly so is kept: e.g. the outbound flows of
// a removed FIP whose internal IP an SNAT rule sends out with the same EIP.
func deleteMappings(gw *netlink.Handle, stale []nat.Mapping, d *annotations.Desired) ([]string, error) {
	if len(stale) == 0 {
		return nil, nil
	}
	sweep := newSweepFilter(d)
	filters := make([]netlink.CustomConntrackFilter, 0, len(stale))
	for _, m := range stale {
		f, err := newMappingFilter(m)
		if err != nil {
			return nil, err
		}
		filters = append(filters, keepValid{f, sweep})
	}
	n, err := gw.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
	if err != nil {
		return nil, fmt.Errorf("deleting conntrack entries of %d removed mappings: %w", len(stale), err)
	}
	if n == 0 {
		return nil, nil
	}
	return []string{fmt.Sprintf("conntrack: deleted %d entries of %s", n, mappingsString(stale))}, nil
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
	return !ok || !k.sweep.inExt(eip) || k.sweep.MatchConntrackFlow(fl)
}

// flushConntrack empties the gateway netns's conntrack table.
func flushConntrack(gw *netlink.Handle) error {
	if err := gw.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
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
// desired state: translated by a FIP or port forward the state no longer has (or to another
// target), or source-NATed to an EIP other than the one the state picks for the source now (a
// changed or removed SNAT or FIP, an EIP gone). Diff-based clean-up (deleteMappings) cannot see
// what a crash between the nat commit and the clean-up left behind (the restart's diff is empty),
// nor SNAT changes (SNAT leaves no mapping in the DNAT chains); this can.
//
// Only translations that can be vpcnat's are judged: a destination translated while addressed to
// the EIPs' networks, or a source translated into them. Entries that were never translated are
// left alone, as is the hairpin MASQUERADE (its new source is a subnet address).
type sweepFilter struct {
	extNets []netip.Prefix
	fipIn   map[netip.Addr]netip.Addr // EIP -> internal IP
	fipOut  map[netip.Addr]netip.Addr // internal IP -> EIP (the lowest, as EXCLUSIVE_SNAT picks)
	dnat    map[sweepKey]netip.AddrPort
	snat    []sweepSNAT // longest prefix first, as SHARED_SNAT matches
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
// rule either (pkg/nat leaves it out), so it maps nothing here.
func newSweepFilter(d *annotations.Desired) *sweepFilter {
	f := &sweepFilter{fipIn: map[netip.Addr]netip.Addr{}, fipOut: map[netip.Addr]netip.Addr{}, dnat: map[sweepKey]netip.AddrPort{}}
	for _, e := range d.EIPs {
		if p, err := netip.ParsePrefix(e.EipCIDR); err == nil && p.Addr().Is4() && !slices.Contains(f.extNets, p.Masked()) {
			f.extNets = append(f.extNets, p.Masked())
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
	slices.SortStableFunc(f.snat, func(a, b sweepSNAT) int { return b.pfx.Bits() - a.pfx.Bits() })
	return f
}

func (f *sweepFilter) inExt(a netip.Addr) bool {
	for _, p := range f.extNets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// MatchConntrackFlow implements netlink.CustomConntrackFilter: true for a stale entry.
func (f *sweepFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	odst, ok1 := netip.AddrFromSlice(fl.Forward.DstIP.To4())
	osrc, ok2 := netip.AddrFromSlice(fl.Forward.SrcIP.To4())
	rsrc, ok3 := netip.AddrFromSlice(fl.Reverse.SrcIP.To4())
	rdst, ok4 := netip.AddrFromSlice(fl.Reverse.DstIP.To4())
	if !ok1 || !ok2 || !ok3 || !ok4 {
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

// sweepConntrack deletes the entries sweepFilter finds stale, in one dump of the table.
func sweepConntrack(gw *netlink.Handle, d *annotations.Desired) ([]string, error) {
	n, err := gw.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, newSweepFilter(d))
	if err != nil {
		return nil, fmt.Errorf("deleting conntrack entries that contradict the desired mappings: %w", err)
	}
	if n == 0 {
		return nil, nil
	}
	return []string{fmt.Sprintf("conntrack: deleted %d entries translated by mappings or SNATs no longer desired", n)}, nil
}
