package nft

import (
	"net/netip"
	"slices"
)

// CtPlan is how the conntrack entries a batch makes stale can be found without a dump of the
// whole conntrack table, given that every entry a mapping of the old table translated carries
// the mapping's mark (set by the table: port_mark, fip_dnat_mark, fip_snat_mark, snat_mark).
type CtPlan struct {
	// OK: the plan finds every stale entry. False for a batch that replaces the table or writes
	// a chain, and for changes whose stale entries carry no mark of their own: an SNAT range
	// that newly covers addresses, a rule whose addresses keep their EIP under another rule, a
	// rule that keeps part of its addresses. Those need a dump.
	OK bool
	// Flush are the marks all of whose entries are stale: those of the port forwards, floating
	// IPs and SNAT rules removed or changed (a changed one gets another mark).
	Flush []uint32
	// Ports are the port forwards of keys the old table did not hold, EIPs the addresses that
	// gained an inbound floating IP, Sources the internal IPs that fip_snat sends out with an
	// EIP they did not have: entries made before (never translated, or translated otherwise)
	// are found by a dump the kernel filters by that destination or source.
	Ports   []Element
	EIPs    []netip.Addr
	Sources []netip.Addr
}

// CtPlan is the conntrack plan of the batch computed from have (the table the batch applies to,
// built by Build or a Builder, whose elements carry their data). Both states passed the
// validator: an EIP with a floating IP has no port forward.
func (b *Batch) CtPlan(have *Table) CtPlan {
	p := CtPlan{OK: !b.Replace && len(b.Chains) == 0 && have != nil}
	if !p.OK {
		return p
	}
	var ports, snatMarks *MapChange
	portMarks := 0
	for i, m := range b.Maps {
		switch m.Name {
		case MapPortDNAT:
			ports = &b.Maps[i]
		case MapPortMark:
			for _, e := range m.Del {
				p.Flush = append(p.Flush, e.MarkValue())
			}
			portMarks = len(m.Del)
		case MapFIPDNAT:
			for _, e := range m.Del {
				p.Flush = append(p.Flush, FIPMark(e.Addr, e.To))
			}
			p.EIPs = newKeys(m)
		case MapFIPSNAT:
			for _, e := range m.Del {
				if eip, ok := sourceEIP(b.Want, e.Addr); ok && eip == e.To {
					p.OK = false // sent out with the same EIP by another mapping: a dump keeps them
					return p
				}
				p.Flush = append(p.Flush, FIPMark(e.To, e.Addr))
			}
			p.Sources = newKeys(m)
		case MapSNATMark:
			snatMarks = &b.Maps[i]
		case MapFIPDNATMark, MapFIPSNATMark, MapSNAT:
			// follow from the maps above
		default:
			p.OK = false
			return p
		}
	}
	if ports != nil {
		if len(ports.Del) != portMarks {
			p.OK = false // a changed target kept its mark (a collision): no flush can tell them apart
			return p
		}
		for _, e := range ports.Add {
			if !slices.ContainsFunc(ports.Del, func(x Element) bool { return listOrder(x) == listOrder(e) }) {
				p.Ports = append(p.Ports, e)
			}
		}
	}
	if snatMarks != nil {
		flush, ok := snatPlan(snatMarks, have, b.Want)
		if !ok {
			p.OK = false
			return p
		}
		p.Flush = append(p.Flush, flush...)
	}
	slices.Sort(p.Flush)
	p.Flush = slices.Compact(p.Flush)
	return p
}

// sourceEIP is the EIP t sends the internal IP src out with: its floating IP's, else its SNAT
// rule's.
func sourceEIP(t *Table, src netip.Addr) (netip.Addr, bool) {
	if m := t.Map(MapFIPSNAT); m != nil {
		if i, found := slices.BinarySearchFunc(m.Elements, src, func(e Element, a netip.Addr) int { return e.Addr.Compare(a) }); found {
			return m.Elements[i].To, true
		}
	}
	if m := t.Map(MapSNAT); m != nil {
		if e, found := rangeAt(m.Elements, src); found {
			return e.To, true
		}
	}
	return netip.Addr{}, false
}

