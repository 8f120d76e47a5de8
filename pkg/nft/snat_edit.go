package nft

import (
	"slices"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// snatEditLimit is the number of changed SNAT rules (removed plus added) up to which a Build
// edits the interval map instead of flattening every rule again: each edit moves the sorted
// index of the rules (up to 5 000 per gateway) once.
const snatEditLimit = 16

// editSNAT returns the elements of the interval map (els) and of the mark map (marks) after the
// SNAT rules removed are taken out of idx (the sorted prefixes of the rules that built them, see
// snatIndex) and the ones added put in, and each map's change as Diff computes it. idx is
// updated in place. Only the addresses the changed prefixes cover are flattened again, from the
// rules that meet them; the elements elsewhere are copied, so a one-rule change costs that
// rule's prefix and one copy of each slice. ok=false: a removed rule is not in idx (idx is then
// to be rebuilt).
func editSNAT(idx *[]snatPrefix, els, marks []Element, removed, added []annotations.SNAT) (out, outMarks []Element, change, markChange *MapChange, ok bool) {
	var changed []snatPrefix
	for _, r := range removed {
		p, valid := parseSNAT(r)
		if !valid {
			continue // it rendered nothing
		}
		i, found := slices.BinarySearchFunc(*idx, p, compareSNAT)
		if !found {
			return nil, nil, nil, nil, false
		}
		*idx = slices.Delete(*idx, i, i+1)
		changed = append(changed, p)
	}
	for _, r := range added {
		p, valid := parseSNAT(r)
		if !valid {
			continue
		}
		i, _ := slices.BinarySearchFunc(*idx, p, compareSNAT)
		*idx = slices.Insert(*idx, i, p)
		changed = append(changed, p)
	}
	slices.SortFunc(changed, compareSNAT)
	out, change = editRanges(els, changed, *idx, IntervalMap, flattenSNAT)
	outMarks, markChange = editRanges(marks, changed, *idx, IntervalMarkMap, flattenSNATMarksIn)
	return out, outMarks, change, markChange, true
}

// editRanges returns the elements of an interval map of kind (els, flattened from the rules by
// flat) with the addresses of the changed prefixes (sorted by compareSNAT) flattened again from
// idx, the rules after the change, and the map's change.
func editRanges(els []Element, changed, idx []snatPrefix, kind MapKind, flat func(ps []snatPrefix, lo, hi uint64) []Element) (out []Element, change *MapChange) {
	change = &MapChange{Name: MapSNAT, Kind: kind}
	if kind == IntervalMarkMap {
		change.Name = MapSNATMark
	}
	if len(changed) == 0 {
		return els, change
	}
	// The old elements that meet first-1..last+1 of an address range: those the range's new
	// elements replace, or may be merged with.
	span := func(first, last uint64) (i0, i1 int) {
		i0, _ = slices.BinarySearchFunc(els, first, func(e Element, a uint64) int {
			if uint64(u32(e.End))+1 < a { // e ends before a-1
				return -1
			}
			return 1
		})
		i1, _ = slices.BinarySearchFunc(els, last, func(e Element, a uint64) int {
			if uint64(u32(e.Addr)) <= a+1 {
				return -1
			}
			return 1
		})
		return i0, max(i0, i1)
	}
	out = make([]Element, 0, len(els)+2*len(changed))
	copied := 0 // els[:copied] are in out or replaced
	for k := 0; k < len(changed); {
		// One region: a changed prefix, grown by every following one whose old elements it
		// shares or that lies next to it.
		first, last := changed[k].first, changed[k].last
		i0, i1 := span(first, last)
		for k++; k < len(changed); k++ {
			next := changed[k]
			if j0, _ := span(next.first, next.last); next.first > last+2 && j0 >= i1 {
				break
			}
			last = max(last, next.last)
			_, i1 = span(first, last)
		}
		// The region's new elements, from the old elements' bounds to keep the boundaries
		// they had (the addresses outside the changed prefixes keep their EIP).
		lo, hi := first, last
		if i0 < i1 {
			lo, hi = min(lo, uint64(u32(els[i0].Addr))), max(hi, uint64(u32(els[i1-1].End)))
		}
		mid := flat(snatMeeting(idx, lo, hi), lo, hi)
		del, add := elementDelta(kind, els[i0:i1], mid)
		change.Del, change.Add = append(change.Del, del...), append(change.Add, add...)
		out = append(append(out, els[copied:i0]...), mid...)
		copied = i1
	}
	out = append(out, els[copied:]...)
	return out, change
}

// snatMeeting returns the prefixes of idx that hold an address of lo..hi, sorted as idx: those
// that hold lo (at most one per prefix length, and its duplicates) and those that start within
// lo..hi (one run of idx). A prefix that meets the range and starts before it holds lo.
func snatMeeting(idx []snatPrefix, lo, hi uint64) []snatPrefix {
	var out []snatPrefix
	for bits := 0; bits <= 32; bits++ {
		first := lo &^ (1<<(32-bits) - 1)
		if first == lo {
			break // this prefix and longer ones start at lo: in the run below
		}
		i, _ := slices.BinarySearchFunc(idx, snatPrefix{first: first, bits: bits}, func(p, t snatPrefix) int {
			if p.first != t.first {
				return cmpU64(p.first, t.first)
			}
			return p.bits - t.bits
		})
		for ; i < len(idx) && idx[i].first == first && idx[i].bits == bits; i++ {
			out = append(out, idx[i])
		}
	}
	from, _ := slices.BinarySearchFunc(idx, lo, func(p snatPrefix, a uint64) int { return cmpU64(p.first, a) })
	to, _ := slices.BinarySearchFunc(idx, hi+1, func(p snatPrefix, a uint64) int { return cmpU64(p.first, a) })
	return append(out, idx[from:to]...)
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
