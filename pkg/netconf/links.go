package netconf

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// EnsureExternalNIC makes the gateway's external NIC (net1) a macvlan on nic.Master of the node
// netns, created directly inside the gateway netns, with nic.MAC (a stable MAC keeps upstream ARP
// caches valid across gateway recreation), nic.MTU when set, and up. A link of that name that is
// not such a macvlan is replaced. It returns one line per change.
func EnsureExternalNIC(h *Handles, nic annotations.ExternalNIC) ([]string, error) {
	name := nic.IfName
	if name == "" {
		name = annotations.ExternalIfName
	}
	mac, err := parseMAC(nic.MAC, "external NIC "+name)
	if err != nil {
		return nil, err
	}
	return ensureMacvlan(h, name, "master (the ConfigMap's nic, or master in the node's vpcnat CNI entry)", nic.Master, nic.Mode, mac, nic.MTU)
}

// parseMAC parses an optional MAC ("" = let the kernel choose).
func parseMAC(s, what string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, nil
	}
	mac, err := net.ParseMAC(s)
	if err != nil {
		return nil, fmt.Errorf("%s: mac %q: %w", what, s, err)
	}
	return mac, nil
}

// EnsureSubnetNIC makes one subnet NIC of the gateway exist and be up: a veth pair whose host end
// (Attachment.HostIfName) is a port of Attachment.Bridge, or a macvlan on Attachment.Master. A
// primary attachment creates nothing: eth0 and its addresses belong to the primary CNI.
func EnsureSubnetNIC(h *Handles, nic annotations.SubnetNIC) ([]string, error) {
	if nic.Attachment.Type == annotations.AttachPrimary {
		return nil, nil
	}
	mac, err := parseMAC(nic.MAC, "subnet NIC "+nic.IfName)
	if err != nil {
		return nil, err
	}
	switch nic.Attachment.Type {
	case annotations.AttachMacvlan:
		return ensureMacvlan(h, nic.IfName, "subnet "+nic.Subnet+": natGatewayAttachment.master", nic.Attachment.Master, "bridge", mac, nic.Attachment.MTU)
	case annotations.AttachBridge:
		return ensureBridgeVeth(h, nic, mac)
	default:
		return nil, fmt.Errorf("subnet NIC %s: unknown attachment type %q", nic.IfName, nic.Attachment.Type)
	}
}

// DeleteExternalNIC deletes the external NIC from the gateway netns. A CNI DEL should call it:
// the kernel tears a netns down asynchronously (seconds, here), and until then the old net1
// keeps its MAC on the master, so a recreated gateway's net1 with the same MAC cannot go up
// (EADDRINUSE). Deleting it explicitly frees the MAC at once. Already gone is not an error.
func DeleteExternalNIC(h *Handles, ifName string) ([]string, error) {
	if ifName == "" {
		ifName = annotations.ExternalIfName
	}
	return deleteLink(h, ifName)
}

// DeleteSubnetNIC deletes a subnet NIC from the gateway netns; a veth's host end goes with it.
// A NIC that is already gone is not an error (CNI DEL must be idempotent).
func DeleteSubnetNIC(h *Handles, ifName string) ([]string, error) {
	return deleteLink(h, ifName)
}

func deleteLink(h *Handles, ifName string) ([]string, error) {
	l, err := h.Gateway.LinkByName(ifName)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("looking up link %s: %w", ifName, err)
	}
	if err := h.Gateway.LinkDel(l); err != nil {
		return nil, fmt.Errorf("deleting link %s: %w", ifName, err)
	}
	return []string{"link " + ifName + ": deleted " + l.Type()}, nil
}

// pruneSubnetNICs deletes the subnet NICs we own (SubnetIfPrefix) that are not wanted any more.
// It returns the links of the gateway netns by name as it found them, before any deletion.
func pruneSubnetNICs(h *Handles, want map[string]bool) (map[string]netlink.Link, []string, error) {
	links, err := linksByName(h)
	if err != nil {
		return nil, nil, err
	}
	var changes []string
	for name := range links {
		if !strings.HasPrefix(name, SubnetIfPrefix) || want[name] {
			continue
		}
		c, err := DeleteSubnetNIC(h, name)
		if err != nil {
			return links, changes, err
		}
		changes = append(changes, c...)
	}
	slices.Sort(changes) // map order: the report lists deletions the same way every time
	return links, changes, nil
}

// linksByName lists the links of the gateway netns (one dump), by name.
func linksByName(h *Handles) (map[string]netlink.Link, error) {
	list, err := h.Gateway.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links of the gateway netns: %w", err)
	}
	out := make(map[string]netlink.Link, len(list))
	for _, l := range list {
		out[l.Attrs().Name] = l
	}
	return out, nil
}

