package annotations

import (
	"fmt"
	"net"
	"net/netip"
	"time"
)

// AddressConflict is one address of the gateway that another host on the same segment claims
// (RFC 5227 address conflict detection, done by the daemon). It is part of Applied: the daemon
// reports the conflicts it knows, and reports again whenever that set changes.
type AddressConflict struct {
	// Address is the contested IPv4 address (an EIP, a subnet gateway IP or lanIp).
	Address string `json:"address"`
	// Interface is the gateway NIC the address belongs on (net1, vpc-…).
	Interface string `json:"interface"`
	// MAC is the foreign host's hardware address, as it last claimed the address.
	MAC string `json:"mac"`
	// Since is when the conflict was first seen, RFC 3339.
	Since string `json:"since"`
	// Claimed: the gateway holds the address and defends it. False: the address was in use when
	// the gateway probed it, so it is not on the interface (not claimed, not announced) and is
	// probed again until the other host is gone.
	Claimed bool `json:"claimed"`
}

// maxIfNameLen is IFNAMSIZ-1, the kernel's limit on interface names.
const maxIfNameLen = 15

// validateConflicts checks every conflict of a report; errors name the field and the value.
func validateConflicts(cs []AddressConflict) error {
	for i, c := range cs {
		path := fmt.Sprintf("conflicts[%d]", i)
		if a, err := netip.ParseAddr(c.Address); err != nil || !a.Is4() || a.String() != c.Address {
			return fmt.Errorf("%s.address %q: not an IPv4 address in canonical form", path, c.Address)
		}
		if c.Interface == "" || len(c.Interface) > maxIfNameLen {
			return fmt.Errorf("%s.interface %q: must be 1-%d characters", path, c.Interface, maxIfNameLen)
		}
		if m, err := net.ParseMAC(c.MAC); err != nil || len(m) != 6 || m.String() != c.MAC {
			return fmt.Errorf("%s.mac %q: not an Ethernet MAC in canonical form (02:00:00:00:00:01)", path, c.MAC)
		}
		if _, err := time.Parse(time.RFC3339, c.Since); err != nil {
			return fmt.Errorf("%s.since %q: not an RFC 3339 time: %w", path, c.Since, err)
		}
	}
	return nil
}
