package netconf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"

	"github.com/vpcnat/vpcnat/pkg/nft"
)

// errForeign marks a read-back element or rule that is not of a form vpcnat writes.
var errForeign = errors.New("not written by vpcnat")

// readNFT reads vpcnat's table back into the model; nil when the netns has none. A map or rule
// that is not of a form vpcnat writes reads back as something Diff cannot match (a map of an
// unknown kind, a rule with an unknown verb), so the next batch repairs it.
func readNFT(c *nftables.Conn) (*nft.Table, error) {
	found, err := hasOwnTable(c)
	if err != nil || !found {
		return nil, err
	}
	t := &nft.Table{}
	sets, err := c.GetSets(ownTable)
	if err != nil {
		return nil, fmt.Errorf("nftables: listing maps of table ip %s: %w", nft.TableName, err)
	}
	for _, s := range sets {
		m := nft.Map{Name: s.Name, Kind: mapKind(s)}
		if m.Kind >= 0 {
			els, err := c.GetSetElements(s)
			if err != nil {
				return nil, fmt.Errorf("nftables: listing map %s: %w", s.Name, err)
			}
			if m.Elements, err = decodeElements(m.Kind, els); err != nil {
				m.Kind = -1 // foreign content: replaced
			}
		}
		t.Maps = append(t.Maps, m)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return nil, fmt.Errorf("nftables: listing chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table == nil || ch.Table.Name != nft.TableName {
			continue
		}
		mc := nft.Chain{Name: ch.Name}
		if ch.Hooknum != nil {
			mc.Hook = fmt.Sprintf("hook %d", *ch.Hooknum)
			for name, h := range hooks {
				if *h == *ch.Hooknum && ch.Type == nftables.ChainTypeNAT {
					mc.Hook = name
				}
			}
			if ch.Priority != nil {
				mc.Priority = int(*ch.Priority)
			}
			if ch.Policy != nil && *ch.Policy != nftables.ChainPolicyAccept {
				mc.Hook += " policy drop"
			}
		}
		rules, err := c.GetRules(ownTable, ch)
		if err != nil {
			return nil, fmt.Errorf("nftables: listing rules of chain %s: %w", ch.Name, err)
		}
		for _, r := range rules {
			mc.Rules = append(mc.Rules, decodeRule(r.Exprs))
		}
		t.Chains = append(t.Chains, mc)
	}
	return t, nil
}

func mapKind(s *nftables.Set) nft.MapKind {
	switch {
	case !s.IsMap || s.Anonymous || s.HasTimeout:
		return -1
	case s.KeyType.Bytes == 4 && s.DataType.Bytes == 4 && s.DataType.GetNFTMagic() == nftables.TypeMark.GetNFTMagic():
		if s.Interval {
			return nft.IntervalMarkMap
		}
		return nft.AddrMarkMap
	case s.Interval && s.KeyType.Bytes == 4 && s.DataType.Bytes == 4:
		return nft.IntervalMap
	case !s.Interval && s.KeyType.Bytes == 4 && s.DataType.Bytes == 4:
		return nft.AddrMap
	case !s.Interval && s.KeyType.Bytes == 12 && s.DataType.Bytes == 8:
		return nft.PortMap
	case !s.Interval && s.KeyType.Bytes == 12 && s.DataType.Bytes == 4 && s.DataType.GetNFTMagic() == nftables.TypeMark.GetNFTMagic():
		return nft.PortMarkMap
	}
	return -1
}

func decodeElements(kind nft.MapKind, els []nftables.SetElement) ([]nft.Element, error) {
	var out []nft.Element
	if kind.IsInterval() {
		return decodeIntervals(kind, els)
	}
	for _, se := range els {
		switch {
		case kind == nft.AddrMap && len(se.Key) == 4 && len(se.Val) == 4:
			out = append(out, nft.Element{Addr: netip.AddrFrom4([4]byte(se.Key)), To: netip.AddrFrom4([4]byte(se.Val))})
		case kind == nft.AddrMarkMap && len(se.Key) == 4 && len(se.Val) == 4:
			out = append(out, nft.Element{Addr: netip.AddrFrom4([4]byte(se.Key)), Mark: binary.NativeEndian.Uint32(se.Val)})
		case kind == nft.PortMarkMap && len(se.Key) == 12 && len(se.Val) == 4:
			k := se.Key
			out = append(out, nft.Element{Addr: netip.AddrFrom4([4]byte(k[:4])), Proto: k[4],
				Port: binary.BigEndian.Uint16(k[8:10]), Mark: binary.NativeEndian.Uint32(se.Val)})
		case kind == nft.PortMap && len(se.Key) == 12 && len(se.Val) == 8:
			k, v := se.Key, se.Val
			out = append(out, nft.Element{Addr: netip.AddrFrom4([4]byte(k[:4])), Proto: k[4],
				Port: binary.BigEndian.Uint16(k[8:10]), To: netip.AddrFrom4([4]byte(v[:4])), ToPort: binary.BigEndian.Uint16(v[4:6])})
		default:
			return nil, errForeign
		}
	}
	nft.SortElements(kind, out)
	return out, nil
}

