package kstate_test

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/nft"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

// nftProblems are the differences Compare finds in the NAT of either backend.
func nftProblems(st *kstate.State, d *annotations.Desired) kstate.Diff {
	var out kstate.Diff
	for _, p := range kstate.Compare(st, d) {
		if p.NAT() {
			out = append(out, p)
		}
	}
	return out
}

// loadNFT loads text into the netns with nft itself (nft's parser, not vpcnat's netlink code)
// after flushing its ruleset, and dumps the netns.
func loadNFT(t *testing.T, tp *topo.Topology, text string) *kstate.State {
	t.Helper()
	if _, err := tp.Exec(topo.Gateway, "nft", "flush", "ruleset"); err != nil {
		t.Fatal(err)
	}
	f, err := os.CreateTemp(t.TempDir(), "table-*.nft")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := tp.Exec(topo.Gateway, "nft", "-f", f.Name()); err != nil {
		t.Fatalf("nft -f of:\n%s\n%v", text, err)
	}
	st, err := kstate.Dump(tp.Path(topo.Gateway))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// nftOnly is a bare netns for loading tables into.
func nftOnly(t *testing.T) *topo.Topology {
	t.Helper()
	topo.NeedRoot(t)
	tp := &topo.Topology{Prefix: topo.NewPrefix()}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := tp.AddNS(topo.Gateway); err != nil {
		t.Fatal(err)
	}
	return tp
}

// TestNFTModelAgreesWithBuilder: for the seed and many random gateways, the table pkg/nft
// builds, loaded into a kernel by nft and read back with nft's JSON listing, is exactly what
// kstate's own model of the nftables layout expects (the model shares no code with pkg/nft; the
// SNAT ranges are compared by the addresses they cover, found by brute force on kstate's side).
func TestNFTModelAgreesWithBuilder(t *testing.T) {
	tp := nftOnly(t)
	ds := []*annotations.Desired{seedDesired(t), {}}
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 80 {
		ds = append(ds, randomDesired(r, 1+i%30))
	}
	for i, d := range ds {
		d.Dataplane = annotations.DataplaneNFTables
		st := loadNFT(t, tp, nft.Build(d).Text())
		if diff := nftProblems(st, d); !diff.Empty() {
			t.Fatalf("gateway %d: pkg/nft and kstate's model disagree: %s\nloaded:\n%s", i, diff, nft.Build(d).Text())
		}
	}
}

// TestNFTModelCatchesPlantedBugs plants one table bug after another into the seed's table (as a
// buggy pkg/nft or commit would leave it in the kernel) and requires kstate to report each,
// naming the chain or map.
func TestNFTModelCatchesPlantedBugs(t *testing.T) {
	tp := nftOnly(t)
	d := seedDesired(t)
	d.Dataplane = annotations.DataplaneNFTables
	// A second SNAT of a longer prefix, so the interval map has more than one range.
	d.SNATs = append(d.SNATs, annotations.SNAT{EIP: d.FloatingIPs[0].EIP, InternalCIDR: "10.0.1.128/25"})
	good := nft.Build(d).Text()
	if diff := nftProblems(loadNFT(t, tp, good), d); !diff.Empty() {
		t.Fatalf("the correct table already differs: %s\n%s", diff, good)
	}
	// The port forward's mark element, and the same forward's with a mark of another target.
	markAt := strings.Index(good, "192.168.0.112 . tcp . 8888 : 0x")
	if markAt < 0 {
		t.Fatalf("the seed's table has no mark of its port forward:\n%s", good)
	}
	markElem := good[markAt : markAt+len("192.168.0.112 . tcp . 8888 : 0x")+8]
	// The mark element of an address key (in fip_dnat_mark, fip_snat_mark or snat_mark).
	addrMark := func(key string) string {
		at := strings.Index(good, key+" : 0x")
		if at < 0 {
			t.Fatalf("the seed's table has no mark element of %s:\n%s", key, good)
		}
		return good[at : at+len(key+" : 0x")+8]
	}
	for _, c := range []struct {
		name, old, new string
		want           string // named in the report
	}{
		{"a port forward's mark of another target", markElem, "192.168.0.112 . tcp . 8888 : 0x00000001", "port_mark"},
		{"port forwards not marked", "ct mark set ip daddr . meta l4proto . th dport map @port_mark\n\t\t", "", "SHARED_DNAT"},
		{"a FIP's inbound mark of another pair", addrMark("192.168.0.111"), "192.168.0.111 : 0x00000001", "fip_dnat_mark"},
		{"a FIP's outbound mark of another pair", addrMark("10.0.1.5"), "10.0.1.5 : 0x00000001", "fip_snat_mark"},
		{"the /25's connections with another mark", addrMark("10.0.1.128/25"), "10.0.1.128/25 : 0x00000001", "snat_mark"},
		{"FIPs not marked inbound", "ct mark set ip daddr map @fip_dnat_mark\n\t\t", "", "EXCLUSIVE_DNAT"},
		{"FIPs not marked outbound", "ct mark set ip saddr map @fip_snat_mark\n\t\t", "", "EXCLUSIVE_SNAT"},
		{"SNAT not marked", "ct mark set ip saddr map @snat_mark\n\t\t", "", "SHARED_SNAT"},
		{"a port forward to the wrong internal port", "10.0.1.10 . 80", "10.0.1.10 . 8080", "port_dnat"},
		{"a FIP's outbound SNAT to another EIP", "10.0.1.5 : 192.168.0.111", "10.0.1.5 : 192.168.0.112", "fip_snat"},
		{"SNAT of the /25 to the /24's EIP", "10.0.1.128/25 : 192.168.0.111", "10.0.1.128/25 : 192.168.0.112", "snat_prefixes"},
		{"hairpin on the external NIC", `oifname "` + d.Subnets[0].IfName + `" ct status dnat`, `oifname "net1" ct status dnat`, "HAIRPIN_SNAT"},
		{"SNAT for every interface", `oifname "net1" jump SHARED_SNAT`, `jump SHARED_SNAT`, "SNAT_FILTER"},
		{"DNAT hooked at the wrong priority", "priority dstnat", "priority 0", "PREROUTING"},
		{"a port forward of the wrong protocol", "192.168.0.112 . tcp . 8888", "192.168.0.112 . udp . 8888", "port_dnat"},
		{"a foreign map", "map fip_snat {", "map mine {\n\t\ttype ipv4_addr : ipv4_addr\n\t}\n\n\tmap fip_snat {", "mine"},
		{"a FIP left over", "192.168.0.111 : 10.0.1.5 }", "192.168.0.111 : 10.0.1.5, 192.168.0.120 : 10.0.1.6 }", "fip_dnat"},
		{"a foreign chain", "chain SHARED_SNAT {", "chain MINE {\n\t}\n\n\tchain SHARED_SNAT {", "MINE"},
		{"a counter on the FIP lookup", "dnat to ip daddr map @fip_dnat", "counter dnat to ip daddr map @fip_dnat", "EXCLUSIVE_DNAT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(good, c.old) {
				t.Fatalf("the seed's table has no %q:\n%s", c.old, good)
			}
			st := loadNFT(t, tp, strings.Replace(good, c.old, c.new, 1))
			diff := nftProblems(st, d)
			if diff.Empty() {
				t.Fatalf("kstate found nothing wrong")
			}
			if !strings.Contains(diff.String(), c.want) {
				t.Errorf("kstate's report does not name %s:\n%s", c.want, diff)
			}
		})
	}
	// Each backend's state is foreign to the other.
	st := loadNFT(t, tp, good)
	d.Dataplane = ""
	if diff := kstate.Compare(st, d); diff.Count(kstate.Foreign, "nft table") != 1 {
		t.Errorf("an iptables gateway holding table ip vpcnat: %s", diff)
	}
}

