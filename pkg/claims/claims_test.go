package claims

import (
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// Address plan: values in API objects only (203.0.113.0/24 subnets, 198.51.100.0/24 EIPs).

// view is a Lookup over real indexed stores, as the informer caches are.
type view struct {
	Caches
	deployments map[string]*appsv1.Deployment // by gateway name
}

func (v view) Deployment(g *v1.VpcNatGateway) *appsv1.Deployment { return v.deployments[g.Name] }

func newView(t *testing.T, objs ...any) view {
	t.Helper()
	gws := cache.NewIndexer(cache.MetaNamespaceKeyFunc, GatewayIndexers)
	sns := cache.NewIndexer(cache.MetaNamespaceKeyFunc, SubnetIndexers)
	v := view{Caches: Caches{Gateways: gws, Subnets: sns}, deployments: map[string]*appsv1.Deployment{}}
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *v1.VpcNatGateway:
			err = gws.Add(o)
		case *v1.Subnet:
			err = sns.Add(o)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	return v
}

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func sub(name, vpc, cidr string, a *v1.SubnetAttachment, age int) *v1.Subnet {
	return &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Hour))},
		Spec: v1.SubnetSpec{Vpc: vpc, CIDRBlock: cidr, NatGatewayAttachment: a}}
}

// running records gw's Deployment as the controller makes it: its pod template's annotations
// from plan.Build of gw with its Vpc's subnets.
func (v view) running(t *testing.T, gw *v1.VpcNatGateway, subnets ...*v1.Subnet) {
	t.Helper()
	nics, _, errs := plan.Build(plan.Inputs{Gateway: gw, Vpc: &v1.Vpc{ObjectMeta: metav1.ObjectMeta{Name: gw.Spec.Vpc}},
		Subnets: subnets, Config: plan.Config{Enabled: true, Image: "gateway:v1", NIC: "eth1"}})
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	tmpl, err := plan.TemplateAnnotations(nics, "ovn-vpc-external-network")
	if err != nil {
		t.Fatal(err)
	}
	d := &appsv1.Deployment{}
	d.Spec.Template.Annotations = tmpl
	v.deployments[gw.Name] = d
}

func TestSegmentConflict(t *testing.T) {
	br := func(n string) *v1.SubnetAttachment { return &v1.SubnetAttachment{Bridge: n} }
	older := sub("sn-b", "vpc-b", "203.0.113.0/24", br("br-b"), 0)
	newer := sub("sn-c", "vpc-c", "203.0.113.0/24", br("br-b"), 1)
	v := newView(t, older, newer, sub("sn-d", "vpc-d", "203.0.113.0/24", br("br-d"), 2), sub("sn-p", "vpc-e", "203.0.113.0/24", nil, 3))

	if c := SegmentConflict(v, older); c != nil {
		t.Errorf("the older Subnet lost its segment to %s", c.Other.Name)
	}
	c := SegmentConflict(v, newer)
	if c == nil || c.Other.Name != "sn-b" {
		t.Fatalf("the newer Subnet on br-b: %+v", c)
	}
	if msg := c.Error().Error(); !strings.Contains(msg, `spec.natGatewayAttachment.bridge: Invalid value: "br-b"`) || !strings.Contains(msg, "Subnet sn-b of Vpc vpc-b") {
		t.Errorf("message %q", msg)
	}
	for _, name := range []string{"sn-d", "sn-p"} {
		if s := v.Subnet(name); SegmentConflict(v, s) != nil {
			t.Errorf("%s: conflict on its own segment (or without one)", name)
		}
	}

	// A claim in force beats an older one: the newer Subnet's gateway already runs on br-b.
	gwC := &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: "gw-c"}, Spec: v1.VpcNatGatewaySpec{Vpc: "vpc-c", Subnet: "sn-c", LanIP: "203.0.113.2"}}
	if err := v.Caches.Gateways.Add(gwC); err != nil {
		t.Fatal(err)
	}
	newer.Spec.Gateway = "203.0.113.1"
	v.running(t, gwC, newer)
	if c := SegmentConflict(v, older); c == nil || c.Other.Name != "sn-c" {
		t.Errorf("the older Subnet beat one in force: %+v", c)
	}
	if c := SegmentConflict(v, newer); c != nil {
		t.Errorf("the Subnet in force lost to %s", c.Other.Name)
	}
}

func TestSegmentWithinVpc(t *testing.T) {
	m := &v1.SubnetAttachment{Master: "eth3"}
	a := sub("sn-a", "vpc-b", "203.0.113.0/25", m, 0)
	side := sub("sn-side", "vpc-b", "203.0.113.128/25", m, 1)
	overlap := sub("sn-overlap", "vpc-b", "203.0.113.0/26", m, 2)
	v := newView(t, a, side, overlap)
	if c := SegmentConflict(v, side); c != nil {
		t.Errorf("a non-overlapping Subnet of the same Vpc refused: %s", c.Message())
	}
	c := SegmentConflict(v, overlap)
	if c == nil || c.Other.Name != "sn-a" || !strings.Contains(c.Message(), "same Vpc vpc-b") {
		t.Fatalf("overlapping Subnet: %+v", c)
	}
	if name, value := c.Field(); name != "master" || value != "eth3" {
		t.Errorf("field %s=%s", name, value)
	}
	// Under admission a create has no creation time yet: it is the newest.
	fresh := sub("sn-new", "vpc-x", "198.51.100.0/24", m, 0)
	fresh.CreationTimestamp = metav1.Time{}
	if c := SegmentConflict(v, fresh); c == nil || c.Other.Name != "sn-a" {
		t.Errorf("a create without creation time won the segment: %+v", c)
	}
}

func TestGatewayConflicts(t *testing.T) {
	gw := func(name string, age int, eip string) *v1.VpcNatGateway {
		return &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: metav1.NewTime(t0.Add(time.Duration(age) * time.Hour))},
			Spec: v1.VpcNatGatewaySpec{Vpc: "vpc-" + name, Subnet: "sn-" + name, LanIP: "203.0.113.2",
				Eips: []v1.Eip{{EipCIDR: eip, Gateway: "198.51.100.1"}}}}
	}
	first, second := gw("a", 0, "198.51.100.11/24"), gw("b", 1, "198.51.100.11/25")
	v := newView(t, first, second)
	if errs := GatewayConflicts(v, first); len(errs) != 0 {
		t.Errorf("the first gateway: %v", errs)
	}
	errs := GatewayConflicts(v, second)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "spec.eips[0].eipCIDR") || !strings.Contains(errs[0].Error(), "VpcNatGateway a") {
		t.Fatalf("the second gateway: %v", errs)
	}
	// The status of the second lists the EIP: its claim is in force and wins.
	second.Status.Rules = []v1.RuleStatus{{Kind: KindEIP, Key: "198.51.100.11/25"}}
	if errs := GatewayConflicts(v, second); len(errs) != 0 {
		t.Errorf("a claim in force lost: %v", errs)
	}
	if errs := GatewayConflicts(v, first); len(errs) != 1 {
		t.Errorf("a new claim beat one in force: %v", errs)
	}
}

func TestRuleEIPs(t *testing.T) {
	g := &v1.VpcNatGateway{Spec: v1.VpcNatGatewaySpec{
		Eips:      []v1.Eip{{EipCIDR: "198.51.100.11/24"}},
		DnatRules: []v1.DnatRule{{Eip: "198.51.100.11"}, {Eip: "198.51.100.12"}},
	}}
	errs := RuleEIPs(g)
	if len(errs) != 1 || errs[0].Field != "spec.dnatRules[1].eip" {
		t.Fatalf("%v", errs)
	}
}
