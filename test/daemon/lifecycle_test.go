package daemon

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

// seedGateway is the seed's gateway, plumbed, converged by a daemon (started with extra flags)
// and reported; it returns the pod, the daemon and the desired annotation's value.
type seedGateway struct {
	c       *cluster
	n       *node
	pod     *corev1.Pod
	sandbox cnichain.Pod
	dm      *daemon
	desired string
	d       *annotations.Desired
}

// newSeedGateway is the seed's gateway on the default NAT backend (nftables).
func newSeedGateway(t *testing.T, flags ...string) *seedGateway {
	t.Helper()
	return newSeedGatewayOn(t, annotations.DataplaneNFTables, flags...)
}

// newSeedGatewayOn is the seed's gateway on the NAT backend plane.
func newSeedGatewayOn(t *testing.T, plane string, flags ...string) *seedGateway {
	t.Helper()
	tp := topo.SeedForTest(t)
	g := &seedGateway{c: newCluster(t, tp.Prefix)}
	g.n = newNode(t, g.c, tp)
	templ, d := build(t, seedInputsOn(t, 1, plane))
	g.d = d
	g.pod = g.c.createGateway("ngw", templ, gatewayObjects{owned: true})
	g.sandbox = g.n.sandbox(g.pod, topo.Gateway, "ctr-1-"+tp.Prefix)
	g.dm = startDaemon(t, g.c, g.n, flags...)
	g.desired = g.c.setDesired(g.pod, d)
	g.c.waitApplied(g.pod, g.desired, "")
	g.n.listen(topo.Pod2, "tcp", topo.Pod2IP+":80")
	g.n.listen(topo.Inet, "tcp", topo.InetIP+":8080")
	return g
}

// works checks the seed's DNAT and SNAT with real traffic (through whichever sandbox holds the
// gateway's addresses).
func (g *seedGateway) works() {
	g.n.t.Helper()
	g.n.expect(topo.Client, "tcp", eip112+":8888", topo.ClientIP, topo.Pod2IP+":80")
	g.n.expect(topo.Pod2, "tcp", topo.InetIP+":8080", eip112, "")
}

// TestDaemonRepairsDrift, on each NAT backend: addresses, NAT rules and their hooks (iptables:
// a DNAT chain flushed and the jump from POSTROUTING deleted; nftables: the port forward map and
// the POSTROUTING chain flushed), routes and ip rules deleted by hand in a gateway's netns come
// back by the next periodic resync, exactly as desired (test/kstate) and as they were, without
// any applied patch (nothing changed for the controller).
func TestDaemonRepairsDrift(t *testing.T) {
	topo.NeedRoot(t)
	forEachDataplane(t, func(t *testing.T, plane string) {
		g := newSeedGatewayOn(t, plane, "--resync=1s")
		dump := func() string {
			out, err := g.n.topo.Dump(topo.Gateway) // the NAT aside: kstate judges it
			if err != nil {
				t.Fatal(err)
			}
			return out
		}
		want := dump()
		changes := g.dm.metric("vpcnat_daemon_kernel_changes_total", "gateway", "ngw")

		g.n.exec(topo.Gateway, "ip", "addr", "del", eip112+"/24", "dev", "net1")
		if plane == annotations.DataplaneIPTables {
			g.n.exec(topo.Gateway, "iptables", "-t", "nat", "-F", "DNAT_EIP_"+eip112)
			g.n.exec(topo.Gateway, "iptables", "-t", "nat", "-D", "POSTROUTING", "-j", "SNAT_FILTER")
		} else {
			g.n.exec(topo.Gateway, "nft", "flush", "map", "ip", "vpcnat", "port_dnat")
			g.n.exec(topo.Gateway, "nft", "flush", "chain", "ip", "vpcnat", "POSTROUTING")
		}
		g.n.exec(topo.Gateway, "ip", "route", "del", "default", "table", "100")
		g.n.exec(topo.Gateway, "ip", "rule", "del", "iif", "net1", "lookup", "100")
		g.n.expectNoAnswer(topo.Client, "tcp", eip112+":8888")
		// The edits by hand are NAT drift as test/kstate sees it (unless a resync came first).
		if diff := g.n.check(topo.Gateway, g.d); !diff.Empty() {
			nat := 0
			for _, p := range diff {
				if p.NAT() {
					nat++
				}
			}
			if nat == 0 {
				t.Errorf("the NAT edits by hand left no NAT difference: %s", diff)
			}
		}

		var got string
		var diff kstate.Diff
		deadline := time.Now().Add(10 * time.Second)
		for got, diff = dump(), g.n.check(topo.Gateway, g.d); got != want || !diff.Empty(); got, diff = dump(), g.n.check(topo.Gateway, g.d) {
			if time.Now().After(deadline) {
				t.Fatalf("drift not repaired within 10s: %s\n--- want\n%s\n--- got\n%s", diff, want, got)
			}
			time.Sleep(50 * time.Millisecond)
		}
		g.works()
		if got := g.dm.metric("vpcnat_daemon_kernel_changes_total", "gateway", "ngw") - changes; got < 5 {
			t.Errorf("%v kernel changes counted for the repair, want at least the 5 made by hand", got)
		}
		if got := g.dm.metric("vpcnat_daemon_applied_patches_total"); got != 1 {
			t.Errorf("applied patches = %v, want 1 (resyncs report nothing new)", got)
		}
	})
}