// TestCheckCatchesEachFaultNFT converges the seed with the nftables backend, sees no difference,
// then breaks its table with nft in one way after another (each repaired by a full converge) and
// checks that Check names the fault; the iptables nat table is then expected empty.
func TestCheckCatchesEachFaultNFT(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	tp, converge, check := convergedSeed(t, annotations.DataplaneNFTables)
	faults := []struct {
		name       string
		argv       [][]string
		kind, what string
		item       string
	}{
		{"missing FIP", [][]string{{"nft", "delete", "element", "ip", "vpcnat", "fip_dnat", "{", "192.168.0.111", "}"}}, kstate.Missing, "nft element", "192.168.0.111 : 10.0.1.5"},
		{"foreign port forward", [][]string{{"nft", "add", "element", "ip", "vpcnat", "port_dnat", "{", "192.168.0.112", ".", "udp", ".", "7", ":", "10.0.1.9", ".", "7", "}"}},
			kstate.Foreign, "nft element", "192.168.0.112 . udp . 7"},
		{"flushed SNAT chain", [][]string{{"nft", "flush", "chain", "ip", "vpcnat", "SHARED_SNAT"}}, kstate.Missing, "nft rule", "snat_prefixes"},
		{"foreign rule", [][]string{{"nft", "add", "rule", "ip", "vpcnat", "DNAT_FILTER", "counter"}}, kstate.Foreign, "nft rule", "DNAT_FILTER"},
		{"table deleted", [][]string{{"nft", "delete", "table", "ip", "vpcnat"}}, kstate.Missing, "nft table", "vpcnat"},
		{"an iptables rule left", [][]string{{"iptables", "-t", "nat", "-A", "PREROUTING", "-j", "ACCEPT"}}, kstate.Foreign, "nat rule", "PREROUTING"},
	}
	for _, f := range faults {
		for _, argv := range f.argv {
			if _, err := tp.Exec(topo.Gateway, argv...); err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
		}
		diff := check()
		found := false
		for _, p := range diff {
			found = found || (p.Kind == f.kind && p.What == f.what && strings.Contains(p.Item, f.item))
		}
		if !found {
			t.Errorf("%s: not reported as %s %s %q; got %s", f.name, f.kind, f.what, f.item, diff)
		}
		_, _ = tp.Exec(topo.Gateway, "iptables", "-t", "nat", "-F", "PREROUTING")
		// A hand edit of the table is repaired by a full converge (the nf_tables generation
		// moved, so it reads back).
		converge()
		if diff := check(); !diff.Empty() {
			t.Fatalf("after %s, repaired: %s", f.name, diff)
		}
	}
}

// The conntrack marks of floating IPs and SNAT rules (docs/nftables.md), restated for the tests
// with the standard library's FNV-1a: kstate's model computes them with its own code.
func fnvMark(b ...byte) uint32 {
	h := fnv.New32a()
	h.Write(b)
	if m := h.Sum32(); m != 0 {
		return m
	}
	return 1
}

func testFIPMark(eip, ip string) uint32 {
	e, i := netip.MustParseAddr(eip).As4(), netip.MustParseAddr(ip).As4()
	return fnvMark(append(append([]byte{'F'}, e[:]...), i[:]...)...)
}

func testSNATMark(p netip.Prefix) uint32 {
	a := p.Masked().Addr().As4()
	return fnvMark(append(append([]byte{'S'}, a[:]...), byte(p.Bits()))...)
}

// listed is a mark as nft lists it from vpcnat's maps: the kernel holds it in host byte order,
// which nft reads as big endian.
func listed(m uint32) uint32 {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], m)
	return binary.BigEndian.Uint32(b[:])
}

// marksDesired: three floating IPs (one internal IP behind two EIPs, given the higher EIP first)
// and SNAT rules nested /0 ⊃ /16 ⊃ /24 ⊃ /32 (the /24 with the /16's EIP, the /32 with another),
// plus one /24 given twice with different EIPs, the higher first.
func marksDesired() *annotations.Desired {
	return &annotations.Desired{
		Dataplane: annotations.DataplaneNFTables,
		FloatingIPs: []annotations.FloatingIP{
			{EIP: "203.0.113.11", InternalIP: "10.0.1.5"}, {EIP: "203.0.113.10", InternalIP: "10.0.1.5"},
			{EIP: "203.0.113.12", InternalIP: "10.0.1.6"},
		},
		SNATs: []annotations.SNAT{
			{EIP: "203.0.113.9", InternalCIDR: "0.0.0.0/0"}, {EIP: "203.0.113.1", InternalCIDR: "10.0.0.0/16"},
			{EIP: "203.0.113.1", InternalCIDR: "10.0.1.0/24"}, {EIP: "203.0.113.2", InternalCIDR: "10.0.1.7"},
			{EIP: "203.0.113.3", InternalCIDR: "10.0.2.0/24"}, {EIP: "203.0.113.2", InternalCIDR: "10.0.2.0/24"},
		},
	}
}

// The marks of marksDesired, worked out by hand with an independent FNV-1a (Python):
//
//	def fnv(b):
//	    h = 2166136261
//	    for x in b: h = ((h ^ x) * 16777619) & 0xffffffff
//	    return h or 1
//	F(eip, ip)  = fnv(b'F' + eip.packed + ip.packed)
//	S(net)      = fnv(b'S' + net.network_address.packed + bytes([net.prefixlen]))
const (
	markF10to5   = 0x34805281 // F(203.0.113.10, 10.0.1.5)
	markF11to5   = 0xf9f0f136 // F(203.0.113.11, 10.0.1.5)
	markF12to6   = 0x821de756 // F(203.0.113.12, 10.0.1.6)
	markSAll9    = 0x2baf00e6 // S(0.0.0.0/0), EIP 203.0.113.9
	markS16to1   = 0xe39ac8a8 // S(10.0.0.0/16), EIP 203.0.113.1
	markS24to1   = 0x0a81562b // S(10.0.1.0/24), EIP 203.0.113.1
	markS32to2   = 0x1883aacc // S(10.0.1.7/32), EIP 203.0.113.2
	markS2_24to2 = 0x3967f046 // S(10.0.2.0/24), EIPs 203.0.113.2 and .3 (the lower wins; the mark is the prefix's)
)

// TestNFTMarkModelHandWorked: the model's mark maps and rules for marksDesired are exactly the
// elements worked out by hand: both directions of each floating IP carry the mark of the pair
// that translates them (outbound the lower EIP of 10.0.1.5), and the SNAT mark map splits at
// every rule boundary, even between two prefixes of one EIP.
func TestNFTMarkModelHandWorked(t *testing.T) {
	for _, c := range []struct {
		got  uint32
		want uint32
	}{
		{testFIPMark("203.0.113.10", "10.0.1.5"), markF10to5},
		{testSNATMark(netip.MustParsePrefix("10.0.1.7/32")), markS32to2},
	} {
		if c.got != c.want {
			t.Fatalf("the test's FNV-1a gives %#x, the hand-worked mark is %#x", c.got, c.want)
		}
	}
	nft := kstate.Expect(marksDesired(), nil).NFT
	l := func(m uint32) string { return fmt.Sprint(listed(m)) }
	want := map[string][]string{
		"fip_dnat_mark": {"203.0.113.10 : " + l(markF10to5), "203.0.113.11 : " + l(markF11to5), "203.0.113.12 : " + l(markF12to6)},
		"fip_snat_mark": {"10.0.1.5 : " + l(markF10to5), "10.0.1.6 : " + l(markF12to6)},
		"snat_mark": {
			"0.0.0.0-9.255.255.255 : " + l(markSAll9),
			"10.0.0.0-10.0.0.255 : " + l(markS16to1),
			"10.0.1.0-10.0.1.6 : " + l(markS24to1),
			"10.0.1.7-10.0.1.7 : " + l(markS32to2),
			"10.0.1.8-10.0.1.255 : " + l(markS24to1),
			"10.0.2.0-10.0.2.255 : " + l(markS2_24to2),
			"10.0.3.0-10.0.255.255 : " + l(markS16to1),
			"10.1.0.0-255.255.255.255 : " + l(markSAll9),
		},
		// The translations themselves, for contrast: the /16 and /24 of one EIP are one range.
		"snat_prefixes": {
			"0.0.0.0-9.255.255.255 : 203.0.113.9",
			"10.0.0.0-10.0.1.6 : 203.0.113.1",
			"10.0.1.7-10.0.1.7 : 203.0.113.2",
			"10.0.1.8-10.0.1.255 : 203.0.113.1",
			"10.0.2.0-10.0.2.255 : 203.0.113.2",
			"10.0.3.0-10.0.255.255 : 203.0.113.1",
			"10.1.0.0-255.255.255.255 : 203.0.113.9",
		},
	}
	for m, els := range want {
		if got := nft.Elements[m]; !slices.Equal(sortedCopy(got), sortedCopy(els)) {
			t.Errorf("map %s:\n got %q\nwant %q", m, got, els)
		}
	}
	for m, decl := range map[string]string{
		"fip_dnat_mark": "map ipv4_addr : mark",
		"fip_snat_mark": "map ipv4_addr : mark",
		"snat_mark":     "map ipv4_addr : mark flags interval",
	} {
		if nft.Maps[m] != decl {
			t.Errorf("map %s is declared %q, want %q", m, nft.Maps[m], decl)
		}
	}
	for chain, rules := range map[string][]string{
		"EXCLUSIVE_DNAT": {"ct mark set ip daddr map @fip_dnat_mark", "dnat to ip daddr map @fip_dnat"},
		"SHARED_DNAT":    {"ct mark set ip daddr . meta l4proto . th dport map @port_mark", "dnat ip to ip daddr . meta l4proto . th dport map @port_dnat"},
		"EXCLUSIVE_SNAT": {"ct mark set ip saddr map @fip_snat_mark", "snat to ip saddr map @fip_snat"},
		"SHARED_SNAT":    {"ct mark set ip saddr map @snat_mark", "snat to ip saddr map @snat_prefixes"},
	} {
		if !slices.Equal(nft.Rules[chain], rules) {
			t.Errorf("chain %s:\n got %q\nwant %q", chain, nft.Rules[chain], rules)
		}
	}
}

