package netconf

import (
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	topotest "github.com/vpcnat/vpcnat/test/topo"
)

// captureFrames captures the frames of one ethertype a role's netns sees on any of its links,
// also links created after the capture started: the frames a link sends while it is being
// brought up are the ones that matter here.
func (tp *topo) captureFrames(role string, ethertype uint16) *topotest.Capture {
	tp.t.Helper()
	c, err := (&topotest.Topology{Prefix: tp.prefix}).StartCapture(role, "", ethertype)
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(c.Close)
	return c
}

// framesFrom counts the captured frames whose source is mac.
func framesFrom(c *topotest.Capture, mac string) int {
	n := 0
	for _, f := range c.Frames() {
		if f.Src == mac {
			n++
		}
	}
	return n
}

// The gateway's NICs carry no IPv6 and send none: net1 and the subnet NIC (and its veth's node
// end, a port of the tenant bridge) are created with IPv6 off, so no link-local address, router
// solicitation, DAD or MLD frame ever leaves them, while an ordinary IPv6-enabled host on the
// same bridge, in the same capture, is seen sending IPv6 (the capture works).
func TestGatewayNICsSendNoIPv6(t *testing.T) {
	tp := newTopo(t)
	// A bridge without a MAC of its own takes its lowest port's: pin br-sn's (IPv6 on, as a
	// node's bridge may be) so its own frames are never taken for the gateway's.
	tp.ip(roleNode, "link", "set", "br-sn", "address", "02:00:00:00:0b:01")
	ipv6 := tp.captureFrames(roleNode, unix.ETH_P_IPV6)
	arp := tp.captureFrames(roleNode, unix.ETH_P_ARP)
	tp.addPod(rolePod, "10.0.1.5/24", "10.0.1.1")
	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)

	gwMACs := map[string]string{
		"net1":             tp.mac(roleGW, "net1"),
		"vpc-sn":           tp.mac(roleGW, "vpc-sn"),
		"vh-ngw-sn (node)": tp.mac(roleNode, "vh-ngw-sn"),
	}
	podMAC := tp.mac(rolePod, "eth0")
	// An IPv6-enabled link sends its first MLD report and router solicitation within about a
	// second of going up (RFC 4861's MAX_RTR_SOLICITATION_DELAY, MLD's unsolicited report
	// interval): wait until the pod, brought up just before the gateway, has been seen, and then
	// as long again.
	waitedFrom := time.Now()
	if !eventually(func() bool { return framesFrom(ipv6, podMAC) > 0 }) {
		t.Fatalf("the capture saw no IPv6 frame from the pod's eth0 (%s), an IPv6-enabled host on br-sn: it cannot judge the gateway", podMAC)
	}
	time.Sleep(time.Since(waitedFrom) + time.Second)

	for nic, mac := range gwMACs {
		if n := framesFrom(ipv6, mac); n != 0 {
			t.Errorf("%s (%s) sent %d IPv6 frames", nic, mac, n)
		}
	}
	if n := framesFrom(arp, seedMAC); n == 0 {
		t.Errorf("net1 sent no ARP either: the capture did not see its frames")
	}
	for role, devs := range map[string][]string{roleGW: {"net1", "vpc-sn"}, roleNode: {"vh-ngw-sn"}} {
		for _, dev := range devs {
			if got := tp.sysctl(role, "net.ipv6.conf."+dev+".disable_ipv6"); got != "1" {
				t.Errorf("%s %s: disable_ipv6 = %s, want 1", role, dev, got)
			}
			if out := tp.ip(role, "-6", "-o", "addr", "show", "dev", dev); strings.TrimSpace(out) != "" {
				t.Errorf("%s %s has IPv6 addresses: %s", role, dev, out)
			}
		}
	}

	// A link made by an older version (IPv6 on) is turned off by the next converge.
	tp.exec(roleGW, "sysctl", "-qw", "net.ipv6.conf.vpc-sn.disable_ipv6=0")
	tp.exec(roleNode, "sysctl", "-qw", "net.ipv6.conf.vh-ngw-sn.disable_ipv6=0")
	rep := tp.mustConverge(g, seedDesired(), true)
	for role, dev := range map[string]string{roleGW: "vpc-sn", roleNode: "vh-ngw-sn"} {
		if got := tp.sysctl(role, "net.ipv6.conf."+dev+".disable_ipv6"); got != "1" {
			t.Errorf("after a converge, %s %s: disable_ipv6 = %s, want 1 (changes: %v)", role, dev, got, rep.Changes)
		}
	}
	if rep = tp.mustConverge(g, seedDesired(), true); len(rep.Changes) != 0 {
		t.Errorf("a third converge changed %v, want nothing", rep.Changes)
	}
}
