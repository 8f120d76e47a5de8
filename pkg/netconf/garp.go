package netconf

import (
	"net"
	"net/netip"
	"time"
)

// Gratuitous ARP timing: one announcement immediately, then garpRepeats more, garpInterval
// apart (as `arping -U -c 3` would, without its blocking: Kube-OVN's serial arping took 306 s
// for 100 EIPs). The repeats cover a first frame lost while a switch learns the MAC.
const (
	garpRepeats  = 2
	garpInterval = time.Second
)

// garpPayload is the ARP part (the kernel adds the Ethernet header on a SOCK_DGRAM packet
// socket) of a gratuitous ARP request: sender and target protocol address both ip, target
// hardware address zero. Requests, not replies, because every ARP implementation updates an
// existing cache entry from a request.
func garpPayload(mac net.HardwareAddr, ip netip.Addr) []byte { return arpPayload(mac, ip, ip) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }
