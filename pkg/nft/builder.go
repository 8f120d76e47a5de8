package nft

import (
	"cmp"
	"slices"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// Builder builds the tables of one gateway's successive desired states, each from the previous
// one: a desired state that differs from the last in a few port forwards costs those port
// forwards, not the whole table (at 100 000 rules, Build parses and sorts every entry: ~14 ms).
// It compares the desired state with a copy of the last (unchanged entries compare equal
// without being parsed), so the result is exactly Build's whatever the caller changed, and its
// Diff of the last table against the one before it is the delta it recorded, without walking
// the maps.
//
// Tables it returns are never modified afterwards (by it or, as with any Table, by anyone). A
// Builder is not safe for concurrent use; the zero value is ready.
type Builder struct {
	// last is the table of the last Build and prev the one before it; delta is the port map's
	// change from prev to last when last was built incrementally from prev (nil: not known).
	last, prev *Table
	delta      *MapChange
	// markDelta is the port mark map's change with delta.
	markDelta *MapChange
	// snatDelta and snatMarkDelta are the SNAT map's and the SNAT mark map's changes from prev
	// to last when they were edited (nil: not known).
	snatDelta, snatMarkDelta *MapChange
	// snatIdx is the sorted prefixes of the SNAT rules of last (snatIndex).
	snatIdx []snatPrefix
	// marks counts the port forwards of last by mark (nil: not counted yet; see MarkHeld).
	marks map[uint32]int32
	// fipMarks are the marks of the floating IPs of otherMarksOf.
	fipMarks     map[uint32]bool
	otherMarksOf *Table
	// The inputs of last, copied: the caller may change its slices in place.
	dnats   []annotations.DNAT
	fips    []annotations.FloatingIP
	snats   []annotations.SNAT
	subnets []hairpinInput
	ext     string
	// sharedPorts: two port forwards of the last list share a key (the validator refuses
	// that; Build keeps one), so removing one may uncover the other: no edit until a whole
	// build finds the keys unique again.
	sharedPorts bool
}

// hairpinInput is what the hairpin rules read of a subnet NIC.
type hairpinInput struct{ cidr, ifName string }

// incrementalLimit is the number of changed port forwards (removed plus added) up to which a
// Build edits the last table instead of building it whole; past it, building is as cheap.
const incrementalLimit = 256

// Build returns the table of d, as Build does.
func (b *Builder) Build(d *annotations.Desired) *Table {
	ext := d.External.IfName
	if ext == "" {
		ext = annotations.ExternalIfName
	}
	subnets := make([]hairpinInput, len(d.Subnets))
	for i, s := range d.Subnets {
		subnets[i] = hairpinInput{s.CIDR, s.IfName}
	}
	var t *Table
	var delta *MapChange
	b.snatDelta, b.snatMarkDelta, b.markDelta = nil, nil, nil
	if b.last != nil && !b.sharedPorts && ext == b.ext && slices.Equal(subnets, b.subnets) {
		t, delta = b.next(d)
	}
	if t == nil {
		t, b.sharedPorts, b.snatIdx = build(d)
		b.marks = nil
		b.snatDelta, b.snatMarkDelta = nil, nil
	}
	if delta == nil { // built whole: copy the inputs (an edit copied what it changed)
		b.dnats = append(b.dnats[:0], d.DNATs...)
	}
	b.prev, b.last, b.delta = b.last, t, delta
	if t != b.prev { // the FIP and SNAT inputs are unchanged when the table is
		b.fips = append(b.fips[:0], d.FloatingIPs...)
		b.snats = append(b.snats[:0], d.SNATs...)
	}
	b.subnets, b.ext = subnets, ext
	return t
}

// next builds d's table from the last one, whose chains d keeps (same external NIC and
// subnets). It returns the last table itself when nothing changed, and nil when the port
// forwards cannot be edited (too many changes, or a key held by two port forwards, which Build
// resolves).
func (b *Builder) next(d *annotations.Desired) (*Table, *MapChange) {
	fipsSame := slices.Equal(d.FloatingIPs, b.fips)
	snatsSame := slices.Equal(d.SNATs, b.snats)
	// The changed port forwards: what lies between the common head and the common tail of the
	// last list and d's (one edit, insertion or removal leaves one short window).
	old, cur := b.dnats, d.DNATs
	head := 0
	for head < len(old) && head < len(cur) && old[head] == cur[head] {
		head++
	}
	tail := 0
	for tail < len(old)-head && tail < len(cur)-head && old[len(old)-1-tail] == cur[len(cur)-1-tail] {
		tail++
	}
	removed, added := old[head:len(old)-tail], cur[head:len(cur)-tail]
	b.markDelta = &MapChange{Name: MapPortMark, Kind: PortMarkMap}
	if len(removed) == 0 && len(added) == 0 && fipsSame && snatsSame {
		return b.last, &MapChange{Name: MapPortDNAT, Kind: PortMap}
	}
	if len(removed)+len(added) > incrementalLimit {
		return nil, nil
	}
	lastPorts := b.last.Map(MapPortDNAT)
	ports, change := lastPorts.Elements, &MapChange{Name: MapPortDNAT, Kind: PortMap}
	if len(removed) > 0 || len(added) > 0 { // else a FIP or SNAT change: the port maps are shared
		var ok bool
		if ports, change, ok = editPorts(lastPorts.Elements, removed, added); !ok {
			return nil, nil
		}
		b.markDelta.Del, b.markDelta.Add = elementDelta(PortMarkMap, change.Del, change.Add)
		b.heldMarks(change)
	}
	// The copy of the inputs takes the changed window alone (100 000 port forwards are 7 MB).
	b.dnats = slices.Replace(b.dnats, head, len(old)-tail, added...)
	t := &Table{Maps: slices.Clone(b.last.Maps), Chains: b.last.Chains}
	if fipsSame && b.otherMarksOf == b.last {
		b.otherMarksOf = t // the FIP marks are the last table's
	}
	var fips [4][]Element // fip_dnat, fip_snat and their mark maps
	if !fipsSame {
		fips[0], fips[1], fips[2], fips[3] = floatingIPs(d.FloatingIPs)
	}
	var snatEls, snatMarks []Element
	if !snatsSame {
		snatEls, snatMarks, b.snatDelta, b.snatMarkDelta = b.editSNATs(b.last.Map(MapSNAT).Elements, b.last.Map(MapSNATMark).Elements, d.SNATs)
	}
	for i := range t.Maps {
		switch t.Maps[i].Name {
		case MapPortDNAT, MapPortMark:
			t.Maps[i].Elements = ports
		case MapFIPDNAT, MapFIPSNAT, MapFIPDNATMark, MapFIPSNATMark:
			if !fipsSame {
				t.Maps[i].Elements = fips[slices.Index([]string{MapFIPDNAT, MapFIPSNAT, MapFIPDNATMark, MapFIPSNATMark}, t.Maps[i].Name)]
			}
		case MapSNAT:
			if !snatsSame {
				t.Maps[i].Elements = snatEls
			}
		case MapSNATMark:
			if !snatsSame {
				t.Maps[i].Elements = snatMarks
			}
		}
	}
	return t, change
}

// MarkHeld says whether flushing f would take entries of a port forward, floating IP or SNAT
// rule of the last table built that stays: one holds f's mark (two mappings with one mark). For
// a flush of an SNAT rule's old EIP (f.EIP valid), an SNAT rule holds it only when it has that
// mark and that EIP (the rule itself, its EIP changed, keeps its mark); a port forward or
// floating IP with the mark holds any flush. The port forwards' marks are counted at the first
// call after a whole build (~5 ms for 100 000 port forwards) and then kept by the edits; the
// floating IPs' are collected once per set of floating IPs, and the SNAT mark map is walked.
func (b *Builder) MarkHeld(f MarkFlush) bool {
	if b.last == nil {
		return false
	}
	if b.marks == nil {
		els := b.last.Map(MapPortDNAT).Elements
		b.marks = make(map[uint32]int32, len(els))
		for _, e := range els {
			b.marks[PortMark(e)]++
		}
	}
	if b.marks[f.Mark] > 0 {
		return true
	}
	if b.otherMarksOf != b.last {
		b.fipMarks, b.otherMarksOf = map[uint32]bool{}, b.last
		for _, name := range []string{MapFIPDNATMark, MapFIPSNATMark} {
			for _, e := range b.last.Map(name).Elements {
				b.fipMarks[e.MarkValue()] = true
			}
		}
	}
	if b.fipMarks[f.Mark] {
		return true
	}
	// The SNAT rules: one walk of the mark map (no index to keep: SNAT rules change more often
	// than they meet a flush).
	eips := b.last.Map(MapSNAT).Elements
	for _, e := range b.last.Map(MapSNATMark).Elements {
		if e.MarkValue() != f.Mark {
			continue
		}
		if !f.EIP.IsValid() {
			return true
		}
		if r, found := rangeAt(eips, e.Addr); found && r.To == f.EIP {
			return true
		}
	}
	return false
}

// heldMarks keeps the count of marks through a change of the port map.
func (b *Builder) heldMarks(c *MapChange) {
	if b.marks == nil {
		return
	}
	for _, e := range c.Del {
		if b.marks[PortMark(e)]--; b.marks[PortMark(e)] <= 0 {
			delete(b.marks, PortMark(e))
		}
	}
	for _, e := range c.Add {
		b.marks[PortMark(e)]++
	}
}

// editSNATs returns the elements of the interval map and of the mark map for snats, edited from
// els and marks (the last table's) when the rules changed are few, and the maps' changes when
// they were edited (nil: flattened whole). The changed rules are the window between the common
// head and tail of the last list and snats, as for the port forwards.
func (b *Builder) editSNATs(els, marks []Element, snats []annotations.SNAT) (out, outMarks []Element, change, markChange *MapChange) {
	old := b.snats
	head := 0
	for head < len(old) && head < len(snats) && old[head] == snats[head] {
		head++
	}
	tail := 0
	for tail < len(old)-head && tail < len(snats)-head && old[len(old)-1-tail] == snats[len(snats)-1-tail] {
		tail++
	}
	removed, added := old[head:len(old)-tail], snats[head:len(snats)-tail]
	if len(removed)+len(added) <= snatEditLimit {
		if out, outMarks, change, markChange, ok := editSNAT(&b.snatIdx, els, marks, removed, added); ok {
			return out, outMarks, change, markChange
		}
	}
	b.snatIdx = snatIndex(snats)
	return flattenSNAT(b.snatIdx, 0, maxAddr), flattenSNATMarks(b.snatIdx), nil, nil
}

// editPorts returns the port map's elements (sorted, one per key) after removing the elements
// of the removed port forwards and adding those of the added ones, and the change as Diff
// computes it. ok=false when a key is held by two port forwards before or after: Build picks
// one of them, which an edit does not reproduce.
func editPorts(els []Element, removed, added []annotations.DNAT) (out []Element, change *MapChange, ok bool) {
	change = &MapChange{Name: MapPortDNAT, Kind: PortMap}
	for _, r := range removed {
		e, valid := portElement(r)
		if !valid {
			continue // Build left it out
		}
		i, found := slices.BinarySearchFunc(els, listOrder(e), searchKey)
		if !found || els[i] != e {
			return nil, nil, false // another port forward held the key
		}
		change.Del = append(change.Del, e)
	}
	for _, r := range added {
		if e, valid := portElement(r); valid {
			change.Add = append(change.Add, e)
		}
	}
	byKey := func(a, b Element) int { return cmp.Compare(listOrder(a), listOrder(b)) }
	slices.SortFunc(change.Del, byKey)
	slices.SortFunc(change.Add, byKey)
	for i := 1; i < len(change.Add); i++ {
		if listOrder(change.Add[i]) == listOrder(change.Add[i-1]) {
			return nil, nil, false
		}
	}
	// A port forward moved within the list is removed and added alike: no change.
	del, add := elementDelta(PortMap, change.Del, change.Add)
	change.Del, change.Add = del, add
	// The new elements are runs of the old ones (copied whole) between the positions of the
	// deletions and additions, found by binary search: a few changes cost a few searches and
	// one copy of the slice, not a comparison per element.
	type event struct {
		at  int // index in els
		add bool
		e   Element
	}
	events := make([]event, 0, len(del)+len(add))
	for _, e := range del {
		i, _ := slices.BinarySearchFunc(els, listOrder(e), searchKey) // found: checked above
		events = append(events, event{at: i, e: e})
	}
	for _, e := range add {
		i, found := slices.BinarySearchFunc(els, listOrder(e), searchKey)
		if found && !slices.Contains(del, els[i]) {
			return nil, nil, false // an added key is held by a port forward that stays
		}
		events = append(events, event{at: i, add: true, e: e})
	}
	// At one index an addition goes before the element there, which a deletion of the same
	// index (the same key) removes.
	slices.SortFunc(events, func(x, y event) int {
		if c := cmp.Compare(x.at, y.at); c != 0 {
			return c
		}
		if x.add != y.add {
			if x.add {
				return -1
			}
			return 1
		}
		return cmp.Compare(listOrder(x.e), listOrder(y.e)) // additions into one gap
	})
	out = make([]Element, 0, len(els)-len(del)+len(add))
	from := 0
	for _, ev := range events {
		out = append(out, els[from:ev.at]...)
		from = ev.at
		if ev.add {
			out = append(out, ev.e)
		} else {
			from++ // skip the deleted element
		}
	}
	out = append(out, els[from:]...)
	return out, change, true
}

func searchKey(e Element, key uint64) int { return cmp.Compare(listOrder(e), key) }

// Diff is Diff(want, have), from the recorded change when want is the last table built and
// have the one before it: the maps are not walked.
func (b *Builder) Diff(want, have *Table) *Batch {
	if want == have && want != nil {
		return &Batch{Want: want, Existed: true}
	}
	if want != b.last || have != b.prev || have == nil || b.delta == nil {
		return Diff(want, have)
	}
	out := &Batch{Want: want, Existed: true}
	for _, wm := range want.Maps {
		hm := have.Map(wm.Name)
		switch d := b.delta; wm.Name {
		case MapPortMark:
			d = b.markDelta
			fallthrough
		case MapPortDNAT:
			if d != nil && (len(d.Del) > 0 || len(d.Add) > 0) {
				out.Maps = append(out.Maps, *d)
			}
			continue
		}
		if sameElements(hm.Elements, wm.Elements) {
			continue
		}
		var d *MapChange
		switch wm.Name {
		case MapSNAT:
			d = b.snatDelta
		case MapSNATMark:
			d = b.snatMarkDelta
		}
		if d != nil {
			if len(d.Del) > 0 || len(d.Add) > 0 {
				out.Maps = append(out.Maps, *d)
			}
			continue
		}
		if del, add := elementDelta(wm.Kind, hm.Elements, wm.Elements); len(del) > 0 || len(add) > 0 {
			out.Maps = append(out.Maps, MapChange{Name: wm.Name, Kind: wm.Kind, Del: del, Add: add})
		}
	}
	// The chains are shared with have (next keeps them).
	return out
}

// sameElements: the same slice (a map the edit did not touch).
func sameElements(a, b []Element) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
