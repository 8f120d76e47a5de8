package topo

import (
	"slices"
	"strings"
)

// Dump is a namespace's kernel state as text, for before/after comparisons: links, addresses,
// ip rules, routes of every table, the nat table and forwarding. What changes without anyone
// changing the state is left out: iptables-save's timestamps and packet counters, the order of
// ip rules of one priority (insertion order, no meaning), and the IPv6 duplicate address
// detection transition (see IgnoreIPv6DAD).
func (t *Topology) Dump(role string) (string, error) {
	var b strings.Builder
	for _, argv := range [][]string{
		{"ip", "-o", "link", "show"},
		{"ip", "-o", "addr", "show"},
		{"ip", "rule", "show"},
		{"ip", "route", "show", "table", "all"},
		{"iptables-save", "-t", "nat"},
		{"sysctl", "net.ipv4.ip_forward"},
	} {
		out, err := t.Exec(role, argv...)
		if err != nil {
			return "", err
		}
		lines := strings.Split(out, "\n")
		if argv[1] == "rule" {
			slices.Sort(lines)
		}
		for _, l := range lines {
			if strings.HasPrefix(l, "#") {
				continue
			}
			l, keep := IgnoreIPv6DAD(l)
			if !keep {
				continue
			}
			b.WriteString(stripCounters(l) + "\n")
		}
	}
	return b.String(), nil
}

// IgnoreIPv6DAD takes out of a dump line what the kernel's IPv6 duplicate address detection
// changes by itself, a second or two after a link comes up: the "tentative" flag of a
// link-local (fe80::/10) address, and the kernel's local and anycast routes for link-local
// addresses, which appear only once DAD is done. vpcnat sets no IPv6 link-local address and no
// such route, so nothing of its own state is hidden: the addresses themselves stay in the dump,
// as does every other address, flag and route. keep=false drops the line.
func IgnoreIPv6DAD(l string) (string, bool) {
	f := strings.Fields(l)
	if len(f) >= 2 && (f[0] == "local" || f[0] == "anycast") && strings.HasPrefix(f[1], "fe80:") &&
		strings.Contains(l, " table local ") && strings.Contains(l, " proto kernel ") {
		return "", false
	}
	if i := slices.Index(f, "inet6"); i >= 0 && i+1 < len(f) && strings.HasPrefix(f[i+1], "fe80:") {
		l = strings.Replace(l, " tentative", "", 1)
	}
	return l, true
}

// stripCounters drops the [packets:bytes] of an iptables-save chain line.
func stripCounters(l string) string {
	if strings.HasPrefix(l, ":") {
		if i := strings.LastIndex(l, " ["); i > 0 {
			return l[:i]
		}
	}
	return l
}
