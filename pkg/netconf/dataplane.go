package netconf

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/nft"
)

// dataplaneOf is the backend d asks for; iptables when it names none.
func dataplaneOf(d *annotations.Desired) string {
	if d.Dataplane == annotations.DataplaneNFTables {
		return annotations.DataplaneNFTables
	}
	return annotations.DataplaneIPTables
}

// natKnown reports whether the gateway remembers what the NAT backend d asks for holds, so a
// converge may trust memory instead of reading the kernel back.
func (g *Gateway) natKnown(d *annotations.Desired) bool {
	if g.dataplane != dataplaneOf(d) {
		return false
	}
	if g.dataplane == annotations.DataplaneNFTables {
		return g.nftLast != nil
	}
	return g.last != nil
}

// forgetNAT makes the next converge read the NAT state back (after any error).
func (g *Gateway) forgetNAT() { g.last, g.nftLast = nil, nil }

// syncDataplane is the NAT step of a converge, with the backend d asks for. full reads that
// backend's state back from the kernel (and repairs drift); otherwise it diffs against what was
// last applied. When the backend differs from the one of the last converge (a switch, or the
// first converge of this process, which does not know what ran before), the other backend's
// state is removed after the new one is in place, so no packet meets a gateway without NAT
// rules: while both are present they translate alike, and established flows keep their
// conntrack translation either way. commit records the applied state once the whole converge
// succeeded.
func (g *Gateway) syncDataplane(ctx context.Context, d *annotations.Desired, full bool) (stale []nat.Mapping, lines []string, commit func(), err error) {
	plane := dataplaneOf(d)
	switching := g.dataplane != plane
	if plane == annotations.DataplaneNFTables {
		// The builder of the last applied table edits it into d's; without one (a new Gateway,
		// or after any error) a new builder builds d's table whole.
		build := &nft.Builder{}
		if g.nftLast != nil && g.nftLast.build != nil {
			build = g.nftLast.build
		}
		var applied *nftApplied
		stale, lines, applied, g.ctScope, err = syncNFT(g.nft, build, build.Build(d), g.nftLast, full)
		if err != nil {
			return nil, lines, nil, err
		}
		if switching {
			more, err := removeIptablesNAT(ctx, g.ipt)
			lines = append(lines, more...)
			if err != nil {
				return stale, lines, nil, err
			}
		}
		return stale, lines, func() { g.nftLast, g.last, g.dataplane = applied, nil, plane }, nil
	}
	want := nat.Render(d)
	last := g.last
	if full {
		last = nil
	}
	stale, lines, err = syncNAT(ctx, g.ipt, want, last)
	if err != nil {
		return nil, lines, nil, err
	}
	if switching {
		deleted, err := g.nft.Delete()
		if err != nil && !nftUnsupported(err) {
			return stale, lines, nil, err
		}
		if deleted {
			lines = append(lines, "nftables: deleted table ip "+nft.TableName)
		}
		g.nft.Close() // an iptables gateway keeps no nf_tables socket open
	}
	g.ctScope = nil
	return stale, lines, func() { g.last, g.nftLast, g.dataplane = want, nil, plane }, nil
}

// nftApplied is the table last applied, and the netns's nf_tables generation at which the
// kernel was known to hold exactly it (0: not known). build built it (its last table): the next
// desired state's table is built from it, and diffed against it without walking the maps.
type nftApplied struct {
	table *nft.Table
	gen   uint32
	build *nft.Builder
	// marked: the last sweep of the whole conntrack table found every entry translated by a
	// mapping carrying the mapping's mark (or no entry at all), so the entries of a removed or
	// changed mapping can be deleted by its mark (see markScope). Entries made
	// before the table marked them (an upgrade, a switch from iptables) keep the clean-up on
	// dumps until a sweep no longer finds them.
	marked bool
}

