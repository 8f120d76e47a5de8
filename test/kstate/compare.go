package kstate

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// Problem kinds.
const (
	Missing   = "missing"   // desired, not in the kernel
	Duplicate = "duplicate" // in the kernel more often than desired
	Foreign   = "foreign"   // in the kernel, not desired
	Wrong     = "wrong"     // present but with a wrong attribute (MAC, kind, down, order, sysctl)
)

// Problem is one difference between the kernel and the desired state.
type Problem struct {
	Kind string // Missing, Duplicate, Foreign, Wrong
	What string // link, addr, route, rule, chain, nat rule, nft table/chain/rule/map/element/object, sysctl
	Item string // the object, in iproute2/iptables-save words
}

func (p Problem) String() string { return p.Kind + " " + p.What + ": " + p.Item }

// NAT reports whether the problem is in the NAT of either backend (the iptables nat table or
// the nftables table ip vpcnat).
func (p Problem) NAT() bool {
	return p.What == "chain" || p.What == "nat rule" || strings.HasPrefix(p.What, "nft ")
}

// Diff is every difference found; empty when the netns is exactly as desired.
type Diff []Problem

// Empty reports whether the kernel matched the desired state.
func (d Diff) Empty() bool { return len(d) == 0 }

// String lists the problems, one per line.
func (d Diff) String() string {
	if len(d) == 0 {
		return "no difference"
	}
	lines := make([]string, len(d))
	for i, p := range d {
		lines[i] = p.String()
	}
	return fmt.Sprintf("%d differences:\n  %s", len(d), strings.Join(lines, "\n  "))
}

// Count returns how many problems have the given kind ("" = all) and what ("" = any).
func (d Diff) Count(kind, what string) int {
	n := 0
	for _, p := range d {
		if (kind == "" || p.Kind == kind) && (what == "" || p.What == what) {
			n++
		}
	}
	return n
}

// Check dumps the netns at nsPath and compares it with d. The error is only for a failed dump.
func Check(nsPath string, d *annotations.Desired) (Diff, error) {
	st, err := Dump(nsPath)
	if err != nil {
		return nil, err
	}
	return Compare(st, d), nil
}

