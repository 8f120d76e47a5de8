package netconf

import (
	"errors"
	"fmt"
	"slices"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/nft"
)

// markScope is what a converge on the nftables backend hands the conntrack step. Every
// connection a mapping translates carries the mapping's mark (set by the table: port_mark,
// fip_dnat_mark, fip_snat_mark, snat_mark; see pkg/nft), so when a converge changes mappings
// only, the clean-up needs no dump of the conntrack table (a dump walks the machine's whole
// table: ~11 ms with no entry, ~33 ms with 10 000 entries of the gateway, measured here):
//   - the entries of a removed or changed port forward, floating IP or SNAT rule are deleted by
//     its mark, in the kernel (one flush request per mapping: ~0.1 ms with few entries, ~2.3 ms
//     with 10 000);
//   - the entries that predate a port forward of a new key, an EIP's new floating IP or an
//     internal IP's new outbound floating IP (never translated, or translated otherwise) are
//     found by a dump the kernel filters by that destination or source (~11 ms whatever the
//     table holds), and judged by the sweep.
//
// Anything else (a chain rewritten, the table replaced, a full converge, an SNAT change whose
// stale entries carry no mark of their own: see nft.CtPlan, more than a few mappings) sweeps the
// whole table, which also tells whether every entry a mapping translates carries its mark
// (nftApplied.marked).
type markScope struct {
	// fast: the change may be cleaned up by marks (plan.OK, the last sweep found every entry
	// marked, a fast converge).
	fast bool
	plan nft.CtPlan
	// held says whether a flush would take entries of a mapping of the new table (two mappings
	// with one mark): such a flush is never made.
	held func(nft.MarkFlush) bool
	k    nftTable
	// applied is the table being committed: a sweep of the whole table sets its marked.
	applied *nftApplied
}

// Limits of the clean-up by marks: each flush walks the kernel's table once, each new key is a
// filtered dump; past these one dump of the whole table is cheaper.
const (
	markFlushLimit = 16
	markAddLimit   = 2
)

// newMarkScope is the scope of batch b, applied to have; fast says the converge may clean up by
// marks at all.
func newMarkScope(b *nft.Batch, have *nft.Table, applied *nftApplied, k nftTable, held func(nft.MarkFlush) bool, fast bool) *markScope {
	s := &markScope{applied: applied, k: k, held: held, fast: fast}
	if !fast {
		return s
	}
	s.plan = b.CtPlan(have)
	s.fast = s.plan.OK && len(s.plan.Flush) <= markFlushLimit &&
		len(s.plan.Ports)+len(s.plan.EIPs)+len(s.plan.Sources) <= markAddLimit
	return s
}

// usable: the change may be cleaned up by marks, none of which a mapping of the new table still
// has (asked only when there is conntrack work: the first question after a whole build counts
// the marks).
func (s *markScope) usable() bool {
	if s == nil || !s.fast {
		return false
	}
	if s.k.FlushFilterUnsupported() && slices.ContainsFunc(s.plan.Flush, func(f nft.MarkFlush) bool { return f.EIP.IsValid() }) {
		return false
	}
	return !slices.ContainsFunc(s.plan.Flush, s.held)
}

