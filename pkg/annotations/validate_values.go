package annotations

import (
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Value checks. The document validators in this package use them, and so does plan.Build, which
// checks the objects a document is built from (Subnets, the ConfigMap) by the same rules but in
// those objects' own field names and values. Each returns nil or one error naming path and value.

// MaxIfNameLen is the kernel's limit on interface names (IFNAMSIZ 16, minus the NUL).
const MaxIfNameLen = 15

// ipv6Detail is what every IPv6 value gets: the data plane is iptables (IPv4) only for now.
const ipv6Detail = "IPv6 is not supported yet: vpcnat handles IPv4 only for now"

// CheckIfName checks a Linux interface name. The kernel only forbids '/', ':', whitespace, "."
// and ".."; we also refuse everything but letters, digits, '.', '_' and '-', because these names
// end up in iptables rules ("-o <ifname>"), where '+' is a wildcard and '!' a negation, and in
// logs people paste into shells.
func CheckIfName(s string, path *field.Path) *field.Error {
	switch {
	case s == "":
		return field.Required(path, "an interface name")
	case len(s) > MaxIfNameLen:
		return field.Invalid(path, s, fmt.Sprintf("an interface name has at most %d characters", MaxIfNameLen))
	case s == "." || s == "..":
		return field.Invalid(path, s, "is not an interface name")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !ifNameChar(c) {
			return field.Invalid(path, s, fmt.Sprintf("character %q is not allowed in an interface name: use letters, digits, '.', '_' and '-'", c))
		}
	}
	return nil
}

func ifNameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// CheckMTU checks an MTU: 0 (the kernel's default) or 68 (the IPv4 minimum, RFC 791) to 65535.
func CheckMTU(mtu int, path *field.Path) *field.Error {
	if mtu != 0 && (mtu < 68 || mtu > 65535) {
		return field.Invalid(path, mtu, "must be 0 (the default) or 68-65535")
	}
	return nil
}

// CheckMAC checks a unicast, locally administered MAC in canonical form (02:00:5e:10:00:01): a
// globally administered or multicast address on net1 would collide with real hardware or be
// dropped by the switch.
func CheckMAC(s string, path *field.Path) *field.Error {
	if s == "" {
		return field.Required(path, "a MAC address")
	}
	hw, err := net.ParseMAC(s)
	switch {
	case err != nil || len(hw) != 6:
		return field.Invalid(path, s, "must be a MAC address like 02:00:5e:10:00:01")
	case hw.String() != s:
		return field.Invalid(path, s, fmt.Sprintf("must be written in canonical form %s", hw))
	case hw[0]&1 != 0:
		return field.Invalid(path, s, "must be a unicast MAC (the lowest bit of the first octet clear)")
	case hw[0]&2 == 0:
		return field.Invalid(path, s, "must be a locally administered MAC (the second-lowest bit of the first octet set, e.g. 02:...)")
	}
	return nil
}

// ParseIPv4 parses a bare IPv4 address in canonical form ("10.0.1.5").
func ParseIPv4(s string, path *field.Path) (netip.Addr, *field.Error) {
	if s == "" {
		return netip.Addr{}, field.Required(path, "an IPv4 address")
	}
	if strings.Contains(s, "/") {
		return netip.Addr{}, field.Invalid(path, s, "must be an IPv4 address without a prefix length")
	}
	a, err := netip.ParseAddr(s)
	switch {
	case err != nil:
		return netip.Addr{}, field.Invalid(path, s, "must be an IPv4 address like 10.0.1.5")
	case !a.Is4():
		return netip.Addr{}, field.Invalid(path, s, ipv6Detail)
	}
	return a, nil
}

// ParseIPv4Prefix parses a canonical IPv4 network prefix ("10.0.1.0/24"). Host bits set
// ("10.0.1.5/24") are an error that suggests the network meant, rather than a silent masking
// that could hide a typo in the prefix length.
func ParseIPv4Prefix(s string, path *field.Path) (netip.Prefix, *field.Error) {
	p, fe := parsePrefix(s, path, "an IPv4 prefix like 10.0.1.0/24")
	if fe != nil {
		return netip.Prefix{}, fe
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, field.Invalid(path, s, fmt.Sprintf("host bits are set: did you mean %s?", m))
	}
	return p, nil
}

// ParseIPv4HostPrefix parses a host address with its network's prefix length
// ("192.168.0.111/24"), as an EIP is written. The result keeps the host address.
func ParseIPv4HostPrefix(s string, path *field.Path) (netip.Prefix, *field.Error) {
	if s != "" && !strings.Contains(s, "/") {
		return netip.Prefix{}, field.Invalid(path, s, "must include the network's prefix length, like 192.168.0.111/24")
	}
	p, fe := parsePrefix(s, path, "an IPv4 address with prefix length like 192.168.0.111/24")
	if fe != nil {
		return netip.Prefix{}, fe
	}
	if fe := CheckHost(p.Addr(), p, s, path); fe != nil {
		return netip.Prefix{}, fe
	}
	return p, nil
}

func parsePrefix(s string, path *field.Path, want string) (netip.Prefix, *field.Error) {
	if s == "" {
		return netip.Prefix{}, field.Required(path, want)
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		return netip.Prefix{}, field.Invalid(path, s, "must be "+want)
	case !p.Addr().Is4():
		return netip.Prefix{}, field.Invalid(path, s, ipv6Detail)
	case p.String() != s:
		return netip.Prefix{}, field.Invalid(path, s, fmt.Sprintf("must be written in canonical form %s", p))
	}
	return p, nil
}

// CheckHost checks that a is a host address of the network p: inside it, and neither its network
// nor its broadcast address (which /31 and /32 do not have). value is what the user wrote.
func CheckHost(a netip.Addr, p netip.Prefix, value string, path *field.Path) *field.Error {
	n := p.Masked()
	switch {
	case !n.Contains(a):
		return field.Invalid(path, value, fmt.Sprintf("must be inside %s", n))
	case n.Bits() < 31 && a == n.Addr():
		return field.Invalid(path, value, fmt.Sprintf("is the network address of %s", n))
	case n.Bits() < 31 && a == broadcast(n):
		return field.Invalid(path, value, fmt.Sprintf("is the broadcast address of %s", n))
	}
	return nil
}

// broadcast is the last address of an IPv4 network.
func broadcast(n netip.Prefix) netip.Addr {
	b := n.Masked().Addr().As4()
	host := uint32(1)<<(32-n.Bits()) - 1
	if n.Bits() == 0 {
		host = ^uint32(0)
	}
	for i := range 4 {
		b[i] |= byte(host >> (8 * (3 - i)))
	}
	return netip.AddrFrom4(b)
}

// OverlappingPairs returns, for every prefix that overlaps an earlier one in ps, the pair
// {earlier, later} of indexes; invalid (zero) prefixes are skipped. IPv4 prefixes either nest or
// are disjoint, so after sorting by first address each prefix can only overlap the widest one
// still open: O(n log n).
func OverlappingPairs(ps []netip.Prefix) [][2]int {
	idx := make([]int, 0, len(ps))
	for i, p := range ps {
		if p.IsValid() {
			idx = append(idx, i)
		}
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		pa, pb := ps[a].Masked(), ps[b].Masked()
		return cmp.Or(pa.Addr().Compare(pb.Addr()), cmp.Compare(pa.Bits(), pb.Bits()))
	})
	var pairs [][2]int
	open := -1
	for _, i := range idx {
		if open >= 0 && ps[open].Masked().Contains(ps[i].Addr()) {
			pairs = append(pairs, [2]int{min(open, i), max(open, i)})
			continue // nested in open: open still reaches further
		}
		open = i
	}
	return pairs
}
