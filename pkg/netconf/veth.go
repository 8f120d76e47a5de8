package netconf

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// ensureBridgeVeth makes nic a veth pair: the gateway end nic.IfName inside the gateway netns,
// the host end nic.Attachment.HostIfName in the node netns as a port of nic.Attachment.Bridge,
// both up. A pair that is not exactly that (a lone end, ends of two different pairs) is replaced;
// a non-veth link in the node netns under the host end's name is refused, never deleted.
func ensureBridgeVeth(h *Handles, nic annotations.SubnetNIC, mac net.HardwareAddr) ([]string, error) {
	att := nic.Attachment
	br, err := h.Host.LinkByName(att.Bridge)
	if err != nil {
		return nil, fmt.Errorf("subnet NIC %s: subnet %s: natGatewayAttachment.bridge %q in the node netns: %w", nic.IfName, nic.Subnet, att.Bridge, err)
	}
	gwEnd, hostEnd, err := lookupPair(h, nic.IfName, att.HostIfName)
	if err != nil {
		return nil, err
	}
	var changes []string
	paired := gwEnd != nil && hostEnd != nil &&
		gwEnd.Attrs().ParentIndex == hostEnd.Attrs().Index && hostEnd.Attrs().ParentIndex == gwEnd.Attrs().Index
	if !paired {
		if gwEnd != nil {
			if err := h.Gateway.LinkDel(gwEnd); err != nil {
				return nil, fmt.Errorf("deleting unpaired %s in the gateway netns: %w", nic.IfName, err)
			}
			changes = append(changes, fmt.Sprintf("link %s: deleted %s (not paired with %s)", nic.IfName, gwEnd.Type(), att.HostIfName))
		}
		// Deleting the gateway end may have taken a host end with it: look again.
		if hostEnd, err = lookupVeth(h.Host, att.HostIfName, "node"); err != nil {
			return nil, err
		}
		if hostEnd != nil {
			if err := h.Host.LinkDel(hostEnd); err != nil {
				return nil, fmt.Errorf("deleting unpaired veth %s in the node netns: %w", att.HostIfName, err)
			}
			changes = append(changes, fmt.Sprintf("link %s (node): deleted unpaired veth", att.HostIfName))
		}
		attrs := netlink.NewLinkAttrs()
		attrs.Name = att.HostIfName
		attrs.MTU = att.MTU
		veth := &netlink.Veth{LinkAttrs: attrs, PeerName: nic.IfName, PeerNamespace: netlink.NsFd(h.GatewayNS), PeerHardwareAddr: mac}
		if err := h.Host.LinkAdd(veth); err != nil {
			return nil, fmt.Errorf("creating veth %s (node) / %s (gateway): %w", att.HostIfName, nic.IfName, err)
		}
		changes = append(changes, fmt.Sprintf("link %s: created veth, peer %s on bridge %s", nic.IfName, att.HostIfName, att.Bridge))
		if err := ipv6OffIn(h.GatewayNS, nic.IfName); err != nil {
			return nil, fmt.Errorf("link %s: %w", nic.IfName, err)
		}
		if gwEnd, hostEnd, err = lookupPair(h, nic.IfName, att.HostIfName); err != nil {
			return nil, err
		}
		if gwEnd == nil || hostEnd == nil {
			return nil, fmt.Errorf("veth %s / %s vanished right after creation", att.HostIfName, nic.IfName)
		}
	}
	// The host end is a port of a tenant bridge: with IPv6 on, it would send IPv6 frames onto the
	// tenant's segment too. Checked on every converge (links made by an older version).
	if off, err := ipv6IsOff(att.HostIfName); err != nil {
		return nil, fmt.Errorf("link %s (node): %w", att.HostIfName, err)
	} else if !off {
		if err := ipv6Off(att.HostIfName); err != nil {
			return nil, fmt.Errorf("link %s (node): %w", att.HostIfName, err)
		}
		changes = append(changes, fmt.Sprintf("link %s (node): IPv6 off", att.HostIfName))
	}
	if hostEnd.Attrs().MasterIndex != br.Attrs().Index {
		if err := h.Host.LinkSetMasterByIndex(hostEnd, br.Attrs().Index); err != nil {
			return nil, fmt.Errorf("adding %s to bridge %s: %w", att.HostIfName, att.Bridge, err)
		}
		changes = append(changes, fmt.Sprintf("link %s (node): master %s", att.HostIfName, att.Bridge))
	}
	if changes, err = setMTUUp(h.Host, hostEnd, "link "+att.HostIfName+" (node)", att.MTU, changes); err != nil {
		return nil, err
	}
	return fixLink(h, gwEnd, changes, mac, att.MTU)
}

// lookupPair returns the two ends of a subnet veth (nil when absent).
func lookupPair(h *Handles, gwName, hostName string) (gwEnd, hostEnd netlink.Link, err error) {
	if gwEnd, err = h.Gateway.LinkByName(gwName); err != nil {
		if !isNotFound(err) {
			return nil, nil, fmt.Errorf("looking up %s in the gateway netns: %w", gwName, err)
		}
		gwEnd = nil
	}
	hostEnd, err = lookupVeth(h.Host, hostName, "node")
	return gwEnd, hostEnd, err
}

// lookupVeth returns the veth called name (nil when absent) and refuses any other kind of link:
// the name came from our plan, but a non-veth of that name is someone else's.
func lookupVeth(nh *netlink.Handle, name, where string) (netlink.Link, error) {
	l, err := nh.LinkByName(name)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up %s in the %s netns: %w", name, where, err)
	}
	if _, ok := l.(*netlink.Veth); !ok {
		return nil, fmt.Errorf("%s in the %s netns is a %s, not a veth: refusing to touch it", name, where, l.Type())
	}
	return l, nil
}