func sortedCopy(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// TestNFTMarkModelSNATCases: snat_mark for nested, identical, unmasked and bare prefixes and a
// /0, each range written out by hand with the mark of the rule that must win it.
func TestNFTMarkModelSNATCases(t *testing.T) {
	type want struct{ lo, hi, cidr, eip string } // the range and the rule that wins it
	for _, c := range []struct {
		name  string
		rules [][2]string // internalCIDR, EIP
		want  []want
	}{
		{"nested, one EIP", [][2]string{{"10.0.0.0/16", "203.0.113.1"}, {"10.0.1.0/24", "203.0.113.1"}, {"10.0.1.0/32", "203.0.113.1"}},
			[]want{{"10.0.0.0", "10.0.0.255", "10.0.0.0/16", "203.0.113.1"}, {"10.0.1.0", "10.0.1.0", "10.0.1.0/32", "203.0.113.1"},
				{"10.0.1.1", "10.0.1.255", "10.0.1.0/24", "203.0.113.1"}, {"10.0.2.0", "10.0.255.255", "10.0.0.0/16", "203.0.113.1"}}},
		{"nested, three EIPs, the /32 last of the /24", [][2]string{{"10.0.1.255/32", "203.0.113.3"}, {"10.0.1.0/24", "203.0.113.2"}, {"10.0.0.0/16", "203.0.113.1"}},
			[]want{{"10.0.0.0", "10.0.0.255", "10.0.0.0/16", "203.0.113.1"}, {"10.0.1.0", "10.0.1.254", "10.0.1.0/24", "203.0.113.2"},
				{"10.0.1.255", "10.0.1.255", "10.0.1.255/32", "203.0.113.3"}, {"10.0.2.0", "10.0.255.255", "10.0.0.0/16", "203.0.113.1"}}},
		{"identical prefixes: the lowest EIP", [][2]string{{"10.0.1.0/24", "203.0.113.7"}, {"10.0.1.0/24", "203.0.113.3"}, {"10.0.1.0/24", "203.0.113.5"}},
			[]want{{"10.0.1.0", "10.0.1.255", "10.0.1.0/24", "203.0.113.3"}}},
		{"an unmasked CIDR and a bare address", [][2]string{{"10.0.1.77/24", "203.0.113.1"}, {"10.0.1.77", "203.0.113.2"}},
			[]want{{"10.0.1.0", "10.0.1.76", "10.0.1.0/24", "203.0.113.1"}, {"10.0.1.77", "10.0.1.77", "10.0.1.77/32", "203.0.113.2"},
				{"10.0.1.78", "10.0.1.255", "10.0.1.0/24", "203.0.113.1"}}},
		{"a /0 alone", [][2]string{{"0.0.0.0/0", "203.0.113.1"}},
			[]want{{"0.0.0.0", "255.255.255.255", "0.0.0.0/0", "203.0.113.1"}}},
		{"a /0 with the first and the last address", [][2]string{{"255.255.255.255/32", "203.0.113.2"}, {"0.0.0.0/0", "203.0.113.1"}, {"0.0.0.0/32", "203.0.113.3"}},
			[]want{{"0.0.0.0", "0.0.0.0", "0.0.0.0/32", "203.0.113.3"}, {"0.0.0.1", "255.255.255.254", "0.0.0.0/0", "203.0.113.1"},
				{"255.255.255.255", "255.255.255.255", "255.255.255.255/32", "203.0.113.2"}}},
		{"adjacent prefixes of one EIP stay apart", [][2]string{{"10.0.0.0/25", "203.0.113.1"}, {"10.0.0.128/25", "203.0.113.1"}},
			[]want{{"10.0.0.0", "10.0.0.127", "10.0.0.0/25", "203.0.113.1"}, {"10.0.0.128", "10.0.0.255", "10.0.0.128/25", "203.0.113.1"}}},
		{"disjoint with a gap, a non-IPv4 rule ignored", [][2]string{{"10.0.2.0/24", "203.0.113.1"}, {"10.0.0.0/24", "203.0.113.2"}, {"fd00::/64", "203.0.113.3"}},
			[]want{{"10.0.0.0", "10.0.0.255", "10.0.0.0/24", "203.0.113.2"}, {"10.0.2.0", "10.0.2.255", "10.0.2.0/24", "203.0.113.1"}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &annotations.Desired{Dataplane: annotations.DataplaneNFTables}
			for _, r := range c.rules {
				d.SNATs = append(d.SNATs, annotations.SNAT{InternalCIDR: r[0], EIP: r[1]})
			}
			var els []string
			for _, w := range c.want {
				els = append(els, fmt.Sprintf("%s-%s : %d", w.lo, w.hi, listed(testSNATMark(netip.MustParsePrefix(w.cidr)))))
			}
			if got := kstate.Expect(d, nil).NFT.Elements["snat_mark"]; !slices.Equal(sortedCopy(got), sortedCopy(els)) {
				t.Errorf("snat_mark:\n got %q\nwant %q", got, els)
			}
		})
	}
}

// TestNFTMarkModelSNATRandom checks snat_mark for random rule sets against a brute force: the
// ranges are ordered and disjoint; at every range's start and at every rule boundary inside it
// (the only places the winning rule can change) the longest prefix holding the address, lowest
// EIP first, has the range's mark; adjacent ranges differ; no rule covers an address between
// ranges.
func TestNFTMarkModelSNATRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for iter := range 300 {
		type rule struct {
			p   netip.Prefix
			eip string
		}
		var rules []rule
		d := &annotations.Desired{Dataplane: annotations.DataplaneNFTables, SNATs: randomSNATs(r)}
		for _, s := range d.SNATs {
			p, err := netip.ParsePrefix(s.InternalCIDR)
			if err != nil {
				p = netip.PrefixFrom(netip.MustParseAddr(s.InternalCIDR), 32)
			}
			rules = append(rules, rule{p.Masked(), s.EIP})
		}
		bound := func(p netip.Prefix) (uint64, uint64) {
			lo := uint64(binary.BigEndian.Uint32(p.Addr().AsSlice()))
			return lo, lo + 1<<(32-p.Bits()) - 1
		}
		// win is the mark of the address a, 0 if no rule holds it.
		win := func(a uint64) uint32 {
			best := -1
			for i, x := range rules {
				lo, hi := bound(x.p)
				if a < lo || a > hi {
					continue
				}
				if best < 0 || x.p.Bits() > rules[best].p.Bits() ||
					(x.p.Bits() == rules[best].p.Bits() && netip.MustParseAddr(x.eip).Less(netip.MustParseAddr(rules[best].eip))) {
					best = i
				}
			}
			if best < 0 {
				return 0
			}
			return listed(testSNATMark(rules[best].p))
		}
		got := kstate.Expect(d, nil).NFT.Elements["snat_mark"]
		fail := func(format string, args ...any) {
			t.Fatalf("rule set %d %v: %s\nsnat_mark: %q", iter, d.SNATs, fmt.Sprintf(format, args...), got)
		}
		type rng struct {
			lo, hi uint64
			mark   uint32
		}
		var rs []rng
		for _, e := range got {
			var lo, hi string
			var mark uint32
			if _, err := fmt.Sscanf(strings.Replace(e, "-", " ", 1), "%s %s : %d", &lo, &hi, &mark); err != nil {
				fail("element %q: %v", e, err)
			}
			a, b := netip.MustParseAddr(lo), netip.MustParseAddr(hi)
			rs = append(rs, rng{uint64(binary.BigEndian.Uint32(a.AsSlice())), uint64(binary.BigEndian.Uint32(b.AsSlice())), mark})
		}
		slices.SortFunc(rs, func(a, b rng) int { return cmp.Compare(a.lo, b.lo) })
		for i, x := range rs {
			if x.lo > x.hi || (i > 0 && rs[i-1].hi >= x.lo) {
				fail("range %d is empty or overlaps the one before", i)
			}
			if i > 0 && rs[i-1].hi+1 == x.lo && rs[i-1].mark == x.mark {
				fail("ranges %d and %d are adjacent with one mark", i-1, i)
			}
			points := []uint64{x.lo}
			for _, y := range rules {
				lo, hi := bound(y.p)
				for _, b := range []uint64{lo, hi + 1} {
					if x.lo < b && b <= x.hi {
						points = append(points, b)
					}
				}
			}
			for _, a := range points {
				if m := win(a); m != x.mark {
					fail("address %d of range %d has mark %d, the winning rule's is %d", a, i, x.mark, m)
				}
			}
		}
		// The gaps: before the first range, between ranges, after the last.
		next := uint64(0)
		for _, x := range append(rs, rng{lo: 1 << 32}) {
			if next < x.lo {
				for _, y := range rules {
					if lo, hi := bound(y.p); lo < x.lo && hi >= next {
						fail("rule %v covers addresses %d-%d, which no range holds", y, next, x.lo-1)
					}
				}
			}
			next = x.hi + 1
		}
	}
}

