package soak

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

// This file compares one gateway's network namespace with the test's own expectation
// (model_test.go's expected), reading the kernel with the usual tools: iptables-save -t nat,
// ip addr, ip route, ip rule, sysctl, conntrack. It is deliberately independent of pkg/nat and
// pkg/netconf: it knows the chain layout of the README's data-plane section and nothing of how
// the daemon computes it. Each difference is one line of the returned list.

// soakDataplane is the NAT backend the churn's ConfigMap names ("": the key left out, the
// default). With nftables the NAT is judged by test/kstate's model of the nftables table (the
// iptables nat table must then hold nothing), not by compareNAT's model of the iptables chains.
var soakDataplane = flag.String("soak.dataplane", os.Getenv("VPCNAT_SOAK_DATAPLANE"),
	"the churn's ConfigMap dataplane: nftables or iptables (default: the ConfigMap's default)")

// churnDataplane is the backend the churn's gateways run.
func churnDataplane() string {
	if *soakDataplane == "" {
		return plan.DefaultDataplane
	}
	return *soakDataplane
}

// natRule is one rule of iptables-save: its chain and its options.
type natRule struct {
	chain string
	line  string
	opt   map[string]string
}

func parseNAT(save string) (chains []string, rules []natRule) {
	for _, l := range strings.Split(save, "\n") {
		switch {
		case strings.HasPrefix(l, ":"):
			chains = append(chains, strings.Fields(l[1:])[0])
		case strings.HasPrefix(l, "-A "):
			f := strings.Fields(l)
			r := natRule{chain: f[1], line: l, opt: map[string]string{}}
			for i := 2; i < len(f); i++ {
				if strings.HasPrefix(f[i], "-") && i+1 < len(f) && !strings.HasPrefix(f[i+1], "-") {
					r.opt[f[i]] = f[i+1]
					i++
				} else {
					r.opt[f[i]] = ""
				}
			}
			rules = append(rules, r)
		}
	}
	return chains, rules
}

// fixedChains are the daemon's chains of the README; DNAT_EIP_* and SNAT_* come and go.
var fixedChains = []string{"DNAT_FILTER", "EXCLUSIVE_DNAT", "SHARED_DNAT", "SNAT_FILTER", "HAIRPIN_SNAT", "EXCLUSIVE_SNAT", "SHARED_SNAT"}

var kernelChains = []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}

func bare(cidr string) string { return strings.TrimSuffix(cidr, "/32") }

// diffSet lists what is missing from got and what got has in excess, for one kind of thing.
func diffSet[K comparable, V comparable](what string, want, got map[K]V) []string {
	var out []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("%s %v -> %v: missing", what, k, v))
		} else if g != v {
			out = append(out, fmt.Sprintf("%s %v: want -> %v, kernel has -> %v", what, k, v, g))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("%s %v -> %v: not in the spec (stale)", what, k, v))
		}
	}
	slices.Sort(out)
	return out
}

