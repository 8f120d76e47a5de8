package kstate

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// The owned ids of the data-plane layout (docs/design.md), written down here again on purpose rather
// than imported from pkg/netconf.
const (
	mainTable     = 100
	srcTableBase  = 1000
	iifPriority   = 31000
	srcPrioBase   = 30000
	maxSrcRoutes  = 1000
	subnetPrefix  = "vpc-"
	primaryIfName = "eth0" // the primary CNI's interface: never vpcnat's, never foreign
)

// Expected is what the gateway netns must hold for one desired state.
type Expected struct {
	// Links maps the links vpcnat manages to their kind and MAC ("" = any). Primary attachments
	// are in Primary instead: their links belong to the primary CNI.
	Links   map[string]Link
	Primary map[string]bool
	// Addrs: per managed link, the exact IPv4 addresses ("192.168.0.111/24").
	Addrs map[string][]string
	// Routes: the route keys (Route.Key) of the owned tables.
	Routes []string
	// Rules: the owned rule keys (Rule.Key).
	Rules []string
	// NAT: expected chains of the nat table and their rules in order (with the nftables
	// backend, only the built-in chains, empty).
	NAT map[string][]string
	// NFT: the expected table ip vpcnat with the nftables backend; nil with iptables, where
	// the table must not exist.
	NFT *NFTable
}

// network is one connected network of the gateway.
type network struct {
	pfx netip.Prefix
	dev string
}

