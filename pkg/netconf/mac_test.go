package netconf

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// net1's MAC is the desired one: a wrong MAC is fixed in place, and a recreated gateway netns
// gets the same MAC again, so the upstream router's ARP cache entry stays right.
func TestExternalMACIsStable(t *testing.T) {
	tp := newTopo(t)
	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)
	if got := tp.mac(roleGW, "net1"); got != seedMAC {
		t.Fatalf("net1 MAC %s, want %s", got, seedMAC)
	}
	// The router learns it from real traffic.
	tp.synTo(roleExt, "192.168.0.112:5000")
	if n := tp.ip(roleExt, "neigh", "show", "192.168.0.112"); !strings.Contains(n, "lladdr "+seedMAC) {
		t.Fatalf("router's neighbour entry: %q", n)
	}

	tp.ip(roleGW, "link", "set", "net1", "address", "02:00:00:00:00:99")
	rep := tp.mustConverge(g, seedDesired(), true)
	if !hasChange(rep, "link net1: mac 02:00:00:00:00:99 -> "+seedMAC) || len(rep.Changes) != 1 {
		t.Errorf("repairing the MAC: %q", rep.Changes)
	}
	if got := tp.mac(roleGW, "net1"); got != seedMAC {
		t.Errorf("net1 MAC %s after repair", got)
	}
	if len(rep.Announced) != 2 {
		t.Errorf("after a MAC change the EIPs must be announced again: %v", rep.Announced)
	}

	// The pod sandbox is recreated: a new, empty netns under the same path. The same Gateway,
	// asked for a fast converge, notices and converges from scratch.
	tp.delNS(roleGW)
	tp.addNS(roleGW)
	// The old netns is torn down asynchronously; until its net1 is gone the new one, with the
	// same MAC on the same master, cannot go up. The daemon retries; so does the test.
	var err error
	var changes []string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) { // a hang guard
		rep, err = tp.converge(g, seedDesired(), false)
		changes = append(changes, rep.Changes...)
		if err == nil || time.Now().After(deadline) {
			break
		}
		if !errors.Is(err, unix.EADDRINUSE) {
			t.Fatalf("converging the new netns: %v", err)
		}
		t.Logf("retrying: %v", err)
	}
	if err != nil {
		t.Fatalf("converging the new netns: %v", err)
	}
	if all := (&Report{Changes: changes}); !rep.Full || !hasChange(all, "ip_forward: 0 -> 1") || !hasChange(all, "nat: add hook PREROUTING") {
		t.Errorf("the recreated netns was not initialised: full=%v %q", rep.Full, changes)
	}
	if got := tp.mac(roleGW, "net1"); got != seedMAC {
		t.Errorf("net1 MAC %s in the recreated netns, want %s", got, seedMAC)
	}
	if n := tp.ip(roleExt, "neigh", "show", "192.168.0.112"); !strings.Contains(n, "lladdr "+seedMAC) {
		t.Errorf("router's neighbour entry after recreation: %q", n)
	}

	// With net1 deleted explicitly first (as the CNI DEL does), the MAC is free at once and the
	// recreated gateway converges on the first try.
	tp.deleteNet1()
	tp.delNS(roleGW)
	tp.addNS(roleGW)
	if rep, err := tp.converge(g, seedDesired(), false); err != nil || !rep.Full {
		t.Fatalf("converging a recreated netns whose net1 was deleted first: %v", err)
	}
	if got := tp.mac(roleGW, "net1"); got != seedMAC {
		t.Errorf("net1 MAC %s in the recreated netns, want %s", got, seedMAC)
	}
}

// deleteNet1 deletes net1 through DeleteExternalNIC, from the node netns.
func (tp *topo) deleteNet1() {
	tp.t.Helper()
	if err := tp.do(roleNode, func() error {
		h, err := OpenHandles(tp.path(roleGW))
		if err != nil {
			return err
		}
		defer h.Close()
		if _, err := DeleteExternalNIC(h, ""); err != nil {
			return err
		}
		_, err = DeleteExternalNIC(h, "") // already gone: not an error
		return err
	}); err != nil {
		tp.t.Fatalf("deleting net1: %v", err)
	}
}

// mac returns a link's MAC address in a role's netns.
func (tp *topo) mac(role, dev string) string {
	tp.t.Helper()
	f := strings.Fields(tp.ip(role, "-o", "link", "show", dev))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "link/ether" {
			if m, err := net.ParseMAC(f[i+1]); err == nil {
				return m.String()
			}
		}
	}
	tp.t.Fatalf("no MAC for %s in %s", dev, role)
	return ""
}
