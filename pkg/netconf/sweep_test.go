package netconf

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
)

// flowOf builds a conntrack entry: proto, original src:sport -> dst:dport, reply src:sport ->
// dst:dport.
func flowOf(proto uint8, src string, sport uint16, dst string, dport uint16, rsrc string, rsport uint16, rdst string, rdport uint16) *netlink.ConntrackFlow {
	f := &netlink.ConntrackFlow{FamilyType: unix.AF_INET}
	f.Forward = netlink.IPTuple{Protocol: proto, SrcIP: net.ParseIP(src), SrcPort: sport, DstIP: net.ParseIP(dst), DstPort: dport}
	f.Reverse = netlink.IPTuple{Protocol: proto, SrcIP: net.ParseIP(rsrc), SrcPort: rsport, DstIP: net.ParseIP(rdst), DstPort: rdport}
	return f
}

// TestSweepFilter: which entries the level-based sweep finds stale against the seed (FIP .111
// -> 10.0.1.5, port forward .112:8888/tcp -> 10.0.1.10:80, SNAT 10.0.1.0/24 -> .112).
func TestSweepFilter(t *testing.T) {
	f := newSweepFilter(seedDesired(), nil)
	const tcp, udp = unix.IPPROTO_TCP, unix.IPPROTO_UDP
	for _, c := range []struct {
		name  string
		flow  *netlink.ConntrackFlow
		stale bool
	}{
		{"port forward as desired", flowOf(tcp, "192.168.0.50", 1, "192.168.0.112", 8888, "10.0.1.10", 80, "192.168.0.50", 1), false},
		{"port forward to an old target", flowOf(tcp, "192.168.0.50", 1, "192.168.0.112", 8888, "10.0.1.20", 80, "192.168.0.50", 1), true},
		{"port forward to an old port", flowOf(tcp, "192.168.0.50", 1, "192.168.0.112", 8888, "10.0.1.10", 81, "192.168.0.50", 1), true},
		{"removed port forward", flowOf(udp, "192.168.0.50", 1, "192.168.0.112", 9999, "10.0.1.10", 80, "192.168.0.50", 1), true},
		{"removed EIP, still in the EIP network", flowOf(udp, "192.168.0.50", 1, "192.168.0.113", 53, "10.0.1.10", 53, "192.168.0.50", 1), true},
		{"FIP in as desired", flowOf(udp, "192.168.0.50", 1, "192.168.0.111", 7, "10.0.1.5", 7, "192.168.0.50", 1), false},
		{"FIP in to an old internal IP", flowOf(udp, "192.168.0.50", 1, "192.168.0.111", 7, "10.0.1.6", 7, "192.168.0.50", 1), true},
		{"FIP out as desired", flowOf(udp, "10.0.1.5", 1, "198.51.100.10", 7, "198.51.100.10", 7, "192.168.0.111", 1), false},
		{"SNAT as desired", flowOf(udp, "10.0.1.10", 1, "198.51.100.10", 7, "198.51.100.10", 7, "192.168.0.112", 1), false},
		{"FIP source SNATed by the shared rule (FIP added later)", flowOf(udp, "10.0.1.5", 1, "198.51.100.10", 7, "198.51.100.10", 7, "192.168.0.112", 1), true},
		{"SNAT to an old EIP", flowOf(udp, "10.0.1.10", 1, "198.51.100.10", 7, "198.51.100.10", 7, "192.168.0.113", 1), true},
		{"SNAT of a source no rule covers now", flowOf(udp, "10.0.2.10", 1, "198.51.100.10", 7, "198.51.100.10", 7, "192.168.0.112", 1), true},
		{"hairpin (DNAT + MASQUERADE to the subnet address)", flowOf(tcp, "10.0.1.5", 1, "192.168.0.112", 8888, "10.0.1.10", 80, "10.0.1.1", 1), false},
		{"never translated, to an EIP", flowOf(udp, "192.168.0.50", 1, "192.168.0.112", 5000, "192.168.0.112", 5000, "192.168.0.50", 1), false},
		// Never translated, though a mapping or SNAT desired now translates the flow (it began
		// before the rule existed; Kube-OVN 4193 for rules added later).
		{"never translated, to a FIP's EIP", flowOf(udp, "192.168.0.50", 40000, "192.168.0.111", 5353, "192.168.0.111", 5353, "192.168.0.50", 40000), true},
		{"never translated, ICMP to a FIP's EIP", flowOf(unix.IPPROTO_ICMP, "192.168.0.50", 0, "192.168.0.111", 0, "192.168.0.111", 0, "192.168.0.50", 0), true},
		{"never translated, to a port forward", flowOf(tcp, "192.168.0.50", 40000, "192.168.0.112", 8888, "192.168.0.112", 8888, "192.168.0.50", 40000), true},
		{"never translated, from the VPC to a port forward (hairpin)", flowOf(tcp, "10.0.1.20", 1, "192.168.0.112", 8888, "192.168.0.112", 8888, "10.0.1.20", 1), true},
		{"never translated, to a port forward's port in another protocol", flowOf(udp, "192.168.0.50", 1, "192.168.0.112", 8888, "192.168.0.112", 8888, "192.168.0.50", 1), false},
		{"never translated, from the VPC with an SNAT, out of net1", flowOf(udp, "10.0.1.10", 1, "198.51.100.10", 7, "198.51.100.10", 7, "10.0.1.10", 1), true},
		{"never translated, from a FIP's internal IP, out of net1", flowOf(udp, "10.0.1.5", 1, "198.51.100.10", 7, "198.51.100.10", 7, "10.0.1.5", 1), true},
		{"never translated, from the VPC to the EIP network", flowOf(udp, "10.0.1.10", 1, "192.168.0.50", 7, "192.168.0.50", 7, "10.0.1.10", 1), true},
		// Never translated and right so.
		{"gateway's own traffic to its FIP EIP", flowOf(udp, "192.168.0.112", 1, "192.168.0.111", 7, "192.168.0.111", 7, "192.168.0.112", 1), false},
		{"gateway's own traffic to a port forward", flowOf(tcp, "192.168.0.111", 1, "192.168.0.112", 8888, "192.168.0.112", 8888, "192.168.0.111", 1), false},
		{"gateway's own traffic out of net1", flowOf(udp, "192.168.0.112", 1, "198.51.100.10", 7, "198.51.100.10", 7, "192.168.0.112", 1), false},
		{"gateway's subnet address out of net1", flowOf(udp, "10.0.1.1", 1, "198.51.100.10", 7, "198.51.100.10", 7, "10.0.1.1", 1), false},
		{"from the VPC to the gateway's own EIP", flowOf(tcp, "10.0.1.10", 1, "192.168.0.112", 22, "192.168.0.112", 22, "10.0.1.10", 1), false},
		{"from the VPC to the gateway's subnet address", flowOf(udp, "10.0.1.10", 1, "10.0.1.1", 53, "10.0.1.1", 53, "10.0.1.10", 1), false},
		{"from the VPC to the EIP network's broadcast", flowOf(udp, "10.0.1.10", 1, "192.168.0.255", 7, "192.168.0.255", 7, "10.0.1.10", 1), false},
		{"inside the subnet", flowOf(udp, "10.0.1.10", 1, "10.0.1.20", 7, "10.0.1.20", 7, "10.0.1.10", 1), false},
		{"from the VPC via a policyDst route into the VPC", flowOf(udp, "10.0.1.10", 1, "203.0.113.10", 7, "203.0.113.10", 7, "10.0.1.10", 1), false},
		{"from a policySrc range (leaves by the VPC router)", flowOf(udp, "10.0.1.70", 1, "198.51.100.10", 7, "198.51.100.10", 7, "10.0.1.70", 1), false},
		{"from outside the gateway's subnets (not judged)", flowOf(udp, "10.0.2.10", 1, "198.51.100.10", 7, "198.51.100.10", 7, "10.0.2.10", 1), false},
		{"from outside, routed into the VPC", flowOf(udp, "192.168.0.50", 1, "10.0.1.10", 7, "10.0.1.10", 7, "192.168.0.50", 1), false},
		{"translated outside the EIP networks (not ours)", flowOf(tcp, "10.0.1.10", 1, "172.16.0.1", 80, "172.16.9.9", 80, "10.0.1.10", 1), false},
	} {
		if got := f.MatchConntrackFlow(c.flow); got != c.stale {
			t.Errorf("%s: stale = %v, want %v", c.name, got, c.stale)
		}
	}
}

