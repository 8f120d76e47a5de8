package ctsync

import (
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// ctnetlink attribute numbers (include/uapi/linux/netfilter/nfnetlink_conntrack.h). The
// conntrack library has no NAT attributes, which a committed entry needs: the create request is
// built here.
const (
	ctaTupleOrig  = 1
	ctaTupleReply = 2
	ctaStatus     = 3
	ctaProtoinfo  = 4
	ctaNATSrc     = 6
	ctaTimeout    = 7
	ctaMark       = 8
	ctaNATDst     = 13
	ctaZone       = 18

	ctaTupleIP    = 1
	ctaTupleProto = 2

	ctaIPv4Src = 1
	ctaIPv4Dst = 2
	ctaIPv6Src = 3
	ctaIPv6Dst = 4

	ctaProtoNum      = 1
	ctaProtoSrcPort  = 2
	ctaProtoDstPort  = 3
	ctaProtoICMPID   = 4
	ctaProtoICMPType = 5
	ctaProtoICMPCode = 6
	ctaProtoICMP6ID  = 7
	ctaProtoICMP6Typ = 8
	ctaProtoICMP6Cod = 9

	ctaProtoinfoTCP          = 1
	ctaProtoinfoTCPState     = 1
	ctaProtoinfoTCPWScaleOrg = 2
	ctaProtoinfoTCPWScaleRep = 3
	ctaProtoinfoTCPFlagsOrg  = 4
	ctaProtoinfoTCPFlagsRep  = 5

	ctaNATv4MinIP = 1
	ctaNATv4MaxIP = 2
	ctaNATProto   = 3
	ctaNATv6MinIP = 4
	ctaNATv6MaxIP = 5

	ctaProtoNATPortMin = 1
	ctaProtoNATPortMax = 2

	ipctnlMsgCtNew = 0 // IPCTNL_MSG_CT_NEW
)

// createRequest is the ctnetlink request that creates e with timeout seconds left.
//
// A NAT mapping cannot be written as a status bit: ctnetlink ignores SRC_NAT/DST_NAT in
// CTA_STATUS. It is written the way the kernel makes it: the reply tuple as if nothing were
// translated (the original tuple inverted), and CTA_NAT_DST / CTA_NAT_SRC with a one-address,
// one-port range, the mapping the old active replica's kernel chose. nf_nat_setup_info then
// derives the same reply tuple, sets the NAT and NAT-done bits and enters the SNAT mapping in
// its by-source table, as for an entry its own rules made.
func createRequest(e Entry, timeout uint32, liberal bool) (netlink.Message, error) {
	fam := netfilter.ProtoIPv4
	if e.Orig.Src.Is6() {
		fam = netfilter.ProtoIPv6
	}
	identity := invert(e.Proto, e.Orig)
	attrs := []netfilter.Attribute{
		tupleAttr(ctaTupleOrig, e.Proto, e.Orig),
		tupleAttr(ctaTupleReply, e.Proto, identity),
		u32Attr(ctaTimeout, max(timeout, 1)),
		u32Attr(ctaStatus, e.Status&writableStatus),
	}
	if e.Mark != 0 {
		attrs = append(attrs, u32Attr(ctaMark, e.Mark))
	}
	if e.Zone != 0 {
		a := netfilter.Attribute{Type: ctaZone}
		a.PutUint16(e.Zone)
		attrs = append(attrs, a)
	}
	// Destination first, as the kernel (ctnetlink_setup_nat) applies them.
	if e.Reply.Src != e.Orig.Dst || (!isICMP(e.Proto) && e.Reply.SrcPort != e.Orig.DstPort) {
		attrs = append(attrs, natAttr(ctaNATDst, e.Proto, e.Reply.Src, e.Reply.SrcPort))
	}
	if e.Reply.Dst != e.Orig.Src || (!isICMP(e.Proto) && e.Reply.DstPort != e.Orig.SrcPort) {
		attrs = append(attrs, natAttr(ctaNATSrc, e.Proto, e.Reply.Dst, e.Reply.DstPort))
	}
	if e.Proto == unix.IPPROTO_TCP {
		fo, fr := e.TCP.FlagsOrig&writableTCPFlags, e.TCP.FlagsRepl&writableTCPFlags
		if liberal {
			fo, fr = fo|tcpFlagBeLiberal, fr|tcpFlagBeLiberal
		}
		// struct nf_ct_tcp_flags {flags; mask}: the flags written, and which.
		attrs = append(attrs, netfilter.Attribute{Type: ctaProtoinfo, Nested: true, Children: []netfilter.Attribute{{
			Type: ctaProtoinfoTCP, Nested: true, Children: []netfilter.Attribute{
				{Type: ctaProtoinfoTCPState, Data: []byte{e.TCP.State}},
				{Type: ctaProtoinfoTCPWScaleOrg, Data: []byte{e.TCP.WScaleOrig}},
				{Type: ctaProtoinfoTCPWScaleRep, Data: []byte{e.TCP.WScaleRepl}},
				{Type: ctaProtoinfoTCPFlagsOrg, Data: []byte{fo, writableTCPFlags}},
				{Type: ctaProtoinfoTCPFlagsRep, Data: []byte{fr, writableTCPFlags}},
			},
		}}})
	}
	m, err := netfilter.MarshalNetlink(netfilter.Header{SubsystemID: netfilter.NFSubsysCTNetlink, MessageType: ipctnlMsgCtNew,
		Family: fam, Flags: netlink.Request | netlink.Acknowledge | netlink.Excl | netlink.Create}, attrs)
	if err != nil {
		return netlink.Message{}, fmt.Errorf("encoding conntrack entry %v: %w", e.Key(), err)
	}
	return m, nil
}

// invert is t's reply tuple without translation.
func invert(proto uint8, t Tuple) Tuple {
	r := Tuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort, ID: t.ID, Code: t.Code, Type: t.Type}
	if isICMP(proto) {
		// An echo request's reply is an echo reply (the kernel's invert_tuple).
		r.Type = icmpReplyType(proto, t.Type)
	}
	return r
}

