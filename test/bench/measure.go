package main

import (
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/topo"
)

// mix is the shape of a generated spec.
type mix struct{ eips, fips, snats, dnats int }

// mixFor spreads n rules over 200 EIPs: 10 % SNAT, 10 % FIP (at most 40), the rest DNAT. The
// first DNAT is always the probe 192.168.0.112:8888/tcp -> 10.0.1.10:80 (pod2).
func mixFor(n int) mix {
	m := mix{eips: 200, fips: min(n/10, 40), snats: n / 10}
	m.dnats = n - m.fips - m.snats
	return m
}

// spec generates the seed gateway with m's rules.
func spec(m mix) (plan.Inputs, error) {
	in, err := plan.LoadFile("examples/seed.yaml")
	if err != nil {
		return in, err
	}
	in.Config.NIC = "eth1"
	g := &in.Gateway.Spec
	g.Eips, g.FloatingIPRules, g.DnatRules, g.SnatRules = nil, nil, nil, nil
	eips := []string{"192.168.0.112"} // the probe's
	for i := 1; len(eips) < m.eips; i++ {
		if i == 50 || i == 112 { // the client's address; the probe's, already there
			continue
		}
		eips = append(eips, fmt.Sprintf("192.168.0.%d", i))
	}
	for _, e := range eips {
		g.Eips = append(g.Eips, v1.Eip{EipCIDR: e + "/24", Gateway: topo.RouterIP})
	}
	// FIPs on the first EIPs that are not the probe's.
	free := make([]string, 0, len(eips))
	for _, e := range eips {
		if e == "192.168.0.112" {
			continue
		}
		if len(g.FloatingIPRules) < m.fips {
			g.FloatingIPRules = append(g.FloatingIPRules, v1.FloatingIPRule{Eip: e, InternalIP: fmt.Sprintf("10.0.1.%d", 150+len(g.FloatingIPRules))})
			continue
		}
		free = append(free, e)
	}
	free = append(free, "192.168.0.112")
	if m.dnats > 0 {
		g.DnatRules = append(g.DnatRules, dnat("192.168.0.112", 8888, topo.Pod2IP, 80))
	}
	for k := 1; k < m.dnats; k++ {
		g.DnatRules = append(g.DnatRules, dnat(free[k%len(free)], int32(10000+k/len(free)), fmt.Sprintf("10.0.1.%d", 2+k%100), 80))
	}
	for i := range m.snats {
		cidr := "10.0.1.0/24"
		if i > 0 {
			cidr = fmt.Sprintf("10.%d.%d.0/24", 1+i/256, i%256)
		}
		g.SnatRules = append(g.SnatRules, v1.SnatRule{Eip: free[i%len(free)], InternalCIDR: cidr})
	}
	return in, nil
}

func dnat(eip string, port int32, ip string, iport int32) v1.DnatRule {
	return v1.DnatRule{Eip: eip, ExternalPort: intstr.FromInt32(port), Protocol: "tcp", InternalIP: ip, InternalPort: intstr.FromInt32(iport)}
}

// converge runs one converge from the simulated node, timing only the daemon's own path: parse
// and validate the desired annotation, then converge.
func converge(t *topo.Topology, gw *netconf.Gateway, in plan.Inputs, full bool) (time.Duration, *netconf.Report, error) {
	_, d, errs := plan.Build(in)
	if len(errs) > 0 {
		return 0, nil, fmt.Errorf("generated spec invalid: %w", errs.ToAggregate())
	}
	doc, err := annotations.EncodeDesired(d)
	if err != nil {
		return 0, nil, err
	}
	var rep *netconf.Report
	var took time.Duration
	err = t.Do(topo.Node, func() error {
		start := time.Now()
		d, err := annotations.ParseDesired(doc)
		if err != nil {
			return err
		}
		rep, err = gw.Converge(context.Background(), d, full)
		took = time.Since(start)
		return err
	})
	return took, rep, err
}

