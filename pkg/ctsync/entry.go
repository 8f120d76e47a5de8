package ctsync

import (
	"net/netip"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// Tuple is one direction of a connection. For ICMP/ICMPv6, ID, Type and Code replace the ports.
type Tuple struct {
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	ID               uint16
	Type, Code       uint8
}

// Key identifies an entry: the kernel's conntrack hash holds one entry per original tuple (and
// zone).
type Key struct {
	Proto uint8
	Zone  uint16
	Orig  Tuple
}

// TCPInfo is the part of the kernel's TCP state that ctnetlink can write back: the state, the
// window scale of each direction, and each direction's flags (IP_CT_TCP_FLAG_*).
type TCPInfo struct {
	State                  uint8
	WScaleOrig, WScaleRepl uint8
	FlagsOrig, FlagsRepl   uint8
}

// Entry is one conntrack entry as replicated: both tuples (the reply tuple is the NAT mapping),
// the status bits, the timeout left when it was read, the mark and the TCP state.
type Entry struct {
	Proto   uint8
	Zone    uint16
	Orig    Tuple
	Reply   Tuple
	Status  uint32
	Timeout uint32 // seconds left when the active replica's kernel reported it
	Mark    uint32
	TCP     TCPInfo
}

// Key is e's cache key.
func (e Entry) Key() Key { return Key{Proto: e.Proto, Zone: e.Zone, Orig: e.Orig} }

// Replicated protocols. Others (SCTP, DCCP, GRE) have state that is not carried here; their
// entries are not replicated and are created afresh on the new active replica.
func replicated(proto uint8) bool {
	switch proto {
	case unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_UDPLITE, unix.IPPROTO_ICMP, unix.IPPROTO_ICMPV6:
		return true
	}
	return false
}

func isICMP(proto uint8) bool { return proto == unix.IPPROTO_ICMP || proto == unix.IPPROTO_ICMPV6 }

// Status bits (include/uapi/linux/netfilter/nf_conntrack_common.h).
const (
	statusSeenReply = 1 << 1
	statusAssured   = 1 << 2
	statusConfirmed = 1 << 3
	// writableStatus: the bits a committed entry's CTA_STATUS carries. SEEN_REPLY makes the
	// next packet of the original direction ESTABLISHED, not NEW, so no NAT rule is consulted
	// again; ASSURED keeps the entry from early eviction. CONFIRMED must be there: ctnetlink sets
	// it on the entry it creates before it applies the status, and refuses (EBUSY) a status
	// that would clear it. The NAT bits and NAT-done bits are not writable (ctnetlink ignores
	// them): createRequest writes the mapping as CTA_NAT_* instead.
	writableStatus = statusSeenReply | statusAssured | statusConfirmed
)

// TCP conntrack flags (IP_CT_TCP_FLAG_*).
const (
	// tcpFlagBeLiberal on a committed TCP entry: the kernel learns the entry's windows from its
	// next packets (ctnetlink carries no window data), and a packet already in flight may fall
	// outside what it learned first; the kernel marks its own mid-stream pickups liberal for
	// the same reason (docs/ha.md, "Established flows").
	tcpFlagBeLiberal = 0x08
	// writableTCPFlags: WINDOW_SCALE, SACK_PERM, CLOSE_INIT, BE_LIBERAL describe the connection
	// and are written back; DATA_UNACKNOWLEDGED, MAXACK_SET and the challenge-ACK flags describe
	// window data (td_maxack, ...) that ctnetlink does not carry, so a committed entry starts
	// without them, as a picked-up connection does.
	writableTCPFlags = 0x0f
)

func tupleFrom(t conntrack.Tuple) Tuple {
	return Tuple{Src: t.IP.SourceAddress, Dst: t.IP.DestinationAddress, SrcPort: t.Proto.SourcePort, DstPort: t.Proto.DestinationPort,
		ID: t.Proto.ICMPID, Type: t.Proto.ICMPType, Code: t.Proto.ICMPCode}
}

// flow is t as the conntrack library's tuple. The zone is the entry's (CTA_ZONE), never the
// tuple's: a tuple zone makes the kernel look for a zone of that direction only.
func (t Tuple) flow(proto uint8) conntrack.Tuple {
	ct := conntrack.Tuple{IP: conntrack.IPTuple{SourceAddress: t.Src, DestinationAddress: t.Dst},
		Proto: conntrack.ProtoTuple{Protocol: proto}}
	if isICMP(proto) {
		ct.Proto.ICMPID, ct.Proto.ICMPType, ct.Proto.ICMPCode = t.ID, t.Type, t.Code
		ct.Proto.ICMPv4, ct.Proto.ICMPv6 = proto == unix.IPPROTO_ICMP, proto == unix.IPPROTO_ICMPV6
	} else {
		ct.Proto.SourcePort, ct.Proto.DestinationPort = t.SrcPort, t.DstPort
	}
	return ct
}

// FromFlow converts a kernel flow; ok is false for a flow that is not replicated (its protocol,
// or a tuple without addresses).
func FromFlow(f conntrack.Flow) (e Entry, ok bool) {
	p := f.TupleOrig.Proto.Protocol
	if !replicated(p) || !f.TupleOrig.IP.SourceAddress.IsValid() || !f.TupleReply.IP.SourceAddress.IsValid() {
		return Entry{}, false
	}
	e = Entry{Proto: p, Zone: f.Zone, Orig: tupleFrom(f.TupleOrig), Reply: tupleFrom(f.TupleReply),
		Status: uint32(f.Status), Timeout: f.Timeout, Mark: f.Mark}
	if f.TupleOrig.Zone != 0 {
		e.Zone = f.TupleOrig.Zone
	}
	if t := f.ProtoInfo.TCP; t != nil {
		// ctnetlink reports each direction's flags as struct nf_ct_tcp_flags {flags; mask},
		// which the library reads as one big-endian uint16.
		e.TCP = TCPInfo{State: t.State, WScaleOrig: t.OriginalWindowScale, WScaleRepl: t.ReplyWindowScale,
			FlagsOrig: uint8(t.OriginalFlags >> 8), FlagsRepl: uint8(t.ReplyFlags >> 8)}
	}
	return e, true
}

// touches: the entry has addr in one of its tuples.
func (e Entry) touches(addr netip.Addr) bool {
	return e.Orig.Src == addr || e.Orig.Dst == addr || e.Reply.Src == addr || e.Reply.Dst == addr
}