// newKeys are the keys m adds that it does not delete (a changed element keeps its key).
func newKeys(m MapChange) []netip.Addr {
	var out []netip.Addr
	for _, e := range m.Add {
		if !slices.ContainsFunc(m.Del, func(x Element) bool { return x.Addr == e.Addr }) {
			out = append(out, e.Addr)
		}
	}
	return out
}

// snatPlan is the SNAT part of CtPlan: the marks of the SNAT rules the change of the mark map
// (c) removes or changes. Every address of a deleted range whose rule changes must get another
// EIP (or none), from its new rule or a new outbound floating IP, so that all of the old rule's
// entries there are stale, and the old rule must
// keep no address at all (its mark is flushed whole); every address of an added range must have
// had a rule before (entries from an address no rule covered carry no SNAT mark).
func snatPlan(c *MapChange, have, want *Table) (flush []uint32, ok bool) {
	before, after := have.Map(MapSNATMark), want.Map(MapSNATMark)
	eipsBefore, eipsAfter, fipsAfter := have.Map(MapSNAT), want.Map(MapSNAT), want.Map(MapFIPSNAT)
	if before == nil || after == nil || eipsBefore == nil || eipsAfter == nil || fipsAfter == nil {
		return nil, false
	}
	for _, d := range c.Del {
		old, _ := rangeAt(eipsBefore.Elements, d.Addr)
		changed := false
		for _, piece := range overlay(after.Elements, d.Addr, d.End) {
			if piece.found && piece.e.MarkValue() == d.MarkValue() {
				continue
			}
			changed = true
			if now, found := rangeAt(eipsAfter.Elements, piece.first); found && now.To == old.To {
				return nil, false // entries of the old rule still valid under another: kept by a dump
			}
			// An address that an outbound floating IP now sends out with the old EIP, likewise.
			i, _ := slices.BinarySearchFunc(fipsAfter.Elements, piece.first, func(e Element, a netip.Addr) int { return e.Addr.Compare(a) })
			for ; i < len(fipsAfter.Elements) && !piece.last.Less(fipsAfter.Elements[i].Addr); i++ {
				if fipsAfter.Elements[i].To == old.To {
					return nil, false
				}
			}
		}
		if !changed {
			continue
		}
		if slices.ContainsFunc(after.Elements, func(e Element) bool { return e.MarkValue() == d.MarkValue() }) {
			return nil, false // the rule keeps other addresses (or shares its mark): no flush
		}
		flush = append(flush, d.MarkValue())
	}
	for _, a := range c.Add {
		for _, piece := range overlay(before.Elements, a.Addr, a.End) {
			if !piece.found {
				return nil, false // newly covered addresses: their entries carry no SNAT mark
			}
		}
	}
	return flush, true
}

// rangeAt is the element of the sorted interval elements els that holds a.
func rangeAt(els []Element, a netip.Addr) (Element, bool) {
	i, found := slices.BinarySearchFunc(els, a, func(e Element, a netip.Addr) int {
		if e.End.Less(a) {
			return -1
		}
		if a.Less(e.Addr) {
			return 1
		}
		return 0
	})
	if !found {
		return Element{}, false
	}
	return els[i], true
}

// piece is a part of an address range as the interval elements of a map cut it: the element
// that holds it, or a gap.
type piece struct {
	first, last netip.Addr
	e           Element
	found       bool
}

// overlay cuts first..last at the boundaries of the sorted interval elements els.
func overlay(els []Element, first, last netip.Addr) []piece {
	var out []piece
	i, _ := slices.BinarySearchFunc(els, first, func(e Element, a netip.Addr) int {
		if e.End.Less(a) {
			return -1
		}
		return 1
	})
	cur := first
	for ; i < len(els) && !last.Less(els[i].Addr); i++ {
		e := els[i]
		if cur.Less(e.Addr) {
			out = append(out, piece{first: cur, last: e.Addr.Prev()}) // a gap before e
		}
		if !e.End.Less(last) {
			return append(out, piece{first: maxAddrOf(cur, e.Addr), last: last, e: e, found: true})
		}
		out = append(out, piece{first: maxAddrOf(cur, e.Addr), last: e.End, e: e, found: true})
		cur = e.End.Next()
	}
	return append(out, piece{first: cur, last: last})
}

func maxAddrOf(a, b netip.Addr) netip.Addr {
	if a.Less(b) {
		return b
	}
	return a
}
