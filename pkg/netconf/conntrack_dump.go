package netconf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Conntrack netlink (include/uapi/linux/netfilter/nfnetlink_conntrack.h): the attributes of an
// entry's tuples, the only part of an entry the clean-up reads.
const (
	ctaTupleOrig  = 1 // CTA_TUPLE_ORIG
	ctaTupleReply = 2 // CTA_TUPLE_REPLY
	ctaTupleIP    = 1 // CTA_TUPLE_IP
	ctaTupleProto = 2 // CTA_TUPLE_PROTO
	ctaIPv4Src    = 1 // CTA_IP_V4_SRC
	ctaIPv4Dst    = 2 // CTA_IP_V4_DST
	ctaProtoNum   = 1 // CTA_PROTO_NUM
	ctaProtoSrc   = 2 // CTA_PROTO_SRC_PORT
	ctaProtoDst   = 3 // CTA_PROTO_DST_PORT
	// nlaTypeMask strips NLA_F_NESTED and NLA_F_NET_BYTEORDER from an attribute type.
	nlaTypeMask = 0x3fff
)

// errDumpInterrupted: the kernel's table changed while it was dumped (NLM_F_DUMP_INTR), so some
// entries may have been missed; the converge fails and the next one, full, dumps again.
var errDumpInterrupted = errors.New("the conntrack table changed during the dump (NLM_F_DUMP_INTR)")

// deleteConntrack dumps the IPv4 conntrack table of the gateway netns and deletes every entry f
// matches. It does what vishvananda/netlink's ConntrackDeleteFilters does, but reads of each
// entry only its two tuples and its mark, into one reused flow, where the library parses every attribute into
// a new one: with 10 000 entries the dump costs ~31 ms received and ~54 ms parsed by the library
// (measured here), of which the kernel's own walk of the hash table is ~11 ms. f sees a flow
// with FamilyType, Forward and Reverse set, and must not keep it. The entries matched are
// deleted after the dump ends (the kernel's dump holds the socket).
func deleteConntrack(gw netns.NsHandle, f netlink.CustomConntrackFilter) (int, error) {
	return deleteConntrackWhere(gw, nil, f)
}

// deleteConntrackWhere is deleteConntrack over a dump the kernel filters first: where holds the
// dump request's filter attributes (ctFilterMark, ctFilterTuple), nil for the whole table. The
// kernel still walks its whole hash table, but sends (and we read) only the entries that pass.
func deleteConntrackWhere(gw netns.NsHandle, where []nl.NetlinkRequestData, f netlink.CustomConntrackFilter) (int, error) {
	cur, err := netns.Get()
	if err != nil {
		return 0, fmt.Errorf("conntrack dump: the calling thread's netns: %w", err)
	}
	defer cur.Close()
	s, err := nl.GetNetlinkSocketAt(gw, cur, unix.NETLINK_NETFILTER)
	if err != nil {
		return 0, fmt.Errorf("conntrack dump: netfilter socket in the gateway netns: %w", err)
	}
	defer s.Close()
	if err := s.SetReceiveTimeout(&nl.SocketTimeoutTv); err != nil {
		return 0, err
	}
	req := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|nl.IPCTNL_MSG_CT_GET, unix.NLM_F_DUMP)
	req.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_INET, Version: nl.NFNETLINK_V0})
	for _, a := range where {
		req.AddData(a)
	}
	if err := s.Send(req); err != nil {
		return 0, fmt.Errorf("conntrack dump: %w", err)
	}
	var (
		matched     [][]byte
		remarks     []remarkEntry
		interrupted bool
		fl          = netlink.ConntrackFlow{FamilyType: unix.AF_INET}
		addrs       [4][4]byte
	)
	fl.Forward.SrcIP, fl.Forward.DstIP = addrs[0][:], addrs[1][:]
	fl.Reverse.SrcIP, fl.Reverse.DstIP = addrs[2][:], addrs[3][:]
dump:
	for {
		msgs, _, err := s.Receive()
		if err != nil {
			return 0, fmt.Errorf("conntrack dump: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != req.Seq {
				continue
			}
			if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				break dump
			case unix.NLMSG_ERROR:
				if len(m.Data) >= 4 {
					if e := int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
						return 0, fmt.Errorf("conntrack dump: %w", syscall.Errno(-e))
					}
				}
				break dump
			}
			if len(m.Data) < 4 || !readTuples(m.Data[4:], &fl) {
				continue // not an IPv4 entry with both tuples
			}
			if f.MatchConntrackFlow(&fl) {
				matched = append(matched, m.Data[4:])
			} else if r, ok := f.(remarker); ok {
				if mark, ok := r.remark(&fl); ok {
					if key := entryKey(m.Data[4:]); key != nil {
						remarks = append(remarks, remarkEntry{key, mark})
					}
				}
			}
		}
	}
	deleted := 0
	for _, attrs := range matched {
		del := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|nl.IPCTNL_MSG_CT_DELETE, unix.NLM_F_ACK)
		del.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_INET, Version: nl.NFNETLINK_V0})
		del.AddRawData(attrs)
		del.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: s}}
		if _, err := del.Execute(unix.NETLINK_NETFILTER, 0); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return deleted, fmt.Errorf("deleting a conntrack entry: %w", err)
		}
		deleted++ // or already gone
	}
	for _, r := range remarks {
		// IPCTNL_MSG_CT_NEW without NLM_F_CREATE changes an existing entry, and only the
		// attributes sent: the mark.
		upd := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|nl.IPCTNL_MSG_CT_NEW, unix.NLM_F_ACK)
		upd.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_INET, Version: nl.NFNETLINK_V0})
		upd.AddRawData(r.key)
		upd.AddData(nl.NewRtAttr(ctaMark, be32(r.mark)))
		upd.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_NETFILTER: {Socket: s}}
		_, err := upd.Execute(unix.NETLINK_NETFILTER, 0)
		switch {
		case err == nil:
			f.(remarker).marked()
		case !errors.Is(err, fs.ErrNotExist): // else gone since the dump
			return deleted, fmt.Errorf("marking a conntrack entry: %w", err)
		}
	}
	if interrupted {
		return deleted, errDumpInterrupted
	}
	return deleted, nil
}