func icmpReplyType(proto, typ uint8) uint8 {
	pairs := map[uint8]uint8{8: 0, 0: 8, 13: 14, 14: 13, 15: 16, 16: 15, 17: 18, 18: 17} // echo, timestamp, info, mask
	if proto == unix.IPPROTO_ICMPV6 {
		pairs = map[uint8]uint8{128: 129, 129: 128, 130: 131, 131: 130} // echo, node information
	}
	if r, ok := pairs[typ]; ok {
		return r
	}
	return typ
}

func u32Attr(typ uint16, v uint32) netfilter.Attribute {
	a := netfilter.Attribute{Type: typ}
	a.PutUint32(v)
	return a
}

func tupleAttr(typ uint16, proto uint8, t Tuple) netfilter.Attribute {
	src, dst := uint16(ctaIPv4Src), uint16(ctaIPv4Dst)
	if t.Src.Is6() {
		src, dst = ctaIPv6Src, ctaIPv6Dst
	}
	ip := netfilter.Attribute{Type: ctaTupleIP, Nested: true, Children: []netfilter.Attribute{
		{Type: src, Data: t.Src.AsSlice()}, {Type: dst, Data: t.Dst.AsSlice()}}}
	p := netfilter.Attribute{Type: ctaTupleProto, Nested: true, Children: []netfilter.Attribute{{Type: ctaProtoNum, Data: []byte{proto}}}}
	switch proto {
	case unix.IPPROTO_ICMP:
		p.Children = append(p.Children, netfilter.Attribute{Type: ctaProtoICMPID, Data: netfilter.Uint16Bytes(t.ID)},
			netfilter.Attribute{Type: ctaProtoICMPType, Data: []byte{t.Type}}, netfilter.Attribute{Type: ctaProtoICMPCode, Data: []byte{t.Code}})
	case unix.IPPROTO_ICMPV6:
		p.Children = append(p.Children, netfilter.Attribute{Type: ctaProtoICMP6ID, Data: netfilter.Uint16Bytes(t.ID)},
			netfilter.Attribute{Type: ctaProtoICMP6Typ, Data: []byte{t.Type}}, netfilter.Attribute{Type: ctaProtoICMP6Cod, Data: []byte{t.Code}})
	default:
		p.Children = append(p.Children, netfilter.Attribute{Type: ctaProtoSrcPort, Data: netfilter.Uint16Bytes(t.SrcPort)},
			netfilter.Attribute{Type: ctaProtoDstPort, Data: netfilter.Uint16Bytes(t.DstPort)})
	}
	return netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{ip, p}}
}

// natAttr is a NAT range of one address and (but for ICMP, whose id the kernel keeps when it
// can) one port.
func natAttr(typ uint16, proto uint8, addr netip.Addr, port uint16) netfilter.Attribute {
	lo, hi := uint16(ctaNATv4MinIP), uint16(ctaNATv4MaxIP)
	if addr.Is6() {
		lo, hi = ctaNATv6MinIP, ctaNATv6MaxIP
	}
	a := netfilter.Attribute{Type: typ, Nested: true, Children: []netfilter.Attribute{
		{Type: lo, Data: addr.AsSlice()}, {Type: hi, Data: addr.AsSlice()}}}
	if !isICMP(proto) {
		a.Children = append(a.Children, netfilter.Attribute{Type: ctaNATProto, Nested: true, Children: []netfilter.Attribute{
			{Type: ctaProtoNATPortMin, Data: netfilter.Uint16Bytes(port)}, {Type: ctaProtoNATPortMax, Data: netfilter.Uint16Bytes(port)}}})
	}
	return a
}
