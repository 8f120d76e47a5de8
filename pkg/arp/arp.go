// Package arp builds and reads the Ethernet/IPv4 ARP payloads vpcnat sends from packet sockets
// (SOCK_DGRAM: the kernel adds the Ethernet header): the daemon's probes, announcements and
// defences (pkg/netconf), the failover agent's gateway probes and takeover announcements
// (pkg/ha). Pure: no socket here.
package arp

import (
	"encoding/binary"
	"net"
	"net/netip"
)

const (
	hardwareEthernet = 1
	protocolIPv4     = 0x0800
	opRequest        = 1
)

// Request is an ARP request from mac: sender protocol address spa (0.0.0.0 for an RFC 5227
// probe, which touches no neighbour's cache; the address itself for a gratuitous ARP), target
// tpa, target hardware address zero. Requests rather than replies announce too: every
// implementation updates an existing cache entry from a request.
func Request(mac net.HardwareAddr, spa, tpa netip.Addr) []byte {
	b := make([]byte, 28)
	binary.BigEndian.PutUint16(b[0:], hardwareEthernet)
	binary.BigEndian.PutUint16(b[2:], protocolIPv4)
	b[4], b[5] = 6, 4
	binary.BigEndian.PutUint16(b[6:], opRequest)
	copy(b[8:14], mac)
	s, t := spa.As4(), tpa.As4()
	copy(b[14:18], s[:])
	copy(b[24:28], t[:])
	return b
}

// Sender is the sender protocol address of an Ethernet/IPv4 ARP payload; false for anything
// else.
func Sender(b []byte) (netip.Addr, bool) {
	if len(b) < 28 || binary.BigEndian.Uint16(b[0:]) != hardwareEthernet || binary.BigEndian.Uint16(b[2:]) != protocolIPv4 || b[4] != 6 || b[5] != 4 {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4([4]byte(b[14:18])), true
}
