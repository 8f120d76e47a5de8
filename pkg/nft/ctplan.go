package nft

import (
	"net/netip"
	"slices"
)

// CtPlan is how the conntrack entries a batch makes stale can be found without a dump of the
// whole conntrack table, given that every entry a mapping of the old table translated carries
// the mapping's mark (set by the table: port_mark, fip_dnat_mark, fip_snat_mark, snat_mark).
type CtPlan struct {
	// OK: the plan finds every stale entry and no other. False for a batch that replaces the
	// table or writes a chain, and for changes whose stale entries carry no mark of their own,
	// or whose flush would take entries the new state translates alike: an SNAT range that
	// newly covers addresses, addresses that keep their EIP under another SNAT rule or
	// floating IP, a nested prefix added inside a rule. Those need a dump.
	OK bool
	// Flush are the deletions by mark: those of the port forwards and floating IPs removed or
	// changed (a changed one gets another mark), and of the SNAT rules whose addresses leave by
	// another EIP now (the entries of the rule's mark translated to its old EIP).
	Flush []MarkFlush
	// Ports are the port forwards of keys the old table did not hold, EIPs the addresses that
	// gained an inbound floating IP, Sources the internal IPs that fip_snat sends out with an
	// EIP they did not have: entries made before (never translated, or translated otherwise)
	// are found by a dump the kernel filters by that destination or source.
	Ports   []Element
	EIPs    []netip.Addr
	Sources []netip.Addr
}

// MarkFlush selects the conntrack entries of one mark; with EIP valid, only those whose reply
// goes to that EIP (translated to it).
type MarkFlush struct {
	Mark uint32
	EIP  netip.Addr
}

