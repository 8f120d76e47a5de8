package netconf

import (
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// Subnets come and go (bridge and macvlan attachments) without net1 being touched: same
// ifindex, same details, no report line about it, its EIPs in place.
func TestHotPlugSubnets(t *testing.T) {
	tp := newTopo(t)
	tp.ip(roleNode, "link", "add", "br-sn2", "type", "bridge")
	tp.ip(roleNode, "link", "set", "br-sn2", "up")
	tp.ip(roleNode, "link", "add", "eth2", "type", "veth", "peer", "name", "ext2", "netns", tp.name(roleExt))
	tp.ip(roleNode, "link", "set", "eth2", "up")
	tp.ip(roleExt, "link", "set", "ext2", "up")

	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)
	net1 := tp.ip(roleGW, "-d", "-o", "link", "show", "net1")

	plugged := seedDesired()
	plugged.Subnets = append(plugged.Subnets,
		annotations.SubnetNIC{Subnet: "sn2", IfName: "vpc-sn2", CIDR: "10.0.2.0/24", Addresses: []string{"10.0.2.1/24"},
			Attachment: annotations.Attachment{Type: annotations.AttachBridge, Bridge: "br-sn2", HostIfName: "vh-ngw-sn2"}},
		annotations.SubnetNIC{Subnet: "sn3", IfName: "vpc-sn3", CIDR: "10.0.3.0/24", Addresses: []string{"10.0.3.1/24"},
			Attachment: annotations.Attachment{Type: annotations.AttachMacvlan, Master: "eth2", MTU: 1400}})
	rep := tp.mustConverge(g, plugged, false)
	t.Logf("hot-plug: %q", rep.Changes)
	if hasChange(rep, "net1") {
		t.Errorf("hot-plug touched net1: %q", rep.Changes)
	}
	if got := tp.ip(roleGW, "-d", "-o", "link", "show", "net1"); got != net1 {
		t.Errorf("net1 changed:\n%s\n%s", net1, got)
	}
	if got := tp.addrs(roleGW, "vpc-sn2"); got != "10.0.2.1/24" {
		t.Errorf("vpc-sn2 addresses %q", got)
	}
	if got := tp.addrs(roleGW, "vpc-sn3"); got != "10.0.3.1/24" {
		t.Errorf("vpc-sn3 addresses %q", got)
	}
	if l := tp.ip(roleGW, "-d", "-o", "link", "show", "vpc-sn3"); !strings.Contains(l, "macvlan mode bridge") || !strings.Contains(l, "mtu 1400") {
		t.Errorf("vpc-sn3: %s", l)
	}
	if l := tp.ip(roleNode, "-o", "link", "show", "vh-ngw-sn2"); !strings.Contains(l, "master br-sn2") {
		t.Errorf("host end of vpc-sn2: %s", l)
	}
	requireLines(t, "table 100", tp.ip(roleGW, "route", "show", "table", "100"),
		"10.0.2.0/24 dev vpc-sn2 proto static scope link",
		"10.0.3.0/24 dev vpc-sn3 proto static scope link")
	requireLines(t, "rules", tp.ip(roleGW, "rule", "show"),
		"31000:\tfrom all iif vpc-sn2 lookup 100",
		"31000:\tfrom all iif vpc-sn3 lookup 100")
	requireLines(t, "nat", tp.natSave(roleGW),
		"-A HAIRPIN_SNAT -s 10.0.2.0/24 -o vpc-sn2 -m conntrack --ctstate DNAT -j MASQUERADE")
	if rep := tp.mustConverge(g, plugged, true); len(rep.Changes) != 0 {
		t.Errorf("converging the plugged state again: %q", rep.Changes)
	}

	rep = tp.mustConverge(g, seedDesired(), false)
	t.Logf("hot-unplug: %q", rep.Changes)
	if hasChange(rep, "net1") {
		t.Errorf("hot-unplug touched net1: %q", rep.Changes)
	}
	if got := tp.ip(roleGW, "-d", "-o", "link", "show", "net1"); got != net1 {
		t.Errorf("net1 changed:\n%s\n%s", net1, got)
	}
	if got := tp.addrs(roleGW, "net1"); got != "192.168.0.111/24 192.168.0.112/24" {
		t.Errorf("net1 addresses %q", got)
	}
	if out := tp.ip(roleGW, "-o", "link", "show"); strings.Contains(out, "vpc-sn2") || strings.Contains(out, "vpc-sn3") {
		t.Errorf("unplugged NICs remain: %s", out)
	}
	if out := tp.ip(roleNode, "-o", "link", "show"); strings.Contains(out, "vh-ngw-sn2") {
		t.Errorf("host end of vpc-sn2 remains: %s", out)
	}
	requireNoLine(t, "after unplug", tp.ip(roleGW, "rule", "show")+tp.ip(roleGW, "route", "show", "table", "all")+tp.natSave(roleGW),
		"vpc-sn2", "vpc-sn3")
	if rep := tp.mustConverge(g, seedDesired(), true); len(rep.Changes) != 0 {
		t.Errorf("converging the unplugged state again: %q", rep.Changes)
	}
}
