package controller

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// TestInvalidSpecKeepsState: a spec the CRD schema lets through but the validator refuses is not
// projected: the condition names the field and the value, long error lists are cut with a count,
// the pod keeps the previous state and the Deployment is not touched; fixing the spec projects it.
func TestInvalidSpecKeepsState(t *testing.T) {
	pod := runningSeed(t)
	deploy := getDeployment(t, "ngw")
	unchanged := func() {
		t.Helper()
		p, err := livePod("ngw")
		if err != nil {
			t.Fatal(err)
		}
		if p.UID != pod.UID || p.Annotations[annotations.DesiredKey] != pod.Annotations[annotations.DesiredKey] {
			t.Fatal("the refused spec reached the pod")
		}
		if d := getDeployment(t, "ngw"); d.Generation != deploy.Generation {
			t.Fatal("the refused spec changed the Deployment")
		}
	}

	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) { g.Spec.DnatRules[0].InternalIP = "10.0.3.10" })
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonInvalidSpec,
		`spec.dnatRules[0].internalIp: Invalid value: "10.0.3.10"`, "the previous state stays in force")
	condition(t, "ngw", controller.CondDegraded, metav1.ConditionTrue, controller.ReasonInvalidSpec)
	wantEvent(t, "ngw", controller.ReasonInvalidSpec, "spec.dnatRules[0].internalIp")
	unchanged()

	// Seven errors: five are shown, with how many more.
	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) {
		for i := range 6 {
			g.Spec.DnatRules = append(g.Spec.DnatRules, v1.DnatRule{Eip: "192.168.0.112", ExternalPort: intstr.FromInt32(int32(9000 + i)),
				Protocol: "tcp", InternalIP: fmt.Sprintf("172.16.0.%d", i+1), InternalPort: intstr.FromInt32(80)})
		}
	})
	gw := condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonInvalidSpec, "and 2 more")
	for _, c := range gw.Status.Conditions {
		if c.Type == controller.CondReady && strings.Count(c.Message, "Invalid value") != 5 {
			t.Errorf("message shows %d errors: %s", strings.Count(c.Message, "Invalid value"), c.Message)
		}
	}
	unchanged()

	// The FIP's EIP also carrying a DNAT (which the CRD schema cannot check at scale).
	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) {
		g.Spec.DnatRules = g.Spec.DnatRules[:1]
		g.Spec.DnatRules[0].InternalIP, g.Spec.DnatRules[0].Eip = "10.0.1.10", "192.168.0.111"
	})
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonInvalidSpec, "spec.dnatRules[0].eip", "192.168.0.111")
	unchanged()

	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) { g.Spec.DnatRules[0].Eip = "192.168.0.112" })
	p := waitDesired(t, "ngw")
	if p.UID != pod.UID {
		t.Fatal("the fixed spec restarted the pod")
	}
	condition(t, "ngw", controller.CondDegraded, metav1.ConditionFalse, controller.ReasonAsExpected)
}

