package netconf

import (
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/nft"
)

type countFilter struct{ n int }

func (c *countFilter) MatchConntrackFlow(*netlink.ConntrackFlow) bool { c.n++; return false }

// The kernel features the clean-up by marks relies on, with 10 000 other entries in the netns:
// a dump filtered by mark, by the original tuple's destination or by the reply tuple's source
// returns exactly the entries selected, and a flush by mark deletes exactly the marked ones.
// With -v it logs each request's time (median of 7; docs/nftables.md, "A populated conntrack
// table"); VPCNAT_CONNTRACK_ENTRIES=0 measures an empty table.
func TestConntrackKernelFilters(t *testing.T) {
	tp := newTopo(t)
	fd, h := conntrackHandle(t, tp, roleGW)
	k := tp.nftIn(roleGW) // the flush goes over the nf_tables socket, as in a converge
	client, eip, internal := net.IPv4(203, 0, 113, 9).To4(), net.IPv4(198, 51, 100, 7).To4(), net.IPv4(10, 0, 1, 5).To4()
	plant := func(i int, port uint16, mark uint32, rsrc net.IP) {
		fl := &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 600, Mark: mark,
			Forward: netlink.IPTuple{SrcIP: client, DstIP: eip, Protocol: unix.IPPROTO_UDP, SrcPort: uint16(1024 + i), DstPort: port},
			Reverse: netlink.IPTuple{SrcIP: rsrc, DstIP: client, Protocol: unix.IPPROTO_UDP, SrcPort: port, DstPort: uint16(1024 + i)}}
		if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, fl); err != nil {
			t.Fatalf("creating entry %d: %v", i, err)
		}
	}
	n := 10000
	if os.Getenv("VPCNAT_CONNTRACK_ENTRIES") == "0" {
		n = 0
	}
	for i := range n {
		plant(i, 5000, 0, eip)
	}
	few := func() {
		for i := range 5 {
			plant(i, 6000, 0x42, internal)
		}
	}
	few()
	timeIt := func(name string, want int, fn func() int) {
		var ds []time.Duration
		for range 7 {
			s := time.Now()
			if got := fn(); got != want {
				t.Errorf("%s: %d entries, want %d", name, got, want)
			}
			ds = append(ds, time.Since(s))
			few()
		}
		slices.Sort(ds)
		t.Logf("%-40s median %v (min %v max %v)", name, ds[3], ds[0], ds[6])
	}
	timeIt("dump whole, read tuples", n+5, func() int {
		c := &countFilter{}
		if _, err := deleteConntrack(fd, c); err != nil {
			t.Fatal(err)
		}
		return c.n
	})
	timeIt("dump filtered by mark", 5, func() int {
		c := &countFilter{}
		if _, err := deleteConntrackWhere(fd, ctFilterMark(0x42, ^uint32(0)), c); err != nil {
			t.Fatal(err)
		}
		return c.n
	})
	timeIt("dump filtered by orig dst.proto.dport", 5, func() int {
		c := &countFilter{}
		if _, err := deleteConntrackWhere(fd, ctFilterTuple(ctTupleFilter{dst: netip.MustParseAddr("198.51.100.7"), proto: unix.IPPROTO_UDP, dport: 6000}), c); err != nil {
			t.Fatal(err)
		}
		return c.n
	})
	timeIt("dump filtered by reply src", 5, func() int {
		c := &countFilter{}
		if _, err := deleteConntrackWhere(fd, ctFilterTuple(ctTupleFilter{reply: true, src: netip.MustParseAddr("10.0.1.5")}), c); err != nil {
			t.Fatal(err)
		}
		return c.n
	})
	timeIt("flush by mark, then the marked ones counted", 0, func() int {
		if err := k.FlushConntrackMark(nft.MarkFlush{Mark: 0x42}); err != nil {
			t.Fatal(err)
		}
		c := &countFilter{}
		if _, err := deleteConntrackWhere(fd, ctFilterMark(0x42, ^uint32(0)), c); err != nil {
			t.Fatal(err)
		}
		return c.n
	})
	timeIt("flush by mark", 0, func() int {
		if err := k.FlushConntrackMark(nft.MarkFlush{Mark: 0x42}); err != nil {
			t.Fatal(err)
		}
		return 0
	})
	timeIt("flush by mark, nothing marked so", 0, func() int {
		if err := k.FlushConntrackMark(nft.MarkFlush{Mark: 0x43}); err != nil {
			t.Fatal(err)
		}
		return 0
	})
	timeIt("count (nf_conntrack_count)", n+5, func() int {
		nsh, err := ns.GetNS(tp.path(roleGW))
		if err != nil {
			t.Fatal(err)
		}
		defer nsh.Close()
		c, _, _ := conntrackEntries(nsh)
		return int(c)
	})
}

// ctFilterMark is the filter of a dump or flush: entries whose conntrack mark, masked, is mark.
func ctFilterMark(mark, mask uint32) []nl.NetlinkRequestData {
	return []nl.NetlinkRequestData{nl.NewRtAttr(ctaMark, be32(mark)), nl.NewRtAttr(ctaMarkMask, be32(mask))}
}