// randomSNATs is up to 12 SNAT rules of few EIPs in 10.0.0.0/22 and around it, of lengths from
// /0 to /32: nested prefixes, identical ones with different EIPs, unmasked CIDRs and bare
// addresses, and now and then the first or last IPv4 address.
func randomSNATs(r *rand.Rand) []annotations.SNAT {
	lengths := []int{0, 8, 15, 16, 20, 23, 24, 25, 28, 30, 31, 32, 32, 32}
	var out []annotations.SNAT
	for range 1 + r.IntN(12) {
		a := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(256))})
		switch r.IntN(20) {
		case 0:
			a = netip.AddrFrom4([4]byte{})
		case 1:
			a = netip.AddrFrom4([4]byte{255, 255, 255, 255})
		}
		p := netip.PrefixFrom(a, lengths[r.IntN(len(lengths))])
		cidr := p.String() // unmasked on purpose, as a user may write it
		if p.Bits() == 32 && r.IntN(2) == 0 {
			cidr = a.String()
		}
		out = append(out, annotations.SNAT{InternalCIDR: cidr, EIP: fmt.Sprintf("203.0.113.%d", 1+r.IntN(3))})
	}
	return out
}

// TestNFTMarkModelAgreesWithBuilderOnSNAT: pkg/nft's table for marksDesired and for random SNAT
// rule sets (randomSNATs: /0, identical prefixes, the address space's ends), loaded into a kernel
// by nft and read back, is exactly what kstate's model expects, marks included.
func TestNFTMarkModelAgreesWithBuilderOnSNAT(t *testing.T) {
	tp := nftOnly(t)
	r := rand.New(rand.NewPCG(9, 10))
	// The default route's halves under a /0: the lower half starts at the /0's first address.
	halves := &annotations.Desired{Dataplane: annotations.DataplaneNFTables, SNATs: []annotations.SNAT{
		{EIP: "203.0.113.1", InternalCIDR: "0.0.0.0/0"}, {EIP: "203.0.113.2", InternalCIDR: "0.0.0.0/1"},
		{EIP: "203.0.113.3", InternalCIDR: "128.0.0.0/1"}}}
	ds := []*annotations.Desired{marksDesired(), halves}
	for range 40 {
		d := &annotations.Desired{Dataplane: annotations.DataplaneNFTables, SNATs: randomSNATs(r)}
		for range r.IntN(4) {
			d.FloatingIPs = append(d.FloatingIPs, annotations.FloatingIP{
				EIP: fmt.Sprintf("203.0.113.%d", 1+r.IntN(3)), InternalIP: fmt.Sprintf("10.0.0.%d", 1+r.IntN(3))})
		}
		ds = append(ds, d)
	}
	for i, d := range ds {
		text := nft.Build(d).Text()
		if diff := nftProblems(loadNFT(t, tp, text), d); !diff.Empty() {
			t.Fatalf("gateway %d: pkg/nft and kstate's model disagree: %s\nloaded:\n%s", i, diff, text)
		}
	}
}

