package netconf

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// spyIptables runs the real binaries and, at the moment of the restore, records the state the
// NAT rules are written into.
type spyIptables struct {
	execIptables
	tp            *topo
	forwardAtNAT  []string
	net1AddrAtNAT []string
}

func (s *spyIptables) Restore(ctx context.Context, input []byte) error {
	s.forwardAtNAT = append(s.forwardAtNAT, s.tp.sysctl(roleGW, "net.ipv4.ip_forward"))
	s.net1AddrAtNAT = append(s.net1AddrAtNAT, s.tp.exec(roleGW, "ip", "-4", "-o", "addr", "show"))
	return s.execIptables.Restore(ctx, input)
}

// poisonedIptables fails every restore, as a broken iptables or a rejected ruleset would.
type poisonedIptables struct{ execIptables }

func (poisonedIptables) Restore(context.Context, []byte) error {
	return errors.New("iptables-restore: poisoned by the test")
}

// The first converge creates everything, with NAT rules in place before any EIP exists and
// forwarding off until the very end (here the netns "inherited" forwarding from the node), and
// the result forwards real traffic both ways through the floating IP.
func TestFirstConvergeCreatesEverything(t *testing.T) {
	tp := newTopo(t)
	tp.addPod(rolePod, "10.0.1.5/24", "10.0.1.1")
	// What a netns inherits on a typical node: forwarding on, strict reverse-path filtering.
	tp.exec(roleGW, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=1", "net.ipv4.conf.default.rp_filter=1")
	g := tp.gateway()
	spy := &spyIptables{execIptables: execIptables{nsPath: tp.path(roleGW)}, tp: tp}
	g.ipt = spy

	start := time.Now()
	rep := tp.mustConverge(g, seedDesired(), true)
	t.Logf("first converge of the seed: %v, %d changes", time.Since(start), len(rep.Changes))
	for _, c := range rep.Changes {
		t.Log("  " + c)
	}

	if len(spy.forwardAtNAT) != 1 || spy.forwardAtNAT[0] != "0" {
		t.Errorf("ip_forward while the NAT rules were written: %q, want [0]", spy.forwardAtNAT)
	}
	if strings.Contains(spy.net1AddrAtNAT[0], "192.168.0.11") {
		t.Errorf("EIPs existed before the NAT rules:\n%s", spy.net1AddrAtNAT[0])
	}
	for _, want := range []string{"ip_forward: 1 -> 0", "conntrack: flushed", "ip_forward: 0 -> 1", "link net1: created macvlan on eth1",
		"sysctl net/ipv4/conf/all/rp_filter: 1 -> 0", "sysctl net/ipv4/conf/net1/rp_filter: 1 -> 0", "sysctl net/ipv4/conf/vpc-sn/rp_filter: 1 -> 0"} {
		if !hasChange(rep, want) {
			t.Errorf("report lacks %q: %q", want, rep.Changes)
		}
	}
	if got := strings.Join(rep.Announced, " "); got != "192.168.0.111 192.168.0.112 10.0.1.1 10.0.1.254" {
		t.Errorf("announced %v, want both EIPs and both subnet addresses on the first converge", rep.Announced)
	}

	link := tp.ip(roleGW, "-d", "-o", "link", "show", "net1")
	for _, want := range []string{"link/ether " + seedMAC, "macvlan mode bridge", "state UP"} {
		if !strings.Contains(link, want) {
			t.Errorf("net1 lacks %q: %s", want, link)
		}
	}
	if l := tp.ip(roleNode, "-o", "link", "show", "vh-ngw-sn"); !strings.Contains(l, "master br-sn") || !strings.Contains(l, "state UP") {
		t.Errorf("host end of vpc-sn: %s", l)
	}
	if got := tp.addrs(roleGW, "net1"); got != "192.168.0.111/24 192.168.0.112/24" {
		t.Errorf("net1 addresses %q", got)
	}
	if got := tp.addrs(roleGW, "vpc-sn"); got != "10.0.1.1/24 10.0.1.254/24" {
		t.Errorf("vpc-sn addresses %q", got)
	}
	requireLines(t, "table 100", tp.ip(roleGW, "route", "show", "table", "100"),
		"default via 192.168.0.254 dev net1 proto static",
		"10.0.1.0/24 dev vpc-sn proto static scope link",
		"192.168.0.0/24 dev net1 proto static scope link",
		"203.0.113.0/24 via 10.0.1.100 dev vpc-sn proto static")
	requireLines(t, "table 1000", tp.ip(roleGW, "route", "show", "table", "1000"),
		"default via 10.0.1.100 dev vpc-sn proto static",
		"10.0.1.0/24 dev vpc-sn proto static scope link",
		"192.168.0.0/24 dev net1 proto static scope link")
	requireLines(t, "rules", tp.ip(roleGW, "rule", "show"),
		"30000:\tfrom 10.0.1.64/26 lookup 1000",
		"31000:\tfrom all iif net1 lookup 100",
		"31000:\tfrom all iif vpc-sn lookup 100")
	requireLines(t, "nat", tp.natSave(roleGW),
		"-A PREROUTING -j DNAT_FILTER",
		"-A POSTROUTING -j SNAT_FILTER",
		"-A EXCLUSIVE_DNAT -d 192.168.0.111/32 -j DNAT --to-destination 10.0.1.5",
		"-A EXCLUSIVE_SNAT -s 10.0.1.5/32 -j SNAT --to-source 192.168.0.111",
		"-A DNAT_EIP_192.168.0.112 -p tcp -m tcp --dport 8888 -j DNAT --to-destination 10.0.1.10:80")
	for key, want := range map[string]string{
		"net.ipv4.ip_forward": "1", "net.ipv4.conf.all.rp_filter": "0", "net.ipv4.conf.net1.rp_filter": "0",
		"net.ipv4.conf.vpc-sn.rp_filter": "0", "net.ipv4.conf.net1.promote_secondaries": "1",
	} {
		if got := tp.sysctl(roleGW, key); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}

	// Real packets: in through the FIP (the pod sees the outside client), out through it (the
	// outside sees the EIP).
	podSrv := tp.listenTCP(rolePod, "10.0.1.5:7777")
	if _, err := tp.dialTCP(roleExt, "192.168.0.111:7777"); err != nil {
		t.Fatalf("ext -> FIP 192.168.0.111:7777: %v", err)
	}
	if got := podSrv.lastClient(t); got != "192.168.0.254" {
		t.Errorf("pod saw client %s, want 192.168.0.254", got)
	}
	extSrv := tp.listenTCP(roleExt, "192.168.0.254:7000")
	if _, err := tp.dialTCP(rolePod, "192.168.0.254:7000"); err != nil {
		t.Fatalf("pod -> ext: %v", err)
	}
	if got := extSrv.lastClient(t); got != "192.168.0.111" {
		t.Errorf("ext saw client %s, want the FIP 192.168.0.111", got)
	}
}

// A converge that fails leaves forwarding off: here once in the NAT step (poisoned restore), once
// in the link step (a master that does not exist). The links come before the NAT step (address
// conflict detection probes on them while the NAT is committed), the addresses after it: a
// failed NAT step leaves no address, a failed link step no NAT rule. The next converge is full
// whatever the caller asked, and completes the job.
func TestForwardingStaysOffOnFailure(t *testing.T) {
	tp := newTopo(t)
	tp.exec(roleGW, "sysctl", "-qw", "net.ipv4.ip_forward=1")

	g := tp.gateway()
	g.ipt = poisonedIptables{execIptables{nsPath: tp.path(roleGW)}}
	if _, err := tp.converge(g, seedDesired(), true); err == nil || !strings.Contains(err.Error(), "poisoned") {
		t.Fatalf("converge with a poisoned restore: err %v", err)
	}
	if got := tp.sysctl(roleGW, "net.ipv4.ip_forward"); got != "0" {
		t.Errorf("ip_forward %s after a failed NAT step", got)
	}
	if out := tp.ip(roleGW, "-o", "-4", "addr", "show"); strings.Contains(out, "192.168.0.") || strings.Contains(out, "10.0.1.") {
		t.Errorf("addresses were added after a failed NAT step: %s", out)
	}

	g = tp.gateway()
	bad := seedDesired()
	bad.External.Master = "nonexistent0"
	_, err := tp.converge(g, bad, true)
	if err == nil || !strings.Contains(err.Error(), `the ConfigMap's nic, or master in the node's vpcnat CNI entry) "nonexistent0"`) {
		t.Fatalf("converge with a missing master: err %v", err)
	}
	if got := tp.sysctl(roleGW, "net.ipv4.ip_forward"); got != "0" {
		t.Errorf("ip_forward %s after a failed link step", got)
	}
	requireNoLine(t, "nat after a failed link step", tp.natSave(roleGW), "DNAT_FILTER")

	rep := tp.mustConverge(g, seedDesired(), false)
	if !rep.Full {
		t.Error("the converge after an error was not full")
	}
	if got := tp.sysctl(roleGW, "net.ipv4.ip_forward"); got != "1" {
		t.Errorf("ip_forward %s after a complete converge", got)
	}
}

// Converging the same state again changes nothing, full or fast, and neither does a restarted
// daemon (a new Gateway on a converged netns): no forwarding toggle, no conntrack flush.
func TestConvergeIdempotent(t *testing.T) {
	tp := newTopo(t)
	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)
	before := tp.dump()

	for _, full := range []bool{true, false} {
		start := time.Now()
		rep := tp.mustConverge(g, seedDesired(), full)
		t.Logf("in-sync converge of the seed (full=%v): %v", full, time.Since(start))
		if len(rep.Changes) != 0 || rep.Full != full {
			t.Errorf("second converge (full=%v): full=%v changes %q", full, rep.Full, rep.Changes)
		}
		if after := tp.dump(); after != before {
			t.Errorf("second converge (full=%v) changed the netns:\n%s", full, lineDiff(before, after))
		}
	}

	restarted := tp.gateway()
	rep := tp.mustConverge(restarted, seedDesired(), false)
	if len(rep.Changes) != 0 || !rep.Full {
		t.Errorf("restarted daemon: full=%v changes %q", rep.Full, rep.Changes)
	}
	if after := tp.dump(); after != before {
		t.Errorf("restarted daemon changed the netns:\n%s", lineDiff(before, after))
	}
}