func (b bench) measure(n int, baseline bool) (result, error) {
	r := result{n: n}
	t, err := newTopology()
	if err != nil {
		return r, err
	}
	defer t.Close()
	m := mixFor(n)
	in, err := spec(m)
	if err != nil {
		return r, err
	}
	_, d, errs := plan.Build(in)
	if len(errs) > 0 {
		return r, errs.ToAggregate()
	}
	rs := nat.Render(d)
	r.rules, r.eips, r.chains = len(d.FloatingIPs)+len(d.DNATs)+len(d.SNATs), len(d.EIPs), len(rs.Chains)

	gw := netconf.NewGateway(t.Path(topo.Gateway))
	if r.first, _, err = converge(t, gw, in, true); err != nil {
		return r, fmt.Errorf("first converge of %d rules: %w", n, err)
	}
	var rep *netconf.Report
	if r.resync, rep, err = converge(t, gw, in, true); err != nil {
		return r, err
	} else if len(rep.Changes) != 0 {
		return r, fmt.Errorf("in-sync resync of %d rules made changes: %v", n, rep.Changes)
	}
	if r.dnatChange, err = b.oneRuleChanges(t, gw, in, func(g *v1.VpcNatGatewaySpec, i int) bool {
		if len(g.DnatRules) < 2 {
			return false
		}
		g.DnatRules[len(g.DnatRules)/2].InternalPort = intstr.FromInt32(int32(1000 + i))
		return true
	}); err != nil {
		return r, err
	}
	if r.snatChange, err = b.oneRuleChanges(t, gw, in, func(g *v1.VpcNatGatewaySpec, i int) bool {
		if len(g.SnatRules) < 2 {
			return false
		}
		g.SnatRules[len(g.SnatRules)/2].Eip = g.SnatRules[(len(g.SnatRules)/2+1+i%2)%len(g.SnatRules)].Eip
		return true
	}); err != nil {
		return r, err
	}
	if r.connRate, err = b.connRate(t); err != nil {
		return r, err
	}
	if baseline {
		if r.baseline, err = perRuleBaseline(t, rs); err != nil {
			return r, err
		}
	}
	return r, nil
}

// oneRuleChanges applies b.changes successive one-rule edits on the fast path and returns the
// median time.
func (b bench) oneRuleChanges(t *topo.Topology, gw *netconf.Gateway, in plan.Inputs, edit func(*v1.VpcNatGatewaySpec, int) bool) (time.Duration, error) {
	in.Gateway = in.Gateway.DeepCopy()
	var times []time.Duration
	for i := range b.changes {
		if !edit(&in.Gateway.Spec, i) {
			return 0, nil
		}
		took, rep, err := converge(t, gw, in, false)
		if err != nil {
			return 0, err
		}
		if len(rep.Changes) == 0 {
			return 0, fmt.Errorf("one-rule change %d changed nothing", i)
		}
		times = append(times, took)
	}
	return median(times), nil
}

// connRate opens new TCP connections from the outside client through the probe DNAT to pod2
// for b.connTime and returns connections per second.
func (b bench) connRate(t *topo.Topology) (float64, error) {
	srv, err := t.Listen(topo.Pod2, "tcp", topo.Pod2IP+":80")
	if err != nil {
		return 0, err
	}
	defer srv.Close()
	return t.ConnRate(topo.Client, "192.168.0.112:8888", b.connTime)
}

// perRuleBaseline applies the same rules the way Kube-OVN's nat-gateway.sh does, in a fresh
// namespace: for each rule an `iptables-save` (the script greps it to skip rules that exist)
// and one `iptables -A`; one `iptables -N` per chain.
func perRuleBaseline(t *topo.Topology, rs *nat.Ruleset) (time.Duration, error) {
	if err := t.AddNS("baseline"); err != nil {
		return 0, err
	}
	start := time.Now()
	err := t.Do("baseline", func() error {
		runtime.LockOSThread() // exec must fork from the thread that is in the namespace
		ipt := func(args ...string) error {
			if out, err := exec.Command("iptables", append([]string{"-t", "nat"}, args...)...).CombinedOutput(); err != nil {
				return fmt.Errorf("iptables %s: %w: %s", strings.Join(args, " "), err, out)
			}
			return nil
		}
		for _, c := range rs.Chains {
			if err := ipt("-N", c.Name); err != nil {
				return err
			}
		}
		for _, c := range rs.Chains {
			for _, rule := range c.Rules {
				if out, err := exec.Command("iptables-save", "-t", "nat").CombinedOutput(); err != nil {
					return fmt.Errorf("iptables-save: %w: %s", err, out)
				}
				if err := ipt(append([]string{"-A", c.Name}, strings.Fields(rule)...)...); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return time.Since(start), err
}

// kubeOVNSpec converges the spec Kube-OVN's script needs about 6 minutes for here.
func (b bench) kubeOVNSpec() (time.Duration, error) {
	t, err := newTopology()
	if err != nil {
		return 0, err
	}
	defer t.Close()
	in, err := spec(mix{eips: 100, fips: 50, snats: 20, dnats: 1000})
	if err != nil {
		return 0, err
	}
	took, _, err := converge(t, netconf.NewGateway(t.Path(topo.Gateway)), in, true)
	return took, err
}
