package nat

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// Table is a parsed `iptables-save -t nat`: every chain, built-in ones included, with its rules
// as the text after "-A <chain> ". Foreign chains are kept so diffs can prove they are left alone
// and jumps into our chains from them can be seen.
type Table struct {
	Chains map[string][]string
	// Policies of the built-in chains ("ACCEPT"), as declared in the dump.
	Policies map[string]string
}

// NewTable returns the nat table of a fresh network namespace: the built-in chains, empty.
func NewTable() *Table {
	t := &Table{Chains: map[string][]string{}, Policies: map[string]string{}}
	for _, b := range builtinChains {
		t.Chains[b] = nil
		t.Policies[b] = "ACCEPT"
	}
	return t
}

// ParseSave parses iptables-save output. Only the nat table is read; other tables in the dump
// are skipped. An input without a nat table (nothing loaded yet) is an empty table, not an error.
func ParseSave(save []byte) (*Table, error) {
	t := &Table{Chains: map[string][]string{}, Policies: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	inNat := false
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
			continue
		case strings.HasPrefix(line, "*"):
			if inNat {
				return nil, fmt.Errorf("iptables-save line %d %q: table starts before COMMIT of nat", n, line)
			}
			inNat = line == "*nat"
			continue
		case !inNat:
			continue
		case line == "COMMIT":
			inNat = false
		case strings.HasPrefix(line, ":"):
			name, policy, err := parseChainDecl(line)
			if err != nil {
				return nil, fmt.Errorf("iptables-save line %d %q: %w", n, line, err)
			}
			if _, dup := t.Chains[name]; !dup {
				t.Chains[name] = nil
			}
			if policy != "-" {
				t.Policies[name] = policy
			}
		default:
			chain, rule, err := parseAppend(line)
			if err != nil {
				return nil, fmt.Errorf("iptables-save line %d %q: %w", n, line, err)
			}
			if _, ok := t.Chains[chain]; !ok {
				return nil, fmt.Errorf("iptables-save line %d %q: chain %q was not declared", n, line, chain)
			}
			t.Chains[chain] = append(t.Chains[chain], rule)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading iptables-save output: %w", err)
	}
	if inNat {
		return nil, fmt.Errorf("iptables-save output: nat table has no COMMIT (truncated?)")
	}
	return t, nil
}

// parseChainDecl parses ":NAME POLICY [packets:bytes]".
func parseChainDecl(line string) (name, policy string, err error) {
	f := strings.Fields(line[1:])
	if len(f) < 2 || len(f) > 3 || f[0] == "" {
		return "", "", fmt.Errorf("malformed chain declaration")
	}
	return f[0], f[1], nil
}

// parseAppend parses "[packets:bytes] -A CHAIN rule..." (counters appear with iptables-save -c).
func parseAppend(line string) (chain, rule string, err error) {
	if strings.HasPrefix(line, "[") {
		_, rest, ok := strings.Cut(line, "] ")
		if !ok {
			return "", "", fmt.Errorf("malformed counters")
		}
		line = rest
	}
	rest, ok := strings.CutPrefix(line, "-A ")
	if !ok {
		return "", "", fmt.Errorf("expected -A, a chain declaration or COMMIT")
	}
	chain, rule, ok = strings.Cut(rest, " ")
	if !ok || chain == "" || rule == "" {
		return "", "", fmt.Errorf("rule without a chain or a body")
	}
	return chain, rule, nil
}
