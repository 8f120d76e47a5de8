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