// TestClusterWideConflicts: what no single gateway's objects can tell: an EIP another gateway
// already has, a lanIp another gateway already has in the same subnet (and a Vpc that already has
// its gateway), a subnet of another Vpc.
// The newcomer is refused with the other gateway named; the gateway that was first keeps running.
func TestClusterWideConflicts(t *testing.T) {
	pod := runningSeed(t)
	// Its status shows the EIPs it holds: from here on, its claim is in force.
	condition(t, "ngw", controller.CondApplied, metav1.ConditionFalse, controller.ReasonPending)

	vpc, sn, eipThief := second(t)
	eipThief.Spec.Eips[0].EipCIDR = "192.168.0.111/25" // the same address, another prefix length
	eipThief.Spec.Eips[0].Gateway = "192.168.0.1"
	for i := range eipThief.Spec.DnatRules {
		eipThief.Spec.DnatRules[i].Eip = "192.168.0.111"
	}
	eipThief.Spec.SnatRules[0].Eip = "192.168.0.111"
	createObjects(t, vpc, []*v1.Subnet{sn}, eipThief)
	condition(t, "gw-b", controller.CondReady, metav1.ConditionFalse, controller.ReasonInvalidSpec,
		`spec.eips[0].eipCIDR: Invalid value: "192.168.0.111/25"`, "already claimed by VpcNatGateway ngw")

	lanThief := seed(t).Gateway
	lanThief.Name = "gw-c"
	lanThief.Spec.Eips = []v1.Eip{{EipCIDR: "192.168.0.120/24", Gateway: "192.168.0.254"}}
	lanThief.Spec.FloatingIPRules, lanThief.Spec.DnatRules, lanThief.Spec.SnatRules = nil, nil, nil
	createObjects(t, nil, nil, lanThief)
	condition(t, "gw-c", controller.CondReady, metav1.ConditionFalse, controller.ReasonInvalidSpec,
		`spec.lanIp: Invalid value: "10.0.1.254"`, "VpcNatGateway ngw already has this address in subnet sn",
		`spec.vpc: Invalid value: "test-vpc-1"`, "VpcNatGateway ngw already serves this Vpc")

	foreign := seed(t).Gateway
	foreign.Name = "gw-d"
	foreign.Spec.Vpc, foreign.Spec.LanIP = "vpc-b", "10.0.1.253"
	foreign.Spec.Eips = []v1.Eip{{EipCIDR: "192.168.0.121/24", Gateway: "192.168.0.254"}}
	foreign.Spec.FloatingIPRules, foreign.Spec.DnatRules, foreign.Spec.SnatRules = nil, nil, nil
	createObjects(t, nil, nil, foreign)
	condition(t, "gw-d", controller.CondReady, metav1.ConditionFalse, controller.ReasonInvalidSpec, "spec.subnet", `belongs to Vpc "test-vpc-1"`)

	ctx := context.Background()
	for _, name := range []string{"gw-b", "gw-c", "gw-d"} {
		if _, err := admin.kube.AppsV1().Deployments(ns).Get(ctx, plan.DeploymentName(name), metav1.GetOptions{}); !notFound(err) {
			t.Errorf("%s got a Deployment (%v)", name, err)
		}
	}
	if p, err := livePod("ngw"); err != nil || p.UID != pod.UID || p.Annotations[annotations.DesiredKey] != pod.Annotations[annotations.DesiredKey] {
		t.Fatalf("the first gateway was disturbed (%v)", err)
	}
	if c := condition(t, "ngw", controller.CondDegraded, metav1.ConditionFalse, controller.ReasonAsExpected); c == nil {
		t.Fatal("ngw degraded")
	}

	// The first gateway gives the EIP up: the newcomer's claim is now the only one.
	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) {
		g.Spec.Eips, g.Spec.FloatingIPRules = g.Spec.Eips[1:], nil
	})
	waitDesired(t, "gw-b")
	// The first gateway goes: its lanIp is free.
	if err := admin.ovn.VpcNatGateways.Delete(ctx, "ngw", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitDesired(t, "gw-c")
	condition(t, "gw-d", controller.CondReady, metav1.ConditionFalse, controller.ReasonInvalidSpec, "spec.subnet")
}

// TestTooLarge: a desired state that would take the pod's annotations past the API server's
// 256 KiB is refused like an invalid spec (the pod keeps its state), not truncated.
func TestTooLarge(t *testing.T) {
	pod := runningSeed(t)
	// Someone else's annotation fills the pod up to 64 bytes below the limit.
	total := 0
	for k, v := range pod.Annotations {
		total += len(k) + len(v)
	}
	const key = "example.com/blob"
	blob := strings.Repeat("x", annotations.MaxTotalSize-total-len(key)-64)
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{key: blob}}})
	if _, err := admin.kube.CoreV1().Pods(ns).Patch(context.Background(), pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) {
		g.Spec.SnatRules = append(g.Spec.SnatRules, v1.SnatRule{Eip: "192.168.0.112", InternalCIDR: "10.0.1.0/25"},
			v1.SnatRule{Eip: "192.168.0.112", InternalCIDR: "10.0.1.128/25"})
	})
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonTooLarge, "over the API server's limit of 262144")
	p, err := livePod("ngw")
	if err != nil {
		t.Fatal(err)
	}
	if p.Annotations[annotations.DesiredKey] != pod.Annotations[annotations.DesiredKey] {
		t.Fatal("the pod's desired state changed")
	}
}

// TestDeploymentNameTaken: a Deployment of the gateway's name that the gateway does not control
// is never adopted or changed; the condition says why.
func TestDeploymentNameTaken(t *testing.T) {
	fresh(t)
	ctx := context.Background()
	labels := map[string]string{"app": "squatter", "vpcnat-test": "yes"}
	squatter := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: plan.DeploymentName("ngw"), Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{Replicas: new(int32(0)), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "squatter"}}}}},
	}
	created, err := admin.kube.AppsV1().Deployments(ns).Create(ctx, squatter, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	createSeed(t)
	startController(t)
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonDeploymentConflict, "is not controlled by this VpcNatGateway")
	d, err := admin.kube.AppsV1().Deployments(ns).Get(ctx, squatter.Name, metav1.GetOptions{})
	// Its status is the deployment controller's business; its spec and ownership are nobody's.
	if err != nil || d.Generation != created.Generation || len(d.OwnerReferences) != 0 || d.Labels[plan.LabelGateway] != "" {
		t.Fatalf("the squatter's Deployment was changed (%v): %+v", err, d.ObjectMeta)
	}
}
