package netconf

import (
	"encoding/binary"
	"net/netip"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Conntrack netlink attributes of the kernel-side filters (nfnetlink_conntrack.h): a dump
// filtered by a tuple's fields (CTA_FILTER), a flush by mark (FlushConntrackMark).
const (
	ctaMark            = 8  // CTA_MARK
	ctaMarkMask        = 21 // CTA_MARK_MASK (a flush's mark filter: nftables.go)
	ctaFilter          = 25 // CTA_FILTER
	ctaFilterOrigFlags = 1  // CTA_FILTER_ORIG_FLAGS
	ctaFilterReplFlags = 2  // CTA_FILTER_REPLY_FLAGS
	// CTA_FILTER_FLAG(x) is 1 << x of the tuple attribute x.
	ctFilterIPSrc   = 1 << 0 // CTA_IP_SRC
	ctFilterIPDst   = 1 << 1 // CTA_IP_DST
	ctFilterProto   = 1 << 3 // CTA_PROTO_NUM
	ctFilterSrcPort = 1 << 4 // CTA_PROTO_SRC_PORT
	ctFilterDstPort = 1 << 5 // CTA_PROTO_DST_PORT
)

// ctTupleFilter selects entries by fields of one of their tuples; a zero field is not matched.
type ctTupleFilter struct {
	reply        bool // the reply tuple, else the original one
	src, dst     netip.Addr
	proto        uint8
	sport, dport uint16
}

// ctFilterTuple is the filter of a dump: the entries whose tuple has t's fields.
func ctFilterTuple(t ctTupleFilter) []nl.NetlinkRequestData {
	var flags uint32
	ip := nl.NewRtAttr(ctaTupleIP|unix.NLA_F_NESTED, nil)
	if t.src.IsValid() {
		a := t.src.As4()
		ip.AddRtAttr(ctaIPv4Src, a[:])
		flags |= ctFilterIPSrc
	}
	if t.dst.IsValid() {
		a := t.dst.As4()
		ip.AddRtAttr(ctaIPv4Dst, a[:])
		flags |= ctFilterIPDst
	}
	tuple := nl.NewRtAttr(ctaTupleOrig|unix.NLA_F_NESTED, nil)
	if t.reply {
		tuple = nl.NewRtAttr(ctaTupleReply|unix.NLA_F_NESTED, nil)
	}
	tuple.AddChild(ip)
	if t.proto != 0 {
		proto := nl.NewRtAttr(ctaTupleProto|unix.NLA_F_NESTED, nil)
		proto.AddRtAttr(ctaProtoNum, []byte{t.proto})
		flags |= ctFilterProto
		if t.sport != 0 {
			proto.AddRtAttr(ctaProtoSrc, be16(t.sport))
			flags |= ctFilterSrcPort
		}
		if t.dport != 0 {
			proto.AddRtAttr(ctaProtoDst, be16(t.dport))
			flags |= ctFilterDstPort
		}
		tuple.AddChild(proto)
	}
	filter := nl.NewRtAttr(ctaFilter|unix.NLA_F_NESTED, nil)
	if t.reply {
		filter.AddRtAttr(ctaFilterOrigFlags, nl.Uint32Attr(0))
		filter.AddRtAttr(ctaFilterReplFlags, nl.Uint32Attr(flags))
	} else {
		filter.AddRtAttr(ctaFilterOrigFlags, nl.Uint32Attr(flags))
		filter.AddRtAttr(ctaFilterReplFlags, nl.Uint32Attr(0))
	}
	return []nl.NetlinkRequestData{tuple, filter}
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }
