package kstate_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/test/kstate"
)

// Address plan: API values only, nothing is configured: EIPs in 203.0.113.0/24, internal
// addresses in 10.0.0.0/8 (the seed's 10.0.1.0/24 among them).

// natState is the nat table a kernel holds after the daemon applied rs: the built-in chains
// with vpcnat's hooks at their head, then every rendered chain.
func natState(rs *nat.Ruleset) *kstate.State {
	st := &kstate.State{Chains: []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}, NATRules: map[string][]string{}, Forwarding: true}
	for _, h := range nat.Hooks() {
		st.NATRules[h.Chain] = append(st.NATRules[h.Chain], h.Rule)
	}
	for _, c := range rs.Chains {
		st.Chains = append(st.Chains, c.Name)
		st.NATRules[c.Name] = slices.Clone(c.Rules)
	}
	return st
}

// natProblems are the differences Compare finds in the nat table (the State holds nothing
// else, so links, addresses and routes are all missing and not looked at).
func natProblems(st *kstate.State, d *annotations.Desired) kstate.Diff {
	var out kstate.Diff
	for _, p := range kstate.Compare(st, d) {
		if p.What == "chain" || p.What == "nat rule" {
			out = append(out, p)
		}
	}
	return out
}

// randomDesired is a gateway with up to n of each kind of rule: FIPs, port forwards on a few
// EIPs (both protocols), SNATs of every prefix length from /8 to /32 (some /16 groups shared,
// some inline), and subnet NICs for hairpin; duplicates and invalid entries now and then.
func randomDesired(r *rand.Rand, n int) *annotations.Desired {
	eip := func() string { return fmt.Sprintf("203.0.113.%d", 1+r.IntN(20)) }
	internal := func() string { return fmt.Sprintf("10.%d.%d.%d", r.IntN(3), r.IntN(4), 1+r.IntN(250)) }
	d := &annotations.Desired{External: annotations.ExternalNIC{IfName: "net1"}}
	for range r.IntN(n + 1) {
		d.FloatingIPs = append(d.FloatingIPs, annotations.FloatingIP{EIP: eip(), InternalIP: internal()})
	}
	for range r.IntN(3 * n) {
		d.DNATs = append(d.DNATs, annotations.DNAT{EIP: eip(), Protocol: []string{"tcp", "udp", "sctp"}[r.IntN(3)],
			ExternalPort: 1 + r.IntN(65535), InternalIP: internal(), InternalPort: 1 + r.IntN(65535)})
	}
	for range r.IntN(2 * n) {
		bits := 8 + r.IntN(25)
		cidr := fmt.Sprintf("%s/%d", internal(), bits)
		if r.IntN(10) == 0 {
			cidr = internal() // a bare address: a /32
		}
		d.SNATs = append(d.SNATs, annotations.SNAT{EIP: eip(), InternalCIDR: cidr})
	}
	for i := range r.IntN(4) {
		d.Subnets = append(d.Subnets, annotations.SubnetNIC{IfName: fmt.Sprintf("vpc-%d", r.IntN(3)), CIDR: fmt.Sprintf("10.%d.%d.0/24", i, r.IntN(4))})
	}
	if r.IntN(5) == 0 {
		d.FloatingIPs = append(d.FloatingIPs, annotations.FloatingIP{EIP: "2001:db8::1", InternalIP: internal()})
	}
	return d
}

