package nat

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// Mapping is one floating IP or port forward, as found in the rules. When one is removed or
// changed, its conntrack entries must go too: conntrack keeps translating established flows
// (and UDP "flows" that never end) with the old mapping, whatever the rules say now.
type Mapping struct {
	// Protocol is "tcp" or "udp"; "" for a floating IP, which maps every protocol.
	Protocol string
	EIP      string
	// Port is the external port; 0 for a floating IP.
	Port       int
	InternalIP string
	// InternalPort is 0 for a floating IP.
	InternalPort int
}

// Mappings extracts the mappings from the owned DNAT chains (EXCLUSIVE_DNAT and DNAT_EIP_*) of
// a Ruleset.Map() or a Table.Chains; a rule that is not one of ours is ignored. Sorted by EIP,
// protocol and port.
func Mappings(chains map[string][]string) []Mapping {
	var found []parsedMapping
	for _, text := range chains[ExclusiveDNAT] {
		r, err := ParseRule(text)
		if err != nil || r.Target != "DNAT" || !r.Dst.IsValid() || !r.Dst.IsSingleIP() || r.Proto != "" || r.ToPort != 0 {
			continue
		}
		found = append(found, parsedMapping{eip: r.Dst.Addr(), internal: r.ToAddr})
	}
	for name, rules := range chains {
		rest, ok := strings.CutPrefix(name, dnatEIPPrefix)
		if !ok || !Owned(name) {
			continue
		}
		eip := netip.MustParseAddr(rest) // Owned checked it is a canonical IPv4 address
		for _, text := range rules {
			r, err := ParseRule(text)
			if err != nil || r.Target != "DNAT" || r.DPort == 0 || r.ToPort == 0 {
				continue
			}
			found = append(found, parsedMapping{proto: r.Proto, eip: eip, port: r.DPort, internal: r.ToAddr, internalPort: r.ToPort})
		}
	}
	// Sort on parsed addresses: numeric order, and no parsing inside the comparison.
	slices.SortFunc(found, func(a, b parsedMapping) int {
		return cmp.Or(a.eip.Compare(b.eip), cmp.Compare(a.proto, b.proto), cmp.Compare(a.port, b.port),
			a.internal.Compare(b.internal), cmp.Compare(a.internalPort, b.internalPort))
	})
	found = slices.Compact(found)
	out := make([]Mapping, 0, len(found))
	for _, m := range found {
		out = append(out, Mapping{Protocol: m.proto, EIP: m.eip.String(), Port: m.port, InternalIP: m.internal.String(), InternalPort: m.internalPort})
	}
	return out
}

type parsedMapping struct {
	proto         string
	eip, internal netip.Addr
	port          int
	internalPort  int
}

// StaleMappings returns the mappings in before that are not, identically, in after: removed
// ones and the old side of changed ones (a changed internal port is stale too).
func StaleMappings(before, after map[string][]string) []Mapping {
	keep := map[Mapping]bool{}
	for _, m := range Mappings(after) {
		keep[m] = true
	}
	var stale []Mapping
	for _, m := range Mappings(before) {
		if !keep[m] {
			stale = append(stale, m)
		}
	}
	return stale
}
