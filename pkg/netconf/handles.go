package netconf

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Handles are netlink handles on the two network namespaces a gateway's links span. A netlink
// socket stays in the netns it was opened in, so once opened the handles work from any thread.
type Handles struct {
	// Host is the node side: where masters, bridges and the host ends of veths live.
	Host *netlink.Handle
	// Gateway is the gateway netns (route family: links, addresses, routes, rules). It has no
	// netfilter socket: conntrack goes through Conntrack, never through Gateway, on which the
	// library would open a socket in the calling thread's netns (the node's) instead.
	Gateway *netlink.Handle
	// ct is the gateway netns's netfilter (conntrack) handle, opened by the first Conntrack
	// call. Closing a netfilter socket in a netns waits for the RCU grace period of the last
	// nf_tables commit there (~10 ms after a one-element change), so a converge opens one only
	// when it has conntrack work to do.
	ct *netlink.Handle
	// GatewayNS is the gateway netns; links are created directly inside it through this fd
	// (IFLA_NET_NS_FD), which costs well under a millisecond where moving a link costs ~20 ms.
	GatewayNS netns.NsHandle
	ownNS     bool
}

// OpenHandles opens handles on the netns of the calling OS thread (the host side: the caller
// must have locked its thread, or run in the process's own netns) and on the gateway netns
// mounted at gatewayNSPath.
func OpenHandles(gatewayNSPath string) (*Handles, error) {
	fd, err := netns.GetFromPath(gatewayNSPath)
	if err != nil {
		return nil, fmt.Errorf("opening gateway netns %s: %w", gatewayNSPath, err)
	}
	h, err := NewHandles(fd)
	if err != nil {
		fd.Close()
		return nil, err
	}
	h.ownNS = true
	return h, nil
}

// NewHandles is OpenHandles for a gateway netns the caller already holds open (a CNI plugin's
// ns.NetNS: netns.NsHandle(n.Fd())). The fd stays the caller's; Close does not close it.
func NewHandles(gatewayNS netns.NsHandle) (*Handles, error) {
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket in the node netns: %w", err)
	}
	gw, err := netlink.NewHandleAt(gatewayNS, unix.NETLINK_ROUTE)
	if err != nil {
		host.Close()
		return nil, fmt.Errorf("netlink sockets in the gateway netns: %w", err)
	}
	return &Handles{Host: host, Gateway: gw, GatewayNS: gatewayNS}, nil
}

// Conntrack returns the gateway netns's netfilter handle, opening it on first use.
func (h *Handles) Conntrack() (*netlink.Handle, error) {
	if h.ct == nil {
		ct, err := netlink.NewHandleAt(h.GatewayNS, unix.NETLINK_NETFILTER)
		if err != nil {
			return nil, fmt.Errorf("netfilter netlink socket in the gateway netns: %w", err)
		}
		h.ct = ct
	}
	return h.ct, nil
}

// Close releases the sockets (and the netns fd when OpenHandles opened it).
func (h *Handles) Close() {
	h.Host.Close()
	h.Gateway.Close()
	if h.ct != nil {
		h.ct.Close()
	}
	if h.ownNS {
		h.GatewayNS.Close()
	}
}

// isNotFound reports whether a netlink lookup failed because the link does not exist.
func isNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
