package ha

import (
	"fmt"
	"net"

	"golang.org/x/sys/unix"
)

// heartbeatGroup is the destination of heartbeats: a locally administered multicast MAC
// ("vpnat" after the first byte). Multicast rather than broadcast: a host's NIC filters it in
// hardware, so the external network's other hosts pay nothing for a gateway's heartbeats. Each
// replica joins it on its NICs (PACKET_ADD_MEMBERSHIP), which a macvlan needs to pass it up.
var heartbeatGroup = net.HardwareAddr{0x03, 0x76, 0x70, 0x6e, 0x61, 0x74}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket is one AF_PACKET/SOCK_DGRAM socket bound to one NIC and one EtherType, in the
// netns of the calling process (the agent runs in the pod's netns, never enters another).
type packetSocket struct {
	fd      int
	ifindex int
	proto   uint16
}

func openPacketSocket(ifindex int, proto uint16, group net.HardwareAddr) (*packetSocket, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(proto)))
	if err != nil {
		return nil, fmt.Errorf("packet socket for EtherType %#04x: %w (the agent needs CAP_NET_RAW in its netns)", proto, err)
	}
	// A receive timeout lets the reader notice a closed socket: close does not wake a thread
	// blocked in recvfrom on a packet socket.
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("receive timeout of the packet socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(proto), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("binding the packet socket to ifindex %d: %w", ifindex, err)
	}
	if group != nil {
		mr := unix.PacketMreq{Ifindex: int32(ifindex), Type: unix.PACKET_MR_MULTICAST, Alen: uint16(len(group))}
		copy(mr.Address[:], group)
		if err := unix.SetsockoptPacketMreq(fd, unix.SOL_PACKET, unix.PACKET_ADD_MEMBERSHIP, &mr); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("joining %s on ifindex %d: %w", group, ifindex, err)
		}
	}
	return &packetSocket{fd: fd, ifindex: ifindex, proto: proto}, nil
}

// send never blocks (MSG_DONTWAIT): a full queue loses one frame, and the next interval sends
// another.
func (s *packetSocket) send(to net.HardwareAddr, payload []byte) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(s.proto), Ifindex: s.ifindex, Halen: uint8(len(to))}
	copy(sa.Addr[:], to)
	return unix.Sendto(s.fd, payload, unix.MSG_DONTWAIT, sa)
}

// recv blocks for the next frame; it returns an error once the socket is closed.
func (s *packetSocket) recv(buf []byte) (int, net.HardwareAddr, error) {
	n, from, err := unix.Recvfrom(s.fd, buf, 0)
	if err != nil {
		return 0, nil, err
	}
	ll, ok := from.(*unix.SockaddrLinklayer)
	if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
		return 0, nil, nil
	}
	return n, net.HardwareAddr(ll.Addr[:ll.Halen]), nil
}

// close closes the socket; only the reader calls it, after it was told to stop (a blocked recv
// returns within the receive timeout).
func (s *packetSocket) close() { unix.Close(s.fd) }

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
