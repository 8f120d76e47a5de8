package netconf

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strconv"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
)

// route is one route we want in one of our tables. Via is the zero Addr for a connected route
// (scope link).
type route struct {
	Table int
	Dst   netip.Prefix
	Via   netip.Addr
	Dev   string
}

// String is the route's identity in diffs and its text in reports, close to `ip route` output.
func (r route) String() string {
	s := "table " + strconv.Itoa(r.Table) + " " + dstString(r.Dst)
	if r.Via.IsValid() {
		s += " via " + r.Via.String()
	}
	return s + " dev " + r.Dev
}

func dstString(p netip.Prefix) string {
	if p.Bits() == 0 {
		return "default"
	}
	return p.String()
}

// rule is one ip rule we want: either "iif Iif lookup Table" or "from Src lookup Table".
type rule struct {
	Priority int
	Table    int
	Iif      string
	Src      netip.Prefix
}

// String is the rule's identity in diffs and its text in reports, as `ip rule` prints it.
func (r rule) String() string {
	s := strconv.Itoa(r.Priority) + ": from "
	if r.Src.IsValid() && r.Src.Bits() > 0 {
		s += r.Src.String()
	} else {
		s += "all"
	}
	if r.Iif != "" {
		s += " iif " + r.Iif
	}
	return s + " lookup " + strconv.Itoa(r.Table)
}

// netState is what the gateway netns must hold besides links and nat rules.
type netState struct {
	// addrs maps a NIC to the exact set of addresses it holds (IPv6 link-local ones aside).
	// Primary NICs are absent: their addresses belong to the primary CNI.
	addrs map[string][]netip.Prefix
	// routes in install order: in each table the connected routes come first, so a next hop is
	// resolvable when the routes via it are added.
	routes []route
	rules  []rule
}

// network is a connected network of the gateway and the NIC it is on.
type network struct {
	pfx netip.Prefix
	dev string
}

// planNet computes the addresses, routes and rules d asks for. It is pure: every error is found
// before the kernel is touched. ownExtra are addresses the gateway holds that d does not list
// (the primary CNI's addresses on eth0): a static route via one of them is satisfied, like one
// via a listed address, because the gateway itself is that router.
func planNet(d *annotations.Desired, ownExtra []netip.Addr) (*netState, error) {
	st := &netState{addrs: map[string][]netip.Prefix{}}
	own := map[netip.Addr]bool{}
	for _, a := range ownExtra {
		own[a] = true
	}
	ext := extIfName(d)
	var nets []network
	addNet := func(p netip.Prefix, dev string) {
		p = p.Masked()
		if !slices.ContainsFunc(nets, func(n network) bool { return n.pfx == p }) {
			nets = append(nets, network{pfx: p, dev: dev})
		}
	}

	st.addrs[ext] = []netip.Prefix{}
	for i, e := range d.EIPs {
		p, err := netip.ParsePrefix(e.EipCIDR)
		if err != nil || !p.Addr().Is4() {
			return nil, fmt.Errorf("eips[%d].eipCIDR %q: not an IPv4 address with prefix length", i, e.EipCIDR)
		}
		if !slices.Contains(st.addrs[ext], p) {
			st.addrs[ext] = append(st.addrs[ext], p)
		}
		own[p.Addr()] = true
		addNet(p, ext)
	}

	iifs := []string{ext}
	for i, s := range d.Subnets {
		if err := checkSubnetNIC(i, s, ext, iifs); err != nil {
			return nil, err
		}
		iifs = append(iifs, s.IfName)
		cidr, err := netip.ParsePrefix(s.CIDR)
		if err != nil || !cidr.Addr().Is4() {
			return nil, fmt.Errorf("subnets[%d].cidr %q: not an IPv4 CIDR", i, s.CIDR)
		}
		addNet(cidr, s.IfName)
		var addrs []netip.Prefix
		for j, a := range s.Addresses {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				return nil, fmt.Errorf("subnets[%d].addresses[%d] %q: not an address with prefix length", i, j, a)
			}
			own[p.Addr()] = true
			if !slices.Contains(addrs, p) {
				addrs = append(addrs, p)
			}
		}
		if s.Attachment.Type != annotations.AttachPrimary {
			st.addrs[s.IfName] = addrs
		}
	}

	devFor := func(nh netip.Addr) (string, bool) {
		best := -1
		for i, n := range nets {
			if n.pfx.Contains(nh) && (best < 0 || n.pfx.Bits() > nets[best].pfx.Bits()) {
				best = i
			}
		}
		if best < 0 {
			return "", false
		}
		return nets[best].dev, true
	}
	connected := func(table int) []route {
		out := make([]route, 0, len(nets))
		for _, n := range nets {
			out = append(out, route{Table: table, Dst: n.pfx, Dev: n.dev})
		}
		return out
	}

	dst, src, err := staticRoutes(d.Routes, own, devFor, nets)
	if err != nil {
		return nil, err
	}
	st.routes = connected(MainTable)
	if !slices.ContainsFunc(dst, func(r route) bool { return r.Dst.Bits() == 0 }) && len(d.EIPs) > 0 {
		gw, err := netip.ParseAddr(d.EIPs[0].Gateway)
		if err != nil || !gw.Is4() {
			return nil, fmt.Errorf("eips[0].gateway %q: not an IPv4 address", d.EIPs[0].Gateway)
		}
		dev, ok := devFor(gw)
		if !ok {
			return nil, fmt.Errorf("eips[0].gateway %s: not inside any EIP network", gw)
		}
		st.routes = append(st.routes, route{Table: MainTable, Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: gw, Dev: dev})
	}
	st.routes = append(st.routes, dst...)

	for _, name := range iifs {
		st.rules = append(st.rules, rule{Priority: IifRulePriority, Table: MainTable, Iif: name})
	}
	for i, r := range src {
		table := SrcTableBase + i
		st.routes = append(st.routes, connected(table)...)
		st.routes = append(st.routes, route{Table: table, Dst: netip.MustParsePrefix("0.0.0.0/0"), Via: r.Via, Dev: r.Dev})
		st.rules = append(st.rules, rule{Priority: SrcRulePriorityBase + i, Table: table, Src: r.Dst})
	}
	return st, nil
}

