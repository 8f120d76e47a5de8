package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/state"
)

// Node-side links and who owns them. Every sandbox of a gateway names its node-side veth ends the
// same (plan.HostIfName), and a replacement sandbox's ADD may run while the old sandbox's DEL is
// still under way (it waits only for net1's MAC): by then a link of that name may be the new
// sandbox's. So a DEL, a GC or a failed ADD deletes a node-side link only if it can prove it is
// the one its attachment made:
//   - it is a veth;
//   - its ifindex is the one the record noted at ADD (when the record has one), and
//   - its peer is in the attachment's netns (when that netns is still there): the link's
//     link-netnsid, as the node netns sees it, is the netnsid of the attachment's netns, and
//     the peer's ifindex is the one noted at ADD (when noted).
//
// A link of an old record (names only) whose netns is gone is left alone: the pair went with the
// netns, and a link of that name now is someone else's.

// hostOwner is one attachment as the owner of node-side links.
type hostOwner struct {
	host *netlink.Handle // the node netns
	// ns is the attachment's netns (-1 when it is gone or unknown).
	ns  netns.NsHandle
	rec *state.Record // what ADD noted (nil: nothing, as for a failed ADD's rollback)
}

// owns reports whether l (a node-netns link called by one of the attachment's names) is the
// attachment's, and if not, why.
func (o hostOwner) owns(l netlink.Link) (bool, string) {
	name := l.Attrs().Name
	if _, ok := l.(*netlink.Veth); !ok {
		return false, fmt.Sprintf("%s is a %s, not a veth", name, l.Type())
	}
	var noted state.HostLink
	hasNoted := false
	if o.rec != nil {
		noted, hasNoted = o.rec.HostLinkOf(name)
	}
	if hasNoted && l.Attrs().Index != noted.Index {
		return false, fmt.Sprintf("%s has ifindex %d, the attachment's had %d", name, l.Attrs().Index, noted.Index)
	}
	if o.ns.IsOpen() {
		// Looking the link up gave the peer's netns a netnsid in the node netns (the kernel
		// assigns one when it reports a link-netnsid), so the attachment's netns has one now if
		// the peer is there.
		id, err := o.host.GetNetNsIdByFd(int(o.ns))
		if err != nil {
			return false, fmt.Sprintf("netnsid of the attachment's netns: %v", err)
		}
		if id < 0 || l.Attrs().NetNsID != id {
			return false, fmt.Sprintf("%s's peer is in netnsid %d, the attachment's netns is netnsid %d", name, l.Attrs().NetNsID, id)
		}
		if hasNoted && noted.PeerIndex > 0 && l.Attrs().ParentIndex != noted.PeerIndex {
			return false, fmt.Sprintf("%s's peer has ifindex %d, the attachment's had %d", name, l.Attrs().ParentIndex, noted.PeerIndex)
		}
		return true, ""
	}
	if !hasNoted {
		return false, fmt.Sprintf("the attachment's netns is gone (and the pair with it) and its record has no ifindex for %s", name)
	}
	return true, ""
}

// deleteHostLinks deletes those of the named node-side links that the attachment owns; a link
// already gone, or someone else's, is left alone.
func (o hostOwner) deleteHostLinks(names []string) error {
	var errs []error
	for _, name := range names {
		l, err := o.host.LinkByName(name)
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			continue // gone already (normally with its peer)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("vpcnat: looking up node-side link %s: %w", name, err))
			continue
		}
		if ok, _ := o.owns(l); !ok {
			continue // not this attachment's: typically a newer sandbox's of the same gateway
		}
		if err := o.host.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("vpcnat: deleting node-side link %s (ifindex %d): %w", name, l.Attrs().Index, err))
		}
	}
	return errors.Join(errs...)
}

// openNetns opens the netns at path; a netns that is gone (or no path) gives a closed handle
// (-1) and no error.
func openNetns(path string) (netns.NsHandle, error) {
	if path == "" {
		return netns.None(), nil
	}
	ns, err := netns.GetFromPath(path)
	if errors.Is(err, fs.ErrNotExist) {
		return netns.None(), nil
	}
	if err != nil {
		return netns.None(), fmt.Errorf("vpcnat: opening netns %s: %w", path, err)
	}
	return ns, nil
}

// noteHostLink returns the record's entry for the node-side veth end name, whose peer in the
// pod netns is peer (both just made or found by ADD).
func noteHostLink(host, gw *netlink.Handle, name, peer string) (state.HostLink, error) {
	hl, err := host.LinkByName(name)
	if err != nil {
		return state.HostLink{}, fmt.Errorf("vpcnat: looking up node-side link %s after creating it: %w", name, err)
	}
	pl, err := gw.LinkByName(peer)
	if err != nil {
		return state.HostLink{}, fmt.Errorf("vpcnat: looking up %s after creating it: %w", peer, err)
	}
	return state.HostLink{Name: name, Index: hl.Attrs().Index, PeerIndex: pl.Attrs().Index}, nil
}
