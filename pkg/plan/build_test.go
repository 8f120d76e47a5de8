package plan

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

func marshal(t *testing.T, v ...any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withSubnets is the seed plus two more subnets of its Vpc and one of another Vpc.
func withSubnets(t *testing.T) Inputs {
	in := seed(t)
	in.Subnets = append(in.Subnets,
		subnet("z-sub", "10.1.2.0/24", "10.1.2.1", &v1.SubnetAttachment{Master: "eth2", MTU: 1450}),
		subnet("a-sub", "10.1.1.0/24", "10.1.1.1", &v1.SubnetAttachment{Bridge: "br-a"}),
		&v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Spec: v1.SubnetSpec{Vpc: "vpc-2", CIDRBlock: "10.0.1.0/24", Gateway: "10.0.1.1"}},
	)
	return in
}

// TestBuildIsDeterministic: the same objects, in any order, give byte-identical documents, and
// Build leaves its inputs as they were (they may be informer cache objects).
func TestBuildIsDeterministic(t *testing.T) {
	in := withSubnets(t)
	before := marshal(t, in.Gateway, in.Vpc, in.Subnets, in.Config)
	p, d := mustBuild(t, in)
	want := marshal(t, p, d)
	if after := marshal(t, in.Gateway, in.Vpc, in.Subnets, in.Config); after != before {
		t.Fatalf("Build mutated its inputs:\n%s\n%s", before, after)
	}
	r := rand.New(rand.NewPCG(7, 7))
	for range 20 {
		r.Shuffle(len(in.Subnets), func(i, j int) { in.Subnets[i], in.Subnets[j] = in.Subnets[j], in.Subnets[i] })
		p, d := mustBuild(t, in)
		if got := marshal(t, p, d); got != want {
			t.Fatalf("subnet order changed the result:\n%s\n%s", want, got)
		}
	}
}

// TestSubnetOrder: spec.subnet first, the others by name; another Vpc's subnet is left out, and a
// subnet's NIC keeps its name when others come and go.
func TestSubnetOrder(t *testing.T) {
	in := withSubnets(t)
	p, _ := mustBuild(t, in)
	var names []string
	for _, s := range p.Subnets {
		names = append(names, s.Subnet)
	}
	if want := []string{"sn", "a-sub", "z-sub"}; !reflect.DeepEqual(names, want) {
		t.Fatalf("subnets %v, want %v", names, want)
	}
	tmpl, err := TemplateAnnotations(p, "kube-system/ext")
	if err != nil {
		t.Fatal(err)
	}
	if got := tmpl[annotations.LogicalSwitchKey]; got != "sn,a-sub,z-sub" {
		t.Errorf("logical_switch %q", got)
	}
	if got := tmpl[annotations.IPAddressKey]; got != "10.0.1.254,10.1.1.1,10.1.2.1" {
		t.Errorf("ip_address %q", got)
	}
	if got := tmpl[annotations.NetworksKey]; got != "kube-system/ext" {
		t.Errorf("networks %q", got)
	}
	seedPlan, _ := mustBuild(t, seed(t))
	if p.Subnets[0].IfName != seedPlan.Subnets[0].IfName || p.Subnets[0].Attachment.HostIfName != seedPlan.Subnets[0].Attachment.HostIfName {
		t.Errorf("adding subnets renamed sn's NICs: %+v vs %+v", p.Subnets[0], seedPlan.Subnets[0])
	}
	z := p.Subnets[2]
	if z.Attachment != (annotations.Attachment{Type: annotations.AttachMacvlan, Master: "eth2", MTU: 1450}) ||
		!reflect.DeepEqual(z.Addresses, []string{"10.1.2.1/24"}) || z.IP != "10.1.2.1" || z.IfName != SubnetIfName("z-sub") {
		t.Errorf("macvlan subnet NIC %+v", z)
	}
}