// checkSubnetNIC refuses names the kernel would refuse, duplicates, and created NICs without our
// prefix (hot-unplug could never recognise them, so they would leak).
func checkSubnetNIC(i int, s annotations.SubnetNIC, ext string, seen []string) error {
	switch {
	case s.IfName == "" || len(s.IfName) > maxIfName:
		return fmt.Errorf("subnets[%d].ifname %q: must be 1-%d characters", i, s.IfName, maxIfName)
	case s.IfName == ext || slices.Contains(seen, s.IfName):
		return fmt.Errorf("subnets[%d].ifname %q: used twice", i, s.IfName)
	}
	switch s.Attachment.Type {
	case annotations.AttachPrimary:
		return nil
	case annotations.AttachBridge:
		if s.Attachment.Bridge == "" || s.Attachment.HostIfName == "" || len(s.Attachment.HostIfName) > maxIfName {
			return fmt.Errorf("subnets[%d].attachment: bridge attachment needs bridge and a hostIfname of 1-%d characters", i, maxIfName)
		}
	case annotations.AttachMacvlan:
		if s.Attachment.Master == "" {
			return fmt.Errorf("subnets[%d].attachment: macvlan attachment needs master", i)
		}
	default:
		return fmt.Errorf("subnets[%d].attachment.type %q: not bridge, macvlan or primary", i, s.Attachment.Type)
	}
	if len(s.IfName) <= len(SubnetIfPrefix) || s.IfName[:len(SubnetIfPrefix)] != SubnetIfPrefix {
		return fmt.Errorf("subnets[%d].ifname %q: a created subnet NIC must be named %s*", i, s.IfName, SubnetIfPrefix)
	}
	return nil
}

// staticRoutes resolves the Vpc static routes: policyDst ones go into MainTable (returned in
// spec order), policySrc ones each get a table (returned sorted longest prefix first, the order
// their tables and rule priorities are numbered in, so nested source prefixes resolve
// longest-first and a spec reorder renumbers nothing). A route whose next hop is one of the
// gateway's own addresses is satisfied and installs nothing.
func staticRoutes(in []annotations.Route, own map[netip.Addr]bool, devFor func(netip.Addr) (string, bool), nets []network) (dst, src []route, err error) {
	for i, r := range in {
		cidr, err := nat.ParseCIDR(r.CIDR)
		if err != nil || !cidr.Addr().Is4() {
			return nil, nil, fmt.Errorf("routes[%d].cidr %q: not an IPv4 CIDR", i, r.CIDR)
		}
		nh, err := netip.ParseAddr(r.NextHopIP)
		if err != nil || !nh.Is4() {
			return nil, nil, fmt.Errorf("routes[%d].nextHopIP %q: not an IPv4 address", i, r.NextHopIP)
		}
		if r.Policy != annotations.PolicyDst && r.Policy != annotations.PolicySrc {
			return nil, nil, fmt.Errorf("routes[%d].policy %q: not %s or %s", i, r.Policy, annotations.PolicyDst, annotations.PolicySrc)
		}
		if own[nh] {
			continue
		}
		dev, ok := devFor(nh)
		if !ok {
			return nil, nil, fmt.Errorf("routes[%d] %s via %s: the next hop is on none of the gateway's networks", i, cidr, nh)
		}
		rt := route{Dst: cidr, Via: nh, Dev: dev}
		if r.Policy == annotations.PolicySrc {
			if !slices.Contains(src, rt) {
				src = append(src, rt)
			}
			continue
		}
		rt.Table = MainTable
		if slices.ContainsFunc(nets, func(n network) bool { return n.pfx == cidr }) {
			return nil, nil, fmt.Errorf("routes[%d] %s via %s: the gateway is directly connected to %s", i, cidr, nh, cidr)
		}
		if j := slices.IndexFunc(dst, func(o route) bool { return o.Dst == cidr }); j >= 0 {
			if dst[j].Via == nh {
				continue
			}
			return nil, nil, fmt.Errorf("routes[%d] %s via %s: %s already routed via %s", i, cidr, nh, cidr, dst[j].Via)
		}
		dst = append(dst, rt)
	}
	slices.SortFunc(src, func(a, b route) int {
		return cmp.Or(cmp.Compare(b.Dst.Bits(), a.Dst.Bits()), a.Dst.Addr().Compare(b.Dst.Addr()), a.Via.Compare(b.Via))
	})
	if len(src) > MaxSrcRoutes {
		return nil, nil, fmt.Errorf("routes: %d policySrc routes, at most %d are supported", len(src), MaxSrcRoutes)
	}
	return dst, src, nil
}

// extIfName is the gateway's external NIC name, net1 unless the desired state says otherwise.
func extIfName(d *annotations.Desired) string {
	if d.External.IfName != "" {
		return d.External.IfName
	}
	return annotations.ExternalIfName
}
