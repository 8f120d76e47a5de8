// Package kstate is an independent checker of a gateway network namespace: it dumps what the
// kernel holds (iproute2's JSON output, iptables-save and nft -j, run inside the netns) and compares it,
// as multisets, with what an annotations.Desired asks for. It shares no code with pkg/netconf:
// the expected addresses, routes and ip rules are derived here again from the desired state (the
// data-plane layout of docs/design.md), so a netconf bug cannot hide itself. The expected NAT is
// modelled here too, from the spec, for both backends (natmodel.go: the iptables nat table;
// nftmodel.go: the nftables table ip vpcnat, read back with nft's own JSON listing), picked by
// the desired state's dataplane: the other backend must have left nothing. The comparison with
// the kernel's is set-based and counts duplicates.
//
// Usage:
//
//	diff, err := kstate.Check("/run/netns/gw", desired)   // dump + compare
//	if err != nil { ... }                                 // the dump failed
//	if !diff.Empty() { t.Errorf("gateway netns: %s", diff) }
//
// What Compare tolerates, because it is not vpcnat's: lo, eth0 and the primary attachments'
// links with their addresses, the kernel's own routes (protocol kernel) and the primary CNI's
// routes on those links (a pod's default route via eth0) outside vpcnat's tables,
// IPv6 link-local addresses, the kernel's three default ip rules. Everything else in the netns
// must be exactly what the desired state implies, once.
//
// Flows (conntrack) are checked separately: Conntrack dumps them, CheckFlows reports un-NATed or
// stale ones. Leaks lists vpcnat-looking links, namespaces and records left on a node.
//
// Every function may be called from any goroutine: the dump tools run on a thread locked into
// the netns for the duration of each command (ns.Do), and need iproute2, iptables-save, nft,
// conntrack and root.
package kstate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"github.com/containernetworking/plugins/pkg/ns"
)

// Link is one network interface of the netns.
type Link struct {
	Name string
	Kind string // linkinfo kind: macvlan, veth, ...; "" for lo
	MAC  string
	Up   bool // administratively up
}

// Addr is one interface address.
type Addr struct {
	Dev    string
	Prefix string // "192.168.0.111/24", "fe80::1/64"
	Family string // inet, inet6
}

// Route is one route of any table, in both families, as iproute2 reports it.
type Route struct {
	Family   string // inet, inet6
	Table    string // "100", "main", "local", ...
	Type     string // unicast, local, broadcast, multicast, ...
	Dst      string // "default", "10.0.1.0/24", "10.0.1.1"
	Via      string
	Dev      string
	Protocol string // kernel, static, boot, ...
	Scope    string
	Metric   int
	PrefSrc  string
}

// Key is the route's identity as Compare uses it: everything but the protocol, scope and
// preferred source (which follow from the rest).
func (r Route) Key() string {
	s := "table " + r.Table + " "
	if r.Type != "" && r.Type != "unicast" {
		s += r.Type + " "
	}
	s += r.Dst
	if r.Via != "" {
		s += " via " + r.Via
	}
	s += " dev " + r.Dev
	if r.Metric != 0 && r.Family == "inet" {
		s += " metric " + strconv.Itoa(r.Metric)
	}
	return s
}

// Rule is one IPv4 ip rule.
type Rule struct {
	Priority int
	Src      string // "all" or a prefix
	Iif      string
	Table    string
	Other    string // any other selector or action, as raw JSON; "" for plain rules
}

// Key is the rule's text as `ip rule` prints it.
func (r Rule) Key() string {
	s := strconv.Itoa(r.Priority) + ": from " + r.Src
	if r.Iif != "" {
		s += " iif " + r.Iif
	}
	s += " lookup " + r.Table
	if r.Other != "" {
		s += " " + r.Other
	}
	return s
}

// State is a netns's kernel state as dumped by Dump.
type State struct {
	Links  []Link
	Addrs  []Addr
	Routes []Route
	Rules  []Rule
	// Chains are the nat table's chains in iptables-save order, built-in ones included, and
	// Rules their rules (text after "-A <chain> "), in order, duplicates kept.
	Chains   []string
	NATRules map[string][]string
	// Forwarding is net.ipv4.ip_forward.
	Forwarding bool
	// Sysctls: ip_forward, conf.all.rp_filter, and rp_filter and promote_secondaries of every
	// link ("net.ipv4.conf.net1.rp_filter" -> "0").
	Sysctls map[string]string
	// NATText is the raw iptables-save -t nat output, for messages.
	NATText string
	// NFT is the nftables table ip vpcnat, nil when the netns has none; NFTText its raw
	// `nft -j list table` output, for messages.
	NFT     *NFTable
	NFTText string
}

// run runs argv inside the netns at nsPath and returns its standard output.
func run(nsPath string, argv ...string) ([]byte, error) {
	netNS, err := ns.GetNS(nsPath)
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", nsPath, err)
	}
	defer netNS.Close()
	var stdout, stderr bytes.Buffer
	err = netNS.Do(func(ns.NetNS) error {
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		return cmd.Run()
	})
	if err != nil {
		return nil, fmt.Errorf("in netns %s: %s: %w: %s", nsPath, strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}

func runJSON(nsPath string, into any, argv ...string) error {
	out, err := run(nsPath, argv...)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(out)) == 0 {
		return nil
	}
	if err := json.Unmarshal(out, into); err != nil {
		return fmt.Errorf("in netns %s: %s: parsing its JSON: %w", nsPath, strings.Join(argv, " "), err)
	}
	return nil
}

