package netconf

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// arpCapture records the ARP frames a role's netns receives on one interface.
type arpCapture struct {
	fd   int
	mu   sync.Mutex
	seen []string // "op sender-mac sender-ip target-ip"
	done chan struct{}
}

func (tp *topo) captureARP(role, dev string) *arpCapture {
	tp.t.Helper()
	c := &arpCapture{done: make(chan struct{})}
	if err := tp.do(role, func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		if c.fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP))); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((100 * time.Millisecond).Nanoseconds())
		if err := unix.SetsockoptTimeval(c.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return unix.Bind(c.fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifc.Index})
	}); err != nil {
		tp.t.Fatalf("ARP capture in %s: %v", role, err)
	}
	go func() {
		defer close(c.done)
		buf := make([]byte, 1500)
		for {
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err == unix.EAGAIN || err == unix.EINTR {
				continue
			}
			if err != nil {
				return // closed
			}
			if n < 28 {
				continue
			}
			b := buf[:n]
			line := fmt.Sprintf("%d %s %s %s", binary.BigEndian.Uint16(b[6:]), net.HardwareAddr(b[8:14]),
				netip.AddrFrom4([4]byte(b[14:18])), netip.AddrFrom4([4]byte(b[24:28])))
			c.mu.Lock()
			c.seen = append(c.seen, line)
			c.mu.Unlock()
		}
	}()
	tp.t.Cleanup(c.close)
	return c
}

func (c *arpCapture) close() {
	unix.Shutdown(c.fd, unix.SHUT_RDWR)
	unix.Close(c.fd)
	<-c.done
}

// count returns how many captured frames are exactly line.
func (c *arpCapture) count(line string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.seen {
		if s == line {
			n++
		}
	}
	return n
}

// A converge with 100 EIPs announces all of them and the subnet NIC's addresses, and a new EIP is
// announced 1+garpRepeats times: the router sees the gratuitous ARPs and learns net1's MAC from
// them. How long a converge takes (announcing never waits for the repeats) is a figure, logged
// here and measured by `make bench` (first converge, one-rule change), never asserted.
func TestGratuitousARP(t *testing.T) {
	tp := newTopo(t)
	// Let the router create neighbour entries from gratuitous ARP (off by default), so its
	// neighbour table shows what it learned.
	tp.exec(roleExt, "sysctl", "-qw", "net.ipv4.conf.ext0.arp_accept=1")
	capture := tp.captureARP(roleExt, "ext0")

	d := seedDesired()
	for i := 10; len(d.EIPs) < 100; i++ {
		d.EIPs = append(d.EIPs, annotations.EIP{EipCIDR: fmt.Sprintf("192.168.0.%d/24", i), Gateway: "192.168.0.254"})
	}
	g := tp.gateway()
	start := time.Now()
	rep := tp.mustConverge(g, d, true)
	t.Logf("first converge with 100 EIPs: %v", time.Since(start))
	// All 100 EIPs, then the subnet NIC's gateway IP and lanIp.
	if len(rep.Announced) != 102 || rep.Announced[99] != "192.168.0.107" || rep.Announced[100] != "10.0.1.1" {
		t.Errorf("first converge announced %d addresses (%v), want all 100 EIPs and 2 subnet addresses",
			len(rep.Announced), rep.Announced)
	}

	d.EIPs = append(d.EIPs, annotations.EIP{EipCIDR: "192.168.0.200/24", Gateway: "192.168.0.254"})
	start = time.Now()
	rep = tp.mustConverge(g, d, false)
	t.Logf("adding the 101st EIP (fast path): %v", time.Since(start))
	if len(rep.Announced) != 1 || rep.Announced[0] != "192.168.0.200" {
		t.Errorf("announced %v, want only the new EIP", rep.Announced)
	}

	// Wait for the repeats (the deadline is only a hang guard, far beyond garpInterval *
	// garpRepeats), then close the gateway: its announcers stop, so the count is final and an
	// extra announcement would show.
	garp := "1 " + seedMAC + " 192.168.0.200 192.168.0.200"
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) && capture.count(garp) < 1+garpRepeats {
		time.Sleep(50 * time.Millisecond)
	}
	g.Close()
	if n := capture.count(garp); n != 1+garpRepeats {
		t.Errorf("router saw %d gratuitous ARPs for the new EIP, want %d", n, 1+garpRepeats)
	}
	if n := capture.count("1 " + seedMAC + " 192.168.0.50 192.168.0.50"); n < 1 {
		t.Error("router saw no gratuitous ARP for an EIP of the first converge")
	}
	if n := tp.ip(roleExt, "neigh", "show", "192.168.0.200"); !strings.Contains(n, "lladdr "+seedMAC) {
		t.Errorf("router's neighbour entry for the new EIP: %q", n)
	}
}