// compareNAT diffs the nat table against the expectation.
func compareNAT(save string, e *expected, subnetIf string) []string {
	var diffs []string
	chains, rules := parseNAT(save)
	byChain := map[string][]natRule{}
	seenLine := map[string]int{}
	for _, r := range rules {
		byChain[r.chain] = append(byChain[r.chain], r)
		seenLine[r.line]++
	}
	for l, n := range seenLine {
		if n > 1 {
			diffs = append(diffs, fmt.Sprintf("nat: rule %q appears %d times", l, n))
		}
	}
	for _, c := range chains {
		if !slices.Contains(fixedChains, c) && !slices.Contains(kernelChains, c) &&
			!strings.HasPrefix(c, "DNAT_EIP_") && !strings.HasPrefix(c, "SNAT_") {
			diffs = append(diffs, "nat: foreign chain "+c)
		}
	}
	for _, c := range fixedChains {
		if !slices.Contains(chains, c) {
			diffs = append(diffs, "nat: chain "+c+" missing")
		}
	}
	// Hooks and the fixed chains' dispatch rules, exactly.
	want := map[string][]string{
		"PREROUTING":  {"-A PREROUTING -j DNAT_FILTER"},
		"POSTROUTING": {"-A POSTROUTING -j SNAT_FILTER"},
		"INPUT":       nil, "OUTPUT": nil,
		"DNAT_FILTER":  {"-A DNAT_FILTER -j EXCLUSIVE_DNAT", "-A DNAT_FILTER -j SHARED_DNAT"},
		"SNAT_FILTER":  {"-A SNAT_FILTER -j HAIRPIN_SNAT", "-A SNAT_FILTER -o net1 -j EXCLUSIVE_SNAT", "-A SNAT_FILTER -o net1 -j SHARED_SNAT"},
		"HAIRPIN_SNAT": {fmt.Sprintf("-A HAIRPIN_SNAT -s %s -o %s -m conntrack --ctstate DNAT -j MASQUERADE", e.subnet, subnetIf)},
	}
	for c, lines := range want {
		var got []string
		for _, r := range byChain[c] {
			got = append(got, r.line)
		}
		if !slices.Equal(got, lines) {
			diffs = append(diffs, fmt.Sprintf("nat: chain %s holds %q, want %q", c, got, lines))
		}
	}
	// FIPs: both halves.
	fipIn, fipOut := map[string]string{}, map[string]string{}
	for _, r := range byChain["EXCLUSIVE_DNAT"] {
		if r.opt["-j"] != "DNAT" {
			diffs = append(diffs, "nat: unexpected rule "+r.line)
			continue
		}
		fipIn[bare(r.opt["-d"])] = r.opt["--to-destination"]
	}
	for _, r := range byChain["EXCLUSIVE_SNAT"] {
		if r.opt["-j"] != "SNAT" {
			diffs = append(diffs, "nat: unexpected rule "+r.line)
			continue
		}
		fipOut[r.opt["--to-source"]] = bare(r.opt["-s"])
	}
	diffs = append(diffs, diffSet("fip (DNAT half)", e.fips, fipIn)...)
	diffs = append(diffs, diffSet("fip (SNAT half)", e.fips, fipOut)...)
	// DNATs: only those reached from SHARED_DNAT count.
	dnats := map[dnatKey]target{}
	jumped := map[string]bool{}
	for _, r := range byChain["SHARED_DNAT"] {
		eip := bare(r.opt["-d"])
		if r.opt["-j"] != "DNAT_EIP_"+eip {
			diffs = append(diffs, "nat: unexpected rule "+r.line)
			continue
		}
		jumped[r.opt["-j"]] = true
		for _, d := range byChain[r.opt["-j"]] {
			port, _ := strconv.Atoi(d.opt["--dport"])
			to := d.opt["--to-destination"]
			ip, p, _ := strings.Cut(to, ":")
			tp, _ := strconv.Atoi(p)
			if d.opt["-j"] != "DNAT" || port == 0 || tp == 0 {
				diffs = append(diffs, "nat: unexpected rule "+d.line)
				continue
			}
			dnats[dnatKey{eip, d.opt["-p"], port}] = target{ip, tp}
		}
	}
	diffs = append(diffs, diffSet("dnat", e.dnats, dnats)...)
	// SNATs: SHARED_SNAT's own SNAT rules and those of the SNAT_* chains it jumps to.
	snats := map[string]string{}
	addSNAT := func(r natRule) {
		src := r.opt["-s"]
		if src == "" {
			src = "0.0.0.0/0"
		}
		if _, dup := snats[src]; dup {
			diffs = append(diffs, "nat: second SNAT for "+src+": "+r.line)
		}
		snats[canonCIDR(src)] = r.opt["--to-source"]
	}
	for _, r := range byChain["SHARED_SNAT"] {
		switch j := r.opt["-j"]; {
		case j == "SNAT":
			addSNAT(r)
		case strings.HasPrefix(j, "SNAT_"):
			if jumped[j] {
				continue // one jump per /16 the chain's prefixes fall in
			}
			jumped[j] = true
			for _, s := range byChain[j] {
				if s.opt["-j"] != "SNAT" {
					diffs = append(diffs, "nat: unexpected rule "+s.line)
					continue
				}
				addSNAT(s)
			}
		default:
			diffs = append(diffs, "nat: unexpected rule "+r.line)
		}
	}
	diffs = append(diffs, diffSet("snat", e.snats, snats)...)
	for _, c := range chains {
		if (strings.HasPrefix(c, "DNAT_EIP_") || strings.HasPrefix(c, "SNAT_")) && !slices.Contains(fixedChains, c) && !jumped[c] {
			diffs = append(diffs, fmt.Sprintf("nat: chain %s (%d rules) is reached from nowhere (leaked)", c, len(byChain[c])))
		}
		if jumped[c] && len(byChain[c]) == 0 {
			diffs = append(diffs, "nat: chain "+c+" is empty but jumped to")
		}
	}
	return diffs
}

// addrs lists a link's IPv4 addresses ("a.b.c.d/len").
func addrs(tp *topo.Topology, role, dev string) (map[string]bool, error) {
	out, err := tp.Exec(role, "ip", "-4", "-o", "addr", "show", "dev", dev)
	if err != nil {
		return nil, err
	}
	got := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				got[f[i+1]] = true
			}
		}
	}
	return got, nil
}

type routeLine struct{ table, dst, via, dev string }

