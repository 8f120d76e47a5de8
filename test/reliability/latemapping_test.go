package reliability

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

// TestMappingAddedAfterFlow (found by the churn soak; Kube-OVN 4193 for rules added after a flow
// started): a UDP client that keeps retrying from one source port (DNS, NTP, WireGuard, syslog)
// sends before its mapping exists, so its conntrack entry is untranslated; every retry refreshes
// it, so the flow never reaches the target the mapping added later names. The converge that
// adds the mapping must delete that entry, and the same flow, same source port, must then reach
// the new target. Entries the new rule does not concern must survive: a port forward as
// desired, traffic to the gateway's own addresses on ports without a port forward, the
// gateway's own traffic, VPC traffic that does not leave by the external NIC.
//
// A variant (restart) shows the clean-up is level-based: the entry is planted after the mapping
// is in the kernel (as a crash between the nat commit and the clean-up leaves it), and a
// restarted daemon's converge, whose nat diff is empty, deletes it.
func TestMappingAddedAfterFlow(t *testing.T) {
	topo.NeedRoot(t)
	cases := []lateCase{
		{
			name: "dnat",
			remove: func(in *plan.Inputs) {
				in.Gateway.Spec.DnatRules = in.Gateway.Spec.DnatRules[:len(in.Gateway.Spec.DnatRules)-1]
			},
			role: topo.Client, local: topo.ClientIP, sport: 40000, remote: eip112 + ":5353",
			server: topo.Pod2, serverAddr: topo.Pod2IP + ":5353", wantSeen: topo.ClientIP,
		},
		{
			name:   "fip",
			remove: func(in *plan.Inputs) { in.Gateway.Spec.FloatingIPRules = nil },
			role:   topo.Client, local: topo.ClientIP, sport: 40000, remote: eip111 + ":7001",
			server: topo.Pod1, serverAddr: topo.Pod1IP + ":7001", wantSeen: topo.ClientIP,
		},
		{
			name:   "snat",
			remove: func(in *plan.Inputs) { in.Gateway.Spec.SnatRules = nil },
			role:   topo.Pod2, local: topo.Pod2IP, sport: 40000, remote: topo.InetIP + ":8081",
			server: topo.Inet, serverAddr: topo.InetIP + ":8081", wantSeen: eip112,
		},
	}
	eachBackend(t, func(t *testing.T, plane string) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { mappingAddedAfterFlow(t, c, false, plane) })
			t.Run(c.name+"/restart", func(t *testing.T) { mappingAddedAfterFlow(t, c, true, plane) })
		}
	})
}

type lateCase struct {
	name   string
	remove func(*plan.Inputs) // takes the mapping out of the seed inputs
	// The retrying client: role, address and fixed source port, destination.
	role, local string
	sport       int
	remote      string
	// The server the mapping leads to, and the source address it must see.
	server, serverAddr, wantSeen string
}

// keeper is an entry the converge must not delete: conntrack -I arguments, and how to find it.
type keeper struct {
	why   string
	args  []string
	proto string
	src   string
	sport int
	dst   string
	dport int
}