// syncNFT applies want with at most one netlink batch: against last when not full, else against
// a read-back of the table. The kernel counts the commits of each netns (the nf_tables
// generation, bumped by one per committed transaction, ours or anyone's): when it is still the
// one at which last was known to be exact, nothing has been committed since and the read-back
// is skipped (a resync of 100 000 elements costs one round trip instead of a 1.5 s dump, whose
// cost is the kernel's: each dump chunk walks the set from its start). Any other commit in the
// netns, even to a foreign table, makes the next full converge read back.
func syncNFT(k nftTable, build *nft.Builder, want *nft.Table, last *nftApplied, full bool) (stale []nat.Mapping, changes []string, applied *nftApplied, scope *markScope, err error) {
	gen0, err := k.Generation()
	if err != nil {
		return nil, nil, nil, nil, err
	}
	marked := last != nil && last.marked
	var have *nft.Table
	var knownAt uint32 // generation at which have is exactly the kernel's; 0: not known
	switch {
	case last != nil && (!full || (last.gen != 0 && last.gen == gen0)):
		have = last.table
		if last.gen == gen0 {
			knownAt = gen0
		}
	default:
		if have, err = k.Read(); err != nil {
			return nil, nil, nil, nil, err
		}
		if gen, err := k.Generation(); err == nil && gen == gen0 {
			knownAt = gen0 // nothing was committed while the dump ran
		}
	}
	b := build.Diff(want, have)
	if b.Empty() {
		applied = &nftApplied{table: want, gen: knownAt, build: build, marked: marked}
		return nil, nil, applied, &markScope{applied: applied}, nil
	}
	if err := k.Apply(b); err != nil {
		return nil, nil, nil, nil, err
	}
	applied = &nftApplied{table: want, build: build, marked: marked}
	if gen1, err := k.Generation(); err == nil && knownAt != 0 && gen1 == nextGeneration(knownAt) {
		applied.gen = gen1 // our commit was the only one
	}
	for _, s := range b.Summary() {
		changes = append(changes, "nftables: "+s)
	}
	return b.Stale(have), changes, applied, newMarkScope(b, have, applied, k, build.MarkHeld, !full && marked), nil
}

// nextGeneration is the generation after gen: the kernel skips 0 when it wraps.
func nextGeneration(gen uint32) uint32 {
	if gen+1 == 0 {
		return 1
	}
	return gen + 1
}

// removeIptablesNAT removes every chain vpcnat owns in the nat table and its hooks in the
// kernel chains, in one iptables-restore transaction; foreign chains and rules stay. An owned
// chain a foreign rule still jumps to is emptied instead of deleted, as pkg/nat does.
func removeIptablesNAT(ctx context.Context, ipt iptables) ([]string, error) {
	save, err := ipt.SaveNAT(ctx)
	if errors.Is(err, exec.ErrNotFound) {
		return nil, nil // no iptables on this node: it cannot have left rules
	}
	if err != nil {
		return nil, fmt.Errorf("reading the nat table: %w", err)
	}
	have, err := nat.ParseSave(save)
	if err != nil {
		return nil, fmt.Errorf("parsing the nat table: %w", err)
	}
	// Our hooks are not foreign references: take them out before planning, and delete each copy.
	var hooks []nat.Hook
	for _, h := range nat.Hooks() {
		rules := have.Chains[h.Chain]
		for _, r := range rules {
			if r == h.Rule {
				hooks = append(hooks, h)
			}
		}
		have.Chains[h.Chain] = slices.DeleteFunc(slices.Clone(rules), func(r string) bool { return r == h.Rule })
	}
	p := nat.FullPlan(&nat.Ruleset{}, have)
	p.DeleteHooks = append(p.DeleteHooks, hooks...)
	if p.Empty() {
		return nil, nil
	}
	if err := ipt.Restore(ctx, p.RestoreInput()); err != nil {
		return nil, fmt.Errorf("removing the iptables nat rules: %w", err)
	}
	var lines []string
	for _, s := range p.Summary() {
		// Every copy of a hook goes, not only the duplicates FullPlan would remove.
		lines = append(lines, "iptables: "+strings.Replace(s, "delete duplicate hook", "delete hook", 1))
	}
	return lines, nil
}

// nftUnsupported: the kernel has no nf_tables netlink (a kernel built without it), so no
// nftables table can exist and the iptables backend has nothing to remove.
func nftUnsupported(err error) bool {
	return errors.Is(err, unix.EPROTONOSUPPORT) || errors.Is(err, unix.EAFNOSUPPORT)
}
