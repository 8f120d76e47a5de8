package controller

import (
	"context"
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// subnetCondition waits until the Subnet's Ready condition has status and reason and a message
// containing every fragment.
func subnetCondition(t *testing.T, name string, status metav1.ConditionStatus, reason string, fragments ...string) {
	t.Helper()
	eventually(t, waitLong, fmt.Sprintf("Subnet %s: Ready=%s (%s)", name, status, reason), func() error {
		s, err := admin.ovn.Subnets.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range s.Status.Conditions {
			if c.Type != controller.CondReady {
				continue
			}
			if c.Status != status || c.Reason != reason {
				return fmt.Errorf("Ready=%s (%s): %s", c.Status, c.Reason, c.Message)
			}
			for _, f := range fragments {
				if !strings.Contains(c.Message, f) {
					return fmt.Errorf("message %q lacks %q", c.Message, f)
				}
			}
			if c.ObservedGeneration != s.Generation {
				return fmt.Errorf("observedGeneration %d, generation %d", c.ObservedGeneration, s.Generation)
			}
			return nil
		}
		return fmt.Errorf("no Ready condition in %+v", s.Status.Conditions)
	})
}

// tenant is a Vpc, its one Subnet on attachment a with cidr, and its gateway, in the test ranges:
// the Subnet's gateway is the CIDR's first address, lanIp its second, the EIP 198.51.100.<eip>.
func tenant(name, cidr string, a v1.SubnetAttachment, eip int) (*v1.Vpc, *v1.Subnet, *v1.VpcNatGateway) {
	network, _, _ := strings.Cut(cidr, "/")
	prefix := network[:strings.LastIndex(network, ".")]
	vpc := &v1.Vpc{ObjectMeta: metav1.ObjectMeta{Name: "vpc-" + name}}
	sn := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "sn-" + name}, Spec: v1.SubnetSpec{
		Vpc: vpc.Name, CIDRBlock: cidr, Gateway: prefix + ".1", NatGatewayAttachment: &a,
	}}
	addr := fmt.Sprintf("198.51.100.%d", eip)
	gw := &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: "gw-" + name}, Spec: v1.VpcNatGatewaySpec{
		Vpc: vpc.Name, Subnet: sn.Name, LanIP: prefix + ".2",
		Eips:      []v1.Eip{{EipCIDR: addr + "/24", Gateway: "198.51.100.1"}},
		DnatRules: []v1.DnatRule{{Eip: addr, ExternalPort: intstr.FromInt32(2222), Protocol: "tcp", InternalIP: prefix + ".10", InternalPort: intstr.FromInt32(22)}},
		SnatRules: []v1.SnatRule{{Eip: addr, InternalCIDR: cidr}},
	}}
	return vpc, sn, gw
}

// undisturbed fails the test when gateway name's Deployment spec or its pod (identity, desired
// annotation) differs from what was recorded when it ran.
type undisturbed struct {
	name       string
	generation int64
	nics       string
	podUID     string
	desired    string
}

func record(t *testing.T, name string) undisturbed {
	t.Helper()
	p := waitDesired(t, name)
	d := getDeployment(t, name)
	return undisturbed{name, d.Generation, d.Spec.Template.Annotations[annotations.NICsKey], string(p.UID), p.Annotations[annotations.DesiredKey]}
}

func (u undisturbed) check(t *testing.T) {
	t.Helper()
	d := getDeployment(t, u.name)
	if d.Generation != u.generation || d.Spec.Template.Annotations[annotations.NICsKey] != u.nics {
		t.Fatalf("%s's Deployment changed: generation %d -> %d", u.name, u.generation, d.Generation)
	}
	p, err := livePod(u.name)
	if err != nil {
		t.Fatal(err)
	}
	if string(p.UID) != u.podUID || p.Annotations[annotations.DesiredKey] != u.desired {
		t.Fatalf("%s's pod was disturbed (uid %s -> %s, desired annotation changed: %v)", u.name, u.podUID, p.UID,
			p.Annotations[annotations.DesiredKey] != u.desired)
	}
}

func noDeployment(t *testing.T, gw string) {
	t.Helper()
	if _, err := admin.kube.AppsV1().Deployments(ns).Get(context.Background(), plan.DeploymentName(gw), metav1.GetOptions{}); !notFound(err) {
		t.Fatalf("%s got a Deployment (%v)", gw, err)
	}
}

