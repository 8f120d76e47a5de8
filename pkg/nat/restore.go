package nat

import (
	"bufio"
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// targets are the target extensions a nat rule may name that are not chains.
var targets = map[string]bool{
	"ACCEPT": true, "DROP": true, "RETURN": true, "DNAT": true, "SNAT": true, "MASQUERADE": true,
	"REDIRECT": true, "NETMAP": true, "MARK": true, "CONNMARK": true, "LOG": true,
}

// Restore applies iptables-restore --noflush input for the nat table to t, checking what the
// kernel checks: declared chains are created or flushed, a jump needs an existing chain, -D needs
// an identical rule, -X needs an empty chain nobody jumps to, names fit MaxChainName. Like the
// kernel it is all or nothing: on error t is unchanged. Rule text is stored as given; that it is
// canonical is checked by this package's tests, not here. It is this package's fake of the
// kernel, so plans are tested by applying them rather than by inspecting them.
func (t *Table) Restore(input []byte) error {
	work := t.clone()
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
			err = work.restoreLine(line)
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

func (t *Table) restoreLine(line string) error {
	if strings.HasPrefix(line, ":") {
		name, policy, err := parseChainDecl(line)
		if err != nil {
			return err
		}
		return t.declare(name, policy)
	}
	cmd, rest, _ := strings.Cut(line, " ")
	chain, rule, _ := strings.Cut(rest, " ")
	if chain == "" {
		return fmt.Errorf("command %s without a chain", cmd)
	}
	rules, exists := t.Chains[chain]
	if !exists && IsBuiltin(chain) {
		exists = true // the nft backend creates built-in chains on first use
	}
	if !exists {
		return fmt.Errorf("chain %q does not exist", chain)
	}
	switch cmd {
	case "-A":
		if err := t.checkJump(rule); err != nil {
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
		if err := t.checkJump(rule); err != nil {
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
		return t.deleteChain(chain)
	default:
		return fmt.Errorf("command %q not supported", cmd)
	}
	return nil
}

func (t *Table) declare(name, policy string) error {
	if len(name) > MaxChainName {
		return fmt.Errorf("chain name %q longer than %d characters", name, MaxChainName)
	}
	if IsBuiltin(name) {
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

func (t *Table) checkJump(rule string) error {
	target := jumpTarget(rule)
	switch {
	case target == "" || targets[target]:
		return nil
	case IsBuiltin(target):
		return fmt.Errorf("jump to built-in chain %s", target)
	}
	if _, ok := t.Chains[target]; !ok {
		return fmt.Errorf("jump to missing chain %q", target)
	}
	return nil
}

func (t *Table) deleteChain(name string) error {
	if IsBuiltin(name) {
		return fmt.Errorf("cannot delete built-in chain %s", name)
	}
	if len(t.Chains[name]) > 0 {
		return fmt.Errorf("chain %s is not empty", name)
	}
	for from, rules := range t.Chains {
		for _, r := range rules {
			if jumpTarget(r) == name {
				return fmt.Errorf("chain %s is still referenced from %s (%q)", name, from, r)
			}
		}
	}
	delete(t.Chains, name)
	return nil
}