// decodeIntervals rebuilds ranges from start and end elements: a range runs from its start to
// just before the next higher element of either kind, or to 255.255.255.255 when none follows.
func decodeIntervals(kind nft.MapKind, els []nftables.SetElement) ([]nft.Element, error) {
	type point struct {
		at   netip.Addr
		end  bool
		to   netip.Addr
		mark uint32
	}
	pts := make([]point, 0, len(els))
	for _, se := range els {
		if len(se.Key) != 4 || (!se.IntervalEnd && len(se.Val) != 4) {
			return nil, errForeign
		}
		p := point{at: netip.AddrFrom4([4]byte(se.Key)), end: se.IntervalEnd}
		switch {
		case p.end:
		case kind == nft.IntervalMarkMap:
			p.mark = binary.NativeEndian.Uint32(se.Val)
		default:
			p.to = netip.AddrFrom4([4]byte(se.Val))
		}
		pts = append(pts, p)
	}
	slices.SortFunc(pts, func(a, b point) int { return a.at.Compare(b.at) })
	var out []nft.Element
	for i, p := range pts {
		if p.end {
			continue
		}
		last := netip.AddrFrom4([4]byte{255, 255, 255, 255})
		for _, q := range pts[i+1:] {
			if q.at != p.at {
				last = q.at.Prev()
				break
			}
		}
		out = append(out, nft.Element{Addr: p.at, End: last, To: p.to, Mark: p.mark})
	}
	// Accepted only if the ranges encode back to exactly the elements read: an element added
	// by hand (nft adds an end element at 0.0.0.0 of its own, for one) is foreign, and would
	// otherwise stay and collide with a later range's end.
	if !sameElements(elements(kind, out), els) {
		return nil, errForeign
	}
	return out, nil
}

// sameElements compares two lists of interval elements as sets of (key, end flag, data).
func sameElements(a, b []nftables.SetElement) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(e nftables.SetElement) string {
		k := string(e.Key) + string(e.Val)
		if e.IntervalEnd {
			k += "end"
		}
		return k
	}
	count := make(map[string]int, len(a))
	for _, e := range a {
		count[key(e)]++
	}
	for _, e := range b {
		k := key(e)
		if count[k] == 0 {
			return false
		}
		count[k]--
	}
	return true
}

// decodeRule reads a rule back into the model. It decodes loosely and then accepts the result
// only if it encodes back to exactly the kernel's expressions, so any rule that differs in the
// smallest detail from what vpcnat writes reads back as foreign (and is rewritten).
func decodeRule(ex []expr.Any) nft.Rule {
	foreign := nft.Rule{Verb: -1}
	var r nft.Rule
	byPort := false // a meta l4proto: the key of a port map
	for i := 0; i < len(ex); i++ {
		switch e := ex[i].(type) {
		case *expr.Payload:
			switch {
			case e.Offset == 16:
				r.Verb = nft.DNATMap
			case e.Offset == 12 && i+1 < len(ex):
				if _, ok := ex[i+1].(*expr.Lookup); ok {
					r.Verb = nft.SNATMap
					continue
				}
				bits, j := 32, i+1
				if bw, ok := ex[j].(*expr.Bitwise); ok && len(bw.Mask) == 4 {
					ones := 0
					for _, b := range bw.Mask {
						for ; b&0x80 != 0; b <<= 1 {
							ones++
						}
					}
					bits, j = ones, j+1
				}
				if j >= len(ex) {
					return foreign
				}
				cmp, ok := ex[j].(*expr.Cmp)
				if !ok || len(cmp.Data) != 4 {
					return foreign
				}
				r.SAddr, i = netip.PrefixFrom(netip.AddrFrom4([4]byte(cmp.Data)), bits), j
			}
		case *expr.Meta:
			byPort = byPort || e.Key == expr.MetaKeyL4PROTO
			if e.Key == expr.MetaKeyOIFNAME && i+1 < len(ex) {
				if cmp, ok := ex[i+1].(*expr.Cmp); ok {
					r.OIfName = string(trimNUL(cmp.Data))
					i++
				}
			}
		case *expr.Ct:
			if e.Key == expr.CtKeyMARK {
				switch {
				case r.Verb == nft.SNATMap: // looked up by the source address
					r.Verb = nft.MarkSrcMap
				case byPort:
					r.Verb = nft.MarkMap
				default:
					r.Verb = nft.MarkDstMap
				}
				continue
			}
			r.CtDNAT, i = true, i+2
		case *expr.Lookup:
			r.Map = e.SetName
		case *expr.NAT:
			if e.Type == expr.NATTypeSourceNAT {
				r.Verb = nft.SNATMap
			}
		case *expr.Verdict:
			r.Verb, r.Target = nft.Jump, e.Chain
		case *expr.Masq:
			r.Verb = nft.Masquerade
		default:
			return foreign
		}
	}
	if !sameExprs(ruleExprs(r, nil), ex) {
		return foreign
	}
	return r
}

func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// sameExprs compares expressions as the kernel dumps them; a lookup's transaction-local set
// id is not part of a rule once committed.
func sameExprs(a, b []expr.Any) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if lx, ok := x.(*expr.Lookup); ok {
			if ly, ok := y.(*expr.Lookup); ok {
				cx, cy := *lx, *ly
				cx.SetID, cy.SetID = 0, 0
				x, y = &cx, &cy
			}
		}
		// google/nftables reads a ct statement's source register as nothing (it decodes
		// NFTA_CT_DREG only): a ct mark set reads back with neither register.
		if cx, ok := x.(*expr.Ct); ok && cx.SourceRegister {
			if cy, ok := y.(*expr.Ct); ok && !cy.SourceRegister && cy.Register == 0 {
				c := *cx
				c.SourceRegister, c.Register = false, 0
				x = &c
			}
		}
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}
