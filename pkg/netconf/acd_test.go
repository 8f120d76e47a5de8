package netconf

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// roleThief is a foreign host that claims one of the gateway's addresses.
const roleThief = "thief"

// addExternalHost puts a netns on the external network: a macvlan (bridge mode) on the node's
// eth1, next to net1, as eth0 with addr.
func (tp *topo) addExternalHost(role, addr string) {
	tp.t.Helper()
	tp.addNS(role)
	tp.ip(roleNode, "link", "add", "xh-"+role, "link", "eth1", "type", "macvlan", "mode", "bridge")
	tp.ip(roleNode, "link", "set", "xh-"+role, "netns", tp.name(role))
	tp.ip(role, "link", "set", "xh-"+role, "name", "eth0")
	tp.ip(role, "addr", "add", addr, "dev", "eth0")
	tp.ip(role, "link", "set", "eth0", "up")
}

// sendGARPs sends n gratuitous ARPs for ip from a role's dev, every apart.
func (tp *topo) sendGARPs(role, dev, ip string, n int, every time.Duration) {
	tp.t.Helper()
	fd, idx := -1, 0
	if err := tp.do(role, func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		idx = ifc.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	}); err != nil {
		tp.t.Fatalf("packet socket in %s: %v", role, err)
	}
	defer unix.Close(fd)
	mac, _ := net.ParseMAC(tp.mac(role, dev))
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: idx, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	for i := range n {
		if i > 0 {
			time.Sleep(every)
		}
		if err := unix.Sendto(fd, garpPayload(mac, netip.MustParseAddr(ip)), 0, to); err != nil {
			tp.t.Fatalf("gratuitous ARP from %s: %v", role, err)
		}
	}
}

// claims counts the captured frames from mac whose sender address is ip (announcements,
// replies, requests: every frame that tells a neighbour "ip is at mac").
func (c *arpCapture) claims(mac, ip string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.seen {
		if f := strings.Fields(s); len(f) == 4 && f[1] == mac && f[2] == ip {
			n++
		}
	}
	return n
}

// notifications records a Gateway's conflict notifications.
func notifications(g *Gateway) chan bool {
	ch := make(chan bool, 100)
	g.OnConflictChange(func(converge bool) {
		select {
		case ch <- converge:
		default:
		}
	})
	return ch
}

// waitNotify waits for a notification with the given converge flag; the bound only keeps a
// broken build from hanging.
func waitNotify(t *testing.T, ch chan bool, converge bool) bool {
	t.Helper()
	guard := time.After(reprobeInterval + 10*time.Second)
	for {
		select {
		case c := <-ch:
			if c == converge {
				return true
			}
		case <-guard:
			return false
		}
	}
}

func conflictsString(cs []Conflict) string {
	var parts []string
	for _, c := range cs {
		parts = append(parts, c.Address.String()+" "+c.Interface+" "+c.MAC.String()+" claimed="+map[bool]string{true: "true", false: "false"}[c.Claimed])
	}
	return strings.Join(parts, "; ")
}

