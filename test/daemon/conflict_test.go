package daemon

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/test/topo"
)

// announce sends n gratuitous ARPs for ip out of a role's eth0, every apart, as a host that
// takes the address would.
func announce(t *testing.T, tp *topo.Topology, role, ip string, n int, every time.Duration) {
	t.Helper()
	var fd, idx int
	var mac net.HardwareAddr
	if err := tp.Do(role, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		idx, mac = ifi.Index, ifi.HardwareAddr
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		t.Fatalf("packet socket in %s: %v", role, err)
	}
	defer unix.Close(fd)
	a := netip.MustParseAddr(ip).As4()
	frame := make([]byte, 28)
	copy(frame, []byte{0, 1, 8, 0, 6, 4, 0, 1}) // Ethernet, IPv4, request
	copy(frame[8:14], mac)
	copy(frame[14:18], a[:])
	copy(frame[24:28], a[:])
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: idx, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	for i := range n {
		if i > 0 {
			time.Sleep(every)
		}
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			t.Fatalf("gratuitous ARP from %s: %v", role, err)
		}
	}
}

// TestDaemonReportsAddressConflict: a tenant host that takes its subnet's gateway address is
// seen by the daemon's listener between converges; the pod's applied annotation lists the
// conflict (address, the subnet NIC, the host's MAC, claimed) through the real API server, the
// pod gets an AddressConflict Warning, the daemon's metrics count it and its defence; when the
// host gives the address up the report is cleared again.
func TestDaemonReportsAddressConflict(t *testing.T) {
	topo.NeedRoot(t)
	g := newSeedGateway(t)
	intruderMAC := linkMAC(t, g.n, topo.Pod1, "eth0")
	g.n.exec(topo.Pod1, "ip", "addr", "add", "10.0.1.1/24", "dev", "eth0")
	announce(t, g.n.topo, topo.Pod1, "10.0.1.1", 2, 500*time.Millisecond)

	var a *annotations.Applied
	eventually(t, "the conflict in the applied annotation", 10*time.Second, func() bool {
		a = g.c.applied(g.pod)
		return a != nil && len(a.Conflicts) > 0
	})
	c := a.Conflicts[0]
	if len(a.Conflicts) != 1 || c.Address != "10.0.1.1" || !strings.HasPrefix(c.Interface, "vpc-") ||
		c.MAC != intruderMAC || !c.Claimed || a.Hash != hashOf(g.desired) || a.Error != "" {
		t.Errorf("applied %+v: want the applied state with one held conflict on 10.0.1.1 (a vpc- NIC) from %s", a, intruderMAC)
	}
	expectEvent(t, g.c, g.pod, "AddressConflict", "10.0.1.1 on "+c.Interface)
	if v := g.dm.metric("vpcnat_daemon_address_conflicts", "gateway", "ngw"); v != 1 {
		t.Errorf("vpcnat_daemon_address_conflicts = %v, want 1", v)
	}
	if v := g.dm.metric("vpcnat_daemon_address_defenses_total", "gateway", "ngw"); v != 1 {
		t.Errorf("vpcnat_daemon_address_defenses_total = %v, want 1 (one per defend interval)", v)
	}

	g.n.exec(topo.Pod1, "ip", "addr", "del", "10.0.1.1/24", "dev", "eth0")
	eventually(t, "the conflict cleared from the applied annotation", 10*time.Second, func() bool {
		a = g.c.applied(g.pod)
		return a != nil && len(a.Conflicts) == 0
	})
	if v := g.dm.metric("vpcnat_daemon_address_conflicts", "gateway", "ngw"); v != 0 {
		t.Errorf("vpcnat_daemon_address_conflicts = %v after the conflict, want 0", v)
	}
	g.works()
}
