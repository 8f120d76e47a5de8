package reliability

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

// edit is one step of TestQuickEdits: a change of the inputs, applied by one converge.
type edit struct {
	name string
	do   func(in *plan.Inputs)
}

// editInputs is the seed (with the UDP port forward of seedInputs) plus EIPs .113 and .114, a
// second port forward, a second subnet sn2 (10.0.2.0/24 on br-sn2) and one static route of each
// policy via the VPC router 10.0.1.100.
func editInputs(t *testing.T, plane string) plan.Inputs {
	in := seedInputs(t, plane)
	gw := &in.Gateway.Spec
	gw.Eips = append(gw.Eips, v1.Eip{EipCIDR: "192.168.0.113/24", Gateway: topo.RouterIP}, v1.Eip{EipCIDR: "192.168.0.114/24", Gateway: topo.RouterIP})
	gw.DnatRules = append(gw.DnatRules, v1.DnatRule{Eip: "192.168.0.113", ExternalPort: intstr.FromInt32(2222), Protocol: "tcp",
		InternalIP: topo.Pod3IP, InternalPort: intstr.FromInt32(22)})
	in.Subnets = append(in.Subnets, &v1.Subnet{TypeMeta: in.Subnets[0].TypeMeta, ObjectMeta: objectMeta("sn2"),
		Spec: v1.SubnetSpec{Vpc: "test-vpc-1", CIDRBlock: "10.0.2.0/24", Gateway: "10.0.2.1", NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-sn2"}}})
	in.Vpc.Spec.StaticRoutes = append(in.Vpc.Spec.StaticRoutes,
		v1.StaticRoute{Policy: v1.RoutePolicy(annotations.PolicyDst), CIDR: "203.0.113.0/24", NextHopIP: topo.VRIP},
		v1.StaticRoute{Policy: v1.RoutePolicy(annotations.PolicySrc), CIDR: "10.0.1.64/26", NextHopIP: topo.VRIP})
	return in
}

// edits changes every field of every rule kind in place, one converge each, then adds and
// removes one rule of each kind in consecutive converges.
func edits() []edit {
	dnat := func(in *plan.Inputs, i int) *v1.DnatRule { return &in.Gateway.Spec.DnatRules[i] }
	moveEIP := func(in *plan.Inputs, from, to string) {
		gw := &in.Gateway.Spec
		for i := range gw.Eips {
			if strings.HasPrefix(gw.Eips[i].EipCIDR, from+"/") {
				gw.Eips[i].EipCIDR = to + "/24"
			}
		}
		for i := range gw.FloatingIPRules {
			if gw.FloatingIPRules[i].Eip == from {
				gw.FloatingIPRules[i].Eip = to
			}
		}
		for i := range gw.DnatRules {
			if gw.DnatRules[i].Eip == from {
				gw.DnatRules[i].Eip = to
			}
		}
		for i := range gw.SnatRules {
			if gw.SnatRules[i].Eip == from {
				gw.SnatRules[i].Eip = to
			}
		}
	}
	route := func(in *plan.Inputs, i int) *v1.StaticRoute { return &in.Vpc.Spec.StaticRoutes[i] }
	var out []edit
	add := func(name string, do func(in *plan.Inputs)) { out = append(out, edit{name, do}) }

	// EIPs.
	add("eip address of the SNAT/DNAT EIP .112 -> .115 (its rules follow)", func(in *plan.Inputs) { moveEIP(in, "192.168.0.112", "192.168.0.115") })
	add("eip address of the FIP EIP .111 -> .116", func(in *plan.Inputs) { moveEIP(in, "192.168.0.111", "192.168.0.116") })
	add("eip gateway of every EIP -> 192.168.0.253", func(in *plan.Inputs) {
		for i := range in.Gateway.Spec.Eips {
			in.Gateway.Spec.Eips[i].Gateway = "192.168.0.253"
		}
	})
	add("eip gateway back", func(in *plan.Inputs) {
		for i := range in.Gateway.Spec.Eips {
			in.Gateway.Spec.Eips[i].Gateway = topo.RouterIP
		}
	})
	// DNAT: every field.
	add("dnat[0] protocol tcp -> udp", func(in *plan.Inputs) { dnat(in, 0).Protocol = "udp" })
	add("dnat[0] externalPort 8888 -> 8889", func(in *plan.Inputs) { dnat(in, 0).ExternalPort = intstr.FromInt32(8889) })
	add("dnat[0] internalIp pod2 -> pod3", func(in *plan.Inputs) { dnat(in, 0).InternalIP = topo.Pod3IP })
	add("dnat[0] internalPort 80 -> 81", func(in *plan.Inputs) { dnat(in, 0).InternalPort = intstr.FromInt32(81) })
	add("dnat[2] eip .113 -> .115", func(in *plan.Inputs) { dnat(in, 2).Eip = "192.168.0.115" })
	add("dnat[1] protocol udp -> tcp and internalIp -> pod1", func(in *plan.Inputs) {
		dnat(in, 1).Protocol, dnat(in, 1).InternalIP = "tcp", topo.Pod1IP
	})
	// SNAT.
	add("snat internalCIDR 10.0.1.0/24 -> 10.0.1.0/25", func(in *plan.Inputs) { in.Gateway.Spec.SnatRules[0].InternalCIDR = "10.0.1.0/25" })
	add("snat eip .115 -> .113", func(in *plan.Inputs) { in.Gateway.Spec.SnatRules[0].Eip = "192.168.0.113" })
	add("snat internalCIDR -> a single IP (pod2)", func(in *plan.Inputs) { in.Gateway.Spec.SnatRules[0].InternalCIDR = topo.Pod2IP })
	// FIP.
	add("fip internalIp pod1 -> 10.0.2.5 (sn2)", func(in *plan.Inputs) { in.Gateway.Spec.FloatingIPRules[0].InternalIP = topo.Pod4IP })
	add("fip eip .116 -> .114", func(in *plan.Inputs) { in.Gateway.Spec.FloatingIPRules[0].Eip = "192.168.0.114" })
	// Static routes.
	add("route policyDst cidr 203.0.113.0/24 -> 203.0.113.0/25", func(in *plan.Inputs) { route(in, 1).CIDR = "203.0.113.0/25" })
	add("route policyDst nextHopIP vr -> 10.0.1.101", func(in *plan.Inputs) { route(in, 1).NextHopIP = "10.0.1.101" })
	add("route policySrc cidr 10.0.1.64/26 -> 10.0.1.128/25", func(in *plan.Inputs) { route(in, 2).CIDR = "10.0.1.128/25" })
	add("route policySrc nextHopIP -> 10.0.2.100", func(in *plan.Inputs) { route(in, 2).NextHopIP = "10.0.2.100" })
	add("route policy of the 0.0.0.0/0 route via lanIp -> via vr (installs a default route)", func(in *plan.Inputs) { route(in, 0).NextHopIP = topo.VRIP })
	add("route 0.0.0.0/0 back via lanIp", func(in *plan.Inputs) { route(in, 0).NextHopIP = "10.0.1.254" })
	// Subnet addresses.
	add("lanIp 10.0.1.254 -> 10.0.1.253", func(in *plan.Inputs) { in.Gateway.Spec.LanIP = "10.0.1.253"; route(in, 0).NextHopIP = "10.0.1.253" })
	add("subnet sn gateway 10.0.1.1 -> 10.0.1.2", func(in *plan.Inputs) { in.Subnets[0].Spec.Gateway = "10.0.1.2" })
	add("subnet sn2 gateway 10.0.2.1 -> 10.0.2.2", func(in *plan.Inputs) { in.Subnets[1].Spec.Gateway = "10.0.2.2" })
	add("lanIp = the subnet gateway (one address)", func(in *plan.Inputs) { in.Gateway.Spec.LanIP = "10.0.1.2"; route(in, 0).NextHopIP = "10.0.1.2" })
	add("subnet sn2 removed (hot-unplug; the FIP back to pod1)", func(in *plan.Inputs) {
		in.Subnets = in.Subnets[:1]
		route(in, 2).NextHopIP = topo.VRIP
		in.Gateway.Spec.FloatingIPRules[0].InternalIP = topo.Pod1IP
	})
	// Quick add and remove, one converge each, of every kind.
	for _, k := range quickPairs() {
		add("quick add: "+k.name, k.add)
		add("quick remove: "+k.name, k.drop)
	}
	return out
}

// quickPair adds one rule and removes it again.
type quickPair struct {
	name      string
	add, drop func(in *plan.Inputs)
}

// quickPairs is one quickPair per kind: EIP, port forward, FIP, SNAT, static route, subnet.
func quickPairs() []quickPair {
	return []quickPair{
		{"eip .117", func(in *plan.Inputs) {
			in.Gateway.Spec.Eips = append(in.Gateway.Spec.Eips, v1.Eip{EipCIDR: "192.168.0.117/24", Gateway: topo.RouterIP})
		}, func(in *plan.Inputs) { in.Gateway.Spec.Eips = in.Gateway.Spec.Eips[:len(in.Gateway.Spec.Eips)-1] }},
		{"dnat .113:7777/udp", func(in *plan.Inputs) {
			in.Gateway.Spec.DnatRules = append(in.Gateway.Spec.DnatRules, v1.DnatRule{Eip: "192.168.0.113", ExternalPort: intstr.FromInt32(7777),
				Protocol: "udp", InternalIP: topo.Pod2IP, InternalPort: intstr.FromInt32(7777)})
		}, func(in *plan.Inputs) {
			in.Gateway.Spec.DnatRules = in.Gateway.Spec.DnatRules[:len(in.Gateway.Spec.DnatRules)-1]
		}},
		{"fip .113 -> pod2 (its port forward moved away first)", func(in *plan.Inputs) {
			for i := range in.Gateway.Spec.DnatRules {
				if in.Gateway.Spec.DnatRules[i].Eip == "192.168.0.113" {
					in.Gateway.Spec.DnatRules[i].Eip = "192.168.0.115"
				}
			}
			in.Gateway.Spec.FloatingIPRules = append(in.Gateway.Spec.FloatingIPRules, v1.FloatingIPRule{Eip: "192.168.0.113", InternalIP: topo.Pod2IP})
		}, func(in *plan.Inputs) {
			in.Gateway.Spec.FloatingIPRules = in.Gateway.Spec.FloatingIPRules[:len(in.Gateway.Spec.FloatingIPRules)-1]
		}},
		{"snat 10.0.1.192/26 -> .114", func(in *plan.Inputs) {
			in.Gateway.Spec.SnatRules = append(in.Gateway.Spec.SnatRules, v1.SnatRule{Eip: "192.168.0.114", InternalCIDR: "10.0.1.192/26"})
		}, func(in *plan.Inputs) {
			in.Gateway.Spec.SnatRules = in.Gateway.Spec.SnatRules[:len(in.Gateway.Spec.SnatRules)-1]
		}},
		{"route 198.18.0.0/15 via vr", func(in *plan.Inputs) {
			in.Vpc.Spec.StaticRoutes = append(in.Vpc.Spec.StaticRoutes, v1.StaticRoute{Policy: v1.RoutePolicy(annotations.PolicyDst),
				CIDR: "198.18.0.0/15", NextHopIP: topo.VRIP})
		}, func(in *plan.Inputs) {
			in.Vpc.Spec.StaticRoutes = in.Vpc.Spec.StaticRoutes[:len(in.Vpc.Spec.StaticRoutes)-1]
		}},
		{"subnet sn3 (bridge br-sn2)", func(in *plan.Inputs) {
			in.Subnets = append(in.Subnets, &v1.Subnet{TypeMeta: in.Subnets[0].TypeMeta, ObjectMeta: objectMeta("sn3"),
				Spec: v1.SubnetSpec{Vpc: "test-vpc-1", CIDRBlock: "10.0.3.0/24", Gateway: "10.0.3.1", NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-sn2"}}})
		}, func(in *plan.Inputs) { in.Subnets = in.Subnets[:len(in.Subnets)-1] }},
	}
}

// TestQuickEdits (Kube-OVN 5115, 5799, 6412): starting from editInputs, every field of every rule
// kind is edited in place, one converge per edit, then one rule of each kind is added and removed
// again in consecutive converges, checked after each, and then in bursts (add and remove
// converges back to back, milliseconds apart, checked after both). Before each converge, conntrack entries
// are planted for every current FIP and port forward (both directions, translated as the rules
// say); after it, test/kstate must find the netns exactly as the new spec, no entry may carry a
// mapping the spec no longer has (kstate.CheckFlows), and the entries of unchanged mappings must
// still be there (no over-eager clean-up). "fast" converges as the daemon does on an update (the
// nat diff against the last applied ruleset), "full" reads the nat table back every time.
func TestQuickEdits(t *testing.T) {
	topo.NeedRoot(t)
	eachBackend(t, func(t *testing.T, plane string) {
		for _, mode := range []string{"fast", "full"} {
			t.Run(mode, func(t *testing.T) { quickEdits(t, mode == "full", plane) })
		}
	})
}

func quickEdits(t *testing.T, full bool, plane string) {
	tp := newSeed(t)
	gw := netconf.NewGateway(tp.Path(topo.Gateway))
	defer gw.Close()
	in := editInputs(t, plane)
	d := build(t, in)
	if _, err := convergeIn(tp, gw, d, true); err != nil {
		t.Fatal(err)
	}
	if diff := check(t, tp, d); !diff.Empty() {
		t.Fatalf("initial: %s", diff)
	}
	var slowest time.Duration
	steps := edits()
	for i, e := range steps {
		planted := plantMappings(t, tp, d, i)
		prev := d
		e.do(&in)
		in.Gateway.Generation++
		d = build(t, in)
		start := time.Now()
		rep, err := convergeIn(tp, gw, d, full)
		slowest = max(slowest, time.Since(start))
		if err != nil {
			t.Fatalf("step %d (%s): %v", i, e.name, err)
		}
		if diff := check(t, tp, d); !diff.Empty() {
			t.Errorf("step %d (%s): %s\nconverge changes: %q", i, e.name, diff, rep.Changes)
		}
		flows, err := kstate.Conntrack(tp.Path(topo.Gateway))
		if err != nil {
			t.Fatal(err)
		}
		if bad := kstate.CheckFlows(flows, d); len(bad) > 0 {
			t.Errorf("step %d (%s): conntrack entries of mappings the spec no longer has:\n%s", i, e.name, strings.Join(bad, "\n"))
		}
		// Entries of mappings unchanged by the step stay.
		for _, p := range planted {
			if unchanged(p, prev, d) && !hasFlow(flows, p.flow) {
				t.Errorf("step %d (%s): the entry of an unchanged mapping (%s) was deleted: %s", i, e.name, p.mapping, p.flow)
			}
		}
		// Clean slate for the next step's planted entries.
		if _, err := tp.Exec(topo.Gateway, "conntrack", "-F"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d edits (full=%v), slowest converge %s", len(steps), full, fmtDur(slowest))

	// Bursts: a rule added and removed by back-to-back converges (the second starts as soon as
	// the first returns and a conntrack entry of the new mapping is planted: milliseconds),
	// checked once after both.
	var gaps []string
	for _, k := range quickPairs() {
		planted := plantMappings(t, tp, d, len(steps))
		prev := d
		k.add(&in)
		in.Gateway.Generation++
		added := build(t, in)
		k.drop(&in)
		in.Gateway.Generation++
		d = build(t, in)
		start := time.Now()
		if _, err := convergeIn(tp, gw, added, full); err != nil {
			t.Fatalf("burst %s, add: %v", k.name, err)
		}
		// A flow of the short-lived mapping, if any, takes it in between.
		before := mappingKeys(d)
		plantSome(t, tp, added, len(steps)+1, func(m string) bool { return !before[m] }, 0)
		between := time.Now()
		if _, err := convergeIn(tp, gw, d, full); err != nil {
			t.Fatalf("burst %s, remove: %v", k.name, err)
		}
		gaps = append(gaps, fmt.Sprintf("%s %s", k.name, fmtDur(between.Sub(start))))
		if diff := check(t, tp, d); !diff.Empty() {
			t.Errorf("burst %s: %s", k.name, diff)
		}
		flows, err := kstate.Conntrack(tp.Path(topo.Gateway))
		if err != nil {
			t.Fatal(err)
		}
		if bad := kstate.CheckFlows(flows, d); len(bad) > 0 {
			t.Errorf("burst %s: stale conntrack entries:\n%s", k.name, strings.Join(bad, "\n"))
		}
		for _, p := range planted {
			if unchanged(p, prev, added, d) && !hasFlow(flows, p.flow) {
				t.Errorf("burst %s: the entry of an unchanged mapping (%s) was deleted: %s", k.name, p.mapping, p.flow)
			}
		}
		if _, err := tp.Exec(topo.Gateway, "conntrack", "-F"); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("bursts (from the add converge's start to the remove converge's start): %s", strings.Join(gaps, ", "))
}

// unchanged reports whether a planted entry's mapping is in the last spec and the entry is
// translated as every spec it went through says (a FIP added for an SNATed source changes its
// flows' translation although the SNAT rule stays).
func unchanged(p planted, specs ...*annotations.Desired) bool {
	if !mappingKeys(specs[len(specs)-1])[p.mapping] {
		return false
	}
	for _, d := range specs {
		if len(kstate.CheckFlows([]kstate.Flow{p.flow}, d)) > 0 {
			return false
		}
	}
	return true
}

// hasFlow reports whether flows hold f (same tuples).
func hasFlow(flows []kstate.Flow, f kstate.Flow) bool {
	for _, g := range flows {
		if g.String() == f.String() {
			return true
		}
	}
	return false
}

// planted is a conntrack entry planted for one mapping of the spec.
type planted struct {
	flow    kstate.Flow
	mapping string // see mappingKeys
}

// mappingKeys names every FIP, port forward and SNAT of d, so a test can tell whether the mapping
// behind a conntrack entry is still in the spec.
func mappingKeys(d *annotations.Desired) map[string]bool {
	out := map[string]bool{}
	for _, f := range d.FloatingIPs {
		out["fip "+f.EIP+" "+f.InternalIP] = true
	}
	for _, r := range d.DNATs {
		out[fmt.Sprintf("dnat %s %s:%d %s:%d", r.Protocol, r.EIP, r.ExternalPort, r.InternalIP, r.InternalPort)] = true
	}
	for _, r := range d.SNATs {
		out["snat "+r.InternalCIDR+" "+r.EIP] = true
	}
	return out
}

// plantMappings inserts a conntrack entry per direction of every FIP, one per port forward and
// one per SNAT rule (from an address of its CIDR that no FIP or longer SNAT prefix takes),
// translated and marked as d's table would (the nftables table marks every connection it
// translates: kstate.Mark), ports distinct per step; it returns them as kstate would read them.
func plantMappings(t *testing.T, tp *topo.Topology, d *annotations.Desired, step int) []planted {
	return plantSome(t, tp, d, step, nil, 0)
}

// plantSome is plantMappings for the mappings pick accepts (nil: all), at most limit of each
// kind (0: all).
func plantSome(t *testing.T, tp *topo.Topology, d *annotations.Desired, step int, pick func(mapping string) bool, limit int) []planted {
	t.Helper()
	var out []planted
	count := map[string]int{}
	plant := func(mapping, proto, src, dst string, sport, dport int, rsrc, rdst string, rsport, rdport int, mark uint32) {
		kind, _, _ := strings.Cut(mapping, " ")
		if (pick != nil && !pick(mapping)) || (limit > 0 && count[kind] >= limit*2) {
			return
		}
		count[kind]++
		args := []string{"conntrack", "-I", "-p", proto, "-s", src, "-d", dst, "-r", rsrc, "-q", rdst, "--timeout", "300",
			"--mark", strconv.FormatUint(uint64(mark), 10)}
		if proto == "tcp" {
			args = append(args, "--state", "ESTABLISHED")
		}
		args = append(args, "--sport", strconv.Itoa(sport), "--dport", strconv.Itoa(dport),
			"--reply-port-src", strconv.Itoa(rsport), "--reply-port-dst", strconv.Itoa(rdport))
		if _, err := tp.Exec(topo.Gateway, args...); err != nil {
			if strings.Contains(err.Error(), "exists") {
				return // the same tuple planted for another mapping of the spec
			}
			t.Fatalf("planting %v: %v", args, err)
		}
		line := fmt.Sprintf("%s 0 0 src=%s dst=%s sport=%d dport=%d src=%s dst=%s sport=%d dport=%d", proto, src, dst, sport, dport, rsrc, rdst, rsport, rdport)
		f, err := kstate.ParseFlow(line)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, planted{flow: f, mapping: mapping})
	}
	port := 20000 + (step*10)%40000
	fipOf := map[string]bool{}
	own := map[netip.Addr]bool{} // the gateway's own subnet addresses send nothing through it
	for _, sn := range d.Subnets {
		for _, a := range sn.Addresses {
			if p, err := netip.ParsePrefix(a); err == nil {
				own[p.Addr()] = true
			}
		}
	}
	for _, f := range d.FloatingIPs {
		m, mark := "fip "+f.EIP+" "+f.InternalIP, kstate.Mark(d, "fip", f.EIP, f.InternalIP)
		plant(m, "udp", topo.ClientIP, f.EIP, port, 7001, f.InternalIP, topo.ClientIP, 7001, port, mark)
		plant(m, "udp", f.InternalIP, topo.InetIP, port+1, 8081, topo.InetIP, f.EIP, 8081, port+1, mark)
		fipOf[f.InternalIP] = true
	}
	for _, r := range d.DNATs {
		m := fmt.Sprintf("dnat %s %s:%d %s:%d", r.Protocol, r.EIP, r.ExternalPort, r.InternalIP, r.InternalPort)
		mark := kstate.Mark(d, "dnat", r.EIP, r.Protocol, strconv.Itoa(r.ExternalPort), r.InternalIP, strconv.Itoa(r.InternalPort))
		plant(m, r.Protocol, topo.ClientIP, r.EIP, port+2, r.ExternalPort, r.InternalIP, topo.ClientIP, r.InternalPort, port+2, mark)
	}
	for _, r := range d.SNATs {
		p, err := netip.ParsePrefix(r.InternalCIDR)
		if err != nil {
			t.Fatal(err)
		}
		// The last address of the prefix that this rule, and not a FIP or a longer prefix, takes.
		src := netip.Addr{}
		for a := lastAddr(p); p.Contains(a) && !src.IsValid(); a = a.Prev() {
			if fipOf[a.String()] || own[a] || longerSNAT(d, a, p.Bits()) {
				continue
			}
			src = a
		}
		if src.IsValid() {
			plant("snat "+r.InternalCIDR+" "+r.EIP, "udp", src.String(), topo.InetIP, port+3, 8081, topo.InetIP, r.EIP, 8081, port+3,
				kstate.Mark(d, "snat", r.InternalCIDR))
		}
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	n := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	n |= uint32(1)<<(32-p.Bits()) - 1
	if p.Bits() < 31 {
		n-- // not the broadcast address
	}
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

// longerSNAT reports whether an SNAT rule of d with a prefix longer than bits contains a.
func longerSNAT(d *annotations.Desired, a netip.Addr, bits int) bool {
	for _, r := range d.SNATs {
		if p, err := netip.ParsePrefix(r.InternalCIDR); err == nil && p.Bits() > bits && p.Contains(a) {
			return true
		}
	}
	return false
}

func objectMeta(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }
