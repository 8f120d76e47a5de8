package netconf

import (
	"fmt"
	"slices"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/nft"
)

// markScope is what a converge on the nftables backend hands the conntrack step. Every
// connection a port forward translates carries the forward's mark (nft.PortMark, set by the
// table), so when a converge changes port forwards only, the clean-up needs no dump of the
// conntrack table (a dump walks the machine's whole table: ~11 ms with no entry, ~33 ms with
// 10 000 entries of the gateway, measured here):
//   - the entries of a removed or changed port forward are deleted by its mark, in the kernel
//     (one flush request per forward: ~0.1 ms with few entries, ~2.3 ms with 10 000);
//   - the entries that predate a port forward of a new key (sent to its EIP, protocol and port
//     before it existed, never translated) are found by a dump the kernel filters by that
//     destination (~11 ms whatever the table holds), and judged by the sweep.
//
// Anything else (a FIP or SNAT change, a chain rewritten, the table replaced, a full converge,
// more than a few port forwards) sweeps the whole table, which also tells whether every entry
// a port forward translates carries its mark (nftApplied.marked).
type markScope struct {
	// fast: the change may be cleaned up by marks (port forwards only, the last sweep found
	// every entry marked, a fast converge).
	fast bool
	// flush are the marks of the port forwards removed or changed; added the port forwards of
	// keys the table did not hold.
	flush []uint32
	added []nft.Element
	// held says whether a port forward of the new table has a mark: such a mark (two port
	// forwards with one mark) is never flushed.
	held func(uint32) bool
	k    nftTable
	// applied is the table being committed: a sweep of the whole table sets its marked.
	applied *nftApplied
}

// Limits of the clean-up by marks: each flush walks the kernel's table once, each added key is
// a filtered dump; past these one dump of the whole table is cheaper.
const (
	markFlushLimit = 16
	markAddLimit   = 2
)

// newMarkScope is the scope of batch b; fast says the converge may clean up by marks at all.
func newMarkScope(b *nft.Batch, applied *nftApplied, k nftTable, held func(uint32) bool, fast bool) *markScope {
	s := &markScope{applied: applied, k: k, held: held, fast: fast && !b.Replace && len(b.Chains) == 0}
	if b.Want.Map(nft.MapPortMark) == nil {
		s.fast = false
	}
	var ports *nft.MapChange
	for i, m := range b.Maps {
		switch m.Name {
		case nft.MapPortDNAT:
			ports = &b.Maps[i]
		case nft.MapPortMark:
			for _, e := range m.Del {
				s.flush = append(s.flush, e.MarkValue())
			}
		default:
			s.fast = false // a FIP or SNAT change
		}
	}
	if ports != nil {
		if len(ports.Del) != len(s.flush) {
			s.fast = false // a changed target kept its mark (a collision): no flush can tell them apart
		}
		for _, e := range ports.Add {
			if !slices.ContainsFunc(ports.Del, func(x nft.Element) bool { return sameKey(x, e) }) {
				s.added = append(s.added, e)
			}
		}
	}
	if len(s.flush) > markFlushLimit || len(s.added) > markAddLimit {
		s.fast = false
	}
	return s
}

// usable: the change may be cleaned up by marks, none of which a port forward of the new table
// still has (asked only when there is conntrack work: the first question after a whole build
// counts the marks).
func (s *markScope) usable() bool {
	if s == nil || !s.fast {
		return false
	}
	return !slices.ContainsFunc(s.flush, s.held)
}

func sameKey(a, b nft.Element) bool {
	return a.Addr == b.Addr && a.Proto == b.Proto && a.Port == b.Port
}

// cleanByMarks is the conntrack step of a converge that changed port forwards only (see
// markScope): stale are the port forwards removed or changed, whose marks s holds.
func cleanByMarks(netNS ns.NetNS, h *Handles, s *markScope, stale []nat.Mapping, d *annotations.Desired) ([]string, error) {
	if n, known, err := conntrackEntries(netNS); err != nil {
		return nil, err
	} else if known && n == 0 {
		return nil, nil
	}
	var lines []string
	for _, m := range s.flush {
		if err := s.k.FlushConntrackMark(m); err != nil {
			return nil, fmt.Errorf("deleting conntrack entries of %d removed mappings: %w", len(stale), err)
		}
	}
	if len(stale) > 0 {
		lines = append(lines, "conntrack: deleted the entries of "+mappingsString(stale)+" by their mark")
	}
	if len(s.added) == 0 {
		return lines, nil
	}
	own, err := localAddrs(h.Gateway)
	if err != nil {
		return nil, err
	}
	sweep := newSweepFilter(d, own)
	for _, e := range s.added {
		where := ctFilterTuple(ctTupleFilter{dst: e.Addr, proto: e.Proto, dport: e.Port})
		if _, err := deleteConntrackWhere(h.GatewayNS, where, sweep); err != nil {
			return lines, fmt.Errorf("deleting conntrack entries that contradict the desired mappings: %w", err)
		}
	}
	if n := sweep.stale + sweep.untranslated; n > 0 {
		lines = append(lines, fmt.Sprintf("conntrack: deleted %d entries (%d translated by mappings or SNATs no longer desired, %d never translated by mappings or SNATs desired now)",
			n, sweep.stale, sweep.untranslated))
	}
	return lines, nil
}

// portMark is the mark d's port forward gives the entry fl, when that port forward translated
// it: its destination translated to exactly the forward's target, and no FIP on the EIP
// (EXCLUSIVE_DNAT, which sets no mark, comes first).
func (f *sweepFilter) portMark(fl *netlink.ConntrackFlow) (uint32, bool) {
	_, odst, rsrc, _, ok := tuple(fl)
	if !ok || rsrc == odst || !f.inExt(odst) {
		return 0, false
	}
	if _, ok := f.fipIn[odst]; ok {
		return 0, false
	}
	to, ok := f.dnat[sweepKey{fl.Forward.Protocol, odst, fl.Forward.DstPort}]
	if !ok || rsrc != to.Addr() || fl.Reverse.SrcPort != to.Port() {
		return 0, false
	}
	return nft.PortMark(nft.Element{Addr: odst, Proto: fl.Forward.Protocol, Port: fl.Forward.DstPort, To: rsrc, ToPort: to.Port()}), true
}