// marksTable is marksDesired's whole table written by hand (the marks as nft lists them), for
// nft itself to load: the model and the reading of nft's JSON are checked without pkg/nft.
func marksTable() string {
	l := func(m uint32) string { return fmt.Sprintf("0x%08x", listed(m)) }
	return `table ip vpcnat {
	map fip_dnat { type ipv4_addr : ipv4_addr; elements = { 203.0.113.10 : 10.0.1.5, 203.0.113.11 : 10.0.1.5, 203.0.113.12 : 10.0.1.6 }; }
	map fip_snat { type ipv4_addr : ipv4_addr; elements = { 10.0.1.5 : 203.0.113.10, 10.0.1.6 : 203.0.113.12 }; }
	map port_dnat { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }
	map snat_prefixes { type ipv4_addr : ipv4_addr; flags interval; elements = { 0.0.0.0-9.255.255.255 : 203.0.113.9,
		10.0.0.0-10.0.1.6 : 203.0.113.1, 10.0.1.7 : 203.0.113.2, 10.0.1.8-10.0.1.255 : 203.0.113.1, 10.0.2.0/24 : 203.0.113.2,
		10.0.3.0-10.0.255.255 : 203.0.113.1, 10.1.0.0-255.255.255.255 : 203.0.113.9 }; }
	map port_mark { type ipv4_addr . inet_proto . inet_service : mark; }
	map fip_dnat_mark { type ipv4_addr : mark; elements = { 203.0.113.10 : ` + l(markF10to5) + `, 203.0.113.11 : ` + l(markF11to5) + `,
		203.0.113.12 : ` + l(markF12to6) + ` }; }
	map fip_snat_mark { type ipv4_addr : mark; elements = { 10.0.1.5 : ` + l(markF10to5) + `, 10.0.1.6 : ` + l(markF12to6) + ` }; }
	map snat_mark { type ipv4_addr : mark; flags interval; elements = { 0.0.0.0-9.255.255.255 : ` + l(markSAll9) + `,
		10.0.0.0/24 : ` + l(markS16to1) + `, 10.0.1.0-10.0.1.6 : ` + l(markS24to1) + `, 10.0.1.7 : ` + l(markS32to2) + `,
		10.0.1.8-10.0.1.255 : ` + l(markS24to1) + `, 10.0.2.0/24 : ` + l(markS2_24to2) + `,
		10.0.3.0-10.0.255.255 : ` + l(markS16to1) + `, 10.1.0.0-255.255.255.255 : ` + l(markSAll9) + ` }; }
	chain PREROUTING { type nat hook prerouting priority dstnat; policy accept; jump DNAT_FILTER; }
	chain DNAT_FILTER { jump EXCLUSIVE_DNAT; jump SHARED_DNAT; }
	chain EXCLUSIVE_DNAT { ct mark set ip daddr map @fip_dnat_mark; dnat to ip daddr map @fip_dnat; }
	chain SHARED_DNAT { ct mark set ip daddr . meta l4proto . th dport map @port_mark; dnat ip to ip daddr . meta l4proto . th dport map @port_dnat; }
	chain POSTROUTING { type nat hook postrouting priority srcnat; policy accept; jump SNAT_FILTER; }
	chain SNAT_FILTER { jump HAIRPIN_SNAT; oifname "net1" jump EXCLUSIVE_SNAT; oifname "net1" jump SHARED_SNAT; }
	chain HAIRPIN_SNAT { }
	chain EXCLUSIVE_SNAT { ct mark set ip saddr map @fip_snat_mark; snat to ip saddr map @fip_snat; }
	chain SHARED_SNAT { ct mark set ip saddr map @snat_mark; snat to ip saddr map @snat_prefixes; }
}
`
}

