package netconf

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nft"
)

// With 10 000 unrelated entries in the gateway's conntrack table, a fast converge that changes
// one port forward's target, removes another and adds a third deletes the established
// connections of the first two by their mark (no dump of the table), the entries that were sent
// to the third's key before it existed by a dump the kernel filters by that key, and leaves
// every unrelated entry.
func TestNFTConntrackCleanedByMark(t *testing.T) {
	needNFT(t)
	tp := newTopo(t)
	tp.addPod(rolePod, "10.0.1.5/24", "10.0.1.1")
	tp.addPod(rolePod2, "10.0.1.10/24", "10.0.1.1")
	g := tp.gateway()
	d := nftSeed() // 192.168.0.112:8888/tcp -> 10.0.1.10:80
	d.DNATs = append(d.DNATs, annotations.DNAT{EIP: "192.168.0.112", Protocol: "tcp", ExternalPort: 9999, InternalIP: "10.0.1.5", InternalPort: 7777})
	tp.mustConverge(g, d, true)
	tp.echoServer(rolePod2, "10.0.1.10:80")
	tp.echoServer(rolePod, "10.0.1.5:7777")
	for _, addr := range []string{"192.168.0.112:8888", "192.168.0.112:9999"} {
		tp.openEcho(roleExt, addr)
	}
	// Each connection carries the mark of the port forward that translated it.
	fwd := func(port uint16, to string, toPort uint16) nft.Element {
		return nft.Element{Addr: netip.MustParseAddr("192.168.0.112"), Proto: unix.IPPROTO_TCP, Port: port, To: netip.MustParseAddr(to), ToPort: toPort}
	}
	for _, e := range []nft.Element{fwd(8888, "10.0.1.10", 80), fwd(9999, "10.0.1.5", 7777)} {
		desc := fmt.Sprintf("->%s:%d reply %s:%d->", e.Addr, e.Port, e.To, e.ToPort)
		found := false
		for _, fl := range tp.conntrack() {
			if strings.Contains(flowDesc(fl), desc) {
				found = true
				if fl.Mark != nft.PortMark(e) {
					t.Errorf("%s: mark %#x, want %#x", flowDesc(fl), fl.Mark, nft.PortMark(e))
				}
			}
		}
		if !found {
			t.Fatalf("no entry %s:\n%s", desc, tp.dumpFlows())
		}
	}

	// 10 000 unrelated entries (UDP to an EIP port no rule translates), and 3 sent to the key
	// of the port forward added below.
	_, h := conntrackHandle(t, tp, roleGW)
	client, eip := net.IPv4(203, 0, 113, 9).To4(), net.IPv4(192, 168, 0, 112).To4()
	plant := func(sport, dport uint16) {
		if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 600,
			Forward: netlink.IPTuple{SrcIP: client, DstIP: eip, Protocol: unix.IPPROTO_UDP, SrcPort: sport, DstPort: dport},
			Reverse: netlink.IPTuple{SrcIP: eip, DstIP: client, Protocol: unix.IPPROTO_UDP, SrcPort: dport, DstPort: sport}}); err != nil {
			t.Fatalf("planting %d -> %d: %v", sport, dport, err)
		}
	}
	const unrelated = 10000
	for i := range unrelated {
		plant(uint16(1024+i), 5000)
	}
	for i := range 3 {
		plant(uint16(1024+i), 6000)
	}
	count := func(dport uint16) (n int) {
		for _, fl := range tp.conntrack() {
			if fl.Forward.Protocol == unix.IPPROTO_UDP && fl.Forward.DstPort == dport && fl.Forward.SrcIP.Equal(client) {
				n++
			}
		}
		return n
	}
	// A full converge sweeps the whole table and finds nothing to delete.
	if rep := tp.mustConverge(g, d, true); len(rep.Changes) != 0 {
		t.Fatalf("full converge of the same state: %q", rep.Changes)
	}

	d.DNATs[0].InternalPort = 81                                                                                                                       // changed
	d.DNATs = d.DNATs[:1]                                                                                                                              // 9999 removed
	d.DNATs = append(d.DNATs, annotations.DNAT{EIP: "192.168.0.112", Protocol: "udp", ExternalPort: 6000, InternalIP: "10.0.1.5", InternalPort: 6000}) // added
	rep := tp.mustConverge(g, d, false)
	for _, want := range []string{
		"conntrack: deleted the entries of tcp 192.168.0.112:8888 -> 10.0.1.10:80, tcp 192.168.0.112:9999 -> 10.0.1.5:7777 by their mark",
		"conntrack: deleted 3 entries (0 translated by mappings or SNATs no longer desired, 3 never translated by mappings or SNATs desired now)",
	} {
		if !hasChange(rep, want) {
			t.Errorf("no %q in %q", want, rep.Changes)
		}
	}
	flows := tp.dumpFlows()
	for _, gone := range []string{"->192.168.0.112:8888 reply 10.0.1.10:80->", "->192.168.0.112:9999 reply 10.0.1.5:7777->"} {
		if strings.Contains(flows, gone) {
			t.Errorf("an entry %s survived", gone)
		}
	}
	if n := count(6000); n != 0 {
		t.Errorf("%d entries sent to the added port forward's key before it existed survived", n)
	}
	if n := count(5000); n != unrelated {
		t.Errorf("%d of the %d unrelated entries left", n, unrelated)
	}
}

