package netconf

import (
	"encoding/binary"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// lateAnswerer answers, from a role's eth0, every probe for addr with an ARP reply claiming it,
// but only after delay: a host that holds the address and answers later than the probes wait.
// It counts the replies it sent.
type lateAnswerer struct {
	fd   int
	sent atomic.Int32
	done chan struct{}
}

func (tp *topo) lateAnswerer(role string, addr netip.Addr, delay time.Duration) *lateAnswerer {
	tp.t.Helper()
	la := &lateAnswerer{fd: -1, done: make(chan struct{})}
	mac, err := net.ParseMAC(tp.mac(role, "eth0"))
	if err != nil {
		tp.t.Fatal(err)
	}
	idx := 0
	if err := tp.do(role, func() error {
		ifc, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		idx = ifc.Index
		if la.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return err
		}
		// Shutdown does not wake a packet socket's recv: a timeout lets the reader see the close.
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(la.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(la.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: idx})
	}); err != nil {
		tp.t.Fatalf("packet socket in %s: %v", role, err)
	}
	go func() {
		defer close(la.done)
		buf := make([]byte, 1500)
		for {
			n, _, err := unix.Recvfrom(la.fd, buf, 0)
			if err == unix.EINTR || err == unix.EAGAIN {
				continue
			}
			if err != nil {
				return // closed
			}
			f, ok := parseARP(buf[:n])
			if !ok || f.op != 1 || f.spa != zeroIP || f.tpa != addr {
				continue
			}
			reply := make([]byte, 28)
			binary.BigEndian.PutUint16(reply[0:], 1)      // Ethernet
			binary.BigEndian.PutUint16(reply[2:], 0x0800) // IPv4
			reply[4], reply[5] = 6, 4
			binary.BigEndian.PutUint16(reply[6:], 2) // reply
			copy(reply[8:], mac)
			copy(reply[14:], addr.AsSlice())
			copy(reply[18:], f.sha) // the prober; its sender address 0.0.0.0 stays zero
			to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: idx, Halen: 6}
			copy(to.Addr[:], f.sha)
			time.AfterFunc(delay, func() {
				if unix.Sendto(la.fd, reply, 0, to) == nil {
					la.sent.Add(1)
				}
			})
		}
	}()
	tp.t.Cleanup(func() {
		unix.Shutdown(la.fd, unix.SHUT_RDWR)
		unix.Close(la.fd)
		<-la.done
	})
	return la
}

// A host that holds an EIP but answers the probes only after their wait (here 100 ms after
// each) is not seen in time: the gateway claims the EIP. Its answers, arriving while the
// address is being added or once it is held, are a conflict all the same: reported as held
// (claimed) and defended, so the late answer is not lost whatever the moment it arrives.
func TestLateAnswerIsDefended(t *testing.T) {
	tp := newTopo(t)
	tp.addExternalHost(roleThief, "192.168.0.201/24")
	thiefMAC := tp.mac(roleThief, "eth0")
	eip := netip.MustParseAddr("192.168.0.111")
	late := (probeCount-1)*probeInterval + probeWait + 40*time.Millisecond // after the decision
	la := tp.lateAnswerer(roleThief, eip, late)

	g := tp.gateway()
	rep := tp.mustConverge(g, seedDesired(), true)
	if len(rep.Pending) != 0 || !slices.Contains(rep.Announced, "192.168.0.111") {
		t.Fatalf("pending %v, announced %v: the answers came before the decision (want them after it)", rep.Pending, rep.Announced)
	}
	want := "192.168.0.111 net1 " + thiefMAC + " claimed=true"
	if !eventually(func() bool { return conflictsString(g.Conflicts()) == want }) {
		t.Errorf("conflicts %q, want %q", conflictsString(g.Conflicts()), want)
	}
	if la.sent.Load() == 0 {
		t.Error("the late host sent no answer: the test proves nothing")
	}
	if !eventually(func() bool { return g.Defenses() >= 1 }) {
		t.Errorf("defenses %d, want at least one", g.Defenses())
	}
}
