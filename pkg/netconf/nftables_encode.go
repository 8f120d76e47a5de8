package netconf

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/nft"
)

// queueBatch queues the messages of b on c; c.Flush sends them as one batch.
func queueBatch(c *nftables.Conn, b *nft.Batch) error {
	if b.Replace {
		// Deleting and re-creating the table in one transaction: no packet sees it missing.
		if b.Existed {
			c.DelTable(ownTable)
		}
		c.AddTable(ownTable)
		sets := map[string]*nftables.Set{}
		for _, m := range b.Want.Maps {
			s := setOf(m.Name, m.Kind)
			if err := c.AddSet(s, nil); err != nil {
				return fmt.Errorf("nftables: map %s: %w", m.Name, err)
			}
			if err := inChunks(elements(m.Kind, m.Elements), func(els []nftables.SetElement) error { return c.SetAddElements(s, els) }); err != nil {
				return fmt.Errorf("nftables: map %s: %w", m.Name, err)
			}
			sets[m.Name] = s
		}
		chains := map[string]*nftables.Chain{}
		for _, ch := range b.Want.Chains {
			chains[ch.Name] = c.AddChain(chainOf(ch))
		}
		for _, ch := range b.Want.Chains {
			for _, r := range ch.Rules {
				c.AddRule(&nftables.Rule{Table: ownTable, Chain: chains[ch.Name], Exprs: ruleExprs(r, sets)})
			}
		}
		return nil
	}
	for _, m := range b.Maps {
		s := setOf(m.Name, m.Kind)
		if err := inChunks(elements(m.Kind, m.Del), func(els []nftables.SetElement) error { return c.SetDeleteElements(s, els) }); err != nil {
			return fmt.Errorf("nftables: map %s: %w", m.Name, err)
		}
		if err := inChunks(elements(m.Kind, m.Add), func(els []nftables.SetElement) error { return c.SetAddElements(s, els) }); err != nil {
			return fmt.Errorf("nftables: map %s: %w", m.Name, err)
		}
	}
	for _, ch := range b.Chains {
		chain := &nftables.Chain{Name: ch.Name, Table: ownTable}
		c.FlushChain(chain)
		for _, r := range ch.Rules {
			c.AddRule(&nftables.Rule{Table: ownTable, Chain: chain, Exprs: ruleExprs(r, nil)})
		}
	}
	return nil
}

// chunk is the most elements queued in one netlink message; all the messages still go in the
// one batch (one transaction). The elements of a message are one nested attribute, whose length
// is 16 bits: past 64 kB it wraps and the kernel reads garbage (ENOENT for the whole batch).
// 1 024 elements of the largest kind (a port forward, ~48 bytes) are ~49 kB.
const chunk = 1024

// inChunks calls queue for consecutive slices of at most chunk elements; nothing for none.
func inChunks(els []nftables.SetElement, queue func([]nftables.SetElement) error) error {
	for len(els) > 0 {
		n := min(len(els), chunk)
		if err := queue(els[:n]); err != nil {
			return err
		}
		els = els[n:]
	}
	return nil
}

var (
	portKeyType  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	portDataType = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
)

func setOf(name string, kind nft.MapKind) *nftables.Set {
	s := &nftables.Set{Table: ownTable, Name: name, IsMap: true, KeyType: nftables.TypeIPAddr, DataType: nftables.TypeIPAddr}
	switch kind {
	case nft.PortMap:
		s.KeyType, s.DataType, s.Concatenation = portKeyType, portDataType, true
	case nft.PortMarkMap:
		s.KeyType, s.DataType, s.Concatenation = portKeyType, nftables.TypeMark, true
	case nft.IntervalMap:
		s.Interval, s.KeyByteOrder = true, binaryutil.BigEndian
	case nft.AddrMarkMap:
		s.DataType = nftables.TypeMark
	case nft.IntervalMarkMap:
		s.Interval, s.KeyByteOrder, s.DataType = true, binaryutil.BigEndian, nftables.TypeMark
	}
	return s
}