func parseRoutes(out string) []routeLine {
	var rs []routeLine
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || slices.Contains([]string{"local", "broadcast", "multicast", "unreachable", "blackhole", "prohibit", "throw", "anycast"}, f[0]) {
			continue
		}
		r := routeLine{dst: f[0], table: "main"}
		for i := 1; i+1 < len(f); i++ {
			switch f[i] {
			case "via":
				r.via = f[i+1]
			case "table":
				r.table = f[i+1]
			case "dev":
				r.dev = f[i+1]
			}
		}
		if r.dst == "default" {
			r.dst = "0.0.0.0/0"
		}
		rs = append(rs, r)
	}
	return rs
}

type ruleLine struct{ prio, from, iif, table string }

func parseRules(out string) []ruleLine {
	var rs []ruleLine
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		r := ruleLine{prio: strings.TrimSuffix(f[0], ":")}
		for i := 1; i+1 < len(f); i++ {
			switch f[i] {
			case "from":
				r.from = f[i+1]
			case "iif":
				r.iif = f[i+1]
			case "lookup":
				r.table = f[i+1]
			}
		}
		rs = append(rs, r)
	}
	return rs
}

// compareRouting diffs ip rules and the routes with a next hop in the daemon's tables.
func compareRouting(routesOut, rulesOut string, e *expected, subnetIf string) []string {
	var diffs []string
	routes := parseRoutes(routesOut)
	via := map[string]map[string]string{} // table -> dst -> via
	for _, r := range routes {
		if r.via == "" || r.table == "main" {
			continue
		}
		if via[r.table] == nil {
			via[r.table] = map[string]string{}
		}
		if _, dup := via[r.table][r.dst]; dup {
			diffs = append(diffs, fmt.Sprintf("route: table %s has %s twice", r.table, r.dst))
		}
		via[r.table][r.dst] = r.via
	}
	want100 := maps.Clone(e.dstRoute)
	if e.eipGW != "" {
		want100["0.0.0.0/0"] = e.eipGW
	}
	diffs = append(diffs, diffSet("route (table 100)", want100, via["100"])...)
	iif := map[string]int{}
	src := map[string]string{}
	used := map[string]bool{"100": true}
	for _, r := range parseRules(rulesOut) {
		if slices.Contains([]string{"local", "main", "default"}, r.table) {
			continue
		}
		if r.iif != "" {
			iif[r.iif]++
			if r.table != "100" || r.from != "all" {
				diffs = append(diffs, fmt.Sprintf("rule: unexpected %+v", r))
			}
			continue
		}
		if _, dup := src[r.from]; dup {
			diffs = append(diffs, "rule: second source rule for "+r.from)
		}
		used[r.table] = true
		tab := via[r.table]
		if len(tab) != 1 || tab["0.0.0.0/0"] == "" {
			diffs = append(diffs, fmt.Sprintf("rule %s: from %s lookup %s: the table's routes with a next hop are %v, want one default", r.prio, r.from, r.table, tab))
		}
		src[r.from] = tab["0.0.0.0/0"]
	}
	diffs = append(diffs, diffSet("route (policySrc)", e.srcRoute, src)...)
	for _, dev := range []string{"net1", subnetIf} {
		if iif[dev] != 1 {
			diffs = append(diffs, fmt.Sprintf("rule: %d rules iif %s lookup 100, want 1", iif[dev], dev))
		}
	}
	for t, rs := range via {
		if !used[t] {
			diffs = append(diffs, fmt.Sprintf("route: table %s (%v) is used by no rule (leaked)", t, rs))
		}
	}
	return diffs
}

// ctEntry is one conntrack entry: original and reply tuples.
type ctEntry struct {
	proto                         string
	origDst, origDport, origSport string
	replySrc, replySport          string
	line                          string
}

func parseConntrack(out string) []ctEntry {
	var es []ctEntry
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || (f[0] != "udp" && f[0] != "tcp") {
			continue
		}
		e := ctEntry{proto: f[0], line: l}
		n := map[string]int{}
		for _, kv := range f {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				continue
			}
			n[k]++
			first := n[k] == 1
			switch {
			case k == "dst" && first:
				e.origDst = v
			case k == "dport" && first:
				e.origDport = v
			case k == "sport" && first:
				e.origSport = v
			case k == "src" && !first:
				e.replySrc = v
			case k == "sport" && !first:
				e.replySport = v
			}
		}
		es = append(es, e)
	}
	return es
}

