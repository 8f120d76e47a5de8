package nat_test

import (
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"

	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/nat/nattest"
)

func TestIncrementalPlan10k(t *testing.T) {
	base := nat.BigDesired()
	last := nat.Render(base)
	if n := ruleCount(last); n < 10000 {
		t.Fatalf("big gateway renders %d rules, want at least 10 000", n)
	}
	if p := nat.IncrementalPlan(nat.Render(nat.BigDesired()), last); !p.Empty() {
		t.Fatalf("unchanged state planned %q", p.Summary())
	}

	for _, c := range []struct {
		name   string
		change func(d *annotations.Desired)
		write  []string
		del    []string
	}{
		{
			name:   "one forward's internal port",
			change: func(d *annotations.Desired) { d.DNATs[4321].InternalPort = 8080 },
			write:  []string{"DNAT_EIP_" + base.DNATs[4321].EIP},
		},
		{
			name:   "one SNAT's EIP",
			change: func(d *annotations.Desired) { d.SNATs[1234].EIP = "198.51.100.7" },
			write:  []string{"SNAT_32_10.4"},
		},
		{
			name: "a SNAT in a new /16",
			change: func(d *annotations.Desired) {
				d.SNATs = append(d.SNATs, annotations.SNAT{EIP: "198.51.100.7", InternalCIDR: "10.250.1.0/24"})
			},
			write: []string{nat.SharedSNAT, "SNAT_24_10.250"},
		},
		{
			name: "every forward of one EIP removed",
			change: func(d *annotations.Desired) {
				d.DNATs = slices.DeleteFunc(d.DNATs, func(r annotations.DNAT) bool { return r.EIP == "198.51.100.9" })
			},
			write: []string{nat.SharedDNAT},
			del:   []string{"DNAT_EIP_198.51.100.9"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := nat.BigDesired()
			c.change(d)
			p := nat.IncrementalPlan(nat.Render(d), last)
			if got := chainNames(p.Write); !slices.Equal(got, c.write) || !slices.Equal(p.Delete, c.del) {
				t.Fatalf("plan %q, want writes %q deletes %q", p.Summary(), c.write, c.del)
			}
			for _, w := range p.Write {
				if w.Name != nat.SharedSNAT && w.Name != nat.SharedDNAT && len(w.Rules) > 250 {
					t.Errorf("chain %s has %d rules: a one-rule change should rewrite a small chain", w.Name, len(w.Rules))
				}
			}
			if len(p.AddHooks)+len(p.DeleteHooks) != 0 {
				t.Errorf("incremental plan touches hooks: %q", p.Summary())
			}
			// The plan must take the kernel from last to exactly the new state.
			k := nattest.Applied(last)
			applyAndRecheck(t, nat.Render(d), k, p)
		})
	}
}

func ruleCount(r *nat.Ruleset) int {
	n := 0
	for _, c := range r.Chains {
		n += len(c.Rules)
	}
	return n
}

// TestConverges drives a fake kernel through random gateway changes the way the daemon does:
// incremental plans, a full plan after drift. Every transaction must pass the fake kernel's
// checks (no dangling jump, no deletion of a referenced chain), and afterwards the kernel must
// hold exactly the wanted rules, with foreign rules untouched.
func TestConverges(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	k := edited(t, nil)
	var last *nat.Ruleset
	for step := range 200 {
		want := nat.Render(randomDesired(rng))
		var p *nat.Plan
		if last == nil || step%10 == 0 {
			p = nat.FullPlan(want, k)
		} else {
			p = nat.IncrementalPlan(want, last)
		}
		applyAndRecheck(t, want, k, p)
		if t.Failed() {
			t.Fatalf("step %d: plan %q", step, p.Summary())
		}
		last = want
		if step%10 == 9 { // drift by hand: a rule lost, a hook duplicated
			for _, name := range slices.Sorted(maps.Keys(k.Chains)) {
				if strings.HasPrefix(name, "DNAT_EIP_") {
					k.Chains[name] = k.Chains[name][1:]
					break
				}
			}
			k.Chains["PREROUTING"] = append(k.Chains["PREROUTING"], "-j "+nat.DNATFilter)
		}
	}
}

// randomDesired picks a subset of a small pool of valid rules, so consecutive states share,
// add and drop EIP chains and SNAT groups.
func randomDesired(rng *rand.Rand) *annotations.Desired {
	d := &annotations.Desired{External: annotations.ExternalNIC{IfName: "net1"}}
	pick := func() bool { return rng.IntN(2) == 0 }
	if pick() {
		d.Subnets = append(d.Subnets, nat.Subnet("a", "eth0", "10.0.1.0/24", annotations.AttachPrimary))
	}
	if pick() {
		d.Subnets = append(d.Subnets, nat.Subnet("b", "eth1", "10.1.0.0/16", annotations.AttachBridge))
	}
	if pick() {
		d.FloatingIPs = append(d.FloatingIPs, annotations.FloatingIP{EIP: "198.51.100.10", InternalIP: "10.0.1.5"})
	}
	eips := []string{"198.51.100.11", "198.51.100.12", "198.51.100.13"}
	for _, eip := range eips {
		for _, port := range []int{22, 80, 443} {
			if rng.IntN(3) == 0 {
				d.DNATs = append(d.DNATs, annotations.DNAT{EIP: eip, Protocol: []string{"tcp", "udp"}[port%2], ExternalPort: port, InternalIP: "10.0.1.9", InternalPort: 1 + rng.IntN(2)})
			}
		}
	}
	for _, cidr := range []string{"10.0.1.7/32", "10.0.1.0/24", "10.1.2.0/24", "10.0.0.0/16", "10.2.0.0/16", "10.0.0.0/8", "0.0.0.0/0"} {
		if pick() {
			d.SNATs = append(d.SNATs, annotations.SNAT{EIP: eips[rng.IntN(len(eips))], InternalCIDR: cidr})
		}
	}
	return d
}
