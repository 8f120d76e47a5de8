package ha

import (
	"fmt"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// heartbeatGroup is the destination of heartbeats: a locally administered multicast MAC
// ("vpnat" after the first byte). Multicast rather than broadcast: a host's NIC filters it in
// hardware, so the external network's other hosts pay nothing for a gateway's heartbeats. Each
// replica joins it on its NICs (PACKET_ADD_MEMBERSHIP), which a macvlan needs to pass it up.
var heartbeatGroup = net.HardwareAddr{0x03, 0x76, 0x70, 0x6e, 0x61, 0x74}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket is one AF_PACKET/SOCK_DGRAM socket bound to one NIC and one EtherType, in the
// netns of the calling process (the agent runs in the pod's netns, never enters another). It is
// non-blocking and waits in Go's network poller: a reader waiting for a frame holds no thread in
// a system call, so an idle agent costs the CPU almost nothing (on a starved node, what little
// CPU it gets goes to its heartbeats), and close wakes a waiting reader.
type packetSocket struct {
	f       *os.File
	rc      syscall.RawConn
	ifindex int
	proto   uint16
}

func openPacketSocket(ifindex int, proto uint16, group net.HardwareAddr) (*packetSocket, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, int(htons(proto)))
	if err != nil {
		return nil, fmt.Errorf("packet socket for EtherType %#04x: %w (the agent needs CAP_NET_RAW in its netns)", proto, err)
	}
	// The kernel stamps every frame when it arrives: a frame read late (the agent did not get
	// the CPU) still counts at the time it came, not at the time it was read.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("receive timestamps of the packet socket: %w", err)
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
	f := os.NewFile(uintptr(fd), fmt.Sprintf("packet-%d-%#04x", ifindex, proto))
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("packet socket on ifindex %d: %w", ifindex, err)
	}
	return &packetSocket{f: f, rc: rc, ifindex: ifindex, proto: proto}, nil
}

// send never blocks (MSG_DONTWAIT): a full queue loses one frame, and the next interval sends
// another.
func (s *packetSocket) send(to net.HardwareAddr, payload []byte) error {
	sa := &unix.SockaddrLinklayer{Protocol: htons(s.proto), Ifindex: s.ifindex, Halen: uint8(len(to))}
	copy(sa.Addr[:], to)
	var err error
	if cerr := s.rc.Write(func(fd uintptr) bool {
		err = unix.Sendto(int(fd), payload, unix.MSG_DONTWAIT, sa)
		return true
	}); cerr != nil {
		return cerr
	}
	return err
}

// recv reads the next frame, waiting for one or not (dontWait: EAGAIN when none is queued). It returns an error once the socket is closed, a nil sender for this host's
// own outgoing frames, and when the frame arrived: the kernel's receive stamp (SO_TIMESTAMPNS)
// on the caller's monotonic clock, or the time it was read if the kernel gave none.
func (s *packetSocket) recv(buf []byte, dontWait bool) (int, net.HardwareAddr, time.Time, error) {
	var oob [64]byte
	var n, oobn int
	var from unix.Sockaddr
	var err error
	recv := func(fd uintptr) bool {
		n, oobn, _, from, err = unix.Recvmsg(int(fd), buf, oob[:], unix.MSG_DONTWAIT)
		return err != unix.EAGAIN // false: wait in the poller until readable
	}
	var cerr error
	if dontWait {
		// Control, not Read: the reader goroutine waiting in Read holds the read lock.
		cerr = s.rc.Control(func(fd uintptr) { recv(fd) })
	} else {
		cerr = s.rc.Read(recv)
	}
	if cerr != nil {
		return 0, nil, time.Time{}, cerr
	}
	if err != nil {
		return 0, nil, time.Time{}, err
	}
	read := time.Now()
	ll, ok := from.(*unix.SockaddrLinklayer)
	if !ok || ll.Pkttype == unix.PACKET_OUTGOING {
		return 0, nil, time.Time{}, nil
	}
	return n, net.HardwareAddr(ll.Addr[:ll.Halen]), arrival(oob[:oobn], read), nil
}

// arrival turns the kernel's receive stamp in a control message (wall clock) into a time on
// the monotonic clock of read, the time the frame was read: read minus how long it waited in
// the socket. Without a stamp, or with one the wall clock makes unbelievable (a clock step), the
// frame counts as read.
func arrival(oob []byte, read time.Time) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return read
	}
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_TIMESTAMPNS || len(m.Data) < int(unsafe.Sizeof(unix.Timespec{})) {
			continue
		}
		var ts unix.Timespec
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&ts)), unsafe.Sizeof(ts)), m.Data)
		waited := read.Sub(time.Unix(ts.Unix()))
		if waited < 0 || waited > maxQueued {
			return read
		}
		return read.Add(-waited)
	}
	return read
}

// maxQueued bounds a believable wait of a frame in its socket: beyond it the stamp is taken
// for a wall-clock step.
const maxQueued = 10 * time.Second

// close closes the socket; a reader waiting in recv returns at once (os.ErrClosed).
func (s *packetSocket) close() { _ = s.f.Close() }

var broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