// compareConntrack finds the NATed entries towards the gateway's EIP pool whose mapping is not
// in the spec: left behind by a removed or changed FIP or DNAT. It returns the differences and
// how many NATed entries it looked at.
func compareConntrack(out string, e *expected, pool []string) (diffs []string, natted int) {
	for _, c := range parseConntrack(out) {
		if !slices.Contains(pool, c.origDst) || (c.replySrc == c.origDst && c.replySport == c.origDport) {
			continue
		}
		natted++
		if ip, ok := e.fips[c.origDst]; ok && ip == c.replySrc && c.replySport == c.origDport {
			continue
		}
		port, _ := strconv.Atoi(c.origDport)
		tp, _ := strconv.Atoi(c.replySport)
		if t, ok := e.dnats[dnatKey{c.origDst, c.proto, port}]; ok && t == (target{c.replySrc, tp}) {
			continue
		}
		diffs = append(diffs, "conntrack: entry of a mapping not in the spec: "+strings.Join(strings.Fields(c.line), " "))
	}
	return diffs, natted
}

// kernelDiff reads a gateway's netns (a role of tp) and diffs it against m's expectation.
func kernelDiff(tp *topo.Topology, role string, m *gwModel) (diffs []string, natted int, err error) {
	e := m.expected()
	subnetIf := plan.SubnetIfName(m.subnet)
	if churnDataplane() != annotations.DataplaneNFTables {
		save, err := tp.Exec(role, "iptables-save", "-t", "nat")
		if err != nil {
			return nil, 0, err
		}
		diffs = append(diffs, compareNAT(save, e, subnetIf)...)
	}
	got, err := addrs(tp, role, "net1")
	if err != nil {
		return nil, 0, err
	}
	diffs = append(diffs, diffSet("address on net1", e.eips, got)...)
	if got, err = addrs(tp, role, subnetIf); err != nil {
		return nil, 0, err
	}
	diffs = append(diffs, diffSet("address on "+subnetIf, e.subAddrs, got)...)
	routes, err := tp.Exec(role, "ip", "-4", "-o", "route", "show", "table", "all")
	if err != nil {
		return nil, 0, err
	}
	rules, err := tp.Exec(role, "ip", "-4", "rule", "show")
	if err != nil {
		return nil, 0, err
	}
	diffs = append(diffs, compareRouting(routes, rules, e, subnetIf)...)
	fwd, err := tp.Exec(role, "sysctl", "-n", "net.ipv4.ip_forward")
	if err != nil {
		return nil, 0, err
	}
	if strings.TrimSpace(fwd) != "1" {
		diffs = append(diffs, "sysctl net.ipv4.ip_forward = "+strings.TrimSpace(fwd))
	}
	ct, err := tp.Exec(role, "conntrack", "-L")
	if err != nil {
		return nil, 0, err
	}
	var pool []string
	for k := range eipPoolSize {
		pool = append(pool, m.pool(k))
	}
	ctDiffs, natted := compareConntrack(ct, e, pool)
	return append(diffs, ctDiffs...), natted, nil
}

// desiredOf is the desired state the model's objects call for (plan.Build, the function every
// program uses), for test/kstate's checker.
func (m *gwModel) desiredOf() (*annotations.Desired, error) {
	gw, vpc, sn := m.objects()
	_, d, errs := plan.Build(plan.Inputs{Gateway: gw, Vpc: vpc, Subnets: []*v1.Subnet{sn},
		Config: plan.Config{Image: "x", Enabled: true, NIC: "eth1", Dataplane: churnDataplane()}})
	if len(errs) > 0 {
		return nil, fmt.Errorf("model of %s: %w", m.name, errs.ToAggregate())
	}
	return d, nil
}

// kstateDiff is test/kstate's view of the gateway netns at nsPath against the model: the
// kernel state, and the conntrack entries (stale or un-NATed mappings).
func kstateDiff(nsPath string, m *gwModel) (state, flows []string, err error) {
	d, err := m.desiredOf()
	if err != nil {
		return nil, nil, err
	}
	diff, err := kstate.Check(nsPath, d)
	if err != nil {
		return nil, nil, fmt.Errorf("kstate: %w", err)
	}
	for _, p := range diff {
		state = append(state, "kstate: "+p.String())
	}
	fl, err := kstate.Conntrack(nsPath)
	if err != nil {
		return nil, nil, fmt.Errorf("kstate: %w", err)
	}
	for _, p := range kstate.CheckFlows(fl, d) {
		flows = append(flows, "kstate: conntrack "+p)
	}
	return state, flows, nil
}

// unNATed says whether a kstate conntrack problem is an entry that was never translated: its
// reply comes from the EIP itself ("reply <eip>:<port> -> ..." where the original went to
// <eip>:<port>). Such an entry was made by a datagram that arrived before the mapping was in
// the kernel; the daemon's conntrack sweep deletes it when the mapping is added, so the churn
// reports it as a failure (counted apart in the figures).
func unNATed(problem string) bool {
	// "udp C:p -> E:q (reply E:q -> C:p): ..."
	f := strings.Fields(problem)
	for i := 0; i+4 < len(f); i++ {
		if f[i+1] == "->" && f[i+3] == "(reply" {
			return f[i+2] == f[i+4]
		}
	}
	return false
}
