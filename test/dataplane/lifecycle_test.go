package dataplane

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/test/topo"
)

// TestIdempotent: converging the same state again changes nothing in the kernel, on the fast
// path and on a full read-back alike.
func TestIdempotent(t *testing.T) { eachBackend(t, testIdempotent) }

func testIdempotent(t *testing.T, f *fixture) {
	if rep := f.converge(true); len(rep.Changes) == 0 {
		t.Fatal("first converge reported no changes")
	}
	before := f.dump()
	for _, full := range []bool{true, false, true} {
		if rep := f.converge(full); len(rep.Changes) != 0 {
			t.Errorf("converge (full=%v) of an unchanged spec made changes: %v", full, rep.Changes)
		}
	}
	if after := f.dump(); after != before {
		t.Errorf("kernel state changed by idempotent converges:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

// TestSpecUpdate: a changed DNAT target and a removed FIP take effect for the next packet of an
// existing flow too (their conntrack entries are gone), and the new mapping works.
func TestSpecUpdate(t *testing.T) { eachBackend(t, testSpecUpdate) }

func testSpecUpdate(t *testing.T, f *fixture) {
	g := &f.in.Gateway.Spec
	g.DnatRules = append(g.DnatRules, dnat(eip112, 8888, "udp", topo.Pod2IP, 80))
	f.converge(true)
	f.listen(topo.Pod2, "udp", topo.Pod2IP+":80")
	f.listen(topo.Pod3, "udp", topo.Pod3IP+":80")
	f.listen(topo.Pod1, "tcp", ":7000")
	f.listen(topo.Inet, "tcp", topo.InetIP+":8080")

	// One UDP flow (fixed source port) through the DNAT, then the DNAT moves to pod3.
	const srcPort = 40123
	if r, err := f.topo.RequestFrom(topo.Client, "udp", srcPort, eip112+":8888", timeout); err != nil || r.Local != topo.Pod2IP+":80" {
		t.Fatalf("before the update: reply %+v, err %v", r, err)
	}
	g.DnatRules[1] = dnat(eip112, 8888, "udp", topo.Pod3IP, 80)
	// And the FIP goes away: pod1 falls back to the subnet's SNAT, .111 answers nothing.
	g.FloatingIPRules = nil
	f.converge(false)

	r, err := f.topo.RequestFrom(topo.Client, "udp", srcPort, eip112+":8888", timeout)
	if err != nil || r.Local != topo.Pod3IP+":80" {
		t.Errorf("same flow after the update: reply %+v, err %v; want it at pod3 (stale conntrack entry kept the old mapping?)", r, err)
	}
	f.expectNoAnswer(topo.Client, "tcp", eip111+":7000")
	f.expect(topo.Pod1, "tcp", topo.InetIP+":8080", eip112, "")
}

// TestDriftRepair: addresses, routes, ip rules and NAT rules deleted by hand come back on the
// next full converge, exactly as they were.
func TestDriftRepair(t *testing.T) { eachBackend(t, testDriftRepair) }

func testDriftRepair(t *testing.T, f *fixture) {
	f.converge(true)
	f.listen(topo.Pod2, "tcp", topo.Pod2IP+":80")
	f.listen(topo.Inet, "tcp", topo.InetIP+":8080")
	want := f.dump()

	f.check()

	f.gwExec("ip", "addr", "del", eip112+"/24", "dev", "net1")
	if f.nft() {
		// The port forwards gone, the SNAT chain no longer hooked.
		f.gwExec("nft", "flush", "map", "ip", "vpcnat", "port_dnat")
		f.gwExec("nft", "flush", "chain", "ip", "vpcnat", "POSTROUTING")
	} else {
		f.gwExec("iptables", "-t", "nat", "-F", "DNAT_EIP_"+eip112)
		f.gwExec("iptables", "-t", "nat", "-D", "POSTROUTING", "-j", "SNAT_FILTER")
	}
	f.gwExec("ip", "route", "del", "default", "table", "100")
	f.gwExec("ip", "rule", "del", "iif", "net1", "lookup", "100")
	f.expectNoAnswer(topo.Client, "tcp", eip112+":8888")

	rep := f.converge(true)
	if len(rep.Changes) < 5 {
		t.Errorf("repair reported %d changes, want at least the 5 made by hand: %v", len(rep.Changes), rep.Changes)
	}
	if got := f.dump(); got != want {
		t.Errorf("state after repair differs:\n--- want\n%s\n--- got\n%s", want, got)
	}
	f.check()
	f.expect(topo.Client, "tcp", eip112+":8888", topo.ClientIP, topo.Pod2IP+":80")
	f.expect(topo.Pod2, "tcp", topo.InetIP+":8080", eip112, "")
}

// TestNoEmptyChainDuringUpdates: a probe through an unchanged rule keeps succeeding across 100
// updates that rewrite the chains it passes through (same EIP, SNAT, FIP), fast and full.
func TestNoEmptyChainDuringUpdates(t *testing.T) { eachBackend(t, testNoEmptyChainDuringUpdates) }

func testNoEmptyChainDuringUpdates(t *testing.T, f *fixture) {
	g := &f.in.Gateway.Spec
	g.Eips = append(g.Eips, eip(eip113))
	f.converge(true)
	f.listen(topo.Pod2, "tcp", topo.Pod2IP+":80")

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := f.topo.Request(topo.Client, "tcp", eip112+":8888", timeout); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
			} else {
				ok.Add(1)
			}
		}
	}()
	for i := range 100 {
		// Rewrites DNAT_EIP_192.168.0.112 (the probe's chain), SHARED_SNAT and EXCLUSIVE_*.
		g.DnatRules = g.DnatRules[:1]
		g.DnatRules = append(g.DnatRules, dnat(eip112, int32(9000+i), "tcp", topo.Pod3IP, 80))
		g.SnatRules = []v1.SnatRule{{Eip: eip112, InternalCIDR: "10.0.1.0/24"}, {Eip: eip113, InternalCIDR: fmt.Sprintf("10.0.1.%d/32", 30+i)}}
		if i%2 == 0 {
			g.FloatingIPRules = nil
		} else {
			g.FloatingIPRules = []v1.FloatingIPRule{{Eip: eip111, InternalIP: topo.Pod1IP}}
		}
		f.converge(i%10 == 0)
		time.Sleep(5 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failed.Load() != 0 || ok.Load() < 100 {
		t.Errorf("probe through the unchanged DNAT: %d ok, %d failed (first: %v)", ok.Load(), failed.Load(), firstErr.Load())
	}
	t.Logf("probe: %d requests succeeded across 100 updates", ok.Load())
	if f.nft() {
		if out := f.gwExec("nft", "list", "map", "ip", "vpcnat", "port_dnat"); !strings.Contains(out, eip112+" . tcp . 9099 ") {
			t.Errorf("last update not in the kernel:\n%s", out)
		}
	} else if out := f.gwExec("iptables-save", "-t", "nat"); !strings.Contains(out, "--dport 9099 ") {
		t.Errorf("last update not in the kernel:\n%s", out)
	}
	f.check()
}
