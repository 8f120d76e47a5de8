package topo

import (
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The checkers the end-to-end tests judge the product with: a loss probe counts every answer
// and every loss (a server that goes away mid-run), and an ARP capture on one test host sees
// another host's gratuitous ARP with its MAC, and nothing of another ethertype.
func TestLossProbeAndCapture(t *testing.T) {
	topo := seedForTest(t)
	srv, err := topo.Listen(VR, "udp", VRIP+":9000")
	if err != nil {
		t.Fatal(err)
	}
	p, err := topo.StartLossProbe("pod1-vr", Pod1, VRIP+":9000", 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); p.Count().Received < 20 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if c := p.Count(); c.Received < 20 || c.LastSeen != Pod1IP {
		t.Fatalf("%v, want 20 answers seeing %s", c, Pod1IP)
	}
	srv.Close()
	before := p.Count()
	time.Sleep(200 * time.Millisecond)
	c := p.Stop(100 * time.Millisecond)
	t.Logf("%v (server closed after %d answers)", c, before.Received)
	if c.Lost() < 10 || c.Received > before.Received+2 {
		t.Errorf("%v after the server closed at %v: the losses were not counted", c, before)
	}
	if again := p.Stop(0); again != c {
		t.Errorf("second Stop %v, first %v", again, c)
	}

	arps, err := topo.StartCapture(Pod2, "eth0", unix.ETH_P_ARP)
	if err != nil {
		t.Fatal(err)
	}
	ipv6, err := topo.StartCapture(Pod2, "eth0", unix.ETH_P_IPV6)
	if err != nil {
		t.Fatal(err)
	}
	defer ipv6.Close()
	if err := topo.SendGratuitousARP(Pod1, "eth0", "10.0.1.77"); err != nil {
		t.Fatal(err)
	}
	mac, err := topo.MAC(Pod1, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddr("10.0.1.77")
	var seen bool
	for deadline := time.Now().Add(5 * time.Second); !seen && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, a := range arps.ARPs() {
			seen = seen || (a.Gratuitous() && a.SenderIP == want && a.SenderMAC == mac)
		}
	}
	arps.Close()
	if !seen {
		t.Errorf("pod2 did not capture pod1's (%s) gratuitous ARP for %s: %v", mac, want, arps.ARPs())
	}
	for _, f := range ipv6.Frames() {
		if len(f.Payload) == 0 || f.Payload[0]>>4 != 6 {
			t.Errorf("the IPv6 capture holds a frame from %s that is not IPv6: % x", f.Src, f.Payload)
		}
	}
}