// Dump reads the kernel state of the netns at nsPath: links, addresses, routes of every table
// (both families), IPv4 ip rules, the nat table and the IPv4 sysctls the data plane depends on.
func Dump(nsPath string) (*State, error) {
	st := &State{NATRules: map[string][]string{}}

	var links []struct {
		Name     string   `json:"ifname"`
		Address  string   `json:"address"`
		Flags    []string `json:"flags"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
		} `json:"linkinfo"`
		AddrInfo []struct {
			Family    string `json:"family"`
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
		} `json:"addr_info"`
	}
	if err := runJSON(nsPath, &links, "ip", "-j", "-d", "link", "show"); err != nil {
		return nil, err
	}
	for _, l := range links {
		up := false
		for _, f := range l.Flags {
			up = up || f == "UP"
		}
		st.Links = append(st.Links, Link{Name: l.Name, Kind: l.LinkInfo.Kind, MAC: l.Address, Up: up})
	}
	links = nil
	if err := runJSON(nsPath, &links, "ip", "-j", "addr", "show"); err != nil {
		return nil, err
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			st.Addrs = append(st.Addrs, Addr{Dev: l.Name, Family: a.Family, Prefix: a.Local + "/" + strconv.Itoa(a.PrefixLen)})
		}
	}

	for _, fam := range []string{"inet", "inet6"} {
		var routes []struct {
			Type     string `json:"type"`
			Dst      string `json:"dst"`
			Gateway  string `json:"gateway"`
			Dev      string `json:"dev"`
			Table    string `json:"table"`
			Protocol string `json:"protocol"`
			Scope    string `json:"scope"`
			Metric   int    `json:"metric"`
			PrefSrc  string `json:"prefsrc"`
		}
		flag := "-4"
		if fam == "inet6" {
			flag = "-6"
		}
		if err := runJSON(nsPath, &routes, "ip", "-j", flag, "route", "show", "table", "all"); err != nil {
			return nil, err
		}
		for _, r := range routes {
			rt := Route{Family: fam, Type: r.Type, Dst: r.Dst, Via: r.Gateway, Dev: r.Dev, Table: r.Table,
				Protocol: r.Protocol, Scope: r.Scope, Metric: r.Metric, PrefSrc: r.PrefSrc}
			if rt.Table == "" {
				rt.Table = "main"
			}
			if rt.Type == "" {
				rt.Type = "unicast"
			}
			if rt.Protocol == "" {
				rt.Protocol = "boot"
			}
			st.Routes = append(st.Routes, rt)
		}
	}

	var rules []map[string]any
	if err := runJSON(nsPath, &rules, "ip", "-j", "-4", "rule", "show"); err != nil {
		return nil, err
	}
	for _, m := range rules {
		r := Rule{Src: "all"}
		srclen := "" // iproute2 omits it for a /32
		var other []string
		for k, v := range m {
			s := fmt.Sprint(v)
			switch k {
			case "priority":
				f, _ := v.(float64)
				r.Priority = int(f)
			case "src":
				if s != "all" {
					r.Src = s
				}
			case "srclen":
				f, _ := v.(float64)
				srclen = "/" + strconv.Itoa(int(f))
			case "iif":
				r.Iif = s
			case "table":
				r.Table = s
			default:
				other = append(other, k+"="+s)
			}
		}
		if r.Src != "all" {
			r.Src += srclen
			if srclen == "" {
				r.Src += "/32"
			}
		}
		if len(other) > 0 {
			slices.Sort(other)
			r.Other = "(" + strings.Join(other, " ") + ")"
		}
		st.Rules = append(st.Rules, r)
	}

	save, err := run(nsPath, "iptables-save", "-t", "nat")
	if err != nil {
		return nil, err
	}
	st.NATText = string(save)
	if err := parseSave(st, st.NATText); err != nil {
		return nil, fmt.Errorf("in netns %s: %w", nsPath, err)
	}

	if st.NFT, st.NFTText, err = dumpNFT(nsPath); err != nil {
		return nil, err
	}

	// ip_forward, and rp_filter and promote_secondaries of "all" and every link, in one exec.
	paths := []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv4/conf/all/rp_filter"}
	keys := []string{"net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"}
	for _, l := range st.Links {
		for _, k := range []string{"rp_filter", "promote_secondaries"} {
			paths = append(paths, "/proc/sys/net/ipv4/conf/"+l.Name+"/"+k)
			keys = append(keys, "net.ipv4.conf."+l.Name+"."+k)
		}
	}
	vals, err := run(nsPath, append([]string{"cat"}, paths...)...)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.TrimSpace(string(vals)), "\n")
	if len(lines) != len(keys) {
		return nil, fmt.Errorf("in netns %s: reading %d sysctls gave %d values", nsPath, len(keys), len(lines))
	}
	st.Sysctls = map[string]string{}
	for i, k := range keys {
		st.Sysctls[k] = strings.TrimSpace(lines[i])
	}
	st.Forwarding = st.Sysctls["net.ipv4.ip_forward"] == "1"
	return st, nil
}

// parseSave reads iptables-save text of the nat table (an empty text is an empty table).
func parseSave(st *State, text string) error {
	table := ""
	for i, line := range strings.Split(text, "\n") {
		switch {
		case line == "" || strings.HasPrefix(line, "#") || line == "COMMIT":
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case table != "nat":
			return fmt.Errorf("iptables-save line %d: %q outside the nat table", i+1, line)
		case strings.HasPrefix(line, ":"):
			name, _, _ := strings.Cut(line[1:], " ")
			st.Chains = append(st.Chains, name)
		case strings.HasPrefix(line, "-A "):
			chain, rule, _ := strings.Cut(line[3:], " ")
			st.NATRules[chain] = append(st.NATRules[chain], rule)
		default:
			return fmt.Errorf("iptables-save line %d: %q not understood", i+1, line)
		}
	}
	return nil
}