// TestNormalisation: what the CR lets users write loosely, the desired state holds in one form.
func TestNormalisation(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(in *Inputs)
		check  func(t *testing.T, p *annotations.NICPlan, d *annotations.Desired)
	}{
		{"port strings", func(in *Inputs) {
			r := &in.Gateway.Spec.DnatRules[0]
			r.ExternalPort, r.InternalPort = intstr.FromString("8888"), intstr.FromString("080")
		}, func(t *testing.T, _ *annotations.NICPlan, d *annotations.Desired) {
			if r := d.DNATs[0]; r.ExternalPort != 8888 || r.InternalPort != 80 {
				t.Errorf("ports %d %d", r.ExternalPort, r.InternalPort)
			}
		}},
		{"protocol case", func(in *Inputs) {
			g := &in.Gateway.Spec
			g.DnatRules[0].Protocol = "TCP"
			g.DnatRules = append(g.DnatRules, g.DnatRules[0])
			g.DnatRules[1].Protocol = "Udp" // the same port for the other protocol is fine
		}, func(t *testing.T, _ *annotations.NICPlan, d *annotations.Desired) {
			if d.DNATs[0].Protocol != "tcp" || d.DNATs[1].Protocol != "udp" {
				t.Errorf("protocols %q %q", d.DNATs[0].Protocol, d.DNATs[1].Protocol)
			}
		}},
		{"snat bare address", func(in *Inputs) {
			in.Gateway.Spec.SnatRules = append(in.Gateway.Spec.SnatRules, v1.SnatRule{Eip: "192.168.0.112", InternalCIDR: "10.0.1.7"})
		}, func(t *testing.T, _ *annotations.NICPlan, d *annotations.Desired) {
			if got := d.SNATs[1].InternalCIDR; got != "10.0.1.7/32" {
				t.Errorf("SNAT %q", got)
			}
		}},
		{"route policy default", func(in *Inputs) { in.Vpc.Spec.StaticRoutes[0].Policy = "" },
			func(t *testing.T, _ *annotations.NICPlan, d *annotations.Desired) {
				if d.Routes[0].Policy != annotations.PolicyDst {
					t.Errorf("policy %q", d.Routes[0].Policy)
				}
			}},
		{"lanIp is the subnet gateway", func(in *Inputs) { in.Gateway.Spec.LanIP = "10.0.1.1" },
			func(t *testing.T, p *annotations.NICPlan, _ *annotations.Desired) {
				if s := p.Subnets[0]; !reflect.DeepEqual(s.Addresses, []string{"10.0.1.1/24"}) || s.IP != "10.0.1.1" {
					t.Errorf("NIC %+v", s)
				}
			}},
		{"primary attachment", func(in *Inputs) { in.Subnets[0].Spec.NatGatewayAttachment = nil },
			func(t *testing.T, p *annotations.NICPlan, _ *annotations.Desired) {
				want := annotations.SubnetNIC{Subnet: "sn", IfName: "eth0", CIDR: "10.0.1.0/24", IP: "10.0.1.254",
					Attachment: annotations.Attachment{Type: annotations.AttachPrimary}}
				if !reflect.DeepEqual(p.Subnets[0], want) {
					t.Errorf("NIC %+v, want %+v", p.Subnets[0], want)
				}
			}},
		{"internal IP behind a route", func(in *Inputs) {
			in.Vpc.Spec.StaticRoutes = append(in.Vpc.Spec.StaticRoutes, v1.StaticRoute{CIDR: "203.0.113.0/24", NextHopIP: "10.0.1.100"})
			in.Gateway.Spec.FloatingIPRules[0].InternalIP = "203.0.113.7"
		}, func(t *testing.T, _ *annotations.NICPlan, d *annotations.Desired) {
			if d.FloatingIPs[0].InternalIP != "203.0.113.7" || len(d.Routes) != 2 {
				t.Errorf("FIP %+v routes %+v", d.FloatingIPs[0], d.Routes)
			}
		}},
		{"generation", func(in *Inputs) { in.Gateway.Generation = 42 },
			func(t *testing.T, _ *annotations.NICPlan, d *annotations.Desired) {
				if d.Generation != 42 {
					t.Errorf("generation %d", d.Generation)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := seed(t)
			c.mutate(&in)
			p, d := mustBuild(t, in)
			c.check(t, p, d)
			if errs := annotations.ValidateDesired(d); len(errs) > 0 {
				t.Errorf("the annotation validator refuses Build's output: %v", errs)
			}
		})
	}
}

func TestBuildWithoutGateway(t *testing.T) {
	p, d, errs := Build(Inputs{})
	if p != nil || d != nil || len(errs) != 1 {
		t.Fatalf("Build(no gateway) = %v %v %v", p, d, errs)
	}
}
