package topo

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Frame is one captured Ethernet frame: when, on which link, from which MAC, and its payload
// (after the Ethernet header, at most the first 64 bytes).
type Frame struct {
	At      time.Time
	IfIndex int
	Src     string
	Payload []byte
}

// Capture records the frames of one ethertype that a namespace sees: on one link, or on every
// link (also those created after it started, in and out). A kernel socket filter keeps other
// frames out, so a capture of the host's namespace costs nothing for the rest of its traffic.
// It only listens: it never sends.
type Capture struct {
	fd     int
	done   chan struct{}
	once   sync.Once
	closed atomic.Bool

	mu     sync.Mutex
	frames []Frame
}

// StartCapture captures frames of ethertype in a role's namespace ("" for the calling
// thread's, the host's in a test) on dev ("" for every link).
func (t *Topology) StartCapture(role, dev string, ethertype uint16) (*Capture, error) {
	c := &Capture{done: make(chan struct{})}
	open := func() error {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		// ldh [12]; jeq #ethertype, accept, drop: only frames of ethertype reach the socket.
		filter := []unix.SockFilter{
			{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 12},
			{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: uint32(ethertype)},
			{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
			{Code: unix.BPF_RET | unix.BPF_K, K: 0},
		}
		// A packet socket's blocking read is not woken by shutdown or close: poll for Close.
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return fmt.Errorf("receive timeout: %w", err)
		}
		prog := unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			unix.Close(fd)
			return fmt.Errorf("socket filter: %w", err)
		}
		if dev == "" {
			return nil
		}
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			unix.Close(fd)
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("binding to %s: %w", dev, err)
		}
		return nil
	}
	var err error
	if role == "" {
		err = open()
	} else {
		err = t.Do(role, open)
	}
	if err != nil {
		return nil, fmt.Errorf("capture of ethertype %#04x in %q on %q: %w", ethertype, role, dev, err)
	}
	go c.run()
	return c, nil
}

func (c *Capture) run() {
	defer close(c.done)
	buf := make([]byte, 2048)
	for {
		if c.closed.Load() {
			return
		}
		n, from, err := unix.Recvfrom(c.fd, buf, 0)
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		if err != nil {
			return
		}
		if n < 14 {
			continue
		}
		f := Frame{At: time.Now(), Src: net.HardwareAddr(buf[6:12]).String(), Payload: append([]byte(nil), buf[14:min(n, 14+64)]...)}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok {
			f.IfIndex = ll.Ifindex
		}
		c.mu.Lock()
		c.frames = append(c.frames, f)
		c.mu.Unlock()
	}
}

// Frames returns what was captured so far.
func (c *Capture) Frames() []Frame {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Frame(nil), c.frames...)
}

// Close stops the capture. Frames stay readable.
func (c *Capture) Close() {
	c.once.Do(func() {
		c.closed.Store(true)
		<-c.done
		_ = unix.Close(c.fd)
	})
}

// ARP is an ARP frame's fields that matter for address ownership.
type ARP struct {
	At        time.Time
	Op        int // 1 request, 2 reply
	SenderMAC string
	SenderIP  netip.Addr
	TargetIP  netip.Addr
}

// Gratuitous: an announcement (request with sender IP = target IP).
func (a ARP) Gratuitous() bool { return a.Op == 1 && a.SenderIP == a.TargetIP }

// Probe: an RFC 5227 probe (sender IP 0.0.0.0).
func (a ARP) Probe() bool { return a.Op == 1 && a.SenderIP == netip.IPv4Unspecified() }

func (a ARP) String() string {
	kind := map[int]string{1: "request", 2: "reply"}[a.Op]
	return fmt.Sprintf("%s ARP %s from %s (%s) for %s", a.At.Format("15:04:05.000"), kind, a.SenderIP, a.SenderMAC, a.TargetIP)
}

// ARPs decodes the captured ARP frames (a capture of ETH_P_ARP).
func (c *Capture) ARPs() []ARP {
	var out []ARP
	for _, f := range c.Frames() {
		p := f.Payload
		if len(p) < 28 || binary.BigEndian.Uint16(p[2:]) != unix.ETH_P_IP {
			continue
		}
		out = append(out, ARP{At: f.At, Op: int(binary.BigEndian.Uint16(p[6:])), SenderMAC: net.HardwareAddr(p[8:14]).String(),
			SenderIP: netip.AddrFrom4([4]byte(p[14:18])), TargetIP: netip.AddrFrom4([4]byte(p[24:28]))})
	}
	return out
}

// SendGratuitousARP makes a test host announce ip from its link dev, as a host does when it
// takes an address: a broadcast ARP request with sender and target ip and the link's MAC.
func (t *Topology) SendGratuitousARP(role, dev, ip string) error {
	addr, err := netip.ParseAddr(ip)
	if err != nil || !addr.Is4() {
		return fmt.Errorf("gratuitous ARP: %q is not an IPv4 address", ip)
	}
	return t.Do(role, func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("gratuitous ARP from %s: %w", role, err)
		}
		defer unix.Close(fd)
		b := make([]byte, 28)
		binary.BigEndian.PutUint16(b[0:], 1)
		binary.BigEndian.PutUint16(b[2:], unix.ETH_P_IP)
		b[4], b[5] = 6, 4
		binary.BigEndian.PutUint16(b[6:], 1)
		copy(b[8:14], ifc.HardwareAddr)
		a := addr.As4()
		copy(b[14:18], a[:])
		copy(b[24:28], a[:])
		to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifc.Index, Halen: 6}
		copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
		if err := unix.Sendto(fd, b, 0, to); err != nil {
			return fmt.Errorf("gratuitous ARP for %s from %s/%s: %w", ip, role, dev, err)
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// MAC is the MAC address of a test host's link.
func (t *Topology) MAC(role, dev string) (string, error) {
	var mac string
	err := t.Do(role, func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		mac = ifc.HardwareAddr.String()
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("MAC of %s in %s: %w", dev, role, err)
	}
	return mac, nil
}
