package netconf

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/nat"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestDiffAddrs(t *testing.T) {
	have := prefixes("192.168.0.111/24", "192.168.0.113/24", "192.168.0.112/25", "fe80::1/64", "2001:db8::1/64")
	want := prefixes("192.168.0.111/24", "192.168.0.112/24")
	add, del := diffAddrs(want, have)
	if !slices.Equal(add, prefixes("192.168.0.112/24")) {
		t.Errorf("add %v", add)
	}
	// Same address with another prefix length is another address; link-local IPv6 stays.
	if !slices.Equal(del, prefixes("192.168.0.113/24", "192.168.0.112/25", "2001:db8::1/64")) {
		t.Errorf("del %v", del)
	}
	if add, del := diffAddrs(want, want); add != nil || del != nil {
		t.Errorf("in sync but add %v del %v", add, del)
	}
}

func TestDiffKeyed(t *testing.T) {
	want := []route{
		{Table: 100, Dst: netip.MustParsePrefix("10.0.1.0/24"), Dev: "vpc-sn"},
		{Table: 100, Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: netip.MustParseAddr("192.168.0.254"), Dev: "net1"},
	}
	have := map[string]int{
		"table 100 10.0.1.0/24 dev vpc-sn":             1,
		"table 100 default via 192.168.0.253 dev net1": 2,
		"table 100 10.0.2.0/24 dev vpc-sn2":            3,
	}
	add, del := diffKeyed(want, have)
	if len(add) != 1 || add[0].String() != "table 100 default via 192.168.0.254 dev net1" {
		t.Errorf("add %v", add)
	}
	if !slices.Equal(del, []string{"table 100 10.0.2.0/24 dev vpc-sn2", "table 100 default via 192.168.0.253 dev net1"}) {
		t.Errorf("del %q", del)
	}
}

// A kernel route carrying anything we never set must not compare equal to ours.
func TestRouteKey(t *testing.T) {
	names := map[int]string{3: "net1"}
	_, dst, _ := net.ParseCIDR("0.0.0.0/0")
	r := netlink.Route{Table: 100, LinkIndex: 3, Dst: dst, Gw: net.ParseIP("192.168.0.254"), Type: unix.RTN_UNICAST}
	if got := routeKey(r, names); got != "table 100 default via 192.168.0.254 dev net1" {
		t.Errorf("key %q", got)
	}
	r.Dst = nil // older netlink versions report a default route without Dst
	if got := routeKey(r, names); got != "table 100 default via 192.168.0.254 dev net1" {
		t.Errorf("key %q", got)
	}
	r.Priority = 5
	if got := routeKey(r, names); got == "table 100 default via 192.168.0.254 dev net1" {
		t.Error("a metric went unnoticed")
	}
	r.Priority, r.Type = 0, unix.RTN_BLACKHOLE
	if got := routeKey(r, names); got == "table 100 default via 192.168.0.254 dev net1" {
		t.Error("a blackhole went unnoticed")
	}
}

func TestGARPPayload(t *testing.T) {
	mac, _ := net.ParseMAC(seedMAC)
	got := garpPayload(mac, netip.MustParseAddr("192.168.0.111"))
	want := []byte{
		0, 1, 8, 0, 6, 4, 0, 1, // Ethernet, IPv4, request
		0x02, 0x5e, 0xed, 0, 0, 1, 192, 168, 0, 111, // sender
		0, 0, 0, 0, 0, 0, 192, 168, 0, 111, // target: the same address
	}
	if !slices.Equal(got, want) {
		t.Errorf("payload\n got % x\nwant % x", got, want)
	}
}

func flow(proto uint8, src, dst string, sport, dport uint16, rsrc, rdst string, rsport, rdport uint16) *netlink.ConntrackFlow {
	return &netlink.ConntrackFlow{
		Forward: netlink.IPTuple{Protocol: proto, SrcIP: net.ParseIP(src), DstIP: net.ParseIP(dst), SrcPort: sport, DstPort: dport},
		Reverse: netlink.IPTuple{Protocol: proto, SrcIP: net.ParseIP(rsrc), DstIP: net.ParseIP(rdst), SrcPort: rsport, DstPort: rdport},
	}
}

func TestMappingFilter(t *testing.T) {
	dnat, err := newMappingFilter(nat.Mapping{Protocol: "tcp", EIP: "192.168.0.112", Port: 8888, InternalIP: "10.0.1.10", InternalPort: 80})
	if err != nil {
		t.Fatal(err)
	}
	fip, err := newMappingFilter(nat.Mapping{EIP: "192.168.0.111", InternalIP: "10.0.1.5"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name      string
		f         mappingFilter
		fl        *netlink.ConntrackFlow
		wantMatch bool
	}{
		{"dnat flow", dnat, flow(6, "192.168.0.254", "192.168.0.112", 40000, 8888, "10.0.1.10", "192.168.0.254", 80, 40000), true},
		{"dnat other port", dnat, flow(6, "192.168.0.254", "192.168.0.112", 40000, 8889, "10.0.1.10", "192.168.0.254", 80, 40000), false},
		{"dnat udp", dnat, flow(17, "192.168.0.254", "192.168.0.112", 40000, 8888, "10.0.1.10", "192.168.0.254", 80, 40000), false},
		{"dnat new target", dnat, flow(6, "192.168.0.254", "192.168.0.112", 40000, 8888, "10.0.1.11", "192.168.0.254", 80, 40000), false},
		{"fip inbound", fip, flow(1, "192.168.0.254", "192.168.0.111", 0, 0, "10.0.1.5", "192.168.0.254", 0, 0), true},
		{"fip outbound", fip, flow(17, "10.0.1.5", "198.51.100.10", 5000, 53, "198.51.100.10", "192.168.0.111", 53, 5000), true},
		{"snat of another pod", fip, flow(17, "10.0.1.6", "198.51.100.10", 5000, 53, "198.51.100.10", "192.168.0.111", 53, 5000), false},
		{"other eip", fip, flow(6, "192.168.0.254", "192.168.0.112", 1, 8888, "10.0.1.10", "192.168.0.254", 80, 1), false},
	} {
		if got := tc.f.MatchConntrackFlow(tc.fl); got != tc.wantMatch {
			t.Errorf("%s: match = %v", tc.name, got)
		}
	}
	if _, err := newMappingFilter(nat.Mapping{Protocol: "sctp", EIP: "192.168.0.1", Port: 1}); err == nil {
		t.Error("unknown protocol accepted")
	}
}
