package netconf

import "golang.org/x/sys/unix"

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