func mappingAddedAfterFlow(t *testing.T, c lateCase, restart bool, plane string) {
	tp := newSeed(t)
	gwNS := tp.Path(topo.Gateway)
	build := func(in plan.Inputs) *annotations.Desired {
		_, d, errs := plan.Build(in)
		if len(errs) > 0 {
			t.Fatal(errs.ToAggregate())
		}
		return d
	}
	with := seedInputs(t, plane)
	without := seedInputs(t, plane)
	c.remove(&without)
	dWith, dWithout := build(with), build(without)
	tp.ListenFor(t, c.server, "udp", c.serverAddr)

	gw := netconf.NewGateway(gwNS)
	defer gw.Close()
	first := dWithout
	if restart {
		// The mapping is already in the kernel; the flow's entry is planted below as a packet
		// racing the nat commit of a daemon that then crashed would leave it.
		first = dWith
	}
	if _, err := convergeIn(tp, gw, first, true); err != nil {
		t.Fatal(err)
	}

	// The flow, before its mapping: no answer (refused by the gateway, or the reply has no way
	// back), and an untranslated entry.
	dst, dportS, _ := net.SplitHostPort(c.remote)
	dport, _ := strconv.Atoi(dportS)
	if restart {
		if _, err := tp.Exec(topo.Gateway, "conntrack", "-I", "-p", "udp", "-s", c.local, "-d", dst, "--sport", strconv.Itoa(c.sport),
			"--dport", dportS, "--timeout", "120"); err != nil {
			t.Fatal(err)
		}
	} else if r, err := tp.RequestFrom(c.role, "udp", c.sport, c.remote, 300*time.Millisecond); err == nil {
		t.Fatalf("%s:%d -> %s before the mapping: answered by %s", c.local, c.sport, c.remote, r.Local)
	}
	find := func(proto, src string, sport int, dst string, dport int) (kstate.Flow, bool) {
		t.Helper()
		fl, err := kstate.Conntrack(gwNS)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fl {
			if f.Proto == proto && f.OrigSrc.String() == src && f.OrigSport == sport && f.OrigDst.String() == dst && f.OrigDport == dport {
				return f, true
			}
		}
		return kstate.Flow{}, false
	}
	// The entry appears when the gateway has received the datagram, which on a loaded machine
	// can be after the request gave up (the kernel's packet processing deferred to ksoftirqd, an
	// ARP resolution first): wait for it, so that the converge below comes after it.
	var e kstate.Flow
	ok := false
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if e, ok = find("udp", c.local, c.sport, dst, dport); ok || time.Now().After(deadline) {
			break
		}
	}
	if !ok || e.ReplySrc != e.OrigDst || e.ReplyDst != e.OrigSrc {
		t.Fatalf("want an untranslated entry of %s:%d -> %s, got %v (found %v)\nconntrack:\n%s", c.local, c.sport, c.remote, e, ok, conntrackDump(tp))
	}
	if bad := kstate.CheckFlows([]kstate.Flow{e}, dWith); len(bad) != 1 {
		t.Fatalf("kstate.CheckFlows does not see the untranslated entry as wrong for the state with the mapping: %q", bad)
	}

	// Entries the new rule does not concern.
	keepers := []keeper{
		{why: "port forward as desired", proto: "tcp", src: topo.ClientIP, sport: 41000, dst: eip112, dport: 8888,
			args: []string{"--state", "ESTABLISHED", "-r", topo.Pod2IP, "-q", topo.ClientIP, "--reply-port-src", "80", "--reply-port-dst", "41000"}},
		{why: "to an EIP on a port without a port forward", proto: "udp", src: topo.ClientIP, sport: 41001, dst: eip112, dport: 5000},
		{why: "the gateway's own traffic to an EIP", proto: "udp", src: eip112, sport: 41002, dst: eip111, dport: 7001},
		{why: "the gateway's own traffic out of net1", proto: "udp", src: eip112, sport: 41003, dst: topo.InetIP, dport: 8081},
		{why: "the gateway's subnet address out of net1", proto: "udp", src: "10.0.1.1", sport: 41004, dst: topo.InetIP, dport: 8081},
		{why: "from the VPC to the gateway's subnet address", proto: "udp", src: topo.Pod2IP, sport: 41005, dst: "10.0.1.1", dport: 53},
		{why: "from the VPC to the gateway's EIP on a port without a port forward", proto: "udp", src: topo.Pod2IP, sport: 41006, dst: eip112, dport: 5000},
		{why: "inside the VPC's subnet (through the gateway)", proto: "udp", src: topo.Pod3IP, sport: 41007, dst: topo.Pod2IP, dport: 7},
		{why: "from outside, routed into the VPC", proto: "udp", src: topo.ClientIP, sport: 41008, dst: topo.Pod2IP, dport: 7},
	}
	for _, k := range keepers {
		args := append([]string{"conntrack", "-I", "-p", k.proto, "--timeout", "300", "-s", k.src, "-d", k.dst, "--sport", strconv.Itoa(k.sport),
			"--dport", strconv.Itoa(k.dport)}, k.args...)
		if _, err := tp.Exec(topo.Gateway, args...); err != nil {
			t.Fatalf("planting %s: %v", k.why, err)
		}
	}

	// The converge that adds the mapping (or, restart, a new daemon's first converge).
	g := gw
	if restart {
		g = netconf.NewGateway(gwNS)
		defer g.Close()
	}
	rep, err := convergeIn(tp, g, dWith, restart)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("converge: %q", rep.Changes)
	if e, ok := find("udp", c.local, c.sport, dst, dport); ok && e.ReplySrc == e.OrigDst && e.ReplyDst == e.OrigSrc {
		t.Errorf("the untranslated entry of %s:%d -> %s survived the converge: %s", c.local, c.sport, c.remote, e.Raw)
	}
	all, err := kstate.Conntrack(gwNS)
	if err != nil {
		t.Fatal(err)
	}
	if bad := kstate.CheckFlows(all, dWith); len(bad) > 0 {
		t.Errorf("%d conntrack entries contradict the state after the converge:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	for _, k := range keepers {
		if _, ok := find(k.proto, k.src, k.sport, k.dst, k.dport); !ok {
			t.Errorf("entry deleted, %s: %s %s:%d -> %s:%d", k.why, k.proto, k.src, k.sport, k.dst, k.dport)
		}
	}

	// The same flow, same source port, reaches the new target.
	r, err := tp.RequestFrom(c.role, "udp", c.sport, c.remote, topo.ExpectTimeout)
	if err != nil {
		t.Fatalf("%s:%d -> %s after the mapping was added: %v\nconntrack:\n%s", c.local, c.sport, c.remote, err, conntrackDump(tp))
	}
	if r.Local != c.serverAddr || r.SeenIP() != c.wantSeen {
		t.Errorf("%s:%d -> %s: answered by %s seeing %s, want %s seeing %s", c.local, c.sport, c.remote, r.Local, r.Seen, c.serverAddr, c.wantSeen)
	}
	if e, ok := find("udp", c.local, c.sport, dst, dport); !ok {
		t.Errorf("no entry for %s:%d -> %s after the request", c.local, c.sport, c.remote)
	} else if bad := kstate.CheckFlows([]kstate.Flow{e}, dWith); len(bad) > 0 {
		t.Errorf("the flow's entry after the request: %q", bad)
	}
}

func conntrackDump(tp *topo.Topology) string {
	out, err := tp.Exec(topo.Gateway, "conntrack", "-L")
	if err != nil {
		return err.Error()
	}
	return strings.TrimSpace(out)
}
