// Package nattest is test support for pkg/nat's users: a fake of the kernel's nat table
// (iptables-restore --noflush and iptables-save, checking what the kernel checks) and a packet
// tracer that walks the first packet of a flow through a table as the kernel would. Tests apply
// plans to the fake rather than inspect them, and trace packets through what the kernel would
// print back. Nothing here is linked into vpcnat's programs.
package nattest

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/vpcnat/vpcnat/pkg/nat"
)

// builtins are the nat table's built-in chains, in the order iptables-save prints them.
var builtins = []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}

// chainDecl parses a chain declaration of restore input, ":NAME POLICY [packets:bytes]".
func chainDecl(line string) (name, policy string, err error) {
	f := strings.Fields(line[1:])
	if len(f) < 2 || len(f) > 3 || f[0] == "" {
		return "", "", fmt.Errorf("malformed chain declaration")
	}
	return f[0], f[1], nil
}

// Applied returns the table the kernel holds after r was applied to a fresh namespace: the
// built-in chains with vpcnat's hooks at their head, and r's chains.
func Applied(r *nat.Ruleset) *nat.Table {
	t := nat.NewTable()
	for _, c := range r.Chains {
		t.Chains[c.Name] = slices.Clone(c.Rules)
	}
	for _, h := range nat.Hooks() {
		t.Chains[h.Chain] = append([]string{h.Rule}, t.Chains[h.Chain]...)
	}
	return t
}

// targets are the target extensions a nat rule may name that are not chains.
var targets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "DNAT": true, "SNAT": true, "MASQUERADE": true,
	"REDIRECT": true, "NETMAP": true, "MARK": true, "CONNMARK": true, "LOG": true,
}

// IsTarget reports whether name is a target extension (DNAT, MASQUERADE, ...) rather than a
// chain.
func IsTarget(name string) bool { return targets[name] }

