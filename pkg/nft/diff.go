package nft

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/vpcnat/vpcnat/pkg/nat"
)

// Batch is the change that makes the kernel's table (have) match want, applied as one netlink
// batch: one nf_tables transaction, so a packet sees either the old table or the new one.
type Batch struct {
	// Replace: the table is missing or its layout (maps, chains, hooks) differs from want's; it
	// is deleted (if present) and created whole from Want in the same transaction.
	Replace bool
	Want    *Table
	// Maps lists element changes of maps present on both sides, in want's map order.
	Maps []MapChange
	// Chains lists chains whose rules differ: flushed and refilled with these rules.
	Chains []Chain
	// Existed: the table was there before (Replace deletes it first).
	Existed bool
}

// MapChange is the element delta of one map. A changed element (same key, other data) is in
// both lists: deleted, then added.
type MapChange struct {
	Name     string
	Kind     MapKind
	Del, Add []Element
}

// Diff computes the batch from have (a read-back of the kernel, or the table last applied; nil:
// no table) to want.
func Diff(want, have *Table) *Batch {
	b := &Batch{Want: want, Existed: have != nil}
	if have == nil || !sameLayout(want, have) {
		b.Replace = true
		return b
	}
	for _, wm := range want.Maps {
		hm := have.Map(wm.Name)
		del, add := elementDelta(wm.Kind, hm.Elements, wm.Elements)
		if len(del) > 0 || len(add) > 0 {
			b.Maps = append(b.Maps, MapChange{Name: wm.Name, Kind: wm.Kind, Del: del, Add: add})
		}
	}
	for _, wc := range want.Chains {
		if !slices.Equal(have.Chain(wc.Name).Rules, wc.Rules) {
			b.Chains = append(b.Chains, wc)
		}
	}
	return b
}

// sameLayout: the same maps of the same kinds and the same chains with the same hooks, in any
// order. Anything else in our table (a map or chain a human added, a changed hook) is repaired
// by replacing the table.
func sameLayout(want, have *Table) bool {
	if len(want.Maps) != len(have.Maps) || len(want.Chains) != len(have.Chains) {
		return false
	}
	for _, wm := range want.Maps {
		if hm := have.Map(wm.Name); hm == nil || hm.Kind != wm.Kind {
			return false
		}
	}
	for _, wc := range want.Chains {
		if hc := have.Chain(wc.Name); hc == nil || hc.Hook != wc.Hook || hc.Priority != wc.Priority {
			return false
		}
	}
	return true
}

// elementDelta returns the elements of have not identically in want (to delete) and of want
// not identically in have (to add). Both lists are sorted by key (SortElements, and keys are
// unique in a map), so one merge walk finds them without hashing 10 000 elements twice.
func elementDelta(kind MapKind, have, want []Element) (del, add []Element) {
	i, j := 0, 0
	for i < len(have) && j < len(want) {
		switch c := compareKeys(kind, have[i], want[j]); {
		case c < 0:
			del = append(del, have[i])
			i++
		case c > 0:
			add = append(add, want[j])
			j++
		default:
			if !sameData(kind, have[i], want[j]) {
				del, add = append(del, have[i]), append(add, want[j])
			}
			i, j = i+1, j+1
		}
	}
	del = append(del, have[i:]...)
	add = append(add, want[j:]...)
	return del, add
}

// sameData: two elements of a map of kind with one key hold the same data (a mark map's
// elements compare by their marks, whichever way each was made).
func sameData(kind MapKind, a, b Element) bool {
	if kind.IsMark() {
		return a.Addr == b.Addr && a.End == b.End && a.MarkValue() == b.MarkValue()
	}
	return a == b
}

// compareKeys orders two elements of a map of kind as SortElements does.
func compareKeys(kind MapKind, a, b Element) int {
	if kind == PortMap || kind == PortMarkMap {
		return cmp.Compare(listOrder(a), listOrder(b))
	}
	return a.Addr.Compare(b.Addr)
}

// Empty reports whether the batch changes nothing.
func (b *Batch) Empty() bool { return !b.Replace && len(b.Maps) == 0 && len(b.Chains) == 0 }

