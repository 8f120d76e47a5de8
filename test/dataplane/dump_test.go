package dataplane

import (
	"strings"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/test/topo"
)

// TestDumpIgnoresIPv6DAD: the dump of a freshly converged gateway, taken while the kernel is
// still running IPv6 duplicate address detection on its new links, equals the dump taken once
// DAD is done (the flake of TestBadInputLeavesNamespaceAsIs and TestIdempotent); and a change of
// vpcnat's own state still shows.
func TestDumpIgnoresIPv6DAD(t *testing.T) {
	f := newFixture(t)
	f.converge(true)
	before := f.dump()
	tentative := func() bool {
		out, _ := f.topo.Exec(topo.Gateway, "ip", "-6", "-o", "addr", "show", "tentative")
		return strings.TrimSpace(out) != ""
	}
	if !tentative() {
		t.Log("no address was tentative right after converging (DAD already done): the comparison below proves less")
	}
	deadline := time.Now().Add(10 * time.Second)
	for tentative() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if tentative() {
		t.Fatal("IPv6 DAD did not finish within 10s")
	}
	if after := f.dump(); after != before {
		t.Errorf("dump changed by IPv6 DAD alone:\n--- before\n%s\n--- after\n%s", before, after)
	}
	// Not weakened for vpcnat's own state: an address removed by hand shows.
	f.gwExec("ip", "addr", "del", "10.0.1.254/24", "dev", f.desired().Subnets[0].IfName)
	if after := f.dump(); after == before {
		t.Error("dump did not change when a subnet NIC lost an address")
	}
}

// TestIgnoreIPv6DAD: exactly the DAD transition is ignored.
func TestIgnoreIPv6DAD(t *testing.T) {
	for in, want := range map[string]string{
		"5: net1    inet6 fe80::c8:caff:fe97:ff41/64 scope link tentative \\       valid_lft forever preferred_lft forever": "5: net1    inet6 fe80::c8:caff:fe97:ff41/64 scope link \\       valid_lft forever preferred_lft forever",
		"5: net1    inet6 fe80::c8:caff:fe97:ff41/64 scope link \\       valid_lft forever preferred_lft forever":           "5: net1    inet6 fe80::c8:caff:fe97:ff41/64 scope link \\       valid_lft forever preferred_lft forever",
		"5: net1    inet6 2001:db8::1/64 scope global tentative \\       valid_lft forever preferred_lft forever":           "5: net1    inet6 2001:db8::1/64 scope global tentative \\       valid_lft forever preferred_lft forever",
		"5: net1    inet 192.168.0.111/24 scope global net1\\       valid_lft forever preferred_lft forever":                "5: net1    inet 192.168.0.111/24 scope global net1\\       valid_lft forever preferred_lft forever",
		"local fe80::c8:caff:fe97:ff41 dev net1 table local proto kernel metric 0 pref medium":                              "",
		"anycast fe80:: dev net1 table local proto kernel metric 0 pref medium":                                             "",
		"fe80::/64 dev net1 proto kernel metric 256 pref medium":                                                            "fe80::/64 dev net1 proto kernel metric 256 pref medium",
		"local 192.168.0.111 dev net1 table local proto kernel scope host src 192.168.0.111":                                "local 192.168.0.111 dev net1 table local proto kernel scope host src 192.168.0.111",
		"local 2001:db8::1 dev net1 table local proto kernel metric 0 pref medium":                                          "local 2001:db8::1 dev net1 table local proto kernel metric 0 pref medium",
	} {
		got, keep := ignoreIPv6DAD(in)
		if !keep {
			got = ""
		}
		if got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
	}
}