// TestNFTMarkModelAgreesWithHandWrittenTable: marksTable, loaded by nft and read back with nft's
// JSON listing, is exactly what the model expects for marksDesired; then one mark bug after
// another is planted into it, and each is reported naming the map or chain.
func TestNFTMarkModelAgreesWithHandWrittenTable(t *testing.T) {
	tp := nftOnly(t)
	d, good := marksDesired(), marksTable()
	if diff := nftProblems(loadNFT(t, tp, good), d); !diff.Empty() {
		t.Fatalf("the hand-written table differs from the model: %s\n%s", diff, good)
	}
	l := func(m uint32) string { return fmt.Sprintf("0x%08x", listed(m)) }
	for _, c := range []struct {
		name, old, new string
		want           string // named in the report
	}{
		{"the /32 marked as the /24 around it", "10.0.1.7 : " + l(markS32to2), "10.0.1.7 : " + l(markS24to1), "snat_mark"},
		{"the /32 not split out of the /24's marks",
			"10.0.1.0-10.0.1.6 : " + l(markS24to1) + ", 10.0.1.7 : " + l(markS32to2) + ",\n\t\t10.0.1.8-10.0.1.255 : " + l(markS24to1),
			"10.0.1.0/24 : " + l(markS24to1), "snat_mark"},
		{"the /24 marked as the /16 of the same EIP", "10.0.1.0-10.0.1.6 : " + l(markS24to1), "10.0.1.0-10.0.1.6 : " + l(markS16to1), "snat_mark"},
		{"a /24 marked as the next /24", "10.0.2.0/24 : " + l(markS2_24to2),
			"10.0.2.0/24 : " + l(testSNATMark(netip.MustParsePrefix("10.0.3.0/24"))), "snat_mark"},
		{"the /0's last range unmarked", ", 10.1.0.0-255.255.255.255 : " + l(markSAll9), "", "snat_mark"},
		{"outbound FIP marked with its other EIP", "10.0.1.5 : " + l(markF10to5), "10.0.1.5 : " + l(markF11to5), "fip_snat_mark"},
		{"inbound FIP marked as another EIP's", "203.0.113.11 : " + l(markF11to5), "203.0.113.11 : " + l(markF10to5), "fip_dnat_mark"},
		{"a FIP mark unswapped", "203.0.113.12 : " + l(markF12to6), fmt.Sprintf("203.0.113.12 : 0x%08x", uint32(markF12to6)), "fip_dnat_mark"},
		{"SNAT not marked", "ct mark set ip saddr map @snat_mark; ", "", "SHARED_SNAT"},
		{"outbound FIPs not marked", "ct mark set ip saddr map @fip_snat_mark; ", "", "EXCLUSIVE_SNAT"},
		{"inbound FIPs marked by source", "ct mark set ip daddr map @fip_dnat_mark", "ct mark set ip saddr map @fip_dnat_mark", "EXCLUSIVE_DNAT"},
		{"outbound FIPs marked after the translation",
			"ct mark set ip saddr map @fip_snat_mark; snat to ip saddr map @fip_snat;",
			"snat to ip saddr map @fip_snat; ct mark set ip saddr map @fip_snat_mark;", "EXCLUSIVE_SNAT"},
		{"SNAT marked from the FIP marks", "ct mark set ip saddr map @snat_mark", "ct mark set ip saddr map @fip_snat_mark", "SHARED_SNAT"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.old == c.new {
				t.Skip("the mark reads the same in both byte orders on this host")
			}
			if !strings.Contains(good, c.old) {
				t.Fatalf("the hand-written table has no %q:\n%s", c.old, good)
			}
			diff := nftProblems(loadNFT(t, tp, strings.Replace(good, c.old, c.new, 1)), d)
			if diff.Empty() {
				t.Fatalf("kstate found nothing wrong")
			}
			if !strings.Contains(diff.String(), c.want) {
				t.Errorf("kstate's report does not name %s:\n%s", c.want, diff)
			}
		})
	}
}