// Expect derives the expected state from d. own are the gateway's addresses on primary NICs, as
// the kernel reports them: a static route via one of them is satisfied by the gateway itself.
func Expect(d *annotations.Desired, own []netip.Addr) *Expected {
	e := &Expected{Links: map[string]Link{}, Primary: map[string]bool{}, Addrs: map[string][]string{}}
	ext := d.External.IfName
	if ext == "" {
		ext = annotations.ExternalIfName
	}
	e.Links[ext] = Link{Name: ext, Kind: "macvlan", MAC: strings.ToLower(d.External.MAC), Up: true}
	mine := map[netip.Addr]bool{}
	for _, a := range own {
		mine[a] = true
	}
	var nets []network
	addNet := func(p netip.Prefix, dev string) {
		p = p.Masked()
		if !slices.ContainsFunc(nets, func(n network) bool { return n.pfx == p }) {
			nets = append(nets, network{pfx: p, dev: dev})
		}
	}
	e.Addrs[ext] = []string{}
	for _, eip := range d.EIPs {
		p, err := netip.ParsePrefix(eip.EipCIDR)
		if err != nil {
			continue
		}
		if !slices.Contains(e.Addrs[ext], p.String()) {
			e.Addrs[ext] = append(e.Addrs[ext], p.String())
		}
		mine[p.Addr()] = true
		addNet(p, ext)
	}
	iifs := []string{ext}
	for _, s := range d.Subnets {
		iifs = append(iifs, s.IfName)
		if cidr, err := netip.ParsePrefix(s.CIDR); err == nil {
			addNet(cidr, s.IfName)
		}
		if s.IP != "" {
			if a, err := netip.ParseAddr(s.IP); err == nil && s.Attachment.Type == annotations.AttachPrimary {
				mine[a] = true
			}
		}
		if s.Attachment.Type == annotations.AttachPrimary {
			e.Primary[s.IfName] = true
			continue
		}
		kind := "veth"
		if s.Attachment.Type == annotations.AttachMacvlan {
			kind = "macvlan"
		}
		e.Links[s.IfName] = Link{Name: s.IfName, Kind: kind, MAC: strings.ToLower(s.MAC), Up: true}
		e.Addrs[s.IfName] = []string{}
		for _, a := range s.Addresses {
			p, err := netip.ParsePrefix(a)
			if err != nil {
				continue
			}
			mine[p.Addr()] = true
			if !slices.Contains(e.Addrs[s.IfName], p.String()) {
				e.Addrs[s.IfName] = append(e.Addrs[s.IfName], p.String())
			}
		}
	}
	devFor := func(a netip.Addr) string {
		best := -1
		for i, n := range nets {
			if n.pfx.Contains(a) && (best < 0 || n.pfx.Bits() > nets[best].pfx.Bits()) {
				best = i
			}
		}
		if best < 0 {
			return ""
		}
		return nets[best].dev
	}
	routeKey := func(table int, dst netip.Prefix, via netip.Addr, dev string) string {
		s := "table " + strconv.Itoa(table) + " "
		switch {
		case dst.Bits() == 0:
			s += "default"
		case dst.Bits() == 32:
			s += dst.Addr().String() // iproute2 prints a host route without /32
		default:
			s += dst.String()
		}
		if via.IsValid() {
			s += " via " + via.String()
		}
		return s + " dev " + dev
	}
	connected := func(table int) {
		for _, n := range nets {
			e.Routes = append(e.Routes, routeKey(table, n.pfx, netip.Addr{}, n.dev))
		}
	}

	type srcRoute struct {
		pfx netip.Prefix
		via netip.Addr
	}
	var srcs []srcRoute
	defaultSet := false
	connected(mainTable)
	seenDst := map[netip.Prefix]bool{}
	for _, r := range d.Routes {
		p, err := netip.ParsePrefix(r.CIDR)
		if err != nil {
			if a, err2 := netip.ParseAddr(r.CIDR); err2 == nil {
				p = netip.PrefixFrom(a, 32)
			} else {
				continue
			}
		}
		p = p.Masked()
		nh, err := netip.ParseAddr(r.NextHopIP)
		if err != nil || mine[nh] {
			continue
		}
		if r.Policy == annotations.PolicySrc {
			sr := srcRoute{p, nh}
			if !slices.Contains(srcs, sr) {
				srcs = append(srcs, sr)
			}
			continue
		}
		if seenDst[p] {
			continue
		}
		seenDst[p] = true
		if p.Bits() == 0 {
			defaultSet = true
		}
		e.Routes = append(e.Routes, routeKey(mainTable, p, nh, devFor(nh)))
	}
	if !defaultSet && len(d.EIPs) > 0 {
		if gw, err := netip.ParseAddr(d.EIPs[0].Gateway); err == nil {
			e.Routes = append(e.Routes, routeKey(mainTable, netip.MustParsePrefix("0.0.0.0/0"), gw, devFor(gw)))
		}
	}
	for _, name := range iifs {
		e.Rules = append(e.Rules, strconv.Itoa(iifPriority)+": from all iif "+name+" lookup "+strconv.Itoa(mainTable))
	}
	// policySrc: longest prefix first, then address, then next hop; table and priority by rank.
	slices.SortFunc(srcs, func(a, b srcRoute) int {
		return cmp.Or(cmp.Compare(b.pfx.Bits(), a.pfx.Bits()), a.pfx.Addr().Compare(b.pfx.Addr()), a.via.Compare(b.via))
	})
	for i, s := range srcs {
		table := srcTableBase + i
		connected(table)
		e.Routes = append(e.Routes, routeKey(table, netip.MustParsePrefix("0.0.0.0/0"), s.via, devFor(s.via)))
		src := s.pfx.String()
		if s.pfx.Bits() == 0 {
			src = "all"
		}
		e.Rules = append(e.Rules, strconv.Itoa(srcPrioBase+i)+": from "+src+" lookup "+strconv.Itoa(table))
	}
	if d.Dataplane == annotations.DataplaneNFTables {
		e.NAT, e.NFT = builtinNAT(), expectedNFT(d)
	} else {
		e.NAT = expectedNAT(d)
	}
	return e
}

// ownedTable reports whether a table (as iproute2 prints it) is one of vpcnat's.
func ownedTable(t string) bool {
	n, err := strconv.Atoi(t)
	return err == nil && (n == mainTable || (n >= srcTableBase && n < srcTableBase+maxSrcRoutes))
}

// defaultRules are the kernel's own IPv4 rules of a fresh netns.
var defaultRules = []string{"0: from all lookup local", "32766: from all lookup main", "32767: from all lookup default"}