// An entry a port forward translated without carrying its mark (made before the table set
// marks: an upgrade, a switch from iptables, a replica on an older release) is given the mark
// by the next sweep of the whole table, after which its forward's removal deletes it by the
// mark. An entry that two mappings translated (a port forward's connection that also left by
// SNAT) cannot carry both marks: it keeps the clean-up on dumps, which delete it with its port
// forward; once a sweep finds no such entry, a change is cleaned up by marks again.
func TestNFTUnmarkedEntriesMarkedBySweep(t *testing.T) {
	needNFT(t)
	tp := newTopo(t)
	g := tp.gateway()
	d := nftSeed() // 192.168.0.112:8888/tcp -> 10.0.1.10:80
	d.DNATs = append(d.DNATs, annotations.DNAT{EIP: "192.168.0.112", Protocol: "tcp", ExternalPort: 9999, InternalIP: "10.0.1.5", InternalPort: 7777})
	// Translated by a UDP twin of the seed's forward, as its entry would be but for the mark.
	d.DNATs = append(d.DNATs, annotations.DNAT{EIP: "192.168.0.112", Protocol: "udp", ExternalPort: 8888, InternalIP: "10.0.1.10", InternalPort: 80})
	tp.mustConverge(g, d, true)
	_, h := conntrackHandle(t, tp, roleGW)
	client, eip := net.IPv4(203, 0, 113, 9).To4(), net.IPv4(192, 168, 0, 112).To4()
	plant := func(dport uint16, to net.IP, toPort uint16, replyTo net.IP) {
		if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 600,
			Forward: netlink.IPTuple{SrcIP: client, DstIP: eip, Protocol: unix.IPPROTO_UDP, SrcPort: 40000, DstPort: dport},
			Reverse: netlink.IPTuple{SrcIP: to, DstIP: replyTo, Protocol: unix.IPPROTO_UDP, SrcPort: toPort, DstPort: 40000}}); err != nil {
			t.Fatal(err)
		}
	}
	udpFwd := "->192.168.0.112:8888 reply 10.0.1.10:80->"
	plant(8888, net.IPv4(10, 0, 1, 10).To4(), 80, client)
	if rep := tp.mustConverge(g, d, true); !hasChange(rep, "conntrack: marked 1 entries with the mark of the mapping that translates them") {
		t.Fatalf("full converge over an unmarked entry: want it marked, got %q", rep.Changes)
	}
	want := nft.PortMark(nft.Element{Addr: netip.MustParseAddr("192.168.0.112"), Proto: unix.IPPROTO_UDP, Port: 8888, To: netip.MustParseAddr("10.0.1.10"), ToPort: 80})
	found := false
	for _, fl := range tp.conntrack() {
		if strings.Contains(flowDesc(fl), udpFwd) {
			found = true
			if fl.Mark != want || fl.TimeOut < 500 {
				t.Fatalf("%s: mark %#x, timeout %d s after the sweep, want mark %#x and the entry otherwise as planted (600 s)", flowDesc(fl), fl.Mark, fl.TimeOut, want)
			}
		}
	}
	if !found {
		t.Fatalf("the entry to mark is gone:\n%s", tp.dumpFlows())
	}
	d.DNATs = d.DNATs[:2] // the UDP forward removed
	rep := tp.mustConverge(g, d, false)
	if !hasChange(rep, "conntrack: deleted the entries of udp 192.168.0.112:8888 -> 10.0.1.10:80 by their mark") || tp.hasFlow(udpFwd) {
		t.Errorf("removing the forward of an entry the sweep marked: want the clean-up by its mark, got %q\n%s", rep.Changes, tp.dumpFlows())
	}

	// Forwarded by tcp 9999 -> 10.0.1.5:7777 and sent out with an EIP: no mark fits it.
	if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 600,
		Forward:   netlink.IPTuple{SrcIP: client, DstIP: eip, Protocol: unix.IPPROTO_TCP, SrcPort: 40001, DstPort: 9999},
		Reverse:   netlink.IPTuple{SrcIP: net.IPv4(10, 0, 1, 5).To4(), DstIP: net.IPv4(192, 168, 0, 111).To4(), Protocol: unix.IPPROTO_TCP, SrcPort: 7777, DstPort: 40001},
		ProtoInfo: &netlink.ProtoInfoTCP{State: 3}}); err != nil { // ESTABLISHED
		t.Fatal(err)
	}
	if rep := tp.mustConverge(g, d, true); len(rep.Changes) != 0 {
		t.Fatalf("full converge: %q", rep.Changes)
	}
	d.DNATs = d.DNATs[:1] // 9999 removed
	rep = tp.mustConverge(g, d, false)
	if !hasChange(rep, "conntrack: deleted 1 entries of tcp 192.168.0.112:9999 -> 10.0.1.5:7777") || tp.hasFlow("->192.168.0.112:9999 ") {
		t.Errorf("removing the forward of an entry no mark fits: want the dump's clean-up, got %q\n%s", rep.Changes, tp.dumpFlows())
	}
	// That dump swept the whole table and found nothing unmarked left: marks again (with an
	// entry in the table, so there is conntrack work).
	plant(5000, eip, 5000, client) // untranslated, to a port no rule has
	d.DNATs = nil
	rep = tp.mustConverge(g, d, false)
	if !hasChange(rep, "conntrack: deleted the entries of tcp 192.168.0.112:8888 -> 10.0.1.10:80 by their mark") {
		t.Errorf("after a sweep found every entry marked: want the clean-up by marks, got %q", rep.Changes)
	}
}