// TestNFTMarksCommittedByNetconf converges the seed gateway with floating IPs and SNAT rules
// like marksDesired's (one internal IP behind both EIPs; SNAT nested /0 ⊃ /16 ⊃ /24 ⊃ /32 and a
// /24 given twice) through netconf's netlink commit, and requires the table nft lists to be
// exactly the model's: the marks' byte order and the interval map's ranges as the kernel holds
// them, up to the /0's last address.
func TestNFTMarksCommittedByNetconf(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	tp := topo.SeedForTest(t)
	d := seedDesired(t)
	d.Dataplane = annotations.DataplaneNFTables
	d.FloatingIPs = []annotations.FloatingIP{
		{EIP: "192.168.0.112", InternalIP: "10.0.1.5"}, {EIP: "192.168.0.111", InternalIP: "10.0.1.5"},
		{EIP: "192.168.0.112", InternalIP: "10.0.1.6"},
	}
	d.SNATs = []annotations.SNAT{
		{EIP: "192.168.0.112", InternalCIDR: "0.0.0.0/0"}, {EIP: "192.168.0.111", InternalCIDR: "10.0.0.0/16"},
		{EIP: "192.168.0.111", InternalCIDR: "10.0.1.0/24"}, {EIP: "192.168.0.112", InternalCIDR: "10.0.1.7/32"},
		{EIP: "192.168.0.112", InternalCIDR: "10.0.2.0/24"}, {EIP: "192.168.0.111", InternalCIDR: "10.0.2.0/24"},
	}
	gw := netconf.NewGateway(tp.Path(topo.Gateway))
	t.Cleanup(func() { gw.Close() })
	if err := tp.Do(topo.Node, func() error { _, err := gw.Converge(context.Background(), d, true); return err }); err != nil {
		t.Fatal(err)
	}
	st, err := kstate.Dump(tp.Path(topo.Gateway))
	if err != nil {
		t.Fatal(err)
	}
	if diff := kstate.Compare(st, d); !diff.Empty() {
		t.Fatalf("the committed table differs from the model: %s\nnft lists:\n%s", diff, st.NFTText)
	}
	// Not vacuous: the listing holds the hand-checkable marks of the pairs and rules above.
	s := kstate.Expect(d, nil).NFT.Elements
	for m, el := range map[string]string{
		"fip_snat_mark": fmt.Sprintf("10.0.1.5 : %d", listed(testFIPMark("192.168.0.111", "10.0.1.5"))),
		"snat_mark": fmt.Sprintf("10.1.0.0-255.255.255.255 : %d",
			listed(testSNATMark(netip.MustParsePrefix("0.0.0.0/0")))),
	} {
		if !slices.Contains(st.NFT.Elements[m], el) || !slices.Contains(s[m], el) {
			t.Errorf("map %s: %q not both listed (%q) and expected (%q)", m, el, st.NFT.Elements[m], s[m])
		}
	}
}

// TestNFTMarksAfterIncrementalEdits walks the seed gateway through random edits of its floating
// IPs and SNAT rules (added, removed, moved to the other EIP; SNAT prefixes nested, identical,
// /0 and the address space's ends), each converged incrementally (netconf's batch of the
// changed elements only), and requires the kernel's table to be the model's after every step:
// the mark maps edited in place must equal the ones computed afresh.
func TestNFTMarksAfterIncrementalEdits(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	tp := topo.SeedForTest(t)
	gw := netconf.NewGateway(tp.Path(topo.Gateway))
	t.Cleanup(func() { gw.Close() })
	d := seedDesired(t)
	d.Dataplane = annotations.DataplaneNFTables
	eips := []string{"192.168.0.111", "192.168.0.112"}
	r := rand.New(rand.NewPCG(11, 12))
	for step := range 60 {
		next := *d
		next.SNATs, next.FloatingIPs = slices.Clone(d.SNATs), slices.Clone(d.FloatingIPs)
		op := "first"
		if step > 0 {
			switch k := r.IntN(6); {
			case k <= 1 || len(next.SNATs) == 0:
				s := randomSNATs(r)[0]
				s.EIP = eips[r.IntN(2)]
				next.SNATs = append(next.SNATs, s)
				op = "add SNAT " + s.InternalCIDR + " -> " + s.EIP
			case k == 2:
				i := r.IntN(len(next.SNATs))
				op = "remove SNAT " + next.SNATs[i].InternalCIDR
				next.SNATs = slices.Delete(next.SNATs, i, i+1)
			case k == 3:
				i := r.IntN(len(next.SNATs))
				next.SNATs[i].EIP = eips[r.IntN(2)]
				op = "SNAT " + next.SNATs[i].InternalCIDR + " -> " + next.SNATs[i].EIP
			case k == 4 || len(next.FloatingIPs) == 0:
				f := annotations.FloatingIP{EIP: eips[r.IntN(2)], InternalIP: fmt.Sprintf("10.0.1.%d", 1+r.IntN(4))}
				next.FloatingIPs = append(next.FloatingIPs, f)
				op = "add FIP " + f.EIP + " -> " + f.InternalIP
			default:
				i := r.IntN(len(next.FloatingIPs))
				op = "remove FIP " + next.FloatingIPs[i].EIP + " -> " + next.FloatingIPs[i].InternalIP
				next.FloatingIPs = slices.Delete(next.FloatingIPs, i, i+1)
			}
		}
		d = &next
		if err := tp.Do(topo.Node, func() error { _, err := gw.Converge(context.Background(), d, step == 0); return err }); err != nil {
			t.Fatalf("step %d (%s): %v", step, op, err)
		}
		st, err := kstate.Dump(tp.Path(topo.Gateway))
		if err != nil {
			t.Fatal(err)
		}
		if diff := kstate.Compare(st, d); !diff.Empty() {
			t.Fatalf("step %d (%s): the table differs from the model: %s\nSNATs %v\nFIPs %v", step, op, diff, d.SNATs, d.FloatingIPs)
		}
	}
}
