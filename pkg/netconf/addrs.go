package netconf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
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

// addrsByLink returns the addresses of every link of the netns of the route netlink socket fd,
// both families, by ifindex, from one RTM_GETADDR dump (the kernel dumps every address of the
// netns even for one link's list, so reading the NICs one by one would dump them all once per
// NIC). Of each message it reads only the link index, the prefix length and the address:
// IFA_LOCAL, else IFA_ADDRESS (a point-to-point address's local end, as ip and
// vishvananda/netlink report it), which costs a fraction of the library's parse of every
// attribute of 200 EIPs. A dump a concurrent change interrupted is read again.
func addrsByLink(fd int) (map[int][]netip.Prefix, error) {
	for try := 1; ; try++ {
		out, err := dumpAddrs(fd)
		if err == nil {
			return out, nil
		}
		if !errors.Is(err, errAddrDumpInterrupted) || try == 3 {
			return nil, fmt.Errorf("listing the addresses of the gateway netns: %w", err)
		}
	}
}

// errAddrDumpInterrupted: the netns's addresses changed while they were dumped
// (NLM_F_DUMP_INTR), so some may have been missed.
var errAddrDumpInterrupted = errors.New("the addresses changed during the dump (NLM_F_DUMP_INTR)")

func dumpAddrs(fd int) (map[int][]netip.Prefix, error) {
	ne := binary.NativeEndian
	const seq = 1
	req := make([]byte, unix.NLMSG_HDRLEN+unix.SizeofIfAddrmsg) // family AF_UNSPEC: both
	ne.PutUint32(req[0:], uint32(len(req)))
	ne.PutUint16(req[4:], unix.RTM_GETADDR)
	ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	ne.PutUint32(req[8:], seq)
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sending the request: %w", err)
	}
	out := map[int][]netip.Prefix{}
	interrupted := false
	buf := make([]byte, 64<<10)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("receiving the dump: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(ne.Uint32(b[0:]))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return nil, fmt.Errorf("malformed netlink message (length %d of %d bytes)", l, len(b))
			}
			typ, flags, mseq := ne.Uint16(b[4:]), ne.Uint16(b[6:]), ne.Uint32(b[8:])
			msg := b[unix.NLMSG_HDRLEN:l]
			b = b[min(nlmAlign(l), len(b)):]
			if mseq != seq {
				continue // not an answer to this request
			}
			if flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch typ {
			case unix.NLMSG_DONE:
				if len(msg) >= 4 {
					if errno := int32(ne.Uint32(msg)); errno < 0 {
						return nil, fmt.Errorf("dump: %w", unix.Errno(-errno))
					}
				}
				if interrupted {
					return nil, errAddrDumpInterrupted
				}
				return out, nil
			case unix.NLMSG_ERROR:
				if len(msg) >= 4 {
					if errno := int32(ne.Uint32(msg)); errno < 0 {
						return nil, fmt.Errorf("dump: %w", unix.Errno(-errno))
					}
				}
			case unix.RTM_NEWADDR:
				if idx, p, ok := parseIfAddr(msg); ok {
					out[idx] = append(out[idx], p)
				}
			}
		}
	}
}

func nlmAlign(l int) int { return (l + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// parseIfAddr reads an RTM_NEWADDR payload: ifaddrmsg, then attributes.
func parseIfAddr(msg []byte) (int, netip.Prefix, bool) {
	if len(msg) < unix.SizeofIfAddrmsg {
		return 0, netip.Prefix{}, false
	}
	ne := binary.NativeEndian
	bits, idx := int(msg[1]), int(ne.Uint32(msg[4:]))
	var local, address []byte
	for a := msg[unix.SizeofIfAddrmsg:]; len(a) >= unix.SizeofRtAttr; {
		l, typ := int(ne.Uint16(a[0:])), ne.Uint16(a[2:])
		if l < unix.SizeofRtAttr || l > len(a) {
			break
		}
		switch typ {
		case unix.IFA_LOCAL:
			local = a[unix.SizeofRtAttr:l]
		case unix.IFA_ADDRESS:
			address = a[unix.SizeofRtAttr:l]
		}
		a = a[min(rtaAlign(l), len(a)):]
	}
	if local == nil {
		local = address
	}
	ip, ok := netip.AddrFromSlice(local)
	if !ok {
		return 0, netip.Prefix{}, false
	}
	ip = ip.Unmap()
	if bits > ip.BitLen() {
		return 0, netip.Prefix{}, false
	}
	return idx, netip.PrefixFrom(ip, bits), true
}

func rtaAlign(l int) int { return (l + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }

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
