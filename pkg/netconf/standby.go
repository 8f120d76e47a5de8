package netconf

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// A replicated gateway (spec.replicas ≥ 2) runs a failover agent in every replica's pod
// (pkg/ha). The daemon converges every replica alike (links, addresses, routes, rules, NAT), and
// the agent alone decides which one answers for the addresses: it sets IFF_NOARP on a standby's
// NICs, so their kernel neither answers nor sends ARP, and clears it on the active one. The NIC's
// ARP flag is the whole hand-off between the two, and it lives in the gateway's netns, so it
// holds whether or not the daemon runs, and the daemon needs no HA configuration.
//
// Address conflict detection keeps quiet on a silent NIC as well: it would otherwise undo the
// agent's work from the host side.
//   - no probe before adding an address: the active replica holds it and would answer, and a
//     standby must hold the same addresses to be ready (claim);
//   - no gratuitous ARP, no defence: the standby's own frames would steal the addresses from the
//     active replica (send);
//   - no conflict: the frames of the active replica, which holds the same addresses, are not an
//     intruder's (receive). Conflicts the NIC had end after the quiet window, silently.
// Probes (sender 0.0.0.0) still go out: they claim nothing.

// silent reports whether the NIC carries IFF_NOARP now (a standby replica's NIC). It asks the
// kernel through the NIC's own packet socket, which lives in the gateway's netns; an error
// (the NIC is gone) counts as not silent, which changes nothing for a NIC that is gone.
func (l *arpLink) silent() bool {
	ifr, err := unix.NewIfreq(l.name)
	if err != nil {
		return false
	}
	if err := unix.IoctlIfreq(l.fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return false
	}
	return ifr.Uint16()&unix.IFF_NOARP != 0
}

// claimsAddress: an ARP payload whose sender protocol address is set (an announcement, a
// defence, an answer), unlike a probe's 0.0.0.0.
func claimsAddress(payload []byte) bool {
	return len(payload) >= 18 && (payload[14]|payload[15]|payload[16]|payload[17]) != 0
}

// ReplicaRole is the role of this replica of a replicated gateway, as the failover agent set it
// on the external NIC: annotations.RoleActive (it answers ARP) or RoleStandby (IFF_NOARP); ""
// when no agent manages the NIC (a single gateway) or the NIC cannot be read.
func (g *Gateway) ReplicaRole() (string, uint64) {
	netNS, err := ns.GetNS(g.nsPath)
	if err != nil {
		return "", 0
	}
	defer netNS.Close()
	h, err := netlink.NewHandleAt(netns.NsHandle(netNS.Fd()))
	if err != nil {
		return "", 0
	}
	defer h.Close()
	l, err := h.LinkByName(annotations.ExternalIfName)
	if err != nil || !strings.HasPrefix(l.Attrs().Alias, annotations.ReplicaAliasPrefix) {
		return "", 0
	}
	term := aliasTerm(l.Attrs().Alias)
	role := annotations.RoleActive
	if l.Attrs().RawFlags&unix.IFF_NOARP != 0 {
		role = annotations.RoleStandby
	}
	g.noteRole(role, term)
	return role, term
}

// noteRole remembers the role last read. A replica found active at a term it was not active at
// before has just taken over, and its agent wrote the old active replica's conntrack entries
// into the kernel, unseen by the last sweep: entries an older release or the iptables backend
// made carry no port forward's mark, so the clean-up goes back to dumping the table until a
// sweep finds every entry marked again (conntrack_mark.go).
func (g *Gateway) noteRole(role string, term uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if role == annotations.RoleActive && (g.roleSeen != role || g.termSeen != term) && g.nftLast != nil {
		g.nftLast.marked = false
	}
	g.roleSeen, g.termSeen = role, term
}

// aliasTerm is the term in an agent's NIC alias ("vpcnat-ha active 3" -> 3); 0 when the alias
// carries none that parses.
func aliasTerm(alias string) uint64 {
	f := strings.Fields(strings.TrimPrefix(alias, annotations.ReplicaAliasPrefix))
	if len(f) != 2 {
		return 0
	}
	t, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return t
}

// noteSilence records whether NIC name is silent now and says whether that changed since the
// last frame it received: the agent changed the replica's role, which the daemon reports
// (acd.changed), between converges as it does a conflict.
func (a *acd) noteSilence(name string, silent bool) bool {
	old, seen := a.silence.Swap(name, silent)
	return seen && old.(bool) != silent
}

// silenceNewReplicaNICs makes the NICs of a replicated gateway (Desired.Replicas ≥ 2) that no
// failover agent has taken yet (no ReplicaAliasPrefix alias) silent, before any address is
// claimed on them: a new replica is a standby until its agent decides otherwise, and must not
// answer ARP for addresses the active replica holds (nor probe them and find them taken) in the
// moment between the CNI plugin creating its NICs and its agent starting. A NIC the agent has
// taken is left as the agent set it. A single gateway's NICs are never touched.
func silenceNewReplicaNICs(h *Handles, d *annotations.Desired, names []string) ([]string, error) {
	if d.Replicas < 2 {
		return nil, nil
	}
	var changes []string
	for _, name := range names {
		l, err := h.Gateway.LinkByName(name)
		if err != nil {
			return changes, fmt.Errorf("looking up %s: %w", name, err)
		}
		at := l.Attrs()
		if strings.HasPrefix(at.Alias, annotations.ReplicaAliasPrefix) || at.RawFlags&unix.IFF_NOARP != 0 {
			continue
		}
		if err := h.Gateway.LinkSetARPOff(l); err != nil {
			return changes, fmt.Errorf("silencing %s until the failover agent takes it: %w", name, err)
		}
		changes = append(changes, "link "+name+": ARP off until the failover agent takes it (replicated gateway)")
	}
	return changes, nil
}