// An EIP another host on the external network already uses is probed, not added to net1 and
// never announced by the gateway; the conflict is reported and the EIP stays pending. When the
// other host gives it up, the gateway's re-probe finds it free, asks for a converge, and that
// converge claims and announces it.
func TestEIPInUseIsNotClaimed(t *testing.T) {
	tp := newTopo(t)
	tp.addExternalHost(roleThief, "192.168.0.111/24")
	thiefMAC := tp.mac(roleThief, "eth0")
	router := tp.captureARP(roleExt, "ext0")
	thief := tp.captureARP(roleThief, "eth0")

	g := tp.gateway()
	notes := notifications(g)
	d := seedDesired()
	rep := tp.mustConverge(g, d, true)
	if !slices.Equal(rep.Pending, []string{"192.168.0.111 on net1"}) {
		t.Errorf("pending %v, want [192.168.0.111 on net1]", rep.Pending)
	}
	if got := tp.addrs(roleGW, "net1"); got != "192.168.0.112/24" {
		t.Errorf("net1 holds %q, want only the free EIP 192.168.0.112/24", got)
	}
	if slices.Contains(rep.Announced, "192.168.0.111") || !slices.Contains(rep.Announced, "192.168.0.112") {
		t.Errorf("announced %v: want 192.168.0.112 and not the EIP in use", rep.Announced)
	}
	if got, want := conflictsString(g.Conflicts()), "192.168.0.111 net1 "+thiefMAC+" claimed=false"; got != want {
		t.Errorf("conflicts %q, want %q", got, want)
	}
	probe := "1 " + seedMAC + " 0.0.0.0 192.168.0.111"
	if n := thief.count(probe); n < probeCount {
		t.Errorf("the other host saw %d probes for the EIP, want >= %d", n, probeCount)
	}
	// Pending: probed again, and still not claimed by a resync either.
	if !eventually(func() bool { return thief.count(probe) > probeCount }) {
		t.Errorf("no re-probe of the pending EIP (%d probes)", thief.count(probe))
	}
	rep = tp.mustConverge(g, d, true)
	if len(rep.Changes) != 0 || len(rep.Pending) != 1 {
		t.Errorf("resync while the EIP is in use: changes %q, pending %v", rep.Changes, rep.Pending)
	}
	for what, c := range map[string]*arpCapture{"router": router, "other host": thief} {
		if n := c.claims(seedMAC, "192.168.0.111"); n != 0 {
			t.Errorf("the %s saw %d frames from the gateway claiming the EIP in use", what, n)
		}
	}
	if n := router.claims(seedMAC, "192.168.0.112"); n == 0 && !eventually(func() bool { return router.claims(seedMAC, "192.168.0.112") > 0 }) {
		t.Error("the router saw no announcement of the free EIP")
	}

	// The other host gives the EIP up: the next re-probe gets no answer and asks for a converge.
	tp.ip(roleThief, "addr", "del", "192.168.0.111/24", "dev", "eth0")
	if !waitNotify(t, notes, true) {
		t.Fatal("no converge asked for after the EIP was freed")
	}
	rep = tp.mustConverge(g, d, false)
	if !hasChange(rep, "added 192.168.0.111/24") || !slices.Contains(rep.Announced, "192.168.0.111") || len(rep.Pending) != 0 {
		t.Errorf("converge after the EIP was freed: changes %q, announced %v, pending %v", rep.Changes, rep.Announced, rep.Pending)
	}
	if cs := g.Conflicts(); len(cs) != 0 {
		t.Errorf("conflicts after the claim: %s", conflictsString(cs))
	}
	garp := "1 " + seedMAC + " 192.168.0.111 192.168.0.111"
	if !eventually(func() bool { return router.count(garp) > 0 }) {
		t.Errorf("the router saw no announcement %q of the claimed EIP", garp)
	}
}

// A host on a tenant subnet that announces the subnet's gateway address while the gateway holds
// it is a conflict: the gateway defends the address (one announcement per defendInterval),
// reports the conflict, checks whether the intruder still answers, and once it is gone announces
// the address again, so the tenant's neighbour entry points back at the gateway without waiting
// for it to expire.
func TestSubnetGatewayAddressDefended(t *testing.T) {
	tp := newTopo(t)
	tp.addPod(rolePod, "10.0.1.5/24", "10.0.1.1")
	g := tp.gateway()
	notes := notifications(g)
	tp.mustConverge(g, seedDesired(), true)
	gwMAC := tp.mac(roleGW, "vpc-sn")
	// The first converge's announcements repeat for garpRepeats*garpInterval; only defences
	// may reach the capture.
	time.Sleep(garpRepeats*garpInterval + 200*time.Millisecond)
	tenant := tp.captureARP(rolePod, "eth0")
	// The tenant has talked to its gateway (an entry as its own ARP would have left).
	tp.ip(rolePod, "neigh", "replace", "10.0.1.1", "lladdr", gwMAC, "dev", "eth0", "nud", "stale")
	neigh := func() string { return tp.ip(rolePod, "neigh", "show", "10.0.1.1", "dev", "eth0") }
	if !strings.Contains(neigh(), "lladdr "+gwMAC) {
		t.Fatalf("tenant's neighbour entry for its gateway: %q, want %s", neigh(), gwMAC)
	}

	// The intruder takes 10.0.1.1 and announces it three times, a second apart.
	tp.addPod(roleThief, "10.0.1.1/24", "10.0.1.100")
	thiefMAC := tp.mac(roleThief, "eth0")
	tp.sendGARPs(roleThief, "eth0", "10.0.1.1", 3, time.Second)
	if !waitNotify(t, notes, false) {
		t.Fatal("no notification of the conflict")
	}
	if got, want := conflictsString(g.Conflicts()), "10.0.1.1 vpc-sn "+thiefMAC+" claimed=true"; got != want {
		t.Errorf("conflicts %q, want %q", got, want)
	}
	garp := "1 " + gwMAC + " 10.0.1.1 10.0.1.1"
	if n := tenant.count(garp); n != 1 {
		t.Errorf("the tenant saw %d defending announcements during 3 s of intrusion, want 1 (at most one per %v)", n, defendInterval)
	}
	if g.Defenses() != 1 {
		t.Errorf("defenses %d, want 1", g.Defenses())
	}
	if !eventually(func() bool { return strings.Contains(neigh(), "lladdr "+thiefMAC) }) {
		t.Errorf("the intruder's last announcement did not reach the tenant: %q", neigh())
	}

	// The intruder leaves: the gateway announces the address again and the tenant follows.
	before := tenant.count(garp)
	left := time.Now()
	tp.delNS(roleThief)
	if !eventually(func() bool { return strings.Contains(neigh(), "lladdr "+gwMAC) }) {
		t.Fatalf("tenant's neighbour entry after the intruder left: %q, want %s", neigh(), gwMAC)
	}
	back := time.Since(left)
	t.Logf("tenant's neighbour entry back at the gateway %v after the intruder left", back.Round(time.Millisecond))
	if tenant.count(garp) <= before {
		t.Error("no announcement after the intruder left")
	}
	if !waitNotify(t, notes, false) {
		t.Error("no notification of the end of the conflict")
	}
	if cs := g.Conflicts(); len(cs) != 0 {
		t.Errorf("conflicts after the intruder left: %s", conflictsString(cs))
	}
	if n := tenant.sentFrom("10.0.1.5"); n != 0 {
		t.Errorf("the tenant sent %d ARP frames: it must follow announcements alone", n)
	}
}

