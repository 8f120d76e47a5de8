package netconf

import (
	"context"
	"fmt"
	"slices"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
)

// syncNAT applies want to the nat table with at most one iptables-restore transaction. With
// last == nil it diffs against the kernel (iptables-save), which repairs drift and re-checks our
// hooks in the kernel chains; otherwise against the last applied ruleset, which saves the
// read-back (the expensive part with thousands of rules). It returns the mappings the change
// removed, whose conntrack entries must go.
func syncNAT(ctx context.Context, ipt iptables, want, last *nat.Ruleset) (stale []nat.Mapping, changes []string, err error) {
	var plan *nat.Plan
	var before map[string][]string
	if last == nil {
		save, err := ipt.SaveNAT(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("reading the nat table: %w", err)
		}
		have, err := nat.ParseSave(save)
		if err != nil {
			return nil, nil, fmt.Errorf("parsing the nat table: %w", err)
		}
		plan, before = nat.FullPlan(want, have), have.Chains
	} else {
		plan, before = nat.IncrementalPlan(want, last), last.Map()
	}
	if plan.Empty() {
		return nil, nil, nil // nothing changed, so no mapping went stale
	}
	if err := ipt.Restore(ctx, plan.RestoreInput()); err != nil {
		return nil, nil, fmt.Errorf("applying nat rules: %w", err)
	}
	for _, s := range plan.Summary() {
		changes = append(changes, "nat: "+s)
	}
	return nat.StaleMappings(changedChains(before, want.Map())), changes, nil
}

// changedChains returns only the chains that differ between before and after. Parsing every
// rule for its mapping costs ~10 ms per 10 000 rules, and a one-rule change touches one chain.
// The result is the same as with all chains: a mapping is found in exactly one chain, fixed by
// its kind and EIP (EXCLUSIVE_DNAT for a FIP, DNAT_EIP_<eip> for a port forward), so a mapping
// of an unchanged chain is in after identically and never stale.
func changedChains(before, after map[string][]string) (b, a map[string][]string) {
	b, a = map[string][]string{}, map[string][]string{}
	for name, rules := range before {
		if other, ok := after[name]; !ok || !slices.Equal(rules, other) {
			b[name] = rules
		}
	}
	for name, rules := range after {
		if other, ok := before[name]; !ok || !slices.Equal(rules, other) {
			a[name] = rules
		}
	}
	return b, a
}

// stillStale drops from pending the mappings d provides again: their conntrack entries
// are valid once more (a mapping removed by a failed converge and restored by the next one).
// The mappings are the same whichever backend holds them.
func stillStale(pending []nat.Mapping, d *annotations.Desired) []nat.Mapping {
	if len(pending) == 0 {
		return nil
	}
	live := map[nat.Mapping]bool{}
	for _, m := range nat.Mappings(nat.Render(d).Map()) {
		live[m] = true
	}
	var out []nat.Mapping
	for _, m := range pending {
		if !live[m] {
			out = append(out, m)
		}
	}
	return out
}
