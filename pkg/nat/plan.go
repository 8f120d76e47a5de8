package nat

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Plan is one iptables-restore transaction.
type Plan struct {
	// Write lists the chains to (re)write completely, in the wanted order.
	Write []Chain
	// Delete lists owned chains to remove, sorted.
	Delete []string
	// AddHooks are jumps from kernel chains to insert at position 1; DeleteHooks are surplus
	// copies of them to remove (one entry per copy). Only FullPlan fills these.
	AddHooks, DeleteHooks []Hook
}

// FullPlan diffs the wanted rules against a kernel read-back (nil: a fresh table). Only chains
// that differ are written, owned chains not wanted are deleted, every hook ends up present
// exactly once, and foreign chains and rules never appear in the plan.
func FullPlan(want *Ruleset, have *Table) *Plan {
	if have == nil {
		have = NewTable()
	}
	p := diff(want, have.Chains, foreignTargets(have.Chains))
	wanted := want.Map()
	for _, h := range Hooks() {
		target := JumpTarget(h.Rule)
		if _, ok := wanted[target]; !ok {
			continue // a hook into a chain we are not writing would fail the whole restore
		}
		n := 0
		for _, r := range have.Chains[h.Chain] {
			if r == h.Rule {
				n++
			}
		}
		if n == 0 {
			p.AddHooks = append(p.AddHooks, h)
		}
		for ; n > 1; n-- {
			p.DeleteHooks = append(p.DeleteHooks, h)
		}
	}
	return p
}

// IncrementalPlan diffs the wanted rules against what was last applied (nil: nothing), without
// a read-back and without hook checks, so a one-rule change costs one small chain. It relies on
// the kernel still matching last; the caller falls back to FullPlan after any failure.
func IncrementalPlan(want, last *Ruleset) *Plan {
	var lastMap map[string][]string
	if last != nil {
		lastMap = last.Map()
	}
	return diff(want, lastMap, nil)
}

// diff compares wanted chains with old ones. foreign holds the owned chains that foreign rules
// jump to: those cannot be deleted (the kernel refuses to delete a referenced chain and the whole
// transaction would fail), so they are emptied instead and left in place.
func diff(want *Ruleset, old map[string][]string, foreign map[string]bool) *Plan {
	p := &Plan{}
	wanted := make(map[string][]string, len(want.Chains))
	written := map[string]bool{}
	for _, c := range want.Chains {
		wanted[c.Name] = c.Rules
		if cur, ok := old[c.Name]; !ok || !slices.Equal(cur, c.Rules) {
			p.Write = append(p.Write, c)
			written[c.Name] = true
		}
	}
	deleted := map[string]bool{}
	for name, rules := range old {
		if _, ok := wanted[name]; ok || !Owned(name) {
			continue
		}
		if foreign[name] {
			if len(rules) > 0 {
				p.Write = append(p.Write, Chain{Name: name})
				written[name] = true
			}
			continue
		}
		p.Delete = append(p.Delete, name)
		deleted[name] = true
	}
	slices.Sort(p.Delete)
	// A deleted chain must not be referenced once the transaction ends: every owned chain that
	// jumped to it is rewritten. A consistent Ruleset already forces this (the referrer's wanted
	// rules no longer jump there, so it differs); this makes it a guarantee of the plan rather
	// than of the caller's input.
	var extra []string
	for name, rules := range old {
		if len(deleted) == 0 || written[name] || deleted[name] || !Owned(name) {
			continue
		}
		if slices.ContainsFunc(rules, func(r string) bool { return deleted[JumpTarget(r)] }) {
			extra = append(extra, name)
		}
	}
	slices.Sort(extra)
	for _, name := range extra {
		p.Write = append(p.Write, Chain{Name: name, Rules: wanted[name]})
	}
	return p
}

// foreignTargets returns the owned chains that rules of foreign (or built-in) chains jump to.
func foreignTargets(chains map[string][]string) map[string]bool {
	refs := map[string]bool{}
	for name, rules := range chains {
		if Owned(name) {
			continue
		}
		for _, r := range rules {
			if t := JumpTarget(r); Owned(t) {
				refs[t] = true
			}
		}
	}
	return refs
}

// JumpTarget returns the chain or target after -j/-g in a rule, "" if none. iptables-save puts
// the target last (only its own options follow, none of which contain "-j "), so the last
// occurrence is the one; this runs over every rule of a full read-back, hence no Fields.
func JumpTarget(rule string) string {
	i := max(lastOption(rule, "-j "), lastOption(rule, "-g "))
	if i < 0 {
		return ""
	}
	t := rule[i+3:]
	if sp := strings.IndexByte(t, ' '); sp >= 0 {
		t = t[:sp]
	}
	return t
}

// lastOption returns the index of the last opt in rule that starts a word, -1 if none.
func lastOption(rule, opt string) int {
	for end := len(rule); ; {
		i := strings.LastIndex(rule[:end], opt)
		if i <= 0 || rule[i-1] == ' ' {
			return i
		}
		end = i
	}
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool {
	return len(p.Write) == 0 && len(p.Delete) == 0 && len(p.AddHooks) == 0 && len(p.DeleteHooks) == 0
}

// RestoreInput renders the plan as input for `iptables-restore --noflush`; the caller skips
// the exec when the plan is Empty. With --noflush, ":NAME - [0:0]" creates the chain or flushes
// it, and the nft backend commits the whole "*nat ... COMMIT" block as one batch, so no chain is
// ever seen empty or half-written. Deleted chains are declared too: flushing them first drops
// their own jumps, so the final "-X" lines succeed in any order.
func (p *Plan) RestoreInput() []byte {
	size := 16
	for _, c := range p.Write {
		size += 2 * (len(c.Name) + 16)
		for _, r := range c.Rules {
			size += len(c.Name) + len(r) + 5
		}
	}
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString("*nat\n")
	for _, c := range p.Write {
		b.WriteString(":" + c.Name + " - [0:0]\n")
	}
	for _, name := range p.Delete {
		b.WriteString(":" + name + " - [0:0]\n")
	}
	for _, c := range p.Write {
		for _, r := range c.Rules {
			b.WriteString("-A " + c.Name + " " + r + "\n")
		}
	}
	for _, h := range p.AddHooks {
		b.WriteString("-I " + h.Chain + " 1 " + h.Rule + "\n")
	}
	for _, h := range p.DeleteHooks {
		b.WriteString("-D " + h.Chain + " " + h.Rule + "\n")
	}
	for _, name := range p.Delete {
		b.WriteString("-X " + name + "\n")
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

// Summary describes the plan, one line per change, for logs and events.
func (p *Plan) Summary() []string {
	var out []string
	for _, c := range p.Write {
		out = append(out, "write chain "+c.Name+" ("+strconv.Itoa(len(c.Rules))+" rules)")
	}
	for _, name := range p.Delete {
		out = append(out, "delete chain "+name)
	}
	for _, h := range p.AddHooks {
		out = append(out, fmt.Sprintf("add hook %s %s", h.Chain, h.Rule))
	}
	for _, h := range p.DeleteHooks {
		out = append(out, fmt.Sprintf("delete duplicate hook %s %s", h.Chain, h.Rule))
	}
	return out
}
