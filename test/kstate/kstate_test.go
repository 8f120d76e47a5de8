package kstate_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

func seedDesired(t *testing.T) *annotations.Desired {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	in, err := plan.LoadFile(filepath.Join(filepath.Dir(file), "..", "..", "examples", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in.Config.NIC = "eth1"
	_, d, errs := plan.Build(in)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	// The iptables backend (the nat table's faults and model below); the nftables tests set
	// their own.
	d.Dataplane = annotations.DataplaneIPTables
	return d
}

// convergedSeed converges the seed with the NAT backend plane in a seed topology of the test's own, checks that Check sees no difference, and returns the
// topology, a full converge of the same state (to repair a fault) and Check of it.
func convergedSeed(t *testing.T, plane string) (*topo.Topology, func(), func() kstate.Diff) {
	t.Helper()
	tp := topo.SeedForTest(t)
	d := seedDesired(t)
	d.Dataplane = plane
	gw := netconf.NewGateway(tp.Path(topo.Gateway))
	t.Cleanup(func() { gw.Close() })
	converge := func() {
		t.Helper()
		if err := tp.Do(topo.Node, func() error { _, err := gw.Converge(context.Background(), d, true); return err }); err != nil {
			t.Fatal(err)
		}
	}
	check := func() kstate.Diff {
		t.Helper()
		diff, err := kstate.Check(tp.Path(topo.Gateway), d)
		if err != nil {
			t.Fatal(err)
		}
		return diff
	}
	converge()
	if diff := check(); !diff.Empty() {
		t.Fatalf("freshly converged seed: %s", diff)
	}
	return tp, converge, check
}

// TestCheckCatchesEachFault converges the seed with netconf, sees no difference, then breaks the
// netns in one way after another (each repaired by a converge before the next) and checks that
// Check names exactly that fault.
func TestCheckCatchesEachFault(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	tp, converge, check := convergedSeed(t, annotations.DataplaneIPTables)

	faults := []struct {
		name       string
		argv       [][]string
		kind, what string
		item       string // fragment of the problem's item
	}{
		{"duplicate nat rule", [][]string{{"iptables", "-t", "nat", "-A", "EXCLUSIVE_DNAT", "-d", "192.168.0.111/32", "-j", "DNAT", "--to-destination", "10.0.1.5"}},
			kstate.Duplicate, "nat rule", "192.168.0.111/32"},
		{"missing nat rule", [][]string{{"iptables", "-t", "nat", "-D", "SHARED_SNAT", "1"}}, kstate.Missing, "nat rule", "SHARED_SNAT"},
		{"foreign nat rule", [][]string{{"iptables", "-t", "nat", "-A", "SHARED_DNAT", "-d", "192.168.0.99/32", "-j", "ACCEPT"}}, kstate.Foreign, "nat rule", "192.168.0.99"},
		{"foreign chain", [][]string{{"iptables", "-t", "nat", "-N", "MYCHAIN"}}, kstate.Foreign, "chain", "MYCHAIN"},
		{"hook missing", [][]string{{"iptables", "-t", "nat", "-D", "PREROUTING", "-j", "DNAT_FILTER"}}, kstate.Missing, "nat rule", "-A PREROUTING -j DNAT_FILTER"},
		{"hook duplicated", [][]string{{"iptables", "-t", "nat", "-A", "POSTROUTING", "-j", "SNAT_FILTER"}}, kstate.Duplicate, "nat rule", "SNAT_FILTER"},
		{"rules reordered", [][]string{{"iptables", "-t", "nat", "-D", "SNAT_FILTER", "1"}, {"iptables", "-t", "nat", "-A", "SNAT_FILTER", "-j", "HAIRPIN_SNAT"}},
			kstate.Wrong, "nat rule", "wrong order"},
		{"missing EIP", [][]string{{"ip", "addr", "del", "192.168.0.112/24", "dev", "net1"}}, kstate.Missing, "addr", "192.168.0.112/24"},
		{"foreign address", [][]string{{"ip", "addr", "add", "192.168.0.120/24", "dev", "net1"}}, kstate.Foreign, "addr", "192.168.0.120/24"},
		{"missing route", [][]string{{"ip", "route", "del", "default", "table", "100"}}, kstate.Missing, "route", "table 100 default via 192.168.0.254"},
		{"foreign route in our table", [][]string{{"ip", "route", "add", "172.16.0.0/16", "via", "192.168.0.254", "table", "100"}}, kstate.Foreign, "route", "172.16.0.0/16"},
		{"foreign route in main", [][]string{{"ip", "route", "add", "172.16.0.0/16", "via", "192.168.0.254"}}, kstate.Foreign, "route", "172.16.0.0/16"},
		{"missing ip rule", [][]string{{"ip", "rule", "del", "pref", "31000", "iif", "net1"}}, kstate.Missing, "rule", "iif net1"},
		{"foreign ip rule", [][]string{{"ip", "rule", "add", "pref", "31000", "iif", "lo", "lookup", "100"}}, kstate.Foreign, "rule", "iif lo"},
		{"link down", [][]string{{"ip", "link", "set", "net1", "down"}}, kstate.Wrong, "link", "net1 is down"},
		{"wrong MAC", [][]string{{"ip", "link", "set", "net1", "address", "02:00:00:00:00:99"}}, kstate.Wrong, "link", "MAC"},
		{"foreign link", [][]string{{"ip", "link", "add", "vpc-stray", "type", "veth", "peer", "name", "stray0"}}, kstate.Foreign, "link", "vpc-stray"},
		{"forwarding off", [][]string{{"sysctl", "-qw", "net.ipv4.ip_forward=0"}}, kstate.Wrong, "sysctl", "ip_forward"},
		{"rp_filter on", [][]string{{"sysctl", "-qw", "net.ipv4.conf.net1.rp_filter=1"}}, kstate.Wrong, "sysctl", "net1.rp_filter"},
		{"promote_secondaries off", [][]string{{"sysctl", "-qw", "net.ipv4.conf.net1.promote_secondaries=0"}}, kstate.Wrong, "sysctl", "net1.promote_secondaries"},
	}
	for _, f := range faults {
		for _, argv := range f.argv {
			if _, err := tp.Exec(topo.Gateway, argv...); err != nil {
				t.Fatalf("%s: %v", f.name, err)
			}
		}
		diff := check()
		found := false
		for _, p := range diff {
			found = found || (p.Kind == f.kind && p.What == f.what && strings.Contains(p.Item, f.item))
		}
		if !found {
			t.Errorf("%s: not reported as %s %s %q; got %s", f.name, f.kind, f.what, f.item, diff)
		}
		// Clean up what a converge does not own, then converge back.
		for _, argv := range [][]string{{"iptables", "-t", "nat", "-X", "MYCHAIN"}, {"ip", "link", "del", "vpc-stray"},
			{"ip", "route", "del", "172.16.0.0/16"}, {"ip", "rule", "del", "pref", "31000", "iif", "lo"}} {
			_, _ = tp.Exec(topo.Gateway, argv...)
		}
		// A route in our table or a foreign nat rule is repaired by the converge.
		if f.name == "foreign nat rule" || f.name == "foreign route in our table" {
			converge()
		}
		converge()
		if diff := check(); !diff.Empty() {
			t.Fatalf("after %s, repaired: %s", f.name, diff)
		}
	}
}

// TestCheckFlows judges hand-made conntrack lines against the seed.
func TestCheckFlows(t *testing.T) {
	d := seedDesired(t)
	cases := []struct {
		line string
		bad  bool
	}{
		// SNAT out of 10.0.1.0/24 via 192.168.0.112.
		{"tcp 6 431999 ESTABLISHED src=10.0.1.10 dst=198.51.100.10 sport=40000 dport=8080 src=198.51.100.10 dst=192.168.0.112 sport=8080 dport=40000 [ASSURED] mark=0 use=1", false},
		{"udp 17 29 src=10.0.1.10 dst=198.51.100.10 sport=40000 dport=8081 [UNREPLIED] src=198.51.100.10 dst=10.0.1.10 sport=8081 dport=40000 mark=0 use=1", true},
		// FIP out: pod1 as 192.168.0.111.
		{"udp 17 29 src=10.0.1.5 dst=198.51.100.10 sport=1 dport=2 src=198.51.100.10 dst=192.168.0.111 sport=2 dport=1 mark=0 use=1", false},
		{"udp 17 29 src=10.0.1.5 dst=198.51.100.10 sport=1 dport=2 src=198.51.100.10 dst=192.168.0.112 sport=2 dport=1 mark=0 use=1", true},
		// DNAT 192.168.0.112:8888 -> 10.0.1.10:80.
		{"tcp 6 120 SYN_SENT src=192.168.0.50 dst=192.168.0.112 sport=5 dport=8888 [UNREPLIED] src=10.0.1.10 dst=192.168.0.50 sport=80 dport=5 mark=0 use=1", false},
		{"tcp 6 120 SYN_SENT src=192.168.0.50 dst=192.168.0.112 sport=5 dport=8888 [UNREPLIED] src=192.168.0.112 dst=192.168.0.50 sport=8888 dport=5 mark=0 use=1", true},
		// FIP in.
		{"icmp 1 29 src=192.168.0.50 dst=192.168.0.111 type=8 code=0 id=7 src=192.168.0.111 dst=192.168.0.50 type=0 code=0 id=7 mark=0 use=1", true},
		{"icmp 1 29 src=192.168.0.50 dst=192.168.0.111 type=8 code=0 id=7 src=10.0.1.5 dst=192.168.0.50 type=0 code=0 id=7 mark=0 use=1", false},
		// A port of the DNAT EIP without a rule: untranslated is right, translated is stale.
		{"tcp 6 120 SYN_SENT src=192.168.0.50 dst=192.168.0.112 sport=5 dport=9999 [UNREPLIED] src=192.168.0.112 dst=192.168.0.50 sport=9999 dport=5 mark=0 use=1", false},
		{"tcp 6 120 SYN_SENT src=192.168.0.50 dst=192.168.0.112 sport=5 dport=9999 [UNREPLIED] src=10.0.1.20 dst=192.168.0.50 sport=80 dport=5 mark=0 use=1", true},
		// The gateway's own traffic, untranslated: not judged (nat OUTPUT has no DNAT); translated
		// to a FIP target it is still stale-checked like any other.
		{"udp 17 29 src=192.168.0.112 dst=192.168.0.111 sport=1 dport=2 [UNREPLIED] src=192.168.0.111 dst=192.168.0.112 sport=2 dport=1 mark=0 use=1", false},
		{"udp 17 29 src=10.0.1.1 dst=198.51.100.10 sport=1 dport=2 [UNREPLIED] src=198.51.100.10 dst=10.0.1.1 sport=2 dport=1 mark=0 use=1", false},
		{"udp 17 29 src=192.168.0.112 dst=192.168.0.111 sport=1 dport=2 [UNREPLIED] src=10.0.1.6 dst=192.168.0.112 sport=2 dport=1 mark=0 use=1", true},
		// To the gateway's own subnet address: not judged.
		{"icmp 1 29 src=10.0.1.5 dst=10.0.1.1 type=8 code=0 id=7 src=10.0.1.1 dst=10.0.1.5 type=0 code=0 id=7 mark=0 use=1", false},
	}
	for _, c := range cases {
		f, err := kstate.ParseFlow(c.line)
		if err != nil {
			t.Fatal(err)
		}
		got := kstate.CheckFlows([]kstate.Flow{f}, d)
		if (len(got) > 0) != c.bad {
			t.Errorf("%s: problems %q, want bad=%v", f, got, c.bad)
		}
	}
}
