package netconf

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// syncRouting makes our tables and rules match st: routes are added (replace) before rules that
// use their tables, and stale rules are deleted before stale routes, so no owned rule ever points
// at a half-filled table. Only routes in owned tables and rules owned by priority AND table are
// read, so everything else in the netns is invisible here and cannot be deleted.
func syncRouting(gw *netlink.Handle, st *netState) ([]string, error) {
	names, err := linkNames(gw)
	if err != nil {
		return nil, err
	}
	haveRoutes, err := ownedRoutes(gw, names)
	if err != nil {
		return nil, err
	}
	haveRules, err := ownedRules(gw)
	if err != nil {
		return nil, err
	}
	addRoutes, delRoutes := diffKeyed(st.routes, haveRoutes)
	addRules, delRules := diffKeyed(st.rules, haveRules)

	var changes []string
	for _, r := range addRoutes {
		nr, err := toNetlinkRoute(gw, r)
		if err != nil {
			return changes, err
		}
		// Replace, not add: a stale route with the same destination is swapped in one step
		// instead of leaving a gap between its deletion and our addition.
		if err := gw.RouteReplace(nr); err != nil {
			return changes, fmt.Errorf("adding route %s: %w", r, err)
		}
		changes = append(changes, "route: added "+r.String())
	}
	for _, r := range addRules {
		if err := gw.RuleAdd(toNetlinkRule(r)); err != nil {
			return changes, fmt.Errorf("adding rule %s: %w", r, err)
		}
		changes = append(changes, "rule: added "+r.String())
	}
	for _, k := range delRules {
		nr := haveRules[k]
		if err := gw.RuleDel(&nr); err != nil && !errors.Is(err, unix.ENOENT) {
			return changes, fmt.Errorf("deleting rule %s: %w", k, err)
		}
		changes = append(changes, "rule: deleted "+k)
	}
	for _, k := range delRoutes {
		nr := haveRoutes[k]
		// ESRCH: already gone, typically replaced in place above.
		if err := gw.RouteDel(&nr); err != nil && !errors.Is(err, unix.ESRCH) {
			return changes, fmt.Errorf("deleting route %s: %w", k, err)
		}
		changes = append(changes, "route: deleted "+k)
	}
	return changes, nil
}

// ownedRoutes reads the IPv4 routes of our tables, keyed like route.String(). A route with
// anything we never set (another type, a metric, a preferred source, multipath) gets a key no
// wanted route has, so it is replaced rather than mistaken for ours.
func ownedRoutes(gw *netlink.Handle, names map[int]string) (map[string]netlink.Route, error) {
	list, err := gw.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("listing routes of the gateway netns: %w", err)
	}
	out := map[string]netlink.Route{}
	for _, r := range list {
		if !ownedTable(r.Table) {
			continue
		}
		out[routeKey(r, names)] = r
	}
	return out, nil
}

func routeKey(r netlink.Route, names map[int]string) string {
	rt := route{Table: r.Table, Dev: names[r.LinkIndex]}
	if r.Dst != nil {
		rt.Dst, _ = prefixOf(r.Dst)
	} else {
		rt.Dst = netip.MustParsePrefix("0.0.0.0/0")
	}
	if a, ok := netip.AddrFromSlice(r.Gw); ok {
		rt.Via = a.Unmap()
	}
	if rt.Dev == "" {
		rt.Dev = "if" + strconv.Itoa(r.LinkIndex)
	}
	k := rt.String()
	if r.Type != unix.RTN_UNICAST {
		k += " type " + strconv.Itoa(r.Type)
	}
	if r.Priority != 0 {
		k += " metric " + strconv.Itoa(r.Priority)
	}
	if r.Src != nil {
		k += " src " + r.Src.String()
	}
	if len(r.MultiPath) > 0 {
		k += " multipath"
	}
	return k
}

// ownedRules reads the IPv4 rules we own, keyed like rule.String(); selectors we never set make
// the key unique, so such a rule is deleted as stale.
func ownedRules(gw *netlink.Handle) (map[string]netlink.Rule, error) {
	list, err := gw.RuleList(netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("listing ip rules of the gateway netns: %w", err)
	}
	out := map[string]netlink.Rule{}
	for _, r := range list {
		if !ownedRule(r.Priority, r.Table) {
			continue
		}
		rl := rule{Priority: r.Priority, Table: r.Table, Iif: r.IifName}
		if r.Src != nil {
			rl.Src, _ = prefixOf(r.Src)
			rl.Src = rl.Src.Masked()
		}
		k := rl.String()
		if r.Dst != nil || r.OifName != "" || r.Mark != 0 || r.Tos != 0 || r.Invert || r.Dport != nil ||
			r.Sport != nil || r.IPProto != 0 || r.UIDRange != nil || r.Goto > 0 || r.Mask != nil {
			k += fmt.Sprintf(" (other selectors: %+v)", r)
		}
		out[k] = r
	}
	return out, nil
}

func toNetlinkRoute(gw *netlink.Handle, r route) (*netlink.Route, error) {
	l, err := gw.LinkByName(r.Dev)
	if err != nil {
		return nil, fmt.Errorf("route %s: looking up %s: %w", r, r.Dev, err)
	}
	nr := &netlink.Route{Table: r.Table, LinkIndex: l.Attrs().Index, Dst: ipNet(r.Dst), Protocol: unix.RTPROT_STATIC}
	if r.Via.IsValid() {
		nr.Gw = r.Via.AsSlice()
		nr.Scope = netlink.SCOPE_UNIVERSE
	} else {
		nr.Scope = netlink.SCOPE_LINK
	}
	return nr, nil
}

func toNetlinkRule(r rule) *netlink.Rule {
	nr := netlink.NewRule()
	nr.Family = unix.AF_INET
	nr.Priority = r.Priority
	nr.Table = r.Table
	nr.IifName = r.Iif
	if r.Src.IsValid() {
		nr.Src = ipNet(r.Src)
	}
	return nr
}

// linkNames maps the ifindexes of the gateway netns to names.
func linkNames(gw *netlink.Handle) (map[int]string, error) {
	links, err := gw.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links of the gateway netns: %w", err)
	}
	out := make(map[int]string, len(links))
	for _, l := range links {
		out[l.Attrs().Index] = l.Attrs().Name
	}
	return out, nil
}
