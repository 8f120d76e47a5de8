package daemon

import (
	"strings"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/test/topo"
)

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
	for range 2 {
		if err := g.n.topo.SendGratuitousARP(topo.Pod1, "eth0", "10.0.1.1"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(500 * time.Millisecond) // a host's announcements come a moment apart
	}

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
