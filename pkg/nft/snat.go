package nft

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
)

// snatElements flattens the SNAT rules into disjoint address ranges, each mapped to the EIP of
// the longest prefix that holds it: what the iptables backend's longest-prefix-first rule order
// does, as one interval map lookup. Prefixes either nest or are disjoint, so one sweep with a
// stack of the prefixes that hold the cursor produces the ranges in address order; adjacent
// ranges with the same EIP are merged, so the result is canonical (the same SNATs always give
// the same elements).
func snatElements(in []annotations.SNAT) []Element {
	return flattenSNAT(snatIndex(in), 0, maxAddr)
}

// maxAddr is 255.255.255.255 as a number.
const maxAddr = 1<<32 - 1

// snatPrefix is one SNAT rule as the flattening reads it: the addresses of its prefix and its
// EIP.
type snatPrefix struct {
	first, last uint64
	bits        int
	eip         netip.Addr
}

// parseSNAT is the prefix of one SNAT rule; false when it renders nothing.
func parseSNAT(r annotations.SNAT) (snatPrefix, bool) {
	p, err1 := nat.ParseCIDR(r.InternalCIDR)
	eip, err2 := netip.ParseAddr(r.EIP)
	if err1 != nil || err2 != nil || !p.Addr().Is4() || !eip.Is4() {
		return snatPrefix{}, false
	}
	first := uint64(u32(p.Addr()))
	return snatPrefix{first: first, last: first + 1<<(32-p.Bits()) - 1, bits: p.Bits(), eip: eip}, true
}

// compareSNAT orders prefixes as the flattening reads them: by first address, outer prefixes
// before the ones they hold, and of two identical prefixes the lower EIP first (the one
// iptables meets first, which wins).
func compareSNAT(a, b snatPrefix) int {
	return cmp.Or(cmp.Compare(a.first, b.first), cmp.Compare(a.bits, b.bits), a.eip.Compare(b.eip))
}

// snatIndex is the prefixes of the SNAT rules that render one, sorted by compareSNAT,
// duplicates kept.
func snatIndex(in []annotations.SNAT) []snatPrefix {
	ps := make([]snatPrefix, 0, len(in))
	for _, r := range in {
		if p, ok := parseSNAT(r); ok {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, compareSNAT)
	return ps
}

// flattenSNAT returns the ranges of ps (sorted by compareSNAT) that lie within lo..hi, cut at
// lo and hi, each mapped to its EIP; adjacent ranges with one EIP are merged. The ranges of an
// address depend only on the prefixes that hold it, so ps may be any subset of the rules that
// holds every prefix meeting lo..hi.
func flattenSNAT(ps []snatPrefix, lo, hi uint64) []Element {
	return flatten(ps, lo, hi, func(p snatPrefix) Element { return Element{To: p.eip} })
}

// flattenSNATMarks returns the elements of the SNAT mark map of ps (sorted by compareSNAT): the
// ranges of flattenSNAT, each mapped to the mark of the rule that wins for it (SNATMark), so a
// range ends at every boundary of a rule, not only where the EIP changes.
func flattenSNATMarks(ps []snatPrefix) []Element {
	return flattenSNATMarksIn(ps, 0, maxAddr)
}

// flattenSNATMarksIn is flattenSNATMarks within lo..hi, as flattenSNAT.
func flattenSNATMarksIn(ps []snatPrefix, lo, hi uint64) []Element {
	return flatten(ps, lo, hi, func(p snatPrefix) Element { return Element{Mark: p.mark()} })
}

// mark is SNATMark of the rule.
func (p snatPrefix) mark() uint32 {
	return SNATMark(netip.PrefixFrom(addr(uint32(p.first)), p.bits))
}

// flatten is the sweep of flattenSNAT: data gives a range of prefix p its data (To or Mark), and
// adjacent ranges with equal data are merged.
func flatten(ps []snatPrefix, lo, hi uint64, data func(p snatPrefix) Element) []Element {
	var out []Element
	emit := func(first, last uint64, p snatPrefix) {
		first, last = max(first, lo), min(last, hi)
		if first > last {
			return
		}
		e := data(p)
		if n := len(out); n > 0 && out[n-1].To == e.To && out[n-1].Mark == e.Mark && uint64(u32(out[n-1].End))+1 == first {
			out[n-1].End = addr(uint32(last))
			return
		}
		e.Addr, e.End = addr(uint32(first)), addr(uint32(last))
		out = append(out, e)
	}
	var stack []snatPrefix
	var cursor uint64 // the first address not yet emitted
	pop := func() {
		top := stack[len(stack)-1]
		emit(cursor, top.last, top)
		cursor = max(cursor, top.last+1)
		stack = stack[:len(stack)-1]
	}
	for i, p := range ps {
		if i > 0 && p.first == ps[i-1].first && p.bits == ps[i-1].bits {
			continue // an identical prefix with a higher EIP: never matched
		}
		for len(stack) > 0 && stack[len(stack)-1].last < p.first {
			pop()
		}
		if len(stack) > 0 && p.first > cursor { // (p.first-1 would wrap at 0.0.0.0)
			emit(cursor, p.first-1, stack[len(stack)-1])
		}
		stack = append(stack, p)
		cursor = p.first
	}
	for len(stack) > 0 {
		pop()
	}
	return out
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// rangeText prints a range as nft does: one address bare, a range that is exactly a prefix as
// a CIDR, anything else as first-last.
func rangeText(first, last netip.Addr) string {
	if first == last {
		return first.String()
	}
	f, l := u32(first), u32(last)
	size := uint64(l) - uint64(f) + 1
	if size&(size-1) == 0 && uint64(f)%size == 0 {
		bits := 32
		for s := size; s > 1; s >>= 1 {
			bits--
		}
		return netip.PrefixFrom(first, bits).String()
	}
	return first.String() + "-" + last.String()
}