// elements encodes map elements as the kernel stores them. A range of an interval map is a
// start element carrying the data and an end element at the address after it (none when the
// range ends at 255.255.255.255); an end and the next range's start may share an address.
func elements(kind nft.MapKind, els []nft.Element) []nftables.SetElement {
	out := make([]nftables.SetElement, 0, len(els))
	for _, e := range els {
		switch kind {
		case nft.PortMap:
			to := e.To.As4()
			val := []byte{to[0], to[1], to[2], to[3], byte(e.ToPort >> 8), byte(e.ToPort), 0, 0}
			out = append(out, nftables.SetElement{Key: nft.PortKey(e), Val: val})
		case nft.PortMarkMap:
			// A mark is in host byte order, as the kernel keeps ct mark.
			out = append(out, nftables.SetElement{Key: nft.PortKey(e), Val: binary.NativeEndian.AppendUint32(nil, e.MarkValue())})
		case nft.IntervalMap, nft.IntervalMarkMap:
			val := e.To.AsSlice()
			if kind == nft.IntervalMarkMap {
				val = binary.NativeEndian.AppendUint32(nil, e.MarkValue())
			}
			out = append(out, nftables.SetElement{Key: e.Addr.AsSlice(), Val: val})
			if e.End != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				out = append(out, nftables.SetElement{Key: e.End.Next().AsSlice(), IntervalEnd: true})
			}
		case nft.AddrMarkMap:
			out = append(out, nftables.SetElement{Key: e.Addr.AsSlice(), Val: binary.NativeEndian.AppendUint32(nil, e.MarkValue())})
		default:
			out = append(out, nftables.SetElement{Key: e.Addr.AsSlice(), Val: e.To.AsSlice()})
		}
	}
	return out
}

var hooks = map[string]*nftables.ChainHook{"prerouting": nftables.ChainHookPrerouting, "postrouting": nftables.ChainHookPostrouting}

func chainOf(ch nft.Chain) *nftables.Chain {
	c := &nftables.Chain{Name: ch.Name, Table: ownTable}
	if ch.Hook != "" {
		accept := nftables.ChainPolicyAccept
		c.Hooknum, c.Priority = hooks[ch.Hook], nftables.ChainPriorityRef(nftables.ChainPriority(ch.Priority))
		c.Type, c.Policy = nftables.ChainTypeNAT, &accept
	}
	return c
}

// Registers as nft allocates them: reg 1 is the first 128-bit register, and a concatenation's
// fields go into consecutive 32-bit registers from NFT_REG32_00 (8) on, which reg 1 overlays.
const (
	reg1       = 1
	reg32Proto = 9  // second field of a concatenation (reg32 01)
	reg32Port  = 10 // third field (reg32 02)
)

// ifname is an interface name as nft compares it: IFNAMSIZ bytes, NUL padded.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// ipsDstNAT is IPS_DST_NAT of ct status, in host byte order as the kernel keeps the status.
var ipsDstNAT = binary.NativeEndian.AppendUint32(nil, 0x20)

func ruleExprs(r nft.Rule, sets map[string]*nftables.Set) []expr.Any {
	var ex []expr.Any
	if r.SAddr.IsValid() {
		ex = append(ex, &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4})
		if r.SAddr.Bits() < 32 {
			mask := netip.PrefixFrom(netip.AddrFrom4([4]byte{255, 255, 255, 255}), r.SAddr.Bits()).Masked().Addr().AsSlice()
			ex = append(ex, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mask, Xor: make([]byte, 4)})
		}
		ex = append(ex, &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: r.SAddr.Addr().AsSlice()})
	}
	if r.OIfName != "" {
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ifname(r.OIfName)})
	}
	if r.CtDNAT {
		ex = append(ex, &expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
			&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: ipsDstNAT, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)})
	}
	lookup := func(name string) *expr.Lookup {
		l := &expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: name}
		if s := sets[name]; s != nil {
			l.SetID = s.ID
		}
		return l
	}
	switch r.Verb {
	case nft.Jump:
		ex = append(ex, &expr.Verdict{Kind: expr.VerdictJump, Chain: r.Target})
	case nft.DNATMap:
		ex = append(ex, &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4})
		n := &expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegAddrMax: reg1}
		if r.Map == nft.MapPortDNAT {
			ex = append(ex, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32Proto},
				&expr.Payload{DestRegister: reg32Port, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
			n.RegProtoMin, n.RegProtoMax, n.Specified = reg32Proto, reg32Proto, true
		}
		ex = append(ex, lookup(r.Map), n)
	case nft.SNATMap:
		ex = append(ex, &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			lookup(r.Map),
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegAddrMax: reg1})
	case nft.Masquerade:
		ex = append(ex, &expr.Masq{})
	case nft.MarkMap:
		ex = append(ex, &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32Proto},
			&expr.Payload{DestRegister: reg32Port, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
			lookup(r.Map),
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true})
	case nft.MarkDstMap, nft.MarkSrcMap:
		offset := uint32(16) // the destination address
		if r.Verb == nft.MarkSrcMap {
			offset = 12
		}
		ex = append(ex, &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4},
			lookup(r.Map),
			&expr.Ct{Key: expr.CtKeyMARK, Register: reg1, SourceRegister: true})
	}
	return ex
}
