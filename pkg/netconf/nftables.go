package netconf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/nft"
)

// nftTable is the seam between the nftables NAT step and the kernel: read back vpcnat's own
// table, apply one batch. Nothing outside the table nft.TableName is read or written.
type nftTable interface {
	// Read returns the table as the kernel holds it, nil when there is none.
	Read() (*nft.Table, error)
	// Apply commits b as one netlink batch (one nf_tables transaction): on error nothing of it
	// is applied.
	Apply(b *nft.Batch) error
	// Delete removes the table, if any, in one transaction; deleted says there was one.
	Delete() (deleted bool, err error)
	// Generation is the netns's nf_tables generation: bumped by one by every committed
	// transaction in the netns, of any table.
	Generation() (uint32, error)
	// Close releases the netlink socket; the next call opens a new one (in the netns then
	// mounted at the path).
	Close()
}

// netlinkNFT talks nf_tables netlink in-process, over a socket opened inside the gateway netns
// (a socket stays in the netns it was created in, whatever thread uses it), so no exec and no
// thread switching. The socket is kept between converges: closing one waits in the kernel for
// the previous commit's clean-up (an RCU grace period, 5-20 ms measured here, against 0.1 ms for
// the commit itself), and holds the netns's nf_tables commit lock meanwhile.
type netlinkNFT struct {
	nsPath string
	mu     sync.Mutex
	c      *nftables.Conn
	// gen asks for the generation, which google/nftables has no call for.
	gen *netlink.Conn
}

func newNetlinkNFT(nsPath string) *netlinkNFT { return &netlinkNFT{nsPath: nsPath} }

// use runs fn with the socket, opening it first if needed. After an error the socket is
// dropped: a failed batch may leave messages queued in the connection, which must never go out
// with the next one.
func (n *netlinkNFT) use(fn func(c *nftables.Conn) error) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.c == nil {
		f, err := os.Open(n.nsPath)
		if err != nil {
			return fmt.Errorf("nftables: opening gateway netns %s: %w", n.nsPath, err)
		}
		// A lasting connection dials at once, so the socket is in the netns before f closes.
		c, err := nftables.New(nftables.WithNetNSFd(int(f.Fd())), nftables.AsLasting(), nftables.WithSockOptions(bigSendBuffer))
		f.Close()
		if err != nil {
			return fmt.Errorf("nftables: netlink socket in gateway netns %s: %w", n.nsPath, err)
		}
		n.c = c
	}
	if n.gen == nil {
		f, err := os.Open(n.nsPath)
		if err != nil {
			return fmt.Errorf("nftables: opening gateway netns %s: %w", n.nsPath, err)
		}
		n.gen, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: int(f.Fd())})
		f.Close()
		if err != nil {
			return fmt.Errorf("nftables: netlink socket in gateway netns %s: %w", n.nsPath, err)
		}
	}
	err := fn(n.c)
	if err != nil {
		n.closeLocked()
	}
	return err
}

func (n *netlinkNFT) Close() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.closeLocked()
}

// closeLocked closes the socket in the background (see netlinkNFT for why it is slow).
func (n *netlinkNFT) closeLocked() {
	if c := n.c; c != nil {
		go func() { _ = c.CloseLasting() }()
		n.c = nil
	}
	if g := n.gen; g != nil {
		go func() { _ = g.Close() }()
		n.gen = nil
	}
}

// sendBuffer is the netlink socket's send buffer. A batch goes out in one sendmsg, and the
// kernel refuses a message larger than the buffer (EMSGSIZE): the first batch of 100 000
// elements is ~6 MB, far above the default (net.core.wmem_max, ~200 kB). As root, SO_SNDBUFFORCE
// passes the limit, as nft does for its own batches; the buffer is only a limit, memory is used
// as messages are queued.
const sendBuffer = 64 << 20

func bigSendBuffer(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("nftables: netlink socket: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sendBuffer)
		if serr == nil {
			// An error acknowledgement carries the refused message back; CAP_ACK leaves it out,
			// so a refused large message cannot overflow the receive buffer (ENOBUFS) and hide
			// the kernel's answer.
			serr = unix.SetsockoptInt(int(fd), unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
		}
	}); err != nil {
		return fmt.Errorf("nftables: netlink socket: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("nftables: setting SO_SNDBUFFORCE to %d: %w", sendBuffer, serr)
	}
	return nil
}

var ownTable = &nftables.Table{Name: nft.TableName, Family: nftables.TableFamilyIPv4}

func (n *netlinkNFT) Read() (t *nft.Table, err error) {
	err = n.use(func(c *nftables.Conn) error {
		t, err = readNFT(c)
		return err
	})
	return t, err
}

func (n *netlinkNFT) Apply(b *nft.Batch) error {
	return n.use(func(c *nftables.Conn) error {
		if err := queueBatch(c, b); err != nil {
			return err
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables: committing the batch for table ip %s: %w", nft.TableName, err)
		}
		return nil
	})
}

func (n *netlinkNFT) Delete() (deleted bool, err error) {
	err = n.use(func(c *nftables.Conn) error {
		found, err := hasOwnTable(c)
		if err != nil || !found {
			return err
		}
		c.DelTable(ownTable)
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables: deleting table ip %s: %w", nft.TableName, err)
		}
		deleted = true
		return nil
	})
	return deleted, err
}

func (n *netlinkNFT) Generation() (gen uint32, err error) {
	err = n.use(func(*nftables.Conn) error {
		gen, err = getGeneration(n.gen)
		return err
	})
	return gen, err
}

// getGeneration sends NFT_MSG_GETGEN and reads NFTA_GEN_ID from the answer.
func getGeneration(c *netlink.Conn) (uint32, error) {
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, // struct nfgenmsg
	})
	if err != nil {
		return 0, fmt.Errorf("nftables: reading the generation: %w", err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return 0, fmt.Errorf("nftables: reading the generation: %w", err)
		}
		ad.ByteOrder = binary.BigEndian
		for ad.Next() {
			if ad.Type() == unix.NFTA_GEN_ID {
				return ad.Uint32(), nil
			}
		}
	}
	return 0, errors.New("nftables: reading the generation: no NFTA_GEN_ID in the answer")
}

func hasOwnTable(c *nftables.Conn) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("nftables: listing tables: %w", err)
	}
	return slices.ContainsFunc(tables, func(t *nftables.Table) bool { return t.Name == nft.TableName }), nil
}

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
	case nft.IntervalMap:
		s.Interval, s.KeyByteOrder = true, binaryutil.BigEndian
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
		case nft.IntervalMap:
			out = append(out, nftables.SetElement{Key: e.Addr.AsSlice(), Val: e.To.AsSlice()})
			if e.End != netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
				out = append(out, nftables.SetElement{Key: e.End.Next().AsSlice(), IntervalEnd: true})
			}
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
	}
	return ex
}

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
	case s.Interval && s.KeyType.Bytes == 4 && s.DataType.Bytes == 4:
		return nft.IntervalMap
	case !s.Interval && s.KeyType.Bytes == 4 && s.DataType.Bytes == 4:
		return nft.AddrMap
	case !s.Interval && s.KeyType.Bytes == 12 && s.DataType.Bytes == 8:
		return nft.PortMap
	}
	return -1
}

func decodeElements(kind nft.MapKind, els []nftables.SetElement) ([]nft.Element, error) {
	var out []nft.Element
	if kind == nft.IntervalMap {
		return decodeIntervals(els)
	}
	for _, se := range els {
		switch {
		case kind == nft.AddrMap && len(se.Key) == 4 && len(se.Val) == 4:
			out = append(out, nft.Element{Addr: netip.AddrFrom4([4]byte(se.Key)), To: netip.AddrFrom4([4]byte(se.Val))})
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
func decodeIntervals(els []nftables.SetElement) ([]nft.Element, error) {
	type point struct {
		at    netip.Addr
		end   bool
		to    netip.Addr
		valid bool
	}
	pts := make([]point, 0, len(els))
	for _, se := range els {
		if len(se.Key) != 4 || (!se.IntervalEnd && len(se.Val) != 4) {
			return nil, errForeign
		}
		p := point{at: netip.AddrFrom4([4]byte(se.Key)), end: se.IntervalEnd}
		if !p.end {
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
		out = append(out, nft.Element{Addr: p.at, End: last, To: p.to})
	}
	return out, nil
}

// decodeRule reads a rule back into the model. It decodes loosely and then accepts the result
// only if it encodes back to exactly the kernel's expressions, so any rule that differs in the
// smallest detail from what vpcnat writes reads back as foreign (and is rewritten).
func decodeRule(ex []expr.Any) nft.Rule {
	foreign := nft.Rule{Verb: -1}
	var r nft.Rule
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
			if e.Key == expr.MetaKeyOIFNAME && i+1 < len(ex) {
				if cmp, ok := ex[i+1].(*expr.Cmp); ok {
					r.OIfName = string(trimNUL(cmp.Data))
					i++
				}
			}
		case *expr.Ct:
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
		if !reflect.DeepEqual(x, y) {
			return false
		}
	}
	return true
}
