package netconf

import (
	"strings"
	"testing"
	"time"
)

// bogusMAC poisons a VPC host's neighbour entries (locally administered, on no link).
const bogusMAC = "02:ba:d0:00:00:01"

// sentFrom counts the captured frames whose sender protocol address is ip.
func (c *arpCapture) sentFrom(ip string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.seen {
		if f := strings.Fields(s); len(f) == 4 && f[2] == ip {
			n++
		}
	}
	return n
}

// eventually polls cond until it holds; the bound only keeps a broken build from hanging, it
// is no timing requirement (the announcer's repeats end after garpRepeats*garpInterval).
// eventually waits until cond holds. Its deadline is only a hang guard, far beyond anything
// awaited (the repeats of an announcement end garpInterval*garpRepeats after the first): a
// loaded machine makes a test slower, never wrong.
func eventually(cond func() bool) bool {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if cond() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cond()
}

// A VPC host holding a stale neighbour entry for the subnet gateway (a previous gateway
// sandbox) is corrected by the gateway's gratuitous ARPs on the subnet NIC, without sending
// anything itself: the first converge announces every address of the subnet NIC, a later one
// the address it added (a lanIp change), or all of them again when the NIC itself changed.
func TestGratuitousARPSubnet(t *testing.T) {
	tp := newTopo(t)
	tp.addPod(rolePod, "10.0.1.5/24", "10.0.1.1")
	tp.ip(rolePod, "neigh", "replace", "10.0.1.1", "lladdr", bogusMAC, "dev", "eth0", "nud", "stale")
	capture := tp.captureARP(rolePod, "eth0")

	d := seedDesired()
	g := tp.gateway()
	rep := tp.mustConverge(g, d, true)
	for _, want := range []string{"192.168.0.111", "192.168.0.112", "10.0.1.1", "10.0.1.254"} {
		if !strings.Contains(" "+strings.Join(rep.Announced, " ")+" ", " "+want+" ") {
			t.Errorf("first converge announced %v, lacks %s", rep.Announced, want)
		}
	}
	mac := tp.mac(roleGW, "vpc-sn")
	for _, ip := range []string{"10.0.1.1", "10.0.1.254"} {
		garp := "1 " + mac + " " + ip + " " + ip
		if !eventually(func() bool { return capture.count(garp) >= 1 }) {
			t.Errorf("pod saw no gratuitous ARP %q", garp)
		}
	}
	if !eventually(func() bool {
		return strings.Contains(tp.ip(rolePod, "neigh", "show", "10.0.1.1", "dev", "eth0"), "lladdr "+mac)
	}) {
		t.Errorf("pod's poisoned neighbour entry for 10.0.1.1 not corrected to %s: %q", mac,
			tp.ip(rolePod, "neigh", "show", "10.0.1.1", "dev", "eth0"))
	}

	// lanIp 10.0.1.254 -> 10.0.1.253 on the fast path: only the new address is announced.
	tp.ip(rolePod, "neigh", "replace", "10.0.1.253", "lladdr", bogusMAC, "dev", "eth0", "nud", "stale")
	d.Generation++
	d.Subnets[0].Addresses = []string{"10.0.1.1/24", "10.0.1.253/24"}
	rep = tp.mustConverge(g, d, false)
	if len(rep.Announced) != 1 || rep.Announced[0] != "10.0.1.253" {
		t.Errorf("after the lanIp change announced %v, want only [10.0.1.253]", rep.Announced)
	}
	garp := "1 " + mac + " 10.0.1.253 10.0.1.253"
	if !eventually(func() bool { return capture.count(garp) >= 1 }) {
		t.Errorf("pod saw no gratuitous ARP %q", garp)
	}
	if !eventually(func() bool {
		return strings.Contains(tp.ip(rolePod, "neigh", "show", "10.0.1.253", "dev", "eth0"), "lladdr "+mac)
	}) {
		t.Errorf("pod's poisoned neighbour entry for the new lanIp not corrected to %s: %q", mac,
			tp.ip(rolePod, "neigh", "show", "10.0.1.253", "dev", "eth0"))
	}

	// A subnet NIC the converge changed (here: brought up again; its addresses stayed, so none
	// is added) announces all its addresses again; the EIPs are left alone.
	tp.ip(roleGW, "link", "set", "vpc-sn", "down")
	rep = tp.mustConverge(g, d, false)
	if got := strings.Join(rep.Announced, " "); got != "10.0.1.1 10.0.1.253" {
		t.Errorf("after bringing vpc-sn up again announced %v (changes %q), want [10.0.1.1 10.0.1.253]",
			rep.Announced, rep.Changes)
	}
	if n := capture.sentFrom("10.0.1.5"); n != 0 {
		t.Errorf("the pod sent %d ARP frames: its entries must be corrected by the gateway alone", n)
	}
}
