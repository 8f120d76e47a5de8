package ctsync

import (
	"net/netip"
	"testing"

	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

func attr(attrs []netfilter.Attribute, path ...uint16) (netfilter.Attribute, bool) {
	for _, a := range attrs {
		if a.Type == path[0] {
			if len(path) == 1 {
				return a, true
			}
			return attr(a.Children, path[1:]...)
		}
	}
	return netfilter.Attribute{}, false
}

// TestCreateRequestNAT: a committed entry's mapping is written as the kernel makes one: the
// reply tuple untranslated, and a one-address, one-port CTA_NAT_SRC/CTA_NAT_DST.
func TestCreateRequestNAT(t *testing.T) {
	for _, c := range []struct {
		name               string
		e                  Entry
		natSrc, natDst     string // "" = none
		statusOut, tcpFlag byte
	}{
		{name: "SNAT with a remapped port", e: snatEntry, natSrc: "198.51.100.10:6573", statusOut: 0x0e},
		{name: "DNAT", e: dnatEntry, natDst: "203.0.113.10:5000", statusOut: 0x0e},
		{name: "FIP outbound, port kept", e: Entry{Proto: unix.IPPROTO_TCP,
			Orig:   Tuple{Src: netip.MustParseAddr("203.0.113.11"), Dst: netip.MustParseAddr("198.51.100.1"), SrcPort: 50253, DstPort: 8002},
			Reply:  Tuple{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("198.51.100.11"), SrcPort: 8002, DstPort: 50253},
			Status: 0x18e, Timeout: 10}, natSrc: "198.51.100.11:50253", statusOut: 0x0e},
		{name: "no NAT (routed)", e: Entry{Proto: unix.IPPROTO_UDP,
			Orig:   Tuple{Src: netip.MustParseAddr("203.0.113.11"), Dst: netip.MustParseAddr("198.51.100.1"), SrcPort: 1, DstPort: 2},
			Reply:  Tuple{Src: netip.MustParseAddr("198.51.100.1"), Dst: netip.MustParseAddr("203.0.113.11"), SrcPort: 2, DstPort: 1},
			Status: 0x8, Timeout: 10}, statusOut: 0x08},
	} {
		m, err := createRequest(c.e, 42, true)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		h, attrs, err := netfilter.UnmarshalNetlink(m)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if h.SubsystemID != netfilter.NFSubsysCTNetlink || h.MessageType != ipctnlMsgCtNew || h.Family != netfilter.ProtoIPv4 {
			t.Errorf("%s: header %v", c.name, h)
		}
		reply, _ := attr(attrs, ctaTupleReply, ctaTupleIP, ctaIPv4Src)
		if got, _ := netip.AddrFromSlice(reply.Data); got != c.e.Orig.Dst {
			t.Errorf("%s: reply tuple's source %v, want the untranslated %v", c.name, got, c.e.Orig.Dst)
		}
		if st, _ := attr(attrs, ctaStatus); st.Uint32() != uint32(c.statusOut) {
			t.Errorf("%s: status %#x, want %#x", c.name, st.Uint32(), c.statusOut)
		}
		if to, _ := attr(attrs, ctaTimeout); to.Uint32() != 42 {
			t.Errorf("%s: timeout %d, want 42", c.name, to.Uint32())
		}
		for typ, want := range map[uint16]string{ctaNATSrc: c.natSrc, ctaNATDst: c.natDst} {
			ip, okIP := attr(attrs, typ, ctaNATv4MinIP)
			port, _ := attr(attrs, typ, ctaNATProto, ctaProtoNATPortMax)
			got := ""
			if okIP {
				a, _ := netip.AddrFromSlice(ip.Data)
				got = netip.AddrPortFrom(a, port.Uint16()).String()
			}
			if got != want {
				t.Errorf("%s: NAT attribute %d = %q, want %q", c.name, typ, got, want)
			}
		}
		if c.e.Proto == unix.IPPROTO_TCP {
			fl, _ := attr(attrs, ctaProtoinfo, ctaProtoinfoTCP, ctaProtoinfoTCPFlagsOrg)
			// WINDOW_SCALE|SACK_PERM kept, MAXACK_SET (0x20) dropped, BE_LIBERAL added; mask 0x0f.
			if want := []byte{c.e.TCP.FlagsOrig&0x0f | 0x08, 0x0f}; string(fl.Data) != string(want) {
				t.Errorf("%s: TCP flags %x, want %x", c.name, fl.Data, want)
			}
		}
	}
}

func TestCreateRequestICMPv6(t *testing.T) {
	m, err := createRequest(icmp6Entry, 5, false)
	if err != nil {
		t.Fatal(err)
	}
	h, attrs, err := netfilter.UnmarshalNetlink(m)
	if err != nil || h.Family != netfilter.ProtoIPv6 {
		t.Fatalf("%v %v", h, err)
	}
	typ, _ := attr(attrs, ctaTupleReply, ctaTupleProto, ctaProtoICMP6Typ)
	if len(typ.Data) != 1 || typ.Data[0] != 129 {
		t.Errorf("reply tuple's ICMPv6 type %v, want 129 (echo reply)", typ.Data)
	}
	for _, a := range []uint16{ctaNATSrc, ctaNATDst} {
		if _, ok := attr(attrs, a); ok {
			t.Errorf("NAT attribute %d on an untranslated entry", a)
		}
	}
}

// TestAppendCreateSameBytes: the batch's allocation-free encoder writes what createRequest
// (the general attribute encoder) writes, for every kind of entry.
func TestAppendCreateSameBytes(t *testing.T) {
	fip := snatEntry
	fip.Reply.DstPort = fip.Orig.SrcPort
	for _, e := range []Entry{snatEntry, dnatEntry, icmp6Entry, fip, synthetic(3)[2]} {
		for _, liberal := range []bool{false, true} {
			req, err := createRequest(e, 77, liberal)
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Sequence = 9
			want, err := appendMessage(nil, req)
			if err != nil {
				t.Fatal(err)
			}
			got := appendCreate([]byte("x"), e, 77, liberal, 9, uint16(req.Header.Flags))
			if string(got[:4]) != "x\x00\x00\x00" || string(got[4:]) != string(want) {
				t.Errorf("%v (liberal %v):\n got %x\nwant %x", e.Key(), liberal, got, want)
			}
		}
	}
}