// Drift made by hand comes back with the next full converge, exactly: an EIP, a route of table
// 100, an ip rule, a port forward inside DNAT_EIP_<eip>, and our PREROUTING hook.
func TestDriftRepair(t *testing.T) {
	tp := newTopo(t)
	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)
	before := tp.dump()

	tp.ip(roleGW, "addr", "del", "192.168.0.112/24", "dev", "net1")
	tp.ip(roleGW, "route", "del", "203.0.113.0/24", "table", "100")
	tp.ip(roleGW, "rule", "del", "pref", "31000", "iif", "vpc-sn", "lookup", "100")
	tp.exec(roleGW, "iptables", "-t", "nat", "-D", "DNAT_EIP_192.168.0.112", "1")
	tp.exec(roleGW, "iptables", "-t", "nat", "-D", "PREROUTING", "-j", "DNAT_FILTER")

	// The fast path trusts its memory for NAT, but reads links, addresses, routes and rules.
	rep := tp.mustConverge(g, seedDesired(), false)
	if hasChange(rep, "nat:") {
		t.Errorf("fast converge touched nat: %q", rep.Changes)
	}
	for _, want := range []string{"addr net1: added 192.168.0.112/24", "route: added table 100 203.0.113.0/24 via 10.0.1.100 dev vpc-sn",
		"rule: added 31000: from all iif vpc-sn lookup 100"} {
		if !hasChange(rep, want) {
			t.Errorf("fast converge did not report %q: %q", want, rep.Changes)
		}
	}
	if len(rep.Changes) != 3 {
		t.Errorf("fast converge changes %q, want exactly the three repairs", rep.Changes)
	}
	if len(rep.Announced) != 1 || rep.Announced[0] != "192.168.0.112" {
		t.Errorf("re-added EIP announced as %v", rep.Announced)
	}

	rep = tp.mustConverge(g, seedDesired(), true)
	t.Logf("full converge after drift: %q", rep.Changes)
	if len(rep.Changes) != 2 || !hasChange(rep, "DNAT_EIP_192.168.0.112") || !hasChange(rep, "PREROUTING -j DNAT_FILTER") {
		t.Errorf("full converge after drift: %q, want exactly the port forward chain and the hook", rep.Changes)
	}
	if got := tp.dump(); got != before {
		t.Errorf("after repair:\n%s", lineDiff(before, got))
	}
	if rep := tp.mustConverge(g, seedDesired(), true); len(rep.Changes) != 0 {
		t.Errorf("converge after repair: %q", rep.Changes)
	}

	// promote_secondaries: removing the first (primary) EIP keeps the other one, and the next
	// converge adds it back (as a secondary now: the order of addresses is the kernel's).
	tp.ip(roleGW, "addr", "del", "192.168.0.111/24", "dev", "net1")
	if got := tp.addrs(roleGW, "net1"); got != "192.168.0.112/24" {
		t.Errorf("net1 after deleting the first EIP: %q", got)
	}
	rep = tp.mustConverge(g, seedDesired(), true)
	if got := tp.addrs(roleGW, "net1"); got != "192.168.0.112/24 192.168.0.111/24" || len(rep.Changes) != 1 {
		t.Errorf("net1 after repair: %q, changes %q", got, rep.Changes)
	}
}

// The link sysctls: a fast converge trusts the values it last found right while their links are
// the same, a full converge (every resync) reads them back and repairs them, and a fast converge
// that finds a link changed (set down by hand, or deleted and recreated with the kernel's default
// sysctls) reads them again.
func TestSysctlDrift(t *testing.T) {
	tp := newTopo(t)
	g := tp.gateway()
	tp.mustConverge(g, seedDesired(), true)

	tp.exec(roleGW, "sysctl", "-qw", "net.ipv4.conf.net1.rp_filter=1")
	rep := tp.mustConverge(g, seedDesired(), true)
	if !hasChange(rep, "sysctl net/ipv4/conf/net1/rp_filter: 1 -> 0") || len(rep.Changes) != 1 {
		t.Errorf("full converge after rp_filter=1 by hand: %q, want exactly its repair", rep.Changes)
	}

	tp.exec(roleGW, "sysctl", "-qw", "net.ipv4.conf.net1.rp_filter=2")
	tp.ip(roleGW, "link", "set", "net1", "down")
	rep = tp.mustConverge(g, seedDesired(), false)
	if !hasChange(rep, "link net1: up") || !hasChange(rep, "sysctl net/ipv4/conf/net1/rp_filter: 2 -> 0") {
		t.Errorf("fast converge after net1 down and rp_filter=2 by hand: %q, want net1 up and rp_filter repaired", rep.Changes)
	}

	tp.ip(roleGW, "link", "del", "vpc-sn")
	rep = tp.mustConverge(g, seedDesired(), false)
	if !hasChange(rep, "sysctl net/ipv4/conf/vpc-sn/promote_secondaries: 0 -> 1") {
		t.Errorf("fast converge after vpc-sn was deleted: %q, want the recreated link's promote_secondaries set", rep.Changes)
	}
	for key, want := range map[string]string{"net.ipv4.conf.net1.rp_filter": "0", "net.ipv4.conf.vpc-sn.rp_filter": "0",
		"net.ipv4.conf.vpc-sn.promote_secondaries": "1", "net.ipv4.conf.net1.promote_secondaries": "1"} {
		if got := tp.sysctl(roleGW, key); got != want {
			t.Errorf("%s = %s, want %s", key, got, want)
		}
	}
	if rep := tp.mustConverge(g, seedDesired(), true); len(rep.Changes) != 0 {
		t.Errorf("full converge after the repairs: %q", rep.Changes)
	}
}
