package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
)

// SyncAddresses makes the gateway link ifName hold exactly want (IPv6 link-local addresses
// aside); see syncLinkAddrs. It reads the link and its addresses itself.
func SyncAddresses(gw *netlink.Handle, ifName string, want []netip.Prefix) (changes []string, added []netip.Prefix, err error) {
	l, err := gw.LinkByName(ifName)
	if err != nil {
		return nil, nil, fmt.Errorf("addresses of %s: looking up the link: %w", ifName, err)
	}
	have, err := linkAddrs(gw, l)
	if err != nil {
		return nil, nil, err
	}
	return syncLinkAddrs(gw, l, have, want)
}

// syncLinkAddrs makes link l, which holds have now, hold exactly want. New addresses are added
// before stale ones are removed, so with promote_secondaries a NIC is never without an address
// of a network it keeps. It returns one line per change and the addresses it added.
func syncLinkAddrs(gw *netlink.Handle, l netlink.Link, have, want []netip.Prefix) (changes []string, added []netip.Prefix, err error) {
	ifName := l.Attrs().Name
	add, del := diffAddrs(want, have)
	for _, p := range add {
		if err := gw.AddrAdd(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
			return changes, added, fmt.Errorf("adding %s to %s: %w", p, ifName, err)
		}
		changes = append(changes, fmt.Sprintf("addr %s: added %s", ifName, p))
		added = append(added, p)
	}
	for _, p := range del {
		if err := gw.AddrDel(l, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
			return changes, added, fmt.Errorf("removing %s from %s: %w", p, ifName, err)
		}
		changes = append(changes, fmt.Sprintf("addr %s: removed %s", ifName, p))
	}
	return changes, added, nil
}

// addrsByLink returns the addresses of every link of the netns, both families, by ifindex, from
// one dump: the kernel dumps every address of the netns even for one link's list, so reading
// the NICs one by one would dump them all once per NIC.
func addrsByLink(nh *netlink.Handle) (map[int][]netip.Prefix, error) {
	list, err := nh.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing the addresses of the gateway netns: %w", err)
	}
	out := map[int][]netip.Prefix{}
	for _, a := range list {
		if p, ok := prefixOf(a.IPNet); ok {
			out[a.LinkIndex] = append(out[a.LinkIndex], p)
		}
	}
	return out, nil
}

// linkAddrs returns the addresses of a link, both families.
func linkAddrs(nh *netlink.Handle, l netlink.Link) ([]netip.Prefix, error) {
	list, err := nh.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", l.Attrs().Name, err)
	}
	out := make([]netip.Prefix, 0, len(list))
	for _, a := range list {
		if p, ok := prefixOf(a.IPNet); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// primaryAddrs returns the addresses the primary CNI put on the gateway's primary NICs; a NIC
// that does not exist (yet) contributes nothing.
func primaryAddrs(nh *netlink.Handle, names []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, name := range names {
		l, err := nh.LinkByName(name)
		if isNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("looking up primary NIC %s: %w", name, err)
		}
		ps, err := linkAddrs(nh, l)
		if err != nil {
			return nil, err
		}
		for _, p := range ps {
			out = append(out, p.Addr())
		}
	}
	return out, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// prefixOf converts a netlink address (not masked: the interface address) to a Prefix.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits != a.BitLen() {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}

// addrsOf returns the addresses of a list of prefixes.
func addrsOf(ps []netip.Prefix) []netip.Addr {
	out := make([]netip.Addr, 0, len(ps))
	for _, p := range ps {
		if !slices.Contains(out, p.Addr()) {
			out = append(out, p.Addr())
		}
	}
	return out
}