// Summary describes the batch, one line per change, for logs and events; the mark element of a
// port forward whose element changes is implied by it, and not listed.
func (b *Batch) Summary() []string {
	if b.Replace {
		verb := "create"
		if b.Existed {
			verb = "replace"
		}
		n := 0
		for _, m := range b.Want.Maps {
			n += len(m.Elements)
		}
		return []string{fmt.Sprintf("%s table ip %s (%d chains, %d map elements)", verb, TableName, len(b.Want.Chains), n)}
	}
	var out []string
	// A mark element changes with its port forward or floating IP, and the SNAT marks with the
	// SNAT ranges: their lines would say nothing more.
	ported, fips := map[uint64]bool{}, map[string]map[netip.Addr]bool{MapFIPDNATMark: {}, MapFIPSNATMark: {}}
	snats := false
	for _, m := range b.Maps {
		switch m.Name {
		case MapPortDNAT:
			for _, e := range append(slices.Clip(m.Del), m.Add...) {
				ported[listOrder(e)] = true
			}
		case MapFIPDNAT, MapFIPSNAT:
			for _, e := range append(slices.Clip(m.Del), m.Add...) {
				fips[m.Name+"_mark"][e.Addr] = true
			}
		case MapSNAT:
			snats = true
		}
	}
	for _, m := range b.Maps {
		implied := func(e Element) bool {
			switch m.Name {
			case MapPortMark:
				return ported[listOrder(e)]
			case MapFIPDNATMark, MapFIPSNATMark:
				return fips[m.Name][e.Addr]
			case MapSNATMark:
				return snats
			}
			return false
		}
		for _, e := range m.Del {
			if !implied(e) {
				out = append(out, "delete element "+m.Name+" "+e.Text(m.Kind))
			}
		}
		for _, e := range m.Add {
			if !implied(e) {
				out = append(out, "add element "+m.Name+" "+e.Text(m.Kind))
			}
		}
	}
	for _, c := range b.Chains {
		out = append(out, "write chain "+c.Name+" ("+strconv.Itoa(len(c.Rules))+" rules)")
	}
	return out
}

// Mappings returns the floating IPs and port forwards of a table, as pkg/nat names them for the
// conntrack clean-up, sorted.
func (t *Table) Mappings() []nat.Mapping {
	var out []nat.Mapping
	if t == nil {
		return nil
	}
	if m := t.Map(MapFIPDNAT); m != nil {
		for _, e := range m.Elements {
			out = append(out, nat.Mapping{EIP: e.Addr.String(), InternalIP: e.To.String()})
		}
	}
	if m := t.Map(MapPortDNAT); m != nil {
		for _, e := range m.Elements {
			out = append(out, nat.Mapping{Protocol: protoText(e.Proto), EIP: e.Addr.String(), Port: int(e.Port),
				InternalIP: e.To.String(), InternalPort: int(e.ToPort)})
		}
	}
	slices.SortFunc(out, func(a, b nat.Mapping) int {
		return cmp.Or(cmp.Compare(a.EIP, b.EIP), cmp.Compare(a.Protocol, b.Protocol), cmp.Compare(a.Port, b.Port))
	})
	return out
}

// Stale returns the mappings the batch removes from have (the table it was computed from):
// from the deleted elements alone, so a one-element change costs one element.
func (b *Batch) Stale(have *Table) []nat.Mapping {
	if b.Replace {
		return StaleMappings(have, b.Want)
	}
	before, after := &Table{}, &Table{}
	for _, m := range b.Maps {
		if m.Name == MapFIPDNAT || m.Name == MapPortDNAT {
			before.Maps = append(before.Maps, Map{Name: m.Name, Kind: m.Kind, Elements: m.Del})
			after.Maps = append(after.Maps, Map{Name: m.Name, Kind: m.Kind, Elements: m.Add})
		}
	}
	return StaleMappings(before, after)
}

// StaleMappings returns the mappings of before that after does not hold identically: removed
// ones and the old side of changed ones, whose conntrack entries must go.
func StaleMappings(before, after *Table) []nat.Mapping {
	keep := map[nat.Mapping]bool{}
	for _, m := range after.Mappings() {
		keep[m] = true
	}
	var stale []nat.Mapping
	for _, m := range before.Mappings() {
		if !keep[m] {
			stale = append(stale, m)
		}
	}
	return stale
}
