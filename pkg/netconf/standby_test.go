package netconf

import (
	"strings"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// roleActive is the active replica of a replicated gateway, on the external network next to
// the standby under test; it holds the gateway's addresses and announces them.
const roleActive = "active"

// TestStandbyNICsStayQuiet: on a replica whose NICs the failover agent silenced (IFF_NOARP, a
// standby), the daemon converges as usual but its address conflict detection keeps quiet: a new
// EIP the active replica already holds is added without a probe and not left pending, nothing
// is announced or defended, and the active replica's announcements are no conflict. The NICs
// stay silent across converges.
func TestStandbyNICsStayQuiet(t *testing.T) {
	tp := newTopo(t)
	tp.addExternalHost(roleActive, "192.168.0.113/24")
	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)
	// The agent makes this replica a standby.
	tp.ip(roleGW, "link", "set", "net1", "arp", "off")
	tp.ip(roleGW, "link", "set", "vpc-sn", "arp", "off")
	time.Sleep(garpRepeats*garpInterval + 200*time.Millisecond) // the first converge's announcements end
	router := tp.captureARP(roleExt, "ext0")

	d := seedDesired()
	d.Generation = 2
	d.EIPs = append(d.EIPs, annotations.EIP{EipCIDR: "192.168.0.113/24", Gateway: "192.168.0.254"})
	rep := tp.mustConverge(g, d, true)
	if len(rep.Pending) != 0 || !hasChange(rep, "added 192.168.0.113/24") {
		t.Errorf("standby converge: changes %q, pending %v; want 192.168.0.113/24 added, nothing pending", rep.Changes, rep.Pending)
	}
	tp.sendGARPs(roleActive, "eth0", "192.168.0.113", 3, 100*time.Millisecond)
	tp.sendGARPs(roleActive, "eth0", "192.168.0.111", 1, 0)
	time.Sleep(garpRepeats*garpInterval + quietWindow + 200*time.Millisecond)

	if cs := g.Conflicts(); len(cs) != 0 {
		t.Errorf("the active replica's announcements made conflicts on the standby: %s", conflictsString(cs))
	}
	for _, ip := range []string{"192.168.0.111", "192.168.0.112", "192.168.0.113"} {
		if n := router.claims(seedMAC, ip); n != 0 {
			t.Errorf("the router saw %d frames from the standby claiming %s", n, ip)
		}
	}
	if n := router.count("1 " + seedMAC + " 0.0.0.0 192.168.0.113"); n != 0 {
		t.Errorf("the standby probed the active replica's address %d times", n)
	}
	if n := router.claims(tp.mac(roleActive, "eth0"), "192.168.0.113"); n == 0 {
		t.Error("the router saw none of the active replica's announcements: the capture proves nothing")
	}
	for _, dev := range []string{"net1", "vpc-sn"} {
		if out := tp.ip(roleGW, "link", "show", dev); !strings.Contains(out, "NOARP") {
			t.Errorf("%s after the converges: %q, want NOARP kept", dev, out)
		}
	}
}

// TestReplicaRoleReported: the replica's role is read from the external NIC the agent marked
// (none for a single gateway's NIC), and the agent's change of the NIC's ARP flag between
// converges asks for a report (a notification without converge), as a conflict does.
func TestReplicaRoleReported(t *testing.T) {
	tp := newTopo(t)
	tp.addExternalHost(roleActive, "192.168.0.200/24")
	g := tp.gateway()
	notes := notifications(g)
	tp.mustConverge(g, seedDesired(), true)
	if r, term := g.ReplicaRole(); r != "" || term != 0 {
		t.Fatalf("a single gateway's role: %q term %d, want none", r, term)
	}
	tp.ip(roleGW, "link", "set", "net1", "alias", annotations.ReplicaAliasPrefix+"active 1")
	if r, term := g.ReplicaRole(); r != annotations.RoleActive || term != 1 {
		t.Fatalf("role with ARP on: %q term %d, want %q term 1", r, term, annotations.RoleActive)
	}
	// A frame while active, then the agent silences the NIC, then another frame.
	tp.sendGARPs(roleActive, "eth0", "192.168.0.200", 1, 0)
	time.Sleep(100 * time.Millisecond)
	for len(notes) > 0 {
		<-notes
	}
	tp.ip(roleGW, "link", "set", "net1", "arp", "off", "alias", annotations.ReplicaAliasPrefix+"standby 2")
	tp.sendGARPs(roleActive, "eth0", "192.168.0.200", 1, 0)
	if !waitNotify(t, notes, false) {
		t.Fatal("no report asked for after the replica became a standby")
	}
	if r, term := g.ReplicaRole(); r != annotations.RoleStandby || term != 2 {
		t.Fatalf("role with NOARP: %q term %d, want %q term 2", r, term, annotations.RoleStandby)
	}
}