// Floating IPs and SNAT rules mark their connections too. With 10 000 unrelated entries in the
// table: changing the SNAT rule's EIP deletes its connection by its mark and old EIP (the FIP's
// stay, and so does one through the new EIP); an internal IP's floating IP removed while its
// SNAT rule gives it the same EIP keeps its outbound connection (translated alike: a dump,
// which gives the entry the SNAT rule's mark, so the next change is cleaned up by marks again);
// moving a FIP to another internal IP, then removing it and the SNAT rule, deletes their
// connections (both ways) by their marks; a kernel without filtered flushes gets the dump.
func TestNFTConntrackFIPAndSNATCleanedByMark(t *testing.T) {
	needNFT(t)
	tp := newTopo(t)
	tp.addPod(rolePod, "10.0.1.5/24", "10.0.1.1")
	tp.addPod(rolePod2, "10.0.1.10/24", "10.0.1.1")
	g := tp.gateway()
	d := nftSeed() // FIP 192.168.0.111 <-> 10.0.1.5, SNAT 10.0.1.0/24 -> 192.168.0.112
	tp.mustConverge(g, d, true)
	tp.echoServer(rolePod, "10.0.1.5:7777")
	tp.echoServer(roleExt, "192.168.0.254:7000")
	connect := tp.openEcho
	connect(roleExt, "192.168.0.111:7777")  // FIP inbound
	connect(rolePod, "192.168.0.254:7000")  // FIP outbound
	connect(rolePod2, "192.168.0.254:7000") // SNAT
	fipIn := "->192.168.0.111:7777 reply 10.0.1.5:7777->"
	fipOut := "6 10.0.1.5:"
	snatOut := "6 10.0.1.10:"
	fip := nft.FIPMark(netip.MustParseAddr("192.168.0.111"), netip.MustParseAddr("10.0.1.5"))
	snat := nft.SNATMark(netip.MustParsePrefix("10.0.1.0/24"))
	markOf := func(sub string) (uint32, bool) {
		for _, fl := range tp.conntrack() {
			if strings.Contains(flowDesc(fl), sub) {
				return fl.Mark, true
			}
		}
		return 0, false
	}
	for _, c := range []struct {
		sub  string
		mark uint32
	}{{fipIn, fip}, {fipOut, fip}, {snatOut, snat}} {
		if m, ok := markOf(c.sub); !ok || m != c.mark {
			t.Fatalf("entry %q: mark %#x (found %v), want %#x\n%s", c.sub, m, ok, c.mark, tp.dumpFlows())
		}
	}

	_, h := conntrackHandle(t, tp, roleGW)
	client, eip := net.IPv4(203, 0, 113, 9).To4(), net.IPv4(192, 168, 0, 112).To4()
	const unrelated = 10000
	for i := range unrelated {
		if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 600,
			Forward: netlink.IPTuple{SrcIP: client, DstIP: eip, Protocol: unix.IPPROTO_UDP, SrcPort: uint16(1024 + i), DstPort: 5000},
			Reverse: netlink.IPTuple{SrcIP: eip, DstIP: client, Protocol: unix.IPPROTO_UDP, SrcPort: 5000, DstPort: uint16(1024 + i)}}); err != nil {
			t.Fatal(err)
		}
	}
	left := func() (n int) {
		for _, fl := range tp.conntrack() {
			if fl.Forward.Protocol == unix.IPPROTO_UDP && fl.Forward.DstPort == 5000 && fl.Forward.SrcIP.Equal(client) {
				n++
			}
		}
		return n
	}
	if rep := tp.mustConverge(g, d, true); len(rep.Changes) != 0 { // the sweep finds every entry marked
		t.Fatalf("full converge of the same state: %q", rep.Changes)
	}

	// The rule keeps its mark with another EIP: the flush takes its entries translated to the
	// old EIP only. An entry as a connection opened between the commit and the flush would
	// leave (the rule's mark, the new EIP) stays.
	if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 600, Mark: snat,
		Forward: netlink.IPTuple{SrcIP: net.IPv4(10, 0, 1, 10).To4(), DstIP: net.IPv4(192, 168, 0, 254).To4(), Protocol: unix.IPPROTO_UDP, SrcPort: 2000, DstPort: 53},
		Reverse: netlink.IPTuple{SrcIP: net.IPv4(192, 168, 0, 254).To4(), DstIP: net.IPv4(192, 168, 0, 111).To4(), Protocol: unix.IPPROTO_UDP, SrcPort: 53, DstPort: 2000}}); err != nil {
		t.Fatal(err)
	}
	d.SNATs[0].EIP = "192.168.0.111"
	rep := tp.mustConverge(g, d, false)
	if !hasChange(rep, "conntrack: deleted the entries of 1 SNAT rules by their mark and old EIP") {
		t.Errorf("SNAT rule's EIP changed: want the clean-up by its mark, got %q", rep.Changes)
	}
	if tp.hasFlow(snatOut) || !tp.hasFlow(fipIn) || !tp.hasFlow(fipOut) || !tp.hasFlow("17 10.0.1.10:2000->") {
		t.Errorf("after the SNAT change, want the old EIP's SNAT connection gone, the new EIP's and the FIP's kept:\n%s", tp.dumpFlows())
	}

	// The FIP's connections, both ways; 10.0.1.5 now leaves by the SNAT rule, with the same EIP
	// the FIP gave it, so its outbound entry would be translated alike: the dump keeps it.
	d.EIPs = append(d.EIPs, annotations.EIP{EipCIDR: "192.168.0.113/24", Gateway: "192.168.0.254"})
	d.FloatingIPs = []annotations.FloatingIP{{EIP: "192.168.0.113", InternalIP: "10.0.1.200"}}
	rep = tp.mustConverge(g, d, false)
	if hasChange(rep, "conntrack: deleted the entries of fip 192.168.0.111 -> 10.0.1.5 by their mark") ||
		!hasChange(rep, "conntrack: deleted 1 entries of fip 192.168.0.111 -> 10.0.1.5") ||
		!hasChange(rep, "conntrack: marked 1 entries with the mark of the mapping that translates them") {
		t.Errorf("FIP removed whose outbound entries an SNAT rule translates alike: want the dump, got %q", rep.Changes)
	}
	if tp.hasFlow(fipIn) || !tp.hasFlow(fipOut) {
		t.Errorf("want the FIP's inbound connection gone and the outbound one kept:\n%s", tp.dumpFlows())
	}
	// That dump found the outbound entry carrying the FIP's mark, and gave it the SNAT rule's.
	if m, _ := markOf(fipOut); m != snat {
		t.Errorf("the kept outbound entry: mark %#x, want the SNAT rule's %#x", m, snat)
	}
	d.SNATs[0].EIP = "192.168.0.112"
	rep = tp.mustConverge(g, d, false)
	if !hasChange(rep, "conntrack: deleted the entries of 1 SNAT rules by their mark and old EIP") || tp.hasFlow(fipOut) {
		t.Errorf("an SNAT change over the entry the dump marked: want the clean-up by marks deleting it, got %q\n%s", rep.Changes, tp.dumpFlows())
	}

	// Marked again (the last sweep found nothing unmarked). The FIP moved to pod2: its old
	// target's entries by the old mark, pod2's SNAT entries by a dump filtered by its source.
	d.FloatingIPs[0].InternalIP = "10.0.1.10"
	rep = tp.mustConverge(g, d, false)
	if !hasChange(rep, "conntrack: deleted the entries of fip 192.168.0.113 -> 10.0.1.200 by their mark") {
		t.Errorf("FIP moved to another internal IP: want the clean-up by its old mark, got %q", rep.Changes)
	}
	// Connections through the FIP both ways and through the SNAT rule, then both removed: each
	// deleted by its mark (the SNAT rule's with its old EIP).
	tp.echoServer(rolePod2, "10.0.1.10:7777")
	connect(roleExt, "192.168.0.113:7777")
	connect(rolePod2, "192.168.0.254:7000")
	connect(rolePod, "192.168.0.254:7000")
	fip2In, fip2Out := "->192.168.0.113:7777 reply 10.0.1.10:7777->", "reply 192.168.0.254:7000->192.168.0.113:"
	snat2Out := "reply 192.168.0.254:7000->192.168.0.112:"
	fip2 := nft.FIPMark(netip.MustParseAddr("192.168.0.113"), netip.MustParseAddr("10.0.1.10"))
	for _, c := range []struct {
		sub  string
		mark uint32
	}{{fip2In, fip2}, {fip2Out, fip2}, {snat2Out, snat}} {
		if m, ok := markOf(c.sub); !ok || m != c.mark {
			t.Fatalf("entry %q: mark %#x (found %v), want %#x\n%s", c.sub, m, ok, c.mark, tp.dumpFlows())
		}
	}
	d.SNATs, d.FloatingIPs = nil, nil
	rep = tp.mustConverge(g, d, false)
	if !hasChange(rep, "conntrack: deleted the entries of fip 192.168.0.113 -> 10.0.1.10 by their mark") ||
		!hasChange(rep, "conntrack: deleted the entries of 1 SNAT rules by their mark and old EIP") {
		t.Errorf("SNAT rule and FIP removed: want both cleaned up by marks, got %q", rep.Changes)
	}
	for _, gone := range []string{fip2In, fip2Out, snat2Out} {
		if tp.hasFlow(gone) {
			t.Errorf("entry %q survived:\n%s", gone, tp.dumpFlows())
		}
	}

	// A kernel that cannot narrow a flush by a tuple (before Linux 6.12): the SNAT change is
	// cleaned up by the dump.
	d.SNATs = []annotations.SNAT{{EIP: "192.168.0.112", InternalCIDR: "10.0.1.0/24"}}
	tp.mustConverge(g, d, false)
	connect(rolePod, "192.168.0.254:7000")
	g.nft.(*netlinkNFT).noFlushFilter.Store(true)
	d.SNATs[0].EIP = "192.168.0.111"
	rep = tp.mustConverge(g, d, false)
	if hasChange(rep, "conntrack: deleted the entries of 1 SNAT rules by their mark and old EIP") ||
		!hasChange(rep, "conntrack: deleted 1 entries translated by mappings or SNATs no longer desired") || tp.hasFlow(snat2Out) {
		t.Errorf("SNAT change without filtered flushes: want the dump, got %q\n%s", rep.Changes, tp.dumpFlows())
	}
	if n := left(); n != unrelated {
		t.Errorf("%d of the %d unrelated entries left", n, unrelated)
	}
}

// openEcho dials addr from role over TCP, exchanges one line with the echo server there and
// leaves the connection open until the test ends, so its conntrack entry stays.
func (tp *topo) openEcho(role, addr string) {
	tp.t.Helper()
	c, err := tp.dialTCP(role, addr)
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() { c.Close() })
	if _, err := fmt.Fprintln(c, "hello"); err != nil {
		tp.t.Fatal(err)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		tp.t.Fatalf("%s -> %s: %v", role, addr, err)
	}
}

// BenchmarkSweepMarks is what the first sweep after an upgrade (or a switch from iptables) costs
// a gateway with 10 000 connections made before its table marked them: a full converge that
// gives each entry its mark ("mark"), against the full converge right after it, which finds
// them marked ("marked"), in the same topology. Reproduce with
//
//	go test -run '^$' -bench SweepMarks -benchtime 5x ./pkg/netconf/
func BenchmarkSweepMarks(b *testing.B) {
	tp := newTopo(b)
	g := tp.gateway()
	d := nftSeed()
	d.DNATs = append(d.DNATs, annotations.DNAT{EIP: "192.168.0.112", Protocol: "udp", ExternalPort: 8888, InternalIP: "10.0.1.10", InternalPort: 80})
	tp.mustConverge(g, d, true)
	_, h := conntrackHandle(b, tp, roleGW)
	eip, to := net.IPv4(192, 168, 0, 112).To4(), net.IPv4(10, 0, 1, 10).To4()
	var mark, marked time.Duration
	for range b.N {
		b.StopTimer()
		if err := h.ConntrackTableFlush(netlink.ConntrackTable); err != nil {
			b.Fatal(err)
		}
		for i := range 10000 { // UDP through the twin of the seed's forward, unmarked
			client := net.IPv4(203, 0, 113, byte(1+i%250)).To4()
			sport := uint16(1024 + i/250)
			if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 600,
				Forward: netlink.IPTuple{SrcIP: client, DstIP: eip, Protocol: unix.IPPROTO_UDP, SrcPort: sport, DstPort: 8888},
				Reverse: netlink.IPTuple{SrcIP: to, DstIP: client, Protocol: unix.IPPROTO_UDP, SrcPort: 80, DstPort: sport}}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		start := time.Now()
		if rep := tp.mustConverge(g, d, true); !hasChange(rep, "conntrack: marked 10000 entries with the mark of the mapping that translates them") {
			b.Fatalf("first sweep: %q", rep.Changes)
		}
		mid := time.Now()
		if rep := tp.mustConverge(g, d, true); len(rep.Changes) != 0 {
			b.Fatalf("second sweep: %q", rep.Changes)
		}
		mark, marked = mark+mid.Sub(start), marked+time.Since(mid)
	}
	b.ReportMetric(float64(mark.Microseconds())/1000/float64(b.N), "mark-ms")
	b.ReportMetric(float64(marked.Microseconds())/1000/float64(b.N), "marked-ms")
}