// TestDaemonRestartChangesNothing, on each NAT backend: a stopped daemon leaves the gateway
// forwarding; a new daemon reads everything back and changes nothing at all in the kernel (not
// even transiently: no kernel change is logged or counted, no nftables rule rewritten), and does
// not patch the pod.
func TestDaemonRestartChangesNothing(t *testing.T) {
	topo.NeedRoot(t)
	forEachDataplane(t, testDaemonRestartChangesNothing)
}

func testDaemonRestartChangesNothing(t *testing.T, plane string) {
	g := newSeedGatewayOn(t, plane)
	before := g.n.dump(topo.Gateway)
	pod := g.c.getPod(g.pod)

	g.dm.stop()
	g.works()
	if got := g.n.dump(topo.Gateway); got != before {
		t.Errorf("stopping the daemon changed the gateway:\n--- before\n%s\n--- after\n%s", before, got)
	}

	dm := startDaemon(t, g.c, g.n)
	eventually(t, "the new daemon's first sync", 10*time.Second, func() bool {
		return dm.metric("vpcnat_daemon_syncs_total", "result", "success") >= 1
	})
	if got := dm.metric("vpcnat_daemon_kernel_changes_total", "gateway", "ngw"); got != 0 {
		t.Errorf("restart made %v kernel changes, want 0", got)
	}
	if n := dm.logged("Changed gateway netns"); n != 0 {
		t.Errorf("restart logged %d kernel changes, want none", n)
	}
	if got := dm.metric("vpcnat_daemon_sync_duration_seconds", "full", "true"); got != 1 {
		t.Errorf("%v full converges after the restart, want 1 (the read-back)", got)
	}
	if got := g.n.dump(topo.Gateway); got != before {
		t.Errorf("restart changed the gateway:\n--- before\n%s\n--- after\n%s", before, got)
	}
	if got := dm.metric("vpcnat_daemon_applied_patches_total"); got != 0 {
		t.Errorf("restart patched applied %v times, want 0", got)
	}
	if after := g.c.getPod(g.pod); after.ResourceVersion != pod.ResourceVersion {
		t.Errorf("the pod was modified by the restart: %s -> %s", pod.ResourceVersion, after.ResourceVersion)
	}
	g.works()
}

// TestDaemonSandboxRecreated, on each NAT backend: the runtime replaces the gateway's sandbox
// (CNI DEL, netns gone, a new netns, CNI ADD with a new container ID): the plugin's new record
// makes the daemon converge the new, empty netns from scratch, exactly to the desired state
// (test/kstate), and traffic flows through it. Nothing new is reported: the same desired state
// is applied.
func TestDaemonSandboxRecreated(t *testing.T) {
	topo.NeedRoot(t)
	forEachDataplane(t, testDaemonSandboxRecreated)
}

func testDaemonSandboxRecreated(t *testing.T, plane string) {
	g := newSeedGatewayOn(t, plane)
	if err := g.n.chain.Del(g.n.list, g.sandbox); err != nil {
		t.Fatal(err)
	}
	if err := g.n.topo.DelNS(topo.Gateway); err != nil {
		t.Fatal(err)
	}
	const role = "gwb"
	if err := g.n.topo.AddNS(role); err != nil {
		t.Fatal(err)
	}
	g.n.sandbox(g.pod, role, "ctr-2-"+g.n.topo.Prefix)

	eventually(t, "the new sandbox converged", 10*time.Second, func() bool {
		return g.dm.metric("vpcnat_daemon_sync_duration_seconds", "full", "true") == 2 && g.n.check(role, g.d).Empty()
	})
	g.works()
	a := g.c.applied(g.pod)
	if a.Hash != hashOf(g.desired) || a.Error != "" {
		t.Errorf("applied %+v after the new sandbox", a)
	}
	if got := g.dm.metric("vpcnat_daemon_applied_patches_total"); got != 1 {
		t.Errorf("applied patches = %v, want 1", got)
	}
}
