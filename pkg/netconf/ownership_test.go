package netconf

import (
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// emptyDesired keeps the external NIC and drops everything else: no subnets, EIPs, rules or
// routes.
func emptyDesired() *annotations.Desired {
	d := seedDesired()
	d.Generation = 2
	d.Subnets, d.EIPs, d.FloatingIPs, d.DNATs, d.SNATs, d.Routes = nil, nil, nil, nil, nil, nil
	return d
}

// Converges touch only what is ours, also when the desired state drops everything: a foreign
// nat chain and PREROUTING rule, foreign ip rules (another priority on our table; our priority
// on another table), a route in another table, a foreign link in the gateway netns (even one
// that looks like a subnet NIC but is a plain name), and a foreign address on the node side.
func TestOwnership(t *testing.T) {
	tp := newTopo(t)
	tp.exec(roleGW, "iptables", "-t", "nat", "-N", "FOREIGN")
	tp.exec(roleGW, "iptables", "-t", "nat", "-A", "FOREIGN", "-s", "198.51.100.0/24", "-j", "RETURN")
	tp.exec(roleGW, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "udp", "--dport", "5353", "-j", "FOREIGN")
	tp.ip(roleGW, "link", "add", "foreign0", "type", "veth", "peer", "name", "foreign1")
	tp.ip(roleGW, "link", "set", "foreign0", "up")
	tp.ip(roleGW, "link", "set", "foreign1", "up")
	tp.ip(roleGW, "rule", "add", "pref", "500", "from", "198.51.100.0/24", "lookup", "100")
	tp.ip(roleGW, "rule", "add", "pref", "31000", "iif", "foreign0", "lookup", "300")
	tp.ip(roleGW, "route", "add", "198.51.100.0/24", "dev", "foreign0", "table", "300")
	tp.ip(roleNode, "addr", "add", "198.51.100.7/24", "dev", "eth1")

	foreign := func() string {
		return strings.Join([]string{
			tp.natSave(roleGW), tp.ip(roleGW, "rule", "show"), tp.ip(roleGW, "route", "show", "table", "300"),
			tp.ip(roleGW, "-o", "link", "show", "foreign0"), tp.ip(roleGW, "-o", "link", "show", "foreign1"),
			tp.addrs(roleNode, "eth1"),
		}, "\n")
	}
	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)
	got := foreign()
	requireLines(t, "foreign state after converging the seed", got,
		":FOREIGN - [0:0]",
		"-A FOREIGN -s 198.51.100.0/24 -j RETURN",
		"-A PREROUTING -p udp -m udp --dport 5353 -j FOREIGN",
		"500:\tfrom 198.51.100.0/24 lookup 100",
		"31000:\tfrom all iif foreign0 lookup 300",
		"198.51.100.0/24 dev foreign0 scope link",
		"198.51.100.7/24")
	// Our hook comes first: NAT happens before anything a foreign tool appended.
	if !strings.Contains(got, "-A PREROUTING -j DNAT_FILTER\n-A PREROUTING -p udp") {
		t.Errorf("our PREROUTING hook is not first:\n%s", got)
	}

	rep := tp.mustConverge(g, emptyDesired(), true)
	t.Logf("converging to nothing: %q", rep.Changes)
	got = foreign()
	requireLines(t, "foreign state after converging to nothing", got,
		":FOREIGN - [0:0]",
		"-A FOREIGN -s 198.51.100.0/24 -j RETURN",
		"-A PREROUTING -p udp -m udp --dport 5353 -j FOREIGN",
		"500:\tfrom 198.51.100.0/24 lookup 100",
		"31000:\tfrom all iif foreign0 lookup 300",
		"198.51.100.0/24 dev foreign0 scope link",
		"198.51.100.7/24")
	// ...while everything of ours that is not wanted is gone.
	requireNoLine(t, "after converging to nothing", got, "10.0.1.", "192.168.0.11", "iif vpc-sn", "lookup 1000")
	if out := tp.ip(roleGW, "-o", "link", "show"); strings.Contains(out, "vpc-sn") {
		t.Errorf("vpc-sn survived its removal: %s", out)
	}
	if out := tp.ip(roleNode, "-o", "link", "show"); strings.Contains(out, "vh-ngw-sn") {
		t.Errorf("the host end of vpc-sn survived: %s", out)
	}
	if got := tp.addrs(roleGW, "net1"); got != "" {
		t.Errorf("net1 still holds %q", got)
	}
	if out := tp.ip(roleGW, "route", "show", "table", "all"); strings.Contains(out, "table 100") || strings.Contains(out, "table 1000") {
		t.Errorf("routes left in our tables:\n%s", out)
	}
	if rep := tp.mustConverge(g, emptyDesired(), true); len(rep.Changes) != 0 {
		t.Errorf("converging to nothing twice: %q", rep.Changes)
	}
}