// TestNATModelAgreesWithRenderer: for the seed and many random gateways, the kernel state the
// renderer's rules make is exactly what kstate's own model of the layout expects. (The model
// shares no code with pkg/nat; this is what keeps the two honest with each other.)
func TestNATModelAgreesWithRenderer(t *testing.T) {
	for _, d := range []*annotations.Desired{seedDesired(t), {}} {
		if diff := natProblems(natState(nat.Render(d)), d); !diff.Empty() {
			t.Errorf("renderer and model disagree on %q: %s", d.Gateway, diff)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		d := randomDesired(r, 1+i%40)
		if diff := natProblems(natState(nat.Render(d)), d); !diff.Empty() {
			t.Fatalf("random gateway %d: renderer and model disagree: %s\nrendered: %v", i, diff, nat.Render(d).Map())
		}
	}
}

// TestNATModelCatchesPlantedRendererBugs plants one renderer bug after another into the rules
// the kernel would hold (what a buggy pkg/nat would have made the daemon apply) and requires
// kstate to report each, naming the chain: a renderer bug cannot pass the crash, racing-flow and
// quick-edit tests that judge the kernel with kstate.
func TestNATModelCatchesPlantedRendererBugs(t *testing.T) {
	d := seedDesired(t)
	// A second SNAT of a longer prefix and a second port forward, so order matters.
	d.SNATs = append(d.SNATs, annotations.SNAT{EIP: d.FloatingIPs[0].EIP, InternalCIDR: "10.0.1.128/25"})
	d.DNATs = append(d.DNATs, annotations.DNAT{EIP: d.DNATs[0].EIP, Protocol: "udp", ExternalPort: 53, InternalIP: "10.0.1.10", InternalPort: 53})
	if diff := natProblems(natState(nat.Render(d)), d); !diff.Empty() {
		t.Fatalf("the correct rules already differ: %s", diff)
	}
	for _, c := range []struct {
		name  string
		plant func(m map[string][]string)
		chain string // named in the report
	}{
		{"a port forward to the wrong internal port", func(m map[string][]string) {
			c := "DNAT_EIP_" + d.DNATs[0].EIP
			m[c][0] = strings.Replace(m[c][0], ":80", ":8080", 1)
		}, "DNAT_EIP_" + d.DNATs[0].EIP},
		{"a FIP's outbound SNAT to another EIP", func(m map[string][]string) {
			m["EXCLUSIVE_SNAT"][0] = strings.Replace(m["EXCLUSIVE_SNAT"][0], d.FloatingIPs[0].EIP, d.DNATs[0].EIP, 1)
		}, "EXCLUSIVE_SNAT"},
		{"SNAT groups shortest prefix first", func(m map[string][]string) {
			slices.Reverse(m["SHARED_SNAT"])
		}, "SHARED_SNAT"},
		{"a lost port forward", func(m map[string][]string) {
			c := "DNAT_EIP_" + d.DNATs[0].EIP
			m[c] = m[c][1:]
		}, "DNAT_EIP_" + d.DNATs[0].EIP},
		{"hairpin on the external NIC", func(m map[string][]string) {
			m["HAIRPIN_SNAT"][0] = strings.Replace(m["HAIRPIN_SNAT"][0], "-o "+d.Subnets[0].IfName+" ", "-o net1 ", 1)
		}, "HAIRPIN_SNAT"},
		{"SNAT for every interface", func(m map[string][]string) {
			m["SNAT_FILTER"][2] = strings.Replace(m["SNAT_FILTER"][2], "-o net1 ", "", 1)
		}, "SNAT_FILTER"},
		{"port forwards of an EIP under another chain name", func(m map[string][]string) {
			old := "DNAT_EIP_" + d.DNATs[0].EIP
			m["DNAT_EIP_web"] = m[old]
			delete(m, old)
			m["SHARED_DNAT"][0] = strings.Replace(m["SHARED_DNAT"][0], old, "DNAT_EIP_web", 1)
		}, "DNAT_EIP_web"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rs := nat.Render(d)
			m := rs.Map()
			for k, v := range m {
				m[k] = slices.Clone(v)
			}
			c.plant(m)
			var planted nat.Ruleset
			for name, rules := range m {
				planted.Chains = append(planted.Chains, nat.Chain{Name: name, Rules: rules})
			}
			diff := natProblems(natState(&planted), d)
			if diff.Empty() {
				t.Fatalf("kstate found nothing wrong with the planted bug")
			}
			if !strings.Contains(diff.String(), c.chain) {
				t.Errorf("kstate's report does not name %s:\n%s", c.chain, diff)
			}
		})
	}
}
