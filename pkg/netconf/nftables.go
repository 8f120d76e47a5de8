package netconf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
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
	// FlushConntrackMark deletes, in the kernel, every conntrack entry of the netns whose mark
	// is f.Mark and, when f.EIP is valid, whose reply goes to f.EIP (one request, no dump), over
	// the netfilter socket the table's generation is read by: a netfilter socket opened for it
	// would wait, when closed, for the RCU grace period of the commit just made (~10 ms). A
	// kernel that cannot narrow a flush by a tuple (before Linux 6.12) answers
	// errFlushFilterUnsupported, then and at every later call (FlushFilterUnsupported).
	FlushConntrackMark(f nft.MarkFlush) error
	// FlushFilterUnsupported says whether the kernel refused a flush narrowed by a tuple.
	FlushFilterUnsupported() bool
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
	// noFlushFilter: the kernel refused a conntrack flush narrowed by a tuple.
	noFlushFilter atomic.Bool
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

// receiveBuffer is the netlink socket's receive buffer (see bigSendBuffer); a limit, too.
const receiveBuffer = 16 << 20

// bigSendBuffer sets the socket's send and receive buffers (sendBuffer, receiveBuffer) and
// NETLINK_CAP_ACK.
func bigSendBuffer(c *netlink.Conn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("nftables: netlink socket: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, sendBuffer)
		if serr == nil {
			// Every message of a batch is acknowledged, and the kernel queues all the
			// acknowledgements before the first is read: the first batch of 100 000 rules is
			// ~250 messages, whose acknowledgements (~1 kB each as the socket accounts them)
			// overflow the default receive buffer (~200 kB: ENOBUFS, the batch's outcome lost).
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, receiveBuffer)
		}
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
		return fmt.Errorf("nftables: setting the socket's buffers (SO_SNDBUFFORCE %d, SO_RCVBUFFORCE %d): %w", sendBuffer, receiveBuffer, serr)
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

func (n *netlinkNFT) FlushConntrackMark(f nft.MarkFlush) error {
	if f.EIP.IsValid() && n.noFlushFilter.Load() {
		return errFlushFilterUnsupported
	}
	return n.use(func(*nftables.Conn) error {
		data := []byte{unix.AF_INET, unix.NFNETLINK_V0, 0, 0} // struct nfgenmsg
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		ae.Uint32(ctaMark, f.Mark)
		ae.Uint32(ctaMarkMask, ^uint32(0))
		attrs, err := ae.Encode()
		if err != nil {
			return fmt.Errorf("conntrack flush of mark %#x: %w", f.Mark, err)
		}
		if f.EIP.IsValid() {
			for _, a := range ctFilterTuple(ctTupleFilter{reply: true, dst: f.EIP}) {
				attrs = append(attrs, a.Serialize()...)
			}
		}
		_, err = n.gen.Execute(netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | ipctnlMsgCtDelete),
				Flags: netlink.Request | netlink.Acknowledge},
			Data: append(data, attrs...),
		})
		switch {
		case err == nil, errors.Is(err, os.ErrNotExist):
			return nil
		case f.EIP.IsValid() && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)):
			// Before Linux 6.12 a delete with a reply tuple is the deletion of that one entry,
			// whose tuple ours (no source, no protocol) is not: EINVAL; a kernel that knows
			// CTA_FILTER but not in a flush answers EOPNOTSUPP.
			n.noFlushFilter.Store(true)
			return errFlushFilterUnsupported
		}
		return fmt.Errorf("conntrack flush of mark %#x: %w", f.Mark, err)
	})
}

func (n *netlinkNFT) FlushFilterUnsupported() bool { return n.noFlushFilter.Load() }

// errFlushFilterUnsupported: the kernel deletes by mark but cannot narrow a flush by a tuple
// (CTA_FILTER in a flush came with Linux 6.12); the clean-up then dumps the table.
var errFlushFilterUnsupported = errors.New("the kernel cannot filter a conntrack flush by tuple")

// ipctnlMsgCtDelete is IPCTNL_MSG_CT_DELETE: without a tuple, a flush of the entries its
// attributes (here the mark) select.
const ipctnlMsgCtDelete = 2

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