// Restore applies iptables-restore --noflush input for the nat table to t, checking what the
// kernel checks: declared chains are created or flushed, a jump needs an existing chain, -D needs
// an identical rule, -X needs an empty chain nobody jumps to, names fit nat.MaxChainName. Like
// the kernel it is all or nothing: on error t is unchanged. Rule text is stored as given; that it
// is canonical is checked by pkg/nat's tests, not here.
func Restore(t *nat.Table, input []byte) error {
	work := Clone(t)
	sc := bufio.NewScanner(bytes.NewReader(input))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	inNat, committed := false, false
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var err error
		switch {
		case line == "*nat":
			if inNat {
				err = fmt.Errorf("nested table")
			}
			inNat = true
		case !inNat:
			err = fmt.Errorf("outside of *nat (this fake knows only the nat table)")
		case line == "COMMIT":
			inNat, committed = false, true
		default:
			err = restoreLine(work, line)
		}
		if err != nil {
			return fmt.Errorf("restore line %d %q: %w", n, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading restore input: %w", err)
	}
	if inNat || !committed {
		return fmt.Errorf("restore input: no COMMIT, nothing applied")
	}
	*t = *work
	return nil
}

func restoreLine(t *nat.Table, line string) error {
	if strings.HasPrefix(line, ":") {
		name, policy, err := chainDecl(line)
		if err != nil {
			return err
		}
		return declare(t, name, policy)
	}
	cmd, rest, _ := strings.Cut(line, " ")
	chain, rule, _ := strings.Cut(rest, " ")
	if chain == "" {
		return fmt.Errorf("command %s without a chain", cmd)
	}
	rules, exists := t.Chains[chain]
	if !exists && nat.IsBuiltin(chain) {
		exists = true // the nft backend creates built-in chains on first use
	}
	if !exists {
		return fmt.Errorf("chain %q does not exist", chain)
	}
	switch cmd {
	case "-A":
		if err := checkJump(t, rule); err != nil {
			return err
		}
		t.Chains[chain] = append(rules, rule)
	case "-I":
		pos := 1
		if p, body, ok := strings.Cut(rule, " "); ok {
			if n, err := strconv.Atoi(p); err == nil {
				pos, rule = n, body
			}
		}
		if pos < 1 || pos > len(rules)+1 {
			return fmt.Errorf("insert position %d out of range 1..%d", pos, len(rules)+1)
		}
		if err := checkJump(t, rule); err != nil {
			return err
		}
		t.Chains[chain] = slices.Insert(rules, pos-1, rule)
	case "-D":
		i := slices.Index(rules, rule)
		if i < 0 {
			return fmt.Errorf("no rule %q in chain %s to delete", rule, chain)
		}
		t.Chains[chain] = slices.Delete(rules, i, i+1)
	case "-X":
		return deleteChain(t, chain)
	default:
		return fmt.Errorf("command %q not supported", cmd)
	}
	return nil
}

func declare(t *nat.Table, name, policy string) error {
	if len(name) > nat.MaxChainName {
		return fmt.Errorf("chain name %q longer than %d characters", name, nat.MaxChainName)
	}
	if nat.IsBuiltin(name) {
		if policy != "ACCEPT" && policy != "DROP" {
			return fmt.Errorf("built-in chain %s needs a policy, not %q", name, policy)
		}
		// --noflush keeps a built-in chain's rules; only its policy is set.
		if _, ok := t.Chains[name]; !ok {
			t.Chains[name] = nil
		}
		t.Policies[name] = policy
		return nil
	}
	if policy != "-" {
		return fmt.Errorf("user chain %s cannot have policy %q", name, policy)
	}
	t.Chains[name] = nil // created, or flushed if it existed
	return nil
}

func checkJump(t *nat.Table, rule string) error {
	target := nat.JumpTarget(rule)
	switch {
	case target == "" || targets[target]:
		return nil
	case nat.IsBuiltin(target):
		return fmt.Errorf("jump to built-in chain %s", target)
	}
	if _, ok := t.Chains[target]; !ok {
		return fmt.Errorf("jump to missing chain %q", target)
	}
	return nil
}

func deleteChain(t *nat.Table, name string) error {
	if nat.IsBuiltin(name) {
		return fmt.Errorf("cannot delete built-in chain %s", name)
	}
	if len(t.Chains[name]) > 0 {
		return fmt.Errorf("chain %s is not empty", name)
	}
	for from, rules := range t.Chains {
		for _, r := range rules {
			if nat.JumpTarget(r) == name {
				return fmt.Errorf("chain %s is still referenced from %s (%q)", name, from, r)
			}
		}
	}
	delete(t.Chains, name)
	return nil
}

// Save prints the table the way iptables-save does (built-in chains first, then the others by
// name, then the rules chain by chain), so tests can round-trip it through nat.ParseSave (and a fake iptables hands it to the daemon).
func Save(t *nat.Table) []byte {
	var b bytes.Buffer
	b.WriteString("*nat\n")
	order := chainOrder(t)
	for _, name := range order {
		policy := "-"
		if nat.IsBuiltin(name) {
			policy = t.Policies[name]
			if policy == "" {
				policy = "ACCEPT"
			}
		}
		fmt.Fprintf(&b, ":%s %s [0:0]\n", name, policy)
	}
	for _, name := range order {
		for _, r := range t.Chains[name] {
			fmt.Fprintf(&b, "-A %s %s\n", name, r)
		}
	}
	b.WriteString("COMMIT\n")
	return b.Bytes()
}

func chainOrder(t *nat.Table) []string {
	var order []string
	for _, b := range builtins {
		if _, ok := t.Chains[b]; ok {
			order = append(order, b)
		}
	}
	var user []string
	for name := range t.Chains {
		if !nat.IsBuiltin(name) {
			user = append(user, name)
		}
	}
	slices.Sort(user)
	return append(order, user...)
}

// Clone returns a deep copy, so a transaction can be applied to it and dropped on error.
func Clone(t *nat.Table) *nat.Table {
	c := &nat.Table{Chains: make(map[string][]string, len(t.Chains)), Policies: make(map[string]string, len(t.Policies))}
	for k, v := range t.Chains {
		c.Chains[k] = slices.Clone(v)
	}
	for k, v := range t.Policies {
		c.Policies[k] = v
	}
	return c
}
