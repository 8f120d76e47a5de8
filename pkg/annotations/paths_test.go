package annotations

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// TestPathsRootTheErrors: the same problems read as the CR's fields when the validator is rooted
// at the objects, and as the document's otherwise.
func TestPathsRootTheErrors(t *testing.T) {
	d := goodDesired()
	d.DNATs[0].ExternalPort = 0
	d.Routes[1].NextHopIP = "172.16.0.1"
	cr := Paths{Rules: field.NewPath("spec"), Routes: field.NewPath("vpc").Key("test-vpc-1").Child("spec", "staticRoutes")}
	for _, c := range []struct {
		p    Paths
		want []string
	}{
		{Paths{}, []string{"routes[1].nextHopIP", "dnatRules[0].externalPort"}},
		{cr, []string{"vpc[test-vpc-1].spec.staticRoutes[1].nextHopIP", "spec.dnatRules[0].externalPort"}},
	} {
		errs := ValidateDesiredAt(d, c.p)
		var got []string
		for _, e := range errs {
			got = append(got, e.Field)
		}
		if fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("paths %+v: got %v, want %v", c.p, got, c.want)
		}
	}
}

// TestPlanCheckedSkipsTheNICs: with PlanChecked the caller has checked the NICs against their
// sources; the validator only reads the subnets to place rules.
func TestPlanCheckedSkipsTheNICs(t *testing.T) {
	d := goodDesired()
	d.Gateway = "BAD NAME"
	d.External.MAC = "00:00:00:00:00:01"
	d.Subnets[0].Attachment.Bridge = "br sn"
	d.Subnets[1].CIDR = "10.0.2.5/24" // read leniently as 10.0.2.0/24: DNAT 10.0.2.10 is inside
	if errs := ValidateDesiredAt(d, Paths{PlanChecked: true}); len(errs) > 0 {
		t.Fatalf("PlanChecked still checked the NICs:\n%s", dump(errs))
	}
	if errs := ValidateDesired(d); len(errs) != 4 {
		t.Fatalf("want the 4 NIC errors without PlanChecked, got:\n%s", dump(errs))
	}
}

// TestDependentChecksAreSkipped: a broken value is reported once, not again by every check that
// would have depended on it.
func TestDependentChecksAreSkipped(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(d *Desired)
		p      Paths
		path   string
	}{
		{"unparseable subnet cidr", func(d *Desired) { d.Subnets[1].CIDR = "10.0.2/24" }, Paths{}, "subnets[1].cidr"},
		{"unparseable policyDst route", func(d *Desired) { d.Routes[1].CIDR = "203.0.113/24" }, Paths{}, "routes[1].cidr"},
		{"unparseable eip", func(d *Desired) { d.EIPs[0].EipCIDR = "192.168.0.x/24" }, Paths{}, "eips[0].eipCIDR"},
		{"eip without prefix", func(d *Desired) { d.EIPs[0].EipCIDR = "192.168.0.111" }, Paths{}, "eips[0].eipCIDR"},
		{"subnets unknown", func(d *Desired) { d.Subnets = d.Subnets[:1]; d.Gateway = "x y" }, Paths{SubnetsUnknown: true}, "gateway"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := goodDesired()
			c.mutate(d)
			errs := ValidateDesiredAt(d, c.p)
			if len(errs) != 1 || errs[0].Field != c.path {
				t.Errorf("want one error at %s, got:\n%s", c.path, dump(errs))
			}
		})
	}
}

func TestTooMany(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(d *Desired)
		path   string
	}{
		{"eips", func(d *Desired) {
			for i := range MaxEIPs - 2 {
				d.EIPs = append(d.EIPs, EIP{fmt.Sprintf("192.168.%d.%d/16", 1+i/250, 1+i%250), "192.168.0.254"})
			}
		}, "eips"},
		{"dnatRules", func(d *Desired) {
			for i := range MaxDNATs - 1 {
				d.DNATs = append(d.DNATs, DNAT{"192.168.0.113", "tcp", 1 + i, "10.0.1.10", 80})
			}
			d.FloatingIPs = d.FloatingIPs[:1]
		}, "dnatRules"},
		{"snatRules", func(d *Desired) {
			for i := range MaxSNATs - 1 {
				d.SNATs = append(d.SNATs, SNAT{"192.168.0.112", fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256)})
			}
		}, "snatRules"},
		{"routes", func(d *Desired) {
			for i := range MaxRoutes - 2 {
				d.Routes = append(d.Routes, Route{PolicySrc, fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256), "10.0.1.100"})
			}
		}, "routes"},
		{"subnets", func(d *Desired) {
			for i := range MaxSubnets - 1 {
				addSubnet(d, fmt.Sprintf("s%d", i), fmt.Sprintf("vpc-%011d", i), fmt.Sprintf("10.1.%d.0/24", i), fmt.Sprintf("10.1.%d.1", i))
			}
		}, "subnets"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := goodDesired()
			c.mutate(d)
			expectOne(t, ValidateDesired(d), c.path, "Too many")
		})
	}
}

func TestValidateNICPlan(t *testing.T) {
	good := func() *NICPlan {
		d := goodDesired()
		return &NICPlan{Version: Version, Gateway: d.Gateway, External: d.External, Subnets: d.Subnets}
	}
	if errs := ValidateNICPlan(good()); len(errs) > 0 {
		t.Fatalf("valid plan refused:\n%s", dump(errs))
	}
	cases := []struct {
		name           string
		mutate         func(p *NICPlan)
		path, fragment string
	}{
		{"gateway", func(p *NICPlan) { p.Gateway = "" }, "gateway", "Required"},
		{"mac", func(p *NICPlan) { p.External.MAC = "01:00:00:00:00:00" }, "external.mac", "unicast"},
		{"ifname", func(p *NICPlan) { p.Subnets[0].IfName = "vpc-\n" }, "subnets[0].ifname", `"vpc-\n"`},
		{"no subnets", func(p *NICPlan) { p.Subnets = nil }, "subnets", "Required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := good()
			c.mutate(p)
			expectOne(t, ValidateNICPlan(p), c.path, c.fragment)
		})
	}
	if errs := ValidateNICPlan(nil); len(errs) != 1 || !strings.Contains(errs[0].Error(), "no NIC plan") {
		t.Errorf("nil plan: %v", errs)
	}
}