// Regression (found by test/reliability's crash test): a daemon killed after the nat commit and
// before the conntrack clean-up left the removed port forward's flows translated for good; the
// restarted daemon's read-back found the nat table in sync and deleted nothing. Also: a changed
// SNAT left its flows on the old EIP.
func TestSweepAfterCrashAndSNATChange(t *testing.T) {
	tp := newTopo(t)
	tp.addPod(rolePod, "10.0.1.5/24", "10.0.1.1")
	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)
	plant := func(args ...string) {
		tp.exec(roleGW, append([]string{"conntrack", "-I", "--timeout", "300"}, args...)...)
	}
	plant("-p", "tcp", "--state", "ESTABLISHED", "-s", "192.168.0.254", "-d", "192.168.0.112", "--sport", "4000", "--dport", "8888",
		"-r", "10.0.1.10", "-q", "192.168.0.254", "--reply-port-src", "80", "--reply-port-dst", "4000")
	plant("-p", "udp", "-s", "10.0.1.200", "-d", "192.168.0.254", "--sport", "4001", "--dport", "53",
		"-r", "192.168.0.254", "-q", "192.168.0.112", "--reply-port-src", "53", "--reply-port-dst", "4001")
	const dnatFlow, snatFlow = "->192.168.0.112:8888 reply 10.0.1.10:80->", "17 10.0.1.200:4001->"
	for _, f := range []string{dnatFlow, snatFlow} {
		if !tp.hasFlow(f) {
			t.Fatalf("planted entry %q missing:\n%s", f, tp.dumpFlows())
		}
	}

	// The crashed daemon: the new nat table committed, nothing after it.
	noDNAT := seedDesired()
	noDNAT.DNATs = nil
	if _, _, err := syncNAT(context.Background(), execIptables{nsPath: tp.path(roleGW)}, nat.Render(noDNAT), nil); err != nil {
		t.Fatal(err)
	}
	// The restarted daemon.
	rep := tp.mustConverge(tp.gateway(), noDNAT, false)
	t.Logf("restart: %q", rep.Changes)
	if tp.hasFlow(dnatFlow) {
		t.Errorf("the removed port forward's entry survived the restart:\n%s", tp.dumpFlows())
	}
	if !tp.hasFlow(snatFlow) {
		t.Errorf("an SNAT entry as desired was deleted:\n%s", tp.dumpFlows())
	}

	// The SNAT narrows to 10.0.1.0/25: 10.0.1.200 is not SNATed any more; a fast converge.
	narrow := seedDesired()
	narrow.DNATs = nil
	narrow.SNATs[0].InternalCIDR = "10.0.1.0/25"
	g = tp.gateway()
	tp.mustConverge(g, noDNAT, true)
	rep = tp.mustConverge(g, narrow, false)
	if tp.hasFlow(snatFlow) {
		t.Errorf("the entry of the changed SNAT survived (changes %q):\n%s", rep.Changes, tp.dumpFlows())
	}
	if !hasChange(rep, "conntrack: deleted 1 entries translated by mappings or SNATs no longer desired") {
		t.Errorf("report: %q", rep.Changes)
	}
	if rep := tp.mustConverge(g, narrow, true); len(rep.Changes) != 0 {
		t.Errorf("converging again: %q", rep.Changes)
	}
}