// Compare compares a dumped state with d:
//   - links: every managed link exists once, of the right kind, with the desired MAC, up; no
//     other link exists but lo and the primary CNI's (eth0 and primary attachments);
//   - addresses: each managed link holds exactly its desired IPv4 addresses (IPv6 link-local
//     ones aside, and nothing else of IPv6);
//   - routes: vpcnat's tables (100, 1000-1999) hold exactly the desired routes, each once; every
//     route in any other table is the kernel's own (protocol kernel) or on the primary CNI's
//     interfaces (eth0, primary attachments), and not duplicated;
//   - ip rules (IPv4): exactly the kernel's three defaults plus the desired ones, each once;
//   - nat table (iptables backend): exactly the built-in chains plus the modelled ones (no
//     foreign chain), each holding exactly its rules as a multiset (a duplicate is reported as
//     such), in order; and no nftables table ip vpcnat;
//   - nftables backend: the nat table holds nothing (the built-in chains empty), and table ip
//     vpcnat exactly the modelled chains, rules, maps and map elements;
//   - net.ipv4.ip_forward is 1, rp_filter 0 on "all" and every managed link, promote_secondaries
//     1 on every managed link.
func Compare(st *State, d *annotations.Desired) Diff {
	var own []netip.Addr
	e0 := Expect(d, nil)
	for _, a := range st.Addrs {
		if e0.Primary[a.Dev] || a.Dev == primaryIfName {
			if p, err := netip.ParsePrefix(a.Prefix); err == nil {
				own = append(own, p.Addr())
			}
		}
	}
	e := Expect(d, own)
	var diff Diff
	add := func(kind, what, item string) { diff = append(diff, Problem{Kind: kind, What: what, Item: item}) }

	// Links.
	seen := map[string]int{}
	for _, l := range st.Links {
		seen[l.Name]++
		want, managed := e.Links[l.Name]
		switch {
		case l.Name == "lo" || e.Primary[l.Name] || l.Name == primaryIfName:
		case !managed:
			add(Foreign, "link", l.Name+" ("+l.Kind+")")
		default:
			if l.Kind != want.Kind {
				add(Wrong, "link", fmt.Sprintf("%s is %q, want %q", l.Name, l.Kind, want.Kind))
			}
			if want.MAC != "" && !strings.EqualFold(l.MAC, want.MAC) {
				add(Wrong, "link", fmt.Sprintf("%s has MAC %s, want %s", l.Name, l.MAC, want.MAC))
			}
			if !l.Up {
				add(Wrong, "link", l.Name+" is down")
			}
		}
	}
	for _, name := range sortedKeys(e.Links) {
		if seen[name] == 0 {
			add(Missing, "link", name)
		}
	}

	// Addresses of managed links.
	have := map[string][]string{}
	for _, a := range st.Addrs {
		if _, managed := e.Links[a.Dev]; !managed {
			continue
		}
		if a.Family == "inet6" && strings.HasPrefix(strings.ToLower(a.Prefix), "fe80:") {
			continue
		}
		have[a.Dev] = append(have[a.Dev], a.Prefix)
	}
	for _, dev := range sortedKeys(e.Links) {
		multiset(e.Addrs[dev], have[dev], "addr", dev+" ", add)
	}

	// Routes.
	var owned []string
	counts := map[string]int{}
	for _, r := range st.Routes {
		if r.Family == "inet" && ownedTable(r.Table) {
			k := r.Key()
			if r.Type != "unicast" || (r.Protocol != "static" && r.Protocol != "boot") || r.PrefSrc != "" {
				k += fmt.Sprintf(" (type %s proto %s src %q)", r.Type, r.Protocol, r.PrefSrc)
			}
			owned = append(owned, k)
			continue
		}
		k := r.Family + " " + r.Key()
		counts[k]++
		if counts[k] == 2 {
			add(Duplicate, "route", k)
		}
		// Outside vpcnat's tables, a route on the primary CNI's interface (its default route in
		// a pod) is the primary CNI's, like the interface itself.
		if r.Protocol != "kernel" && r.Dev != primaryIfName && !e.Primary[r.Dev] {
			add(Foreign, "route", k+" proto "+r.Protocol)
		}
	}
	multiset(e.Routes, owned, "route", "", add)

	// Rules.
	var rules []string
	for _, r := range st.Rules {
		rules = append(rules, r.Key())
	}
	multiset(append(slices.Clone(defaultRules), e.Rules...), rules, "rule", "", add)

	// NAT.
	for _, c := range st.Chains {
		if _, ok := e.NAT[c]; !ok {
			add(Foreign, "chain", c)
		}
	}
	for _, c := range sortedKeys(e.NAT) {
		if !slices.Contains(st.Chains, c) {
			add(Missing, "chain", c)
			continue
		}
		if n := countOf(st.Chains, c); n > 1 {
			add(Duplicate, "chain", c)
		}
		before := len(diff)
		multiset(e.NAT[c], st.NATRules[c], "nat rule", "-A "+c+" ", add)
		if len(diff) == before && !slices.Equal(e.NAT[c], st.NATRules[c]) {
			add(Wrong, "nat rule", "chain "+c+" holds the right rules in the wrong order")
		}
	}
	for c, rules := range st.NATRules {
		if _, ok := e.NAT[c]; !ok && !slices.Contains(st.Chains, c) {
			for _, r := range rules {
				add(Foreign, "nat rule", "-A "+c+" "+r)
			}
		}
	}
	switch {
	case e.NFT == nil && st.NFT != nil:
		add(Foreign, "nft table", nftFamily+" "+nftTable)
	case e.NFT != nil && st.NFT == nil:
		add(Missing, "nft table", nftFamily+" "+nftTable)
	case e.NFT != nil:
		compareNFT(st.NFT, e.NFT, add)
	}
	if !st.Forwarding {
		add(Wrong, "sysctl", "net.ipv4.ip_forward is 0")
	}
	// Replies of policy-routed, NATed flows arrive where strict reverse-path filtering would drop
	// them; removing the first address of a network must keep the others.
	want := map[string]string{"net.ipv4.conf.all.rp_filter": "0"}
	for _, name := range sortedKeys(e.Links) {
		want["net.ipv4.conf."+name+".rp_filter"] = "0"
		want["net.ipv4.conf."+name+".promote_secondaries"] = "1"
	}
	for _, k := range sortedKeys(want) {
		if got, ok := st.Sysctls[k]; ok && got != want[k] {
			add(Wrong, "sysctl", fmt.Sprintf("%s is %s, want %s", k, got, want[k]))
		}
	}
	return diff
}

// multiset compares want and have as multisets and reports missing, duplicate and foreign items.
func multiset(want, have []string, what, pfx string, add func(kind, what, item string)) {
	w, h := map[string]int{}, map[string]int{}
	for _, x := range want {
		w[x]++
	}
	for _, x := range have {
		h[x]++
	}
	for _, x := range sortedKeys(w) {
		switch {
		case h[x] == 0:
			add(Missing, what, pfx+x)
		case h[x] > w[x]:
			add(Duplicate, what, fmt.Sprintf("%s%s (%d times)", pfx, x, h[x]))
		case h[x] < w[x]:
			add(Missing, what, fmt.Sprintf("%s%s (%d of %d)", pfx, x, h[x], w[x]))
		}
	}
	for _, x := range sortedKeys(h) {
		if w[x] == 0 {
			item := pfx + x
			if h[x] > 1 {
				item += fmt.Sprintf(" (%d times)", h[x])
			}
			add(Foreign, what, item)
		}
	}
}

func countOf(list []string, x string) int {
	n := 0
	for _, y := range list {
		if y == x {
			n++
		}
	}
	return n
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