var macvlanModes = map[string]netlink.MacvlanMode{
	"": netlink.MACVLAN_MODE_BRIDGE, "bridge": netlink.MACVLAN_MODE_BRIDGE,
	"private": netlink.MACVLAN_MODE_PRIVATE, "vepa": netlink.MACVLAN_MODE_VEPA,
	"passthru": netlink.MACVLAN_MODE_PASSTHRU,
}

// ensureMacvlan makes name a macvlan of the given mode on master (node netns) inside the gateway
// netns, with mac (nil: any) and mtu (0: the master's), and up. masterFrom says where master was
// configured, for the error when the node has no such link.
func ensureMacvlan(h *Handles, name, masterFrom, master, mode string, mac net.HardwareAddr, mtu int) ([]string, error) {
	m, ok := macvlanModes[mode]
	if !ok {
		return nil, fmt.Errorf("link %s: macvlan mode %q not supported", name, mode)
	}
	parent, err := h.Host.LinkByName(master)
	if err != nil {
		return nil, fmt.Errorf("link %s: %s %q in the node netns: %w", name, masterFrom, master, err)
	}
	var changes []string
	l, err := h.Gateway.LinkByName(name)
	switch {
	case isNotFound(err):
	case err != nil:
		return nil, fmt.Errorf("looking up link %s: %w", name, err)
	default:
		mv, isMacvlan := l.(*netlink.Macvlan)
		// A macvlan whose master lives in another netns reports the master's ifindex there and a
		// link-netnsid; one on a local link has no netnsid. Either mismatch means "not ours".
		if isMacvlan && mv.Mode == m && l.Attrs().ParentIndex == parent.Attrs().Index && l.Attrs().NetNsID >= 0 {
			return fixLink(h, l, changes, mac, mtu)
		}
		if err := h.Gateway.LinkDel(l); err != nil {
			return nil, fmt.Errorf("deleting link %s (%s, not a macvlan on %s): %w", name, l.Type(), master, err)
		}
		changes = append(changes, fmt.Sprintf("link %s: deleted %s (not a %s macvlan on %s)", name, l.Type(), mode, master))
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	attrs.ParentIndex = parent.Attrs().Index
	attrs.Namespace = netlink.NsFd(h.GatewayNS)
	attrs.HardwareAddr = mac
	attrs.MTU = mtu
	if err := h.Host.LinkAdd(&netlink.Macvlan{LinkAttrs: attrs, Mode: m}); err != nil {
		return nil, fmt.Errorf("creating macvlan %s on %s in the gateway netns: %w", name, master, err)
	}
	changes = append(changes, fmt.Sprintf("link %s: created macvlan on %s", name, master))
	if err := ipv6OffIn(h.GatewayNS, name); err != nil {
		return nil, fmt.Errorf("link %s: %w", name, err)
	}
	if l, err = h.Gateway.LinkByName(name); err != nil {
		return nil, fmt.Errorf("looking up link %s after creating it: %w", name, err)
	}
	return fixLink(h, l, changes, mac, mtu)
}

// fixLink repairs the MAC and MTU of a gateway link and sets it up.
func fixLink(h *Handles, l netlink.Link, changes []string, mac net.HardwareAddr, mtu int) ([]string, error) {
	name := l.Attrs().Name
	if mac != nil && l.Attrs().HardwareAddr.String() != mac.String() {
		if err := h.Gateway.LinkSetHardwareAddr(l, mac); err != nil {
			return nil, fmt.Errorf("setting mac of %s to %s: %w", name, mac, err)
		}
		changes = append(changes, fmt.Sprintf("link %s: mac %s -> %s", name, l.Attrs().HardwareAddr, mac))
	}
	return setMTUUp(h.Gateway, l, "link "+name, mtu, changes)
}

// setMTUUp sets a link's MTU (when mtu > 0) and brings it up.
func setMTUUp(nh *netlink.Handle, l netlink.Link, what string, mtu int, changes []string) ([]string, error) {
	if mtu > 0 && l.Attrs().MTU != mtu {
		if err := nh.LinkSetMTU(l, mtu); err != nil {
			return nil, fmt.Errorf("%s: setting mtu %d: %w", what, mtu, err)
		}
		changes = append(changes, fmt.Sprintf("%s: mtu %d -> %d", what, l.Attrs().MTU, mtu))
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := nh.LinkSetUp(l); errors.Is(err, unix.EADDRINUSE) {
			// A macvlan cannot open while another one on the same master has its MAC: typically
			// the previous net1, in a gateway netns the kernel is still tearing down
			// (asynchronously, tens of milliseconds). It is left down; the next converge retries.
			return nil, fmt.Errorf("%s: setting up: %w (another link on the same master still has MAC %s, e.g. in a netns being torn down)",
				what, err, l.Attrs().HardwareAddr)
		} else if err != nil {
			return nil, fmt.Errorf("%s: setting up: %w", what, err)
		}
		changes = append(changes, what+": up")
	}
	return changes, nil
}
