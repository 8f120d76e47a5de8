package ctsync

import (
	"net/netip"
	"testing"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// TestFromFlow: a kernel flow as the conntrack library reads it becomes the replicated entry;
// the TCP flags come from the high byte of struct nf_ct_tcp_flags {flags; mask}.
func TestFromFlow(t *testing.T) {
	f := conntrack.NewFlow(unix.IPPROTO_TCP, conntrack.Status(0x19e), netip.MustParseAddr("203.0.113.12"), netip.MustParseAddr("198.51.100.1"), 41000, 8001, 431999, 0)
	f.TupleReply.IP.DestinationAddress = netip.MustParseAddr("198.51.100.10")
	f.TupleReply.Proto.DestinationPort = 6573
	f.ProtoInfo.TCP = &conntrack.ProtoInfoTCP{State: 3, OriginalWindowScale: 7, ReplyWindowScale: 7, OriginalFlags: 0x2300, ReplyFlags: 0x2300}
	e, ok := FromFlow(f)
	if !ok || e != snatEntry {
		t.Fatalf("FromFlow = %+v, %v; want %+v", e, ok, snatEntry)
	}
	f.TupleOrig.Proto.Protocol = unix.IPPROTO_SCTP
	if e, ok := FromFlow(f); ok {
		t.Fatalf("an SCTP flow is replicated: %+v", e)
	}
	if e, ok := FromFlow(conntrack.Flow{}); ok {
		t.Fatalf("an empty flow is replicated: %+v", e)
	}
}

func TestOwnTraffic(t *testing.T) {
	own := netip.MustParseAddr("10.16.0.7")
	sk := ownTraffic(own)
	mine := dnatEntry
	mine.Reply.Src = own
	lo := dnatEntry
	lo.Orig.Src, lo.Orig.Dst = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.1")
	for name, c := range map[string]struct {
		e    Entry
		want bool
	}{"gateway's": {snatEntry, false}, "to eth0": {mine, true}, "loopback": {lo, true}} {
		if got := sk(c.e); got != c.want {
			t.Errorf("%s: skipped %v, want %v", name, got, c.want)
		}
	}
}
