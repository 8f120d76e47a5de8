package controller

import (
	"context"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller"
)

// refused fails the test unless err is the webhook's refusal with every fragment in its message.
func refused(t *testing.T, what string, err error, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("%s: admitted", what)
	}
	msg := err.Error()
	if !strings.Contains(msg, `admission webhook "validate.vpcnat.kubeovn.io" denied the request`) {
		t.Fatalf("%s: refused, but not by the webhook: %v", what, err)
	}
	for _, f := range fragments {
		if !strings.Contains(msg, f) {
			t.Errorf("%s: message lacks %q: %s", what, f, msg)
		}
	}
}

func admitted(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: refused: %v", what, err)
	}
}

// withEIP is a copy of g whose one EIP is cidr (and every rule's eip its address).
func withEIP(g *v1.VpcNatGateway, cidr, gateway string) *v1.VpcNatGateway {
	g = g.DeepCopy()
	addr, _, _ := strings.Cut(cidr, "/")
	g.Spec.Eips = []v1.Eip{{EipCIDR: cidr, Gateway: gateway}}
	for i := range g.Spec.DnatRules {
		g.Spec.DnatRules[i].Eip = addr
	}
	for i := range g.Spec.SnatRules {
		g.Spec.SnatRules[i].Eip = addr
	}
	for i := range g.Spec.FloatingIPRules {
		g.Spec.FloatingIPRules[i].Eip = addr
	}
	return g
}

// TestWebhookRefusesConflicts: with the seed's gateway running, every cross-object conflict is
// refused by the create or update itself (kubectl apply fails at once), its message naming the
// field and the other object; objects without conflict, and updates of the gateway that holds
// the contested things, are admitted.
func TestWebhookRefusesConflicts(t *testing.T) {
	runningSeed(t)
	// Its status lists the EIPs it holds: its claims are in force.
	condition(t, "ngw", controller.CondApplied, metav1.ConditionFalse, controller.ReasonPending)
	startWebhookController(t)
	ctx := context.Background()
	gws, subnets := admin.ovn.VpcNatGateways, admin.ovn.Subnets

	vpcB, snB, gwB := second(t)
	createObjects(t, vpcB, []*v1.Subnet{snB}) // another Vpc on its own bridge: admitted

	t.Run("EIP of another gateway", func(t *testing.T) {
		_, err := gws.Create(ctx, withEIP(gwB, "192.168.0.111/25", "192.168.0.1"), metav1.CreateOptions{})
		refused(t, "create", err, `spec.eips[0].eipCIDR: Invalid value: "192.168.0.111/25"`, "already claimed by VpcNatGateway ngw")
	})
	t.Run("DNAT on an EIP the gateway does not hold", func(t *testing.T) {
		g := gwB.DeepCopy()
		g.Spec.DnatRules[0].Eip = "198.51.100.99"
		_, err := gws.Create(ctx, g, metav1.CreateOptions{})
		refused(t, "create", err, `spec.dnatRules[0].eip: Invalid value: "198.51.100.99"`, "not the address of any of spec.eips")
	})
	t.Run("second gateway of a Vpc, lanIp of another gateway", func(t *testing.T) {
		g := seed(t).Gateway
		g.Name = "gw-c"
		g.Spec.Eips = []v1.Eip{{EipCIDR: "192.168.0.120/24", Gateway: "192.168.0.254"}}
		g.Spec.FloatingIPRules, g.Spec.DnatRules, g.Spec.SnatRules = nil, nil, nil
		_, err := gws.Create(ctx, g, metav1.CreateOptions{})
		refused(t, "create", err, `spec.vpc: Invalid value: "test-vpc-1"`, "VpcNatGateway ngw already serves this Vpc",
			`spec.lanIp: Invalid value: "10.0.1.254"`, "VpcNatGateway ngw already has this address in subnet sn")
	})
	t.Run("Subnet of another Vpc", func(t *testing.T) {
		g := gwB.DeepCopy()
		g.Spec.Subnet = "sn"
		_, err := gws.Create(ctx, g, metav1.CreateOptions{})
		refused(t, "create", err, `spec.subnet: Invalid value: "sn"`, `Subnet sn belongs to Vpc "test-vpc-1", not "vpc-b"`)
	})
	t.Run("Subnet on another Vpc's segment", func(t *testing.T) {
		_, err := subnets.Create(ctx, subnet("sn-thief", "vpc-b", "10.0.1.0/24", "br-sn"), metav1.CreateOptions{})
		refused(t, "create", err, `spec.natGatewayAttachment.bridge: Invalid value: "br-sn"`, "Subnet sn of Vpc test-vpc-1")
		m := subnet("sn-m", "vpc-b", "198.51.100.128/26", "")
		m.Spec.NatGatewayAttachment = &v1.SubnetAttachment{Master: "eth3"}
		_, err = subnets.Create(ctx, m, metav1.CreateOptions{})
		admitted(t, "the first Subnet on parent NIC eth3", err)
		eventually(t, waitLong, "Subnet sn-m refused a rival on eth3", func() error {
			m2 := subnet("sn-m2", "test-vpc-1", "198.51.100.192/26", "")
			m2.Spec.NatGatewayAttachment = &v1.SubnetAttachment{Master: "eth3"}
			_, err := subnets.Create(ctx, m2, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
			if err == nil {
				return errorf("admitted")
			}
			refused(t, "create on eth3", err, `spec.natGatewayAttachment.master: Invalid value: "eth3"`, "Subnet sn-m of Vpc vpc-b")
			return nil
		})
	})
	t.Run("Subnet overlapping another of its Vpc on one bridge", func(t *testing.T) {
		_, err := subnets.Create(ctx, subnet("sn-overlap", "test-vpc-1", "10.0.1.128/25", "br-sn"), metav1.CreateOptions{})
		refused(t, "create", err, `spec.natGatewayAttachment.bridge: Invalid value: "br-sn"`, "Subnet sn of the same Vpc test-vpc-1")
	})

	// Without conflict: admitted, and so are updates of the gateway holding what others wanted.
	// (sn-m goes first: vpc-b's gateway would join it, and its CIDR overlaps the EIPs' network.)
	_ = subnets.Delete(ctx, "sn-m", metav1.DeleteOptions{})
	_, err := gws.Create(ctx, gwB, metav1.CreateOptions{})
	admitted(t, "gw-b", err)
	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) {
		g.Spec.DnatRules = append(g.Spec.DnatRules, v1.DnatRule{Eip: "192.168.0.112", ExternalPort: intstr.FromInt32(8080),
			Protocol: "tcp", InternalIP: "10.0.1.11", InternalPort: intstr.FromInt32(80)})
	})
	waitDesired(t, "ngw")
	waitDesired(t, "gw-b")
	// An update that takes another gateway's EIP is refused like a create.
	_, err = gws.Update(ctx, withEIP(getGateway(t, "gw-b"), "192.168.0.112/24", "192.168.0.254"), metav1.UpdateOptions{})
	refused(t, "update of gw-b", err, `spec.eips[0].eipCIDR: Invalid value: "192.168.0.112/24"`, "VpcNatGateway ngw")
}