// cleanByMarks is the conntrack step of a converge that changed mappings only (see markScope):
// stale are the FIPs and port forwards removed or changed, named in the report.
func cleanByMarks(netNS ns.NetNS, h *Handles, s *markScope, stale []nat.Mapping, d *annotations.Desired) ([]string, error) {
	if n, known, err := conntrackEntries(netNS); err != nil {
		return nil, err
	} else if known && n == 0 {
		return nil, nil
	}
	var lines []string
	for _, f := range s.plan.Flush {
		if err := s.k.FlushConntrackMark(f); err != nil {
			if errors.Is(err, errFlushFilterUnsupported) {
				return nil, err
			}
			return nil, fmt.Errorf("deleting conntrack entries of %d removed or changed mappings by their mark: %w", len(s.plan.Flush), err)
		}
	}
	if len(stale) > 0 {
		lines = append(lines, "conntrack: deleted the entries of "+mappingsString(stale)+" by their mark")
	}
	if n := countFunc(s.plan.Flush, func(f nft.MarkFlush) bool { return f.EIP.IsValid() }); n > 0 {
		lines = append(lines, fmt.Sprintf("conntrack: deleted the entries of %d SNAT rules by their mark and old EIP", n))
	}
	var where []ctTupleFilter
	for _, e := range s.plan.Ports {
		where = append(where, ctTupleFilter{dst: e.Addr, proto: e.Proto, dport: e.Port})
	}
	for _, a := range s.plan.EIPs {
		where = append(where, ctTupleFilter{dst: a})
	}
	for _, a := range s.plan.Sources {
		where = append(where, ctTupleFilter{src: a})
	}
	if len(where) == 0 {
		return lines, nil
	}
	own, err := localAddrs(h.Gateway)
	if err != nil {
		return nil, err
	}
	f := &cleanFilter{sweep: newSweepFilter(d, own), sweeping: true, checkMarks: true}
	for _, w := range where {
		if _, err := deleteConntrackWhere(h.GatewayNS, ctFilterTuple(w), f); err != nil {
			return lines, fmt.Errorf("deleting conntrack entries that contradict the desired mappings: %w", err)
		}
	}
	if f.unmarked > 0 {
		// Entries two mappings translate: dumps until a sweep finds none.
		s.applied.marked = false
		klog.V(2).InfoS("Conntrack entries that cannot carry the mark of the mappings that translate them: the clean-up dumps the table", "entries", f.unmarked)
	}
	if f.remarked > 0 {
		// Entries a new mapping translates alike but that carried another mapping's mark (an
		// outbound FIP given the EIP its SNAT rule gave): marked now.
		lines = append(lines, fmt.Sprintf("conntrack: marked %d entries with the mark of the mapping that translates them", f.remarked))
	}
	if n := f.sweep.stale + f.sweep.untranslated; n > 0 {
		lines = append(lines, fmt.Sprintf("conntrack: deleted %d entries (%d translated by mappings or SNATs no longer desired, %d never translated by mappings or SNATs desired now)",
			n, f.sweep.stale, f.sweep.untranslated))
	}
	return lines, nil
}

func countFunc[E any](s []E, f func(E) bool) (n int) {
	for _, e := range s {
		if f(e) {
			n++
		}
	}
	return n
}

// wantMark is the mark an entry fl kept by d carries when the table set it: that of the
// mapping of d that translated it. ok=false when no mapping of d translated it, or when two
// did (a port forward's connection that also leaves by SNAT carries one mark only: it counts
// as unmarked, so such gateways clean up by dumps).
func (f *sweepFilter) wantMark(fl *netlink.ConntrackFlow) (mark uint32, ok bool) {
	osrc, odst, rsrc, rdst, valid := tuple(fl)
	if !valid {
		return 0, false
	}
	dst := rsrc != odst && f.inExt(odst)
	src := rdst != osrc && f.inExt(rdst)
	switch {
	case dst && src:
		return 0, true // never equal to a mark the table sets (0 is read as 1)
	case dst:
		if in, ok := f.fipIn[odst]; ok {
			return nft.FIPMark(odst, in), rsrc == in
		}
		to, ok := f.dnat[sweepKey{fl.Forward.Protocol, odst, fl.Forward.DstPort}]
		if !ok || rsrc != to.Addr() || fl.Reverse.SrcPort != to.Port() {
			return 0, false
		}
		return nft.PortMark(nft.Element{Addr: odst, Proto: fl.Forward.Protocol, Port: fl.Forward.DstPort, To: rsrc, ToPort: to.Port()}), true
	case src:
		if eip, ok := f.fipOut[osrc]; ok {
			return nft.FIPMark(eip, osrc), rdst == eip
		}
		for _, s := range f.snat {
			if s.pfx.Contains(osrc) {
				return nft.SNATMark(s.pfx), rdst == s.eip
			}
		}
	}
	return 0, false
}