// Regression (found by test/reliability's quick edits): removing a FIP deleted the outbound
// flows of its internal IP even where an SNAT rule still sends them out with the same EIP, which
// cut established connections the spec did not change. Only entries the new state translates
// differently go.
func TestStaleMappingKeepsValidEntries(t *testing.T) {
	d := seedDesired() // SNAT 10.0.1.0/24 -> .112
	d.FloatingIPs = nil
	m, err := newMappingFilter(nat.Mapping{EIP: "192.168.0.112", InternalIP: "10.0.1.10"}) // a removed FIP .112 -> pod2
	if err != nil {
		t.Fatal(err)
	}
	k := keepValid{m, newSweepFilter(d, nil)}
	const udp = unix.IPPROTO_UDP
	for _, c := range []struct {
		name string
		flow *netlink.ConntrackFlow
		del  bool
	}{
		{"outbound, still SNATed to .112", flowOf(udp, "10.0.1.10", 1, "198.51.100.10", 7, "198.51.100.10", 7, "192.168.0.112", 1), false},
		{"inbound to the removed FIP", flowOf(udp, "192.168.0.50", 1, "192.168.0.112", 7, "10.0.1.10", 7, "192.168.0.50", 1), true},
	} {
		if got := k.MatchConntrackFlow(c.flow); got != c.del {
			t.Errorf("%s: deleted = %v, want %v", c.name, got, c.del)
		}
	}
	// An EIP whose whole network is gone: its entries always go.
	d.EIPs = []annotations.EIP{{EipCIDR: "192.168.5.1/24", Gateway: "192.168.5.254"}}
	d.SNATs = []annotations.SNAT{{EIP: "192.168.5.1", InternalCIDR: "10.0.1.0/24"}}
	k = keepValid{m, newSweepFilter(d, nil)}
	if !k.MatchConntrackFlow(flowOf(udp, "10.0.1.10", 1, "198.51.100.10", 7, "198.51.100.10", 7, "192.168.0.112", 1)) {
		t.Error("the entry of an EIP outside every remaining EIP network was kept")
	}
}

