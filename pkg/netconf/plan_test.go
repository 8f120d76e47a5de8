package netconf

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// Pure tests: no root, no kernel.

func routeStrings(rs []route) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

func ruleStrings(rs []rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.String()
	}
	return out
}

func TestPlanNetSeed(t *testing.T) {
	st, err := planNet(seedDesired(), nil)
	if err != nil {
		t.Fatal(err)
	}
	wantRoutes := []string{
		"table 100 192.168.0.0/24 dev net1",
		"table 100 10.0.1.0/24 dev vpc-sn",
		"table 100 default via 192.168.0.254 dev net1",
		"table 100 203.0.113.0/24 via 10.0.1.100 dev vpc-sn",
		"table 1000 192.168.0.0/24 dev net1",
		"table 1000 10.0.1.0/24 dev vpc-sn",
		"table 1000 default via 10.0.1.100 dev vpc-sn",
	}
	if got := routeStrings(st.routes); !slices.Equal(got, wantRoutes) {
		t.Errorf("routes:\n got %q\nwant %q", got, wantRoutes)
	}
	wantRules := []string{
		"31000: from all iif net1 lookup 100",
		"31000: from all iif vpc-sn lookup 100",
		"30000: from 10.0.1.64/26 lookup 1000",
	}
	if got := ruleStrings(st.rules); !slices.Equal(got, wantRules) {
		t.Errorf("rules:\n got %q\nwant %q", got, wantRules)
	}
	if got := st.addrs["net1"]; !slices.Equal(got, []netip.Prefix{netip.MustParsePrefix("192.168.0.111/24"), netip.MustParsePrefix("192.168.0.112/24")}) {
		t.Errorf("net1 addresses %v", got)
	}
	if got := st.addrs["vpc-sn"]; len(got) != 2 || got[1] != netip.MustParsePrefix("10.0.1.254/24") {
		t.Errorf("vpc-sn addresses %v", got)
	}
}