// TestWebhookDownStatusPathRefuses: while no webhook answers (failurePolicy Ignore), a Subnet on
// another Vpc's segment is admitted, and the controller's status path refuses it: the Subnet's
// condition names the segment's Subnet and Vpc, its gateway gets no Deployment.
func TestWebhookDownStatusPathRefuses(t *testing.T) {
	fresh(t)
	createConfig(t, configMap(image1, "true", "eth1"))
	vpcB, snB, gwB := tenant("b", "203.0.113.0/24", v1.SubnetAttachment{Bridge: "br-b"}, 11)
	createObjects(t, vpcB, []*v1.Subnet{snB}, gwB)
	w := startWebhookController(t)
	runPods(t)
	b := record(t, "gw-b")
	w.stopServer()

	vpcC, snC, gwC := tenant("c", "203.0.113.0/24", v1.SubnetAttachment{Bridge: "br-b"}, 12)
	createObjects(t, vpcC, []*v1.Subnet{snC}, gwC)
	subnetCondition(t, "sn-c", metav1.ConditionFalse, controller.ReasonSegmentConflict, "Subnet sn-b of Vpc vpc-b")
	condition(t, "gw-c", controller.CondReady, metav1.ConditionFalse, controller.ReasonInvalidSpec,
		`subnet[sn-c].spec.natGatewayAttachment.bridge: Invalid value: "br-b"`)
	noDeployment(t, "gw-c")
	b.check(t)
}