// TestSweepRoutingMatchesKernel: the sweep judges an untranslated outbound entry only when the
// state's routing sends it out of net1 (our SNAT rules match "-o net1" only). Its model of that
// routing (rules by priority, longest match per table) must agree with the kernel's own lookup
// (`ip route get DST from SRC iif vpc-sn`) in a converged gateway, with a policyDst and a
// policySrc route into the VPC, the gateway's own addresses and a broadcast address.
func TestSweepRoutingMatchesKernel(t *testing.T) {
	tp := newTopo(t)
	d := seedDesired()
	tp.mustConverge(tp.gateway(), d, true)
	h, err := netns.GetFromPath(tp.path(roleGW))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := netlink.NewHandleAt(h)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	own, err := localAddrs(nh)
	if err != nil {
		t.Fatal(err)
	}
	f := newSweepFilter(d, own)
	if f.routing == nil {
		t.Fatal("no routing model for the seed state")
	}
	srcs := []string{"10.0.1.10", "10.0.1.70", "10.0.1.5"}
	dsts := []string{"198.51.100.10", "8.8.8.8", "192.168.0.50", "192.168.0.254", "192.168.0.112", "192.168.0.255",
		"203.0.113.10", "10.0.1.20", "10.0.1.1", "10.0.1.255", "10.0.2.5"}
	leaving := 0
	for _, s := range srcs {
		for _, dst := range dsts {
			out := strings.TrimSpace(tp.exec(roleGW, "ip", "-o", "route", "get", dst, "from", s, "iif", "vpc-sn"))
			fields := strings.Fields(out)
			kernel := len(fields) > 0 && fields[0] == dst && slices.Contains(fields, "dev") &&
				fields[slices.Index(fields, "dev")+1] == "net1"
			model := !f.own[netip.MustParseAddr(dst)] && f.routing.leavesExt(netip.MustParseAddr(s), netip.MustParseAddr(dst))
			if model != kernel {
				t.Errorf("from %s to %s: model says out of net1 = %v, kernel: %s", s, dst, model, out)
			}
			if kernel {
				leaving++
			}
		}
	}
	if leaving == 0 {
		t.Error("no destination leaves by net1: the comparison proves nothing")
	}
}
