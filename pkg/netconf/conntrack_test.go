package netconf

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// conntrack lists the gateway netns's IPv4 conntrack entries over netlink.
func (tp *topo) conntrack() []*netlink.ConntrackFlow {
	tp.t.Helper()
	fd, err := netns.GetFromPath(tp.path(roleGW))
	if err != nil {
		tp.t.Fatal(err)
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_NETFILTER)
	if err != nil {
		tp.t.Fatal(err)
	}
	defer h.Close()
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		tp.t.Fatal(err)
	}
	return flows
}

// flowDesc is the part of an entry the test cares about.
func flowDesc(f *netlink.ConntrackFlow) string {
	return fmt.Sprintf("%d %s:%d->%s:%d reply %s:%d->%s:%d", f.Forward.Protocol,
		f.Forward.SrcIP, f.Forward.SrcPort, f.Forward.DstIP, f.Forward.DstPort,
		f.Reverse.SrcIP, f.Reverse.SrcPort, f.Reverse.DstIP, f.Reverse.DstPort)
}

// hasFlow reports whether an entry matches: a substring of its flowDesc.
func (tp *topo) hasFlow(sub string) bool {
	for _, f := range tp.conntrack() {
		if strings.Contains(flowDesc(f), sub) {
			return true
		}
	}
	return false
}

func (tp *topo) dumpFlows() string {
	var b strings.Builder
	for _, f := range tp.conntrack() {
		b.WriteString(flowDesc(f) + "\n")
	}
	return b.String()
}

// A spec update that removes a port forward, then a floating IP, deletes the conntrack entries
// of exactly that mapping (made by real traffic), and leaves the others.
func TestConntrackOfRemovedMappings(t *testing.T) {
	tp := newTopo(t)
	tp.addPod(rolePod, "10.0.1.5/24", "10.0.1.1")
	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)

	tp.listenTCP(rolePod, "10.0.1.5:7777")
	if _, err := tp.dialTCP(roleExt, "192.168.0.111:7777"); err != nil { // FIP inbound, established
		t.Fatal(err)
	}
	tp.listenTCP(roleExt, "192.168.0.254:7000")
	if _, err := tp.dialTCP(rolePod, "192.168.0.254:7000"); err != nil { // FIP outbound (SNAT)
		t.Fatal(err)
	}
	tp.synTo(roleExt, "192.168.0.112:8888") // DNAT to 10.0.1.10:80, which does not answer
	if err := tp.do(roleExt, func() error { // unrelated: to the gateway itself
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: net.ParseIP("192.168.0.254"), Port: 40000},
			&net.UDPAddr{IP: net.ParseIP("192.168.0.112"), Port: 5000})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("x"))
		return err
	}); err != nil {
		t.Fatal(err)
	}

	const (
		dnatFlow   = "->192.168.0.112:8888 reply 10.0.1.10:80->"
		fipIn      = "->192.168.0.111:7777 reply 10.0.1.5:7777->"
		fipOut     = "6 10.0.1.5:"
		unrelated  = "17 192.168.0.254:40000->192.168.0.112:5000"
		deleteLine = "conntrack: deleted"
	)
	for _, f := range []string{dnatFlow, fipIn, fipOut, unrelated} {
		if !tp.hasFlow(f) {
			t.Fatalf("traffic made no entry %q:\n%s", f, tp.dumpFlows())
		}
	}

	noDNAT := seedDesired()
	noDNAT.DNATs = nil
	rep := tp.mustConverge(g, noDNAT, false)
	t.Logf("DNAT removed: %q", rep.Changes)
	if !hasChange(rep, deleteLine+" 1 entries of tcp 192.168.0.112:8888 -> 10.0.1.10:80") {
		t.Errorf("report: %q", rep.Changes)
	}
	if tp.hasFlow(dnatFlow) {
		t.Errorf("the removed port forward's entry survived:\n%s", tp.dumpFlows())
	}
	for _, f := range []string{fipIn, fipOut, unrelated} {
		if !tp.hasFlow(f) {
			t.Errorf("unrelated entry %q was deleted:\n%s", f, tp.dumpFlows())
		}
	}

	// The FIP goes, this time seen by a restarted daemon (the "before" is the kernel read-back).
	noFIP := seedDesired()
	noFIP.DNATs, noFIP.FloatingIPs = nil, nil
	g = tp.gateway()
	rep = tp.mustConverge(g, noFIP, false)
	t.Logf("FIP removed: %q", rep.Changes)
	if !hasChange(rep, deleteLine+" 2 entries of fip 192.168.0.111 -> 10.0.1.5") {
		t.Errorf("report: %q", rep.Changes)
	}
	if tp.hasFlow(fipIn) || tp.hasFlow(fipOut) {
		t.Errorf("the removed FIP's entries survived:\n%s", tp.dumpFlows())
	}
	if !tp.hasFlow(unrelated) {
		t.Errorf("unrelated entry was deleted:\n%s", tp.dumpFlows())
	}
	if rep := tp.mustConverge(g, noFIP, true); len(rep.Changes) != 0 {
		t.Errorf("converging again: %q", rep.Changes)
	}
}

