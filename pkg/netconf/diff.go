package netconf

import (
	"fmt"
	"net/netip"
	"slices"
)

// diffKeyed compares wanted items with what the kernel holds, both identified by String():
// add are the wanted items missing from have, in want's order (install order matters for
// routes); del are the keys of have nobody wants, sorted so reports are deterministic.
func diffKeyed[W fmt.Stringer, H any](want []W, have map[string]H) (add []W, del []string) {
	wanted := make(map[string]bool, len(want))
	for _, w := range want {
		k := w.String()
		if wanted[k] {
			continue
		}
		wanted[k] = true
		if _, ok := have[k]; !ok {
			add = append(add, w)
		}
	}
	for k := range have {
		if !wanted[k] {
			del = append(del, k)
		}
	}
	slices.Sort(del)
	return add, del
}

// diffAddrs compares the exact address set of one NIC with what it holds. IPv6 link-local
// addresses are not ours (the kernel adds them to every link, and NDP needs them), so they are
// never removed; everything else not wanted is.
func diffAddrs(want, have []netip.Prefix) (add, del []netip.Prefix) {
	for _, w := range want {
		if !slices.Contains(have, w) && !slices.Contains(add, w) {
			add = append(add, w)
		}
	}
	for _, h := range have {
		if h.Addr().Is6() && h.Addr().IsLinkLocalUnicast() {
			continue
		}
		if !slices.Contains(want, h) {
			del = append(del, h)
		}
	}
	return add, del
}
