package netconf

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
)

// The converge's own address dump reads what vishvananda/netlink's reads, address for address
// and link for link: 300 IPv4 addresses of all prefix lengths on one link (a dump of several
// messages' worth), a point-to-point address, a /32 and IPv6 addresses on another, none on a
// third, the loopback's.
func TestAddrDumpMatchesLibrary(t *testing.T) {
	tp := newTopo(t)
	for _, l := range []string{"d1", "d2", "d3"} {
		tp.ip(roleGW, "link", "add", l, "type", "veth", "peer", "name", l+"p")
		tp.ip(roleGW, "link", "set", l, "up")
		tp.ip(roleGW, "link", "set", l+"p", "up")
	}
	netNS, err := ns.GetNS(tp.path(roleGW))
	if err != nil {
		t.Fatal(err)
	}
	defer netNS.Close()
	socks, err := enterGateway(netNS)
	if err != nil {
		t.Fatal(err)
	}
	defer socks.close()
	d1, err := socks.gw.LinkByName("d1")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 20, byte(i >> 8), byte(i)}), 8+i%25)
		if err := socks.gw.AddrAdd(d1, &netlink.Addr{IPNet: ipNet(p)}); err != nil {
			t.Fatalf("adding %s: %v", p, err)
		}
	}
	tp.ip(roleGW, "addr", "add", "10.9.0.1", "peer", "10.9.0.2/32", "dev", "d2")
	tp.ip(roleGW, "addr", "add", "192.0.2.1/32", "dev", "d2")
	tp.ip(roleGW, "addr", "add", "2001:db8::1/64", "dev", "d2")

	got, err := addrsByLink(socks.addrFD)
	if err != nil {
		t.Fatal(err)
	}
	list, err := socks.gw.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int][]netip.Prefix{}
	for _, a := range list {
		if p, ok := prefixOf(a.IPNet); ok {
			want[a.LinkIndex] = append(want[a.LinkIndex], p)
		}
	}
	if !maps.EqualFunc(got, want, slices.Equal) {
		t.Errorf("addresses by ifindex:\n got %v\nwant %v", got, want)
	}
	v4 := 0
	for _, p := range got[d1.Attrs().Index] {
		if p.Addr().Is4() {
			v4++
		}
	}
	if v4 != 300 {
		t.Errorf("d1 holds %d IPv4 addresses in the dump, want 300", v4)
	}
	d2, err := socks.gw.LinkByName("d2")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"10.9.0.1/32", "192.0.2.1/32", "2001:db8::1/64"} {
		if !slices.Contains(got[d2.Attrs().Index], netip.MustParsePrefix(p)) {
			t.Errorf("d2's addresses %v lack %s", got[d2.Attrs().Index], p)
		}
	}
	if !slices.Contains(got[1], netip.MustParsePrefix("127.0.0.1/8")) {
		t.Errorf("lo's addresses %v lack 127.0.0.1/8", got[1])
	}
}