// TestNewReplicaStartsSilent: a replicated gateway's NICs that no failover agent has taken are
// silenced by the converge before any address is claimed, so a new replica neither probes nor
// announces the active replica's addresses; a NIC the agent took keeps the flag the agent set.
func TestNewReplicaStartsSilent(t *testing.T) {
	tp := newTopo(t)
	tp.addExternalHost(roleActive, "192.168.0.111/24") // the active replica holds the EIP
	router := tp.captureARP(roleExt, "ext0")
	g := tp.gateway()
	d := seedDesired()
	d.Replicas = 2
	rep := tp.mustConverge(g, d, true)
	if len(rep.Pending) != 0 || !hasChange(rep, "link net1: ARP off until the failover agent takes it") {
		t.Errorf("new replica: changes %q, pending %v", rep.Changes, rep.Pending)
	}
	for _, dev := range []string{"net1", "vpc-sn"} {
		if out := tp.ip(roleGW, "link", "show", dev); !strings.Contains(out, "NOARP") {
			t.Errorf("%s of a new replica: %q, want NOARP", dev, out)
		}
	}
	time.Sleep(garpRepeats*garpInterval + 200*time.Millisecond)
	for _, ip := range []string{"192.168.0.111", "192.168.0.112"} {
		if n := router.claims(seedMAC, ip) + router.count("1 "+seedMAC+" 0.0.0.0 "+ip); n != 0 {
			t.Errorf("the new replica sent %d frames probing or claiming %s", n, ip)
		}
	}
	// The agent takes the NICs and makes this replica active: the next converge leaves them so.
	for _, dev := range []string{"net1", "vpc-sn"} {
		tp.ip(roleGW, "link", "set", dev, "arp", "on", "alias", annotations.ReplicaAliasPrefix+"active 1")
	}
	rep = tp.mustConverge(g, d, true)
	if hasChange(rep, "ARP off") {
		t.Errorf("the converge silenced NICs the agent took: %q", rep.Changes)
	}
	if out := tp.ip(roleGW, "link", "show", "net1"); strings.Contains(out, "NOARP") {
		t.Errorf("net1 after the agent made it active and a converge: %q", out)
	}
}

// A replica found active at a new term has just taken over: the entries its agent wrote in may
// lack marks, so the clean-up stops trusting marks until a sweep finds them all marked again.
// Reading the same role again, or a standby, changes nothing.
func TestTakeoverDistrustsMarks(t *testing.T) {
	g := &Gateway{nftLast: &nftApplied{marked: true}}
	steps := []struct {
		role       string
		term       uint64
		wantMarked bool
	}{
		{annotations.RoleStandby, 1, true},
		{annotations.RoleActive, 2, false},
		{annotations.RoleActive, 2, true}, // marks found again by a sweep in between (set below)
		{annotations.RoleStandby, 3, true},
		{annotations.RoleActive, 4, false},
	}
	for i, s := range steps {
		g.noteRole(s.role, s.term)
		if g.nftLast.marked != s.wantMarked {
			t.Fatalf("step %d (%s at term %d): marked %v, want %v", i, s.role, s.term, g.nftLast.marked, s.wantMarked)
		}
		g.nftLast.marked = true // a sweep found every entry marked
	}
}