// The per-netns count that lets a converge skip the dump is the gateway's own: 0 in a fresh
// netns, the number of entries made there, and unmoved by entries of another netns.
func TestConntrackEntriesCountsTheNetnsOnly(t *testing.T) {
	tp := newTopo(t)
	count := func(role string) uint64 {
		t.Helper()
		netNS, err := ns.GetNS(tp.path(role))
		if err != nil {
			t.Fatal(err)
		}
		defer netNS.Close()
		n, ok, err := conntrackEntries(netNS)
		if err != nil || !ok {
			t.Fatalf("counting: %d, %v, %v", n, ok, err)
		}
		return n
	}
	if n := count(roleGW); n != 0 {
		t.Fatalf("fresh gateway netns: %d entries, want 0:\n%s", n, tp.dumpFlows())
	}
	// Entries in the external host's netns are not the gateway's.
	add := func(role string, n int) {
		t.Helper()
		_, h := conntrackHandle(t, tp, role)
		for i := range n {
			src, dst := net.IPv4(203, 0, 113, byte(1+i)).To4(), net.IPv4(198, 51, 100, 1).To4()
			if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 600,
				Forward: netlink.IPTuple{SrcIP: src, DstIP: dst, Protocol: unix.IPPROTO_UDP, SrcPort: 40000, DstPort: 53},
				Reverse: netlink.IPTuple{SrcIP: dst, DstIP: src, Protocol: unix.IPPROTO_UDP, SrcPort: 53, DstPort: 40000}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	add(roleExt, 5)
	if n := count(roleGW); n != 0 {
		t.Errorf("gateway netns after 5 entries in another netns: %d entries, want 0", n)
	}
	add(roleGW, 3)
	if n, listed := count(roleGW), len(tp.conntrack()); n != 3 || listed != 3 {
		t.Errorf("gateway netns after 3 entries: counted %d, listed %d, want 3", n, listed)
	}
}

// tupleFilter matches entries by original destination port, and records every flow it saw as
// flowDesc (the filter must not keep the flow itself: deleteConntrack reuses it).
type tupleFilter struct {
	port uint16
	seen []string
}

func (f *tupleFilter) MatchConntrackFlow(fl *netlink.ConntrackFlow) bool {
	f.seen = append(f.seen, flowDesc(fl))
	return fl.Forward.DstPort == f.port
}

// The clean-up's own dump reads each entry's tuples as vishvananda/netlink's parser does (TCP
// and UDP entries of a DNATed flow), and deletes exactly the entries its filter matches.
func TestDeleteConntrackReadsLikeTheLibrary(t *testing.T) {
	tp := newTopo(t)
	fd, h := conntrackHandle(t, tp, roleGW)
	client, eip, internal := net.IPv4(203, 0, 113, 9).To4(), net.IPv4(198, 51, 100, 7).To4(), net.IPv4(10, 0, 1, 5).To4()
	for i := range 300 {
		proto := []uint8{unix.IPPROTO_UDP, unix.IPPROTO_TCP}[i%2]
		port := uint16(5000 + i%3) // 5000, 5001, 5002
		fl := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 600,
			Forward: netlink.IPTuple{SrcIP: client, DstIP: eip, Protocol: proto, SrcPort: uint16(1024 + i), DstPort: port},
			Reverse: netlink.IPTuple{SrcIP: internal, DstIP: client, Protocol: proto, SrcPort: 80, DstPort: uint16(1024 + i)}} // DNATed
		if proto == unix.IPPROTO_TCP {
			fl.ProtoInfo = &netlink.ProtoInfoTCP{State: 3} // ESTABLISHED
		}
		if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, fl); err != nil {
			t.Fatalf("creating entry %d: %v", i, err)
		}
	}
	var want []string
	for _, fl := range tp.conntrack() {
		want = append(want, flowDesc(fl))
	}
	f := &tupleFilter{port: 5001}
	n, err := deleteConntrack(fd, f)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(want)
	slices.Sort(f.seen)
	if !slices.Equal(f.seen, want) {
		t.Errorf("the dump read %d entries, the library %d; first difference:\n%s", len(f.seen), len(want), firstDiff(f.seen, want))
	}
	if n != 100 {
		t.Errorf("deleted %d entries, want the 100 to port 5001", n)
	}
	left := tp.conntrack()
	for _, fl := range left {
		if fl.Forward.DstPort == 5001 {
			t.Errorf("entry to port 5001 left: %s", flowDesc(fl))
		}
	}
	if len(left) != len(want)-100 {
		t.Errorf("%d entries left, want %d", len(left), len(want)-100)
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return a[i] + "\n" + b[i]
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(a), len(b))
}

// conntrackHandle is role's netns and a netfilter netlink handle in it, both closed when the
// test ends.
func conntrackHandle(t testing.TB, tp *topo, role string) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	fd, err := netns.GetFromPath(tp.path(role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fd.Close() })
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return fd, h
}