// remarker is a filter that also names entries it keeps whose mark is to be set: remark is
// asked for each entry MatchConntrackFlow did not match, marked told of each entry marked.
type remarker interface {
	remark(fl *netlink.ConntrackFlow) (mark uint32, ok bool)
	marked()
}

// remarkEntry is an entry to mark: the attributes that name it (entryKey) and the mark.
type remarkEntry struct {
	key  []byte
	mark uint32
}

// ctaZone is CTA_ZONE: an entry's zone, when it has one for both directions, outside its tuples.
const ctaZone = 18

// entryKey is what names an entry in an update: its CTA_TUPLE_ORIG attribute and its CTA_ZONE
// if any (without it the kernel looks the tuple up in zone 0); nil without a tuple.
func entryKey(attrs []byte) []byte {
	var key []byte
	tuple := false
	for t, v := range netlinkAttrs(attrs) {
		switch t {
		case ctaTupleOrig:
			key, tuple = append(key, nl.NewRtAttr(ctaTupleOrig|unix.NLA_F_NESTED, v).Serialize()...), true
		case ctaZone:
			key = append(key, nl.NewRtAttr(ctaZone, v).Serialize()...)
		}
	}
	if !tuple {
		return nil
	}
	return key
}

// readTuples sets fl's tuples and mark from an entry's attributes; false unless both tuples
// are IPv4.
func readTuples(attrs []byte, fl *netlink.ConntrackFlow) bool {
	seen := 0
	fl.Mark = 0
	for t, v := range netlinkAttrs(attrs) {
		switch t {
		case ctaMark:
			if len(v) == 4 {
				fl.Mark = binary.BigEndian.Uint32(v)
			}
		case ctaTupleOrig:
			if !readTuple(v, &fl.Forward) {
				return false
			}
			seen |= 1
		case ctaTupleReply:
			if !readTuple(v, &fl.Reverse) {
				return false
			}
			seen |= 2
		}
	}
	return seen == 3
}

// readTuple fills t (whose SrcIP and DstIP are 4-byte slices it owns) from a CTA_TUPLE_*
// attribute; ports stay 0 for a protocol without them.
func readTuple(b []byte, t *netlink.IPTuple) bool {
	t.Protocol, t.SrcPort, t.DstPort = 0, 0, 0
	v4 := 0
	for typ, v := range netlinkAttrs(b) {
		switch typ {
		case ctaTupleIP:
			for typ, a := range netlinkAttrs(v) {
				if len(a) != net.IPv4len {
					continue
				}
				switch typ {
				case ctaIPv4Src:
					copy(t.SrcIP, a)
					v4 |= 1
				case ctaIPv4Dst:
					copy(t.DstIP, a)
					v4 |= 2
				}
			}
		case ctaTupleProto:
			for typ, a := range netlinkAttrs(v) {
				switch {
				case typ == ctaProtoNum && len(a) >= 1:
					t.Protocol = a[0]
				case typ == ctaProtoSrc && len(a) >= 2:
					t.SrcPort = binary.BigEndian.Uint16(a)
				case typ == ctaProtoDst && len(a) >= 2:
					t.DstPort = binary.BigEndian.Uint16(a)
				}
			}
		}
	}
	return v4 == 3
}

// netlinkAttrs iterates the attributes in b: type (flags stripped) and payload. A truncated
// attribute ends the walk.
func netlinkAttrs(b []byte) func(yield func(uint16, []byte) bool) {
	return func(yield func(uint16, []byte) bool) {
		for len(b) >= unix.SizeofNlAttr {
			l := int(binary.NativeEndian.Uint16(b))
			if l < unix.SizeofNlAttr || l > len(b) {
				return
			}
			if !yield(binary.NativeEndian.Uint16(b[2:])&nlaTypeMask, b[unix.SizeofNlAttr:l]) {
				return
			}
			next := (l + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
			if next > len(b) {
				return
			}
			b = b[next:]
		}
	}
}
