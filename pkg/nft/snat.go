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
	type pfx struct {
		first, last uint64
		bits        int
		eip         netip.Addr
	}
	var ps []pfx
	for _, r := range in {
		p, err1 := nat.ParseCIDR(r.InternalCIDR)
		eip, err2 := netip.ParseAddr(r.EIP)
		if err1 != nil || err2 != nil || !p.Addr().Is4() || !eip.Is4() {
			continue
		}
		first := uint64(u32(p.Addr()))
		ps = append(ps, pfx{first: first, last: first + 1<<(32-p.Bits()) - 1, bits: p.Bits(), eip: eip})
	}
	// Outer prefixes before the ones they hold; of two identical prefixes the lower EIP, which
	// iptables meets first, and the other is dropped.
	slices.SortFunc(ps, func(a, b pfx) int {
		return cmp.Or(cmp.Compare(a.first, b.first), cmp.Compare(a.bits, b.bits), a.eip.Compare(b.eip))
	})
	ps = slices.CompactFunc(ps, func(a, b pfx) bool { return a.first == b.first && a.bits == b.bits })

	var out []Element
	emit := func(first, last uint64, eip netip.Addr) {
		if first > last {
			return
		}
		if n := len(out); n > 0 && out[n-1].To == eip && uint64(u32(out[n-1].End))+1 == first {
			out[n-1].End = addr(uint32(last))
			return
		}
		out = append(out, Element{Addr: addr(uint32(first)), End: addr(uint32(last)), To: eip})
	}
	var stack []pfx
	var cursor uint64 // the first address not yet emitted
	pop := func() {
		top := stack[len(stack)-1]
		emit(cursor, top.last, top.eip)
		cursor = max(cursor, top.last+1)
		stack = stack[:len(stack)-1]
	}
	for _, p := range ps {
		for len(stack) > 0 && stack[len(stack)-1].last < p.first {
			pop()
		}
		if len(stack) > 0 {
			emit(cursor, p.first-1, stack[len(stack)-1].eip)
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