// CtPlan is the conntrack plan of the batch computed from have (the table the batch applies to,
// built by Build or a Builder, whose elements carry their data). Both states passed the
// validator: an EIP with a floating IP has no port forward, an internal IP has one floating IP.
func (b *Batch) CtPlan(have *Table) CtPlan {
	p := CtPlan{OK: !b.Replace && len(b.Chains) == 0 && have != nil}
	if !p.OK {
		return p
	}
	var ports *MapChange
	var snats []MapChange
	portMarks := 0
	flush := func(m uint32) { p.Flush = append(p.Flush, MarkFlush{Mark: m}) }
	for i, m := range b.Maps {
		switch m.Name {
		case MapPortDNAT:
			ports = &b.Maps[i]
		case MapPortMark:
			for _, e := range m.Del {
				flush(e.MarkValue())
			}
			portMarks = len(m.Del)
		case MapFIPDNAT:
			for _, e := range m.Del {
				flush(FIPMark(e.Addr, e.To))
			}
			p.EIPs = newKeys(m)
		case MapFIPSNAT:
			for _, e := range m.Del {
				if eip, ok := sourceEIP(b.Want, e.Addr); ok && eip == e.To {
					p.OK = false // sent out with the same EIP by another mapping: a dump keeps them
					return p
				}
				flush(FIPMark(e.To, e.Addr))
			}
			p.Sources = newKeys(m)
		case MapSNAT, MapSNATMark:
			snats = append(snats, m)
		case MapFIPDNATMark, MapFIPSNATMark:
			// follow from the FIP maps
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
	if len(snats) > 0 {
		fl, ok := snatPlan(snats, have, b.Want)
		if !ok {
			p.OK = false
			return p
		}
		p.Flush = append(p.Flush, fl...)
	}
	slices.SortFunc(p.Flush, compareFlush)
	p.Flush = slices.Compact(p.Flush)
	return p
}

func compareFlush(a, b MarkFlush) int {
	if a.Mark != b.Mark {
		return cmpU64(uint64(a.Mark), uint64(b.Mark))
	}
	return a.EIP.Compare(b.EIP)
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

// snatTables are the SNAT maps of both sides of a change.
type snatTables struct {
	eipsBefore, marksBefore, eipsAfter, marksAfter, fipsAfter []Element
}

// snatPlan is the SNAT part of CtPlan, from the changes of the SNAT map and the SNAT mark map
// (changes). Every address of a changed range is judged by its rule and EIP before and after
// (an outbound floating IP of the new state overrides its SNAT rule):
//   - the same EIP under another rule: its entries stay valid but would carry another rule's
//     mark, so no plan;
//   - another EIP (or none): its entries are stale, found as the old rule's mark translated to
//     the old EIP; such a flush takes every entry of the rule with that EIP, so every address
//     of the old rule must leave by another EIP now;
//   - an address no rule covered before: its entries carry no SNAT mark, so no plan.
func snatPlan(changes []MapChange, have, want *Table) (flush []MarkFlush, ok bool) {
	var t snatTables
	for _, x := range []struct {
		t    *Table
		name string
		to   *[]Element
	}{{have, MapSNAT, &t.eipsBefore}, {have, MapSNATMark, &t.marksBefore}, {want, MapSNAT, &t.eipsAfter},
		{want, MapSNATMark, &t.marksAfter}, {want, MapFIPSNAT, &t.fipsAfter}} {
		m := x.t.Map(x.name)
		if m == nil {
			return nil, false
		}
		*x.to = m.Elements
	}
	var ranges [][2]netip.Addr
	for _, c := range changes {
		for _, e := range append(slices.Clip(c.Del), c.Add...) {
			ranges = append(ranges, [2]netip.Addr{e.Addr, e.End})
		}
	}
	for _, r := range ranges {
		for _, b := range overlay(t.marksBefore, r[0], r[1]) {
			if !b.found {
				return nil, false // newly covered addresses: their entries carry no SNAT mark
			}
			m := b.e.MarkValue()
			for _, old := range overlay(t.eipsBefore, b.first, b.last) {
				if !old.found {
					return nil, false // cannot be: a rule covers the range
				}
				same, other := t.leaves(old.first, old.last, old.e.To)
				if same {
					// Some address keeps the old EIP: unless it keeps its rule too, its
					// entries would carry another rule's mark.
					for _, a := range overlay(t.marksAfter, old.first, old.last) {
						if !a.found || a.e.MarkValue() != m {
							return nil, false
						}
					}
				}
				if other {
					flush = append(flush, MarkFlush{Mark: m, EIP: old.e.To})
				}
			}
		}
	}
	// A flush takes every entry of its rule translated to its EIP: every address of the rule
	// must leave by another EIP now, and no address of the new state may be given that mark
	// with that EIP (a connection it opens between the commit and the flush would go).
	slices.SortFunc(flush, compareFlush)
	flush = slices.Compact(flush)
	for _, f := range flush {
		for _, b := range t.marksBefore {
			if b.MarkValue() != f.Mark {
				continue
			}
			if same, _ := t.leaves(b.Addr, b.End, f.EIP); same {
				return nil, false
			}
		}
		for _, a := range t.marksAfter {
			if a.MarkValue() != f.Mark {
				continue
			}
			for _, e := range overlay(t.eipsAfter, a.Addr, a.End) {
				if e.found && e.e.To == f.EIP {
					return nil, false
				}
			}
		}
	}
	return flush, true
}

// leaves says whether some address of first..last leaves by eip in the new state (same), and
// whether some leaves by another EIP or none (other).
func (t *snatTables) leaves(first, last, eip netip.Addr) (same, other bool) {
	for _, a := range overlay(t.eipsAfter, first, last) {
		if a.found && a.e.To == eip {
			same = true
		} else {
			other = true
		}
	}
	i, _ := slices.BinarySearchFunc(t.fipsAfter, first, func(e Element, a netip.Addr) int { return e.Addr.Compare(a) })
	for ; i < len(t.fipsAfter) && !last.Less(t.fipsAfter[i].Addr); i++ {
		if t.fipsAfter[i].To == eip {
			same = true
		} else {
			other = true
		}
	}
	return same, other
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