// The seed's Vpc route (0.0.0.0/0 via lanIp) points at the gateway itself: satisfied, nothing
// installed, and the EIP default route stays. The same holds for an address the primary CNI owns.
func TestPlanNetOwnNextHop(t *testing.T) {
	d := seedDesired()
	d.Routes = []annotations.Route{{Policy: annotations.PolicyDst, CIDR: "0.0.0.0/0", NextHopIP: "10.0.1.254"}}
	st, err := planNet(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(routeStrings(st.routes), "table 100 default via 192.168.0.254 dev net1") || len(st.routes) != 3 {
		t.Errorf("routes %q", routeStrings(st.routes))
	}

	d.Subnets = append(d.Subnets, annotations.SubnetNIC{Subnet: "pri", IfName: "eth0", CIDR: "10.0.9.0/24",
		Attachment: annotations.Attachment{Type: annotations.AttachPrimary}})
	d.Routes = []annotations.Route{{Policy: annotations.PolicySrc, CIDR: "10.0.9.0/24", NextHopIP: "10.0.9.7"}}
	st, err = planNet(d, []netip.Addr{netip.MustParseAddr("10.0.9.7")})
	if err != nil {
		t.Fatal(err)
	}
	if len(st.rules) != 3 || slices.ContainsFunc(st.routes, func(r route) bool { return r.Table != MainTable }) {
		t.Errorf("a route via the primary NIC's own address installed something: %q %q", ruleStrings(st.rules), routeStrings(st.routes))
	}
	if _, ok := st.addrs["eth0"]; ok {
		t.Error("primary NIC got an address set: its addresses belong to the primary CNI")
	}

	// Without knowing eth0's address it is a real next hop.
	st, err = planNet(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(routeStrings(st.routes), "table 1000 default via 10.0.9.7 dev eth0") {
		t.Errorf("routes %q", routeStrings(st.routes))
	}
}

// policySrc tables and priorities follow prefix length, longest first, whatever the spec order,
// so nested sources resolve deterministically and a reorder changes nothing.
func TestPlanNetSrcOrder(t *testing.T) {
	d := seedDesired()
	d.Routes = []annotations.Route{
		{Policy: annotations.PolicySrc, CIDR: "10.0.0.0/16", NextHopIP: "10.0.1.100"},
		{Policy: annotations.PolicySrc, CIDR: "10.0.1.7", NextHopIP: "10.0.1.101"},
		{Policy: annotations.PolicySrc, CIDR: "10.0.1.0/24", NextHopIP: "192.168.0.1"},
	}
	st, err := planNet(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"31000: from all iif net1 lookup 100",
		"31000: from all iif vpc-sn lookup 100",
		"30000: from 10.0.1.7/32 lookup 1000",
		"30001: from 10.0.1.0/24 lookup 1001",
		"30002: from 10.0.0.0/16 lookup 1002",
	}
	if got := ruleStrings(st.rules); !slices.Equal(got, want) {
		t.Errorf("rules:\n got %q\nwant %q", got, want)
	}
	if !slices.Contains(routeStrings(st.routes), "table 1001 default via 192.168.0.1 dev net1") {
		t.Errorf("policySrc next hop on the external network: %q", routeStrings(st.routes))
	}
	slices.Reverse(d.Routes)
	st2, err := planNet(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ruleStrings(st2.rules), want) || !slices.Equal(routeStrings(st2.routes), routeStrings(st.routes)) {
		t.Error("spec order changed the plan")
	}
}

// A policyDst default route replaces the EIP default route.
func TestPlanNetStaticDefault(t *testing.T) {
	d := seedDesired()
	d.Routes = []annotations.Route{{Policy: annotations.PolicyDst, CIDR: "0.0.0.0/0", NextHopIP: "10.0.1.100"}}
	st, err := planNet(d, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := routeStrings(st.routes)
	if !slices.Contains(got, "table 100 default via 10.0.1.100 dev vpc-sn") || slices.Contains(got, "table 100 default via 192.168.0.254 dev net1") {
		t.Errorf("routes %q", got)
	}
}

func TestPlanNetErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		mod  func(d *annotations.Desired)
		want string
	}{
		"bad eip":              {func(d *annotations.Desired) { d.EIPs[0].EipCIDR = "192.168.0.300/24" }, "eips[0].eipCIDR"},
		"ipv6 eip":             {func(d *annotations.Desired) { d.EIPs[0].EipCIDR = "2001:db8::1/64" }, "eips[0].eipCIDR"},
		"gateway off-net":      {func(d *annotations.Desired) { d.EIPs[0].Gateway = "198.51.100.1" }, "not inside any EIP network"},
		"unreachable next hop": {func(d *annotations.Desired) { d.Routes[0].NextHopIP = "198.51.100.1" }, "routes[0]"},
		"dst over connected":   {func(d *annotations.Desired) { d.Routes[0].CIDR = "10.0.1.0/24" }, "directly connected"},
		"dst twice": {func(d *annotations.Desired) {
			d.Routes = append(d.Routes, annotations.Route{Policy: annotations.PolicyDst, CIDR: "203.0.113.0/24", NextHopIP: "10.0.1.101"})
		}, "already routed"},
		"bad policy": {func(d *annotations.Desired) { d.Routes[0].Policy = "ecmp" }, "routes[0].policy"},
		"no prefix":  {func(d *annotations.Desired) { d.Subnets[0].IfName = "sn0" }, "must be named vpc-*"},
		"long name":  {func(d *annotations.Desired) { d.Subnets[0].IfName = "vpc-0123456789ab" }, "1-15 characters"},
		"dup name":   {func(d *annotations.Desired) { d.Subnets = append(d.Subnets, d.Subnets[0]) }, "used twice"},
		"no bridge":  {func(d *annotations.Desired) { d.Subnets[0].Attachment.Bridge = "" }, "needs bridge"},
		"bad type":   {func(d *annotations.Desired) { d.Subnets[0].Attachment.Type = "sriov" }, "attachment.type"},
	} {
		t.Run(name, func(t *testing.T) {
			d := seedDesired()
			tc.mod(d)
			_, err := planNet(d, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestOwnedRule(t *testing.T) {
	for _, tc := range []struct {
		prio, table int
		want        bool
	}{
		{IifRulePriority, MainTable, true},
		{SrcRulePriorityBase, SrcTableBase, true},
		{SrcRulePriorityBase + MaxSrcRoutes - 1, SrcTableBase + 5, true},
		{SrcRulePriorityBase - 1, SrcTableBase, false}, // priority out of range
		{500, MainTable, false},                        // our table, foreign priority
		{IifRulePriority, 200, false},                  // our priority, foreign table
		{32766, 254, false},                            // the kernel's main rule
		{IifRulePriority, SrcTableBase + MaxSrcRoutes, false},
	} {
		if got := ownedRule(tc.prio, tc.table); got != tc.want {
			t.Errorf("ownedRule(%d, %d) = %v", tc.prio, tc.table, got)
		}
	}
}