// TestSegmentOfAnotherVpc: a third Vpc's Subnet with the same CIDR on tenant B's segment (its
// bridge, or its macvlan parent NIC) is refused: the Subnet says which Subnet and Vpc hold the
// segment, its gateway gets no Deployment, and B's gateway is not touched at all. When B's
// Subnet goes, the newcomer's gateway runs.
func TestSegmentOfAnotherVpc(t *testing.T) {
	for _, tc := range []struct {
		name  string
		a     v1.SubnetAttachment
		field string
	}{
		{"bridge", v1.SubnetAttachment{Bridge: "br-b"}, `subnet[sn-c].spec.natGatewayAttachment.bridge: Invalid value: "br-b"`},
		{"master", v1.SubnetAttachment{Master: "eth3"}, `subnet[sn-c].spec.natGatewayAttachment.master: Invalid value: "eth3"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fresh(t)
			createConfig(t, configMap(image1, "true", "eth1"))
			vpcB, snB, gwB := tenant("b", "203.0.113.0/24", tc.a, 11)
			createObjects(t, vpcB, []*v1.Subnet{snB}, gwB)
			startController(t)
			runPods(t)
			b := record(t, "gw-b")
			subnetCondition(t, "sn-b", metav1.ConditionTrue, controller.ReasonSegmentOwned)

			vpcC, snC, gwC := tenant("c", "203.0.113.0/24", tc.a, 12)
			createObjects(t, vpcC, []*v1.Subnet{snC}, gwC)
			subnetCondition(t, "sn-c", metav1.ConditionFalse, controller.ReasonSegmentConflict,
				"spec.natGatewayAttachment."+tc.name, "Subnet sn-b of Vpc vpc-b")
			condition(t, "gw-c", controller.CondReady, metav1.ConditionFalse, controller.ReasonInvalidSpec,
				tc.field, "Subnet sn-b of Vpc vpc-b", "the previous state stays in force")
			noDeployment(t, "gw-c")
			b.check(t)
			subnetCondition(t, "sn-b", metav1.ConditionTrue, controller.ReasonSegmentOwned)
			condition(t, "gw-b", controller.CondDegraded, metav1.ConditionFalse, controller.ReasonAsExpected)

			// Tenant B leaves: the segment is free, and C's Subnet and gateway become valid.
			ctx := context.Background()
			if err := admin.ovn.VpcNatGateways.Delete(ctx, "gw-b", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			if err := admin.ovn.Subnets.Delete(ctx, "sn-b", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			subnetCondition(t, "sn-c", metav1.ConditionTrue, controller.ReasonSegmentOwned)
			waitDesired(t, "gw-c")
		})
	}
}

// TestSegmentWithinOneVpc: two Subnets of one Vpc may share a bridge when their CIDRs do not
// overlap; an overlapping one is refused (naming the Subnet it overlaps) and the gateway keeps
// the state in force. Deleting the older Subnet makes the newer one valid.
func TestSegmentWithinOneVpc(t *testing.T) {
	fresh(t)
	createConfig(t, configMap(image1, "true", "eth1"))
	vpc, sn, gw := tenant("b", "203.0.113.0/25", v1.SubnetAttachment{Bridge: "br-b"}, 11)
	createObjects(t, vpc, []*v1.Subnet{sn}, gw)
	startController(t)
	runPods(t)
	waitDesired(t, "gw-b")

	side := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "sn-b-side"}, Spec: v1.SubnetSpec{
		Vpc: "vpc-b", CIDRBlock: "203.0.113.128/26", Gateway: "203.0.113.129", NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-b"}}}
	createObjects(t, nil, []*v1.Subnet{side})
	subnetCondition(t, "sn-b-side", metav1.ConditionTrue, controller.ReasonSegmentOwned, "bridge br-b is Vpc vpc-b's segment")
	eventually(t, waitLong, "gw-b joins sn-b-side", func() error {
		if d := getDeployment(t, "gw-b"); !strings.Contains(d.Spec.Template.Annotations[annotations.NICsKey], "sn-b-side") {
			return fmt.Errorf("NIC plan %s", d.Spec.Template.Annotations[annotations.NICsKey])
		}
		return nil
	})
	b := record(t, "gw-b")

	overlapping := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "sn-b-overlap"}, Spec: v1.SubnetSpec{
		Vpc: "vpc-b", CIDRBlock: "203.0.113.0/26", Gateway: "203.0.113.1", NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-b"}}}
	createObjects(t, nil, []*v1.Subnet{overlapping})
	subnetCondition(t, "sn-b-overlap", metav1.ConditionFalse, controller.ReasonSegmentConflict,
		"spec.natGatewayAttachment.bridge", "Subnet sn-b of the same Vpc vpc-b", "203.0.113.0/25 overlaps 203.0.113.0/26")
	condition(t, "gw-b", controller.CondReady, metav1.ConditionFalse, controller.ReasonInvalidSpec, "sn-b-overlap", "overlaps Subnet sn-b")
	b.check(t)
	subnetCondition(t, "sn-b", metav1.ConditionTrue, controller.ReasonSegmentOwned)

	if err := admin.ovn.Subnets.Delete(context.Background(), "sn-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	subnetCondition(t, "sn-b-overlap", metav1.ConditionTrue, controller.ReasonSegmentOwned)
}