// A converge of a netns whose addresses are already in place (a daemon restart, a resync) sends
// no probe and changes nothing: no disruption and no delay.
func TestHeldAddressesAreNotProbedAgain(t *testing.T) {
	tp := newTopo(t)
	tp.addPod(rolePod, "10.0.1.5/24", "10.0.1.1")
	router := tp.captureARP(roleExt, "ext0")
	tenant := tp.captureARP(rolePod, "eth0")
	tp.mustConverge(tp.gateway(), seedDesired(), true)
	probes := func() int { return router.sentFrom("0.0.0.0") + tenant.sentFrom("0.0.0.0") }
	// probeCount probes for each of the 2 EIPs (seen by the router) and the 2 subnet addresses
	// (seen by the tenant), all new on the first converge.
	const first = 4 * probeCount
	if !eventually(func() bool { return probes() >= first }) || probes() != first {
		t.Fatalf("the first converge sent %d probes, want %d", probes(), first)
	}
	before := tp.dump()
	restarted := tp.gateway()
	rep := tp.mustConverge(restarted, seedDesired(), true)
	rep2 := tp.mustConverge(restarted, seedDesired(), false)
	if len(rep.Changes)+len(rep2.Changes) != 0 || len(rep.Pending)+len(rep2.Pending) != 0 {
		t.Errorf("converges after a restart changed %q %q, pending %v %v", rep.Changes, rep2.Changes, rep.Pending, rep2.Pending)
	}
	if d := lineDiff(before, tp.dump()); d != "" {
		t.Errorf("netns changed:\n%s", d)
	}
	time.Sleep(probeWait) // frames in flight
	if n := probes() - first; n != 0 {
		t.Errorf("%d probes after the restart, want none", n)
	}
}

// ClaimTakeover is the HA takeover: the new active replica claims an address the old one still
// answers for without probing and announces it at once; the old owner's MAC listed as a peer is
// answered by an announcement and never reported as a conflict.
func TestTakeoverClaimsWithoutProbing(t *testing.T) {
	tp := newTopo(t)
	tp.addExternalHost(roleThief, "192.168.0.111/24")
	oldMAC, _ := net.ParseMAC(tp.mac(roleThief, "eth0"))
	router := tp.captureARP(roleExt, "ext0")
	g := tp.gateway()
	g.SetClaimPolicy(ClaimPolicy{Mode: ClaimTakeover, Peers: []net.HardwareAddr{oldMAC}})
	rep := tp.mustConverge(g, seedDesired(), true)
	if len(rep.Pending) != 0 || !slices.Contains(rep.Announced, "192.168.0.111") {
		t.Errorf("takeover: pending %v, announced %v", rep.Pending, rep.Announced)
	}
	if n := router.sentFrom("0.0.0.0"); n != 0 {
		t.Errorf("takeover sent %d probes", n)
	}
	before := router.claims(seedMAC, "192.168.0.111")
	tp.sendGARPs(roleThief, "eth0", "192.168.0.111", 1, 0)
	if !eventually(func() bool { return router.claims(seedMAC, "192.168.0.111") > before }) {
		t.Error("the peer's announcement was not answered")
	}
	if cs := g.Conflicts(); len(cs) != 0 || g.Defenses() != 0 {
		t.Errorf("a peer is no intruder: conflicts %s, defenses %d", conflictsString(cs), g.Defenses())
	}
}
