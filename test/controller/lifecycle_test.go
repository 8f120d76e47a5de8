package controller

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// TestDisabled: with enable-vpc-nat-gw "false", or no ConfigMap at all, no gateway is created
// and every gateway says why; a running gateway is left exactly as it is (a ConfigMap deleted by
// mistake must not cut every tenant's traffic) and takes no new rules until the switch is back.
func TestDisabled(t *testing.T) {
	pod := runningSeed(t)
	deploy := getDeployment(t, "ngw")
	ctx := context.Background()
	cms := admin.kube.CoreV1().ConfigMaps(plan.ConfigMapNamespace)

	if _, err := cms.Update(ctx, configMap(image1, "false", "eth1"), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonDisabled, `enable-vpc-nat-gw is not "true"`, "no gateway is created")
	condition(t, "ngw", controller.CondDegraded, metav1.ConditionTrue, controller.ReasonDisabled)
	wantEvent(t, "ngw", controller.ReasonDisabled, "Ready=False")

	vpc, sn, gwB := second(t)
	createObjects(t, vpc, []*v1.Subnet{sn}, gwB)
	condition(t, "gw-b", controller.CondReady, metav1.ConditionFalse, controller.ReasonDisabled)
	// The condition is written after the Deployment would have been: its absence now is final.
	if _, err := admin.kube.AppsV1().Deployments(ns).Get(ctx, plan.DeploymentName("gw-b"), metav1.GetOptions{}); !notFound(err) {
		t.Fatalf("a Deployment for gw-b while disabled (%v)", err)
	}
	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) { g.Spec.DnatRules[0].ExternalPort = intstr.FromInt32(8080) })
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonDisabled)

	if err := cms.Delete(ctx, plan.ConfigMapName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonDisabled, "does not exist")
	condition(t, "gw-b", controller.CondReady, metav1.ConditionFalse, controller.ReasonDisabled, "does not exist")

	// All this while the running gateway stayed exactly as it was.
	p, err := livePod("ngw")
	if err != nil {
		t.Fatal(err)
	}
	d := getDeployment(t, "ngw")
	if p.UID != pod.UID || p.Annotations[annotations.DesiredKey] != pod.Annotations[annotations.DesiredKey] ||
		d.UID != deploy.UID || d.Generation != deploy.Generation {
		t.Fatalf("disabling touched the running gateway: pod %s -> %s, deployment generation %d -> %d", pod.UID, p.UID, deploy.Generation, d.Generation)
	}

	// Back on: the new gateway is created, and the edit made meanwhile reaches the pod.
	createConfig(t, configMap(image1, "true", "eth1"))
	waitDesired(t, "gw-b")
	p = waitDesired(t, "ngw")
	if p.UID != pod.UID {
		t.Fatalf("re-enabling restarted the gateway")
	}
}

// TestDeletion: deleting a gateway removes its Deployment and pod (owner references) and
// nothing else: not the other gateway, not the Vpc, Subnet or ConfigMap it used.
func TestDeletion(t *testing.T) {
	fresh(t)
	createSeed(t)
	vpc, sn, gwB := second(t)
	createObjects(t, vpc, []*v1.Subnet{sn}, gwB)
	startController(t)
	runPods(t)
	waitDesired(t, "ngw")
	podB := waitDesired(t, "gw-b")
	deployB := getDeployment(t, "gw-b")
	ctx := context.Background()
	eventually(t, waitLong, "Vpc lists ngw", func() error { return vpcLists("test-vpc-1", "ngw") })

	if err := admin.ovn.VpcNatGateways.Delete(ctx, "ngw", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitLong, "ngw's Deployment and pod gone", func() error {
		if _, err := admin.kube.AppsV1().Deployments(ns).Get(ctx, plan.DeploymentName("ngw"), metav1.GetOptions{}); !notFound(err) {
			return fmt.Errorf("Deployment still there (%v)", err)
		}
		ps, err := admin.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway + "=ngw"})
		if err != nil || len(ps.Items) > 0 {
			return fmt.Errorf("%d pods left (%v)", len(ps.Items), err)
		}
		return nil
	})
	eventually(t, waitLong, "Vpc lists no gateway", func() error { return vpcLists("test-vpc-1") })
	if p, err := livePod("gw-b"); err != nil || p.UID != podB.UID {
		t.Fatalf("gw-b's pod: %v", err)
	}
	if d := getDeployment(t, "gw-b"); d.UID != deployB.UID || d.Generation != deployB.Generation {
		t.Fatalf("gw-b's Deployment changed")
	}
	if _, err := admin.ovn.Vpcs.Get(ctx, "test-vpc-1", metav1.GetOptions{}); err != nil {
		t.Fatalf("Vpc: %v", err)
	}
	if _, err := admin.ovn.Subnets.Get(ctx, "sn", metav1.GetOptions{}); err != nil {
		t.Fatalf("Subnet: %v", err)
	}
	if _, err := admin.kube.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Get(ctx, plan.ConfigMapName, metav1.GetOptions{}); err != nil {
		t.Fatalf("ConfigMap: %v", err)
	}
}

func vpcLists(name string, gateways ...string) error {
	vpc, err := admin.ovn.Vpcs.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if !slices.Equal(vpc.Status.NatGateways, gateways) {
		return fmt.Errorf("Vpc %s lists %v, want %v", name, vpc.Status.NatGateways, gateways)
	}
	return nil
}

// TestRestartChangesNothing: a controller started on a cluster in order writes nothing: no
// object changes (resource versions stay) and no Event is recorded.
func TestRestartChangesNothing(t *testing.T) {
	fresh(t)
	createSeed(t)
	vpc, sn, gwB := second(t)
	createObjects(t, vpc, []*v1.Subnet{sn}, gwB)
	first := startController(t)
	runPods(t)
	for _, name := range []string{"ngw", "gw-b"} {
		p := waitDesired(t, name)
		d, err := annotations.ParseDesired(p.Annotations[annotations.DesiredKey])
		if err != nil {
			t.Fatal(err)
		}
		writeApplied(t, p, d, "", nil)
		condition(t, name, controller.CondReady, metav1.ConditionTrue, controller.ReasonReady)
	}
	eventually(t, waitLong, "Vpc status", func() error { return vpcLists("vpc-b", "gw-b") })
	time.Sleep(time.Second) // let the first controller finish what its last events queued
	first.stop()

	before := snapshot(t)
	second := startController(t)
	eventually(t, waitLong, "the new controller synced both gateways", func() error {
		if n := second.syncs(); n < 2 {
			return fmt.Errorf("%v syncs", n)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // anything it would write, it writes in this time
	after := snapshot(t)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed: %s -> %s", k, v, after[k])
		}
	}
	if len(after) != len(before) {
		t.Errorf("objects before %v, after %v", before, after)
	}
}

// snapshot maps every object of the test (and every Event) to its resource version.
func snapshot(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	gws, err := admin.ovn.VpcNatGateways.List(ctx, listAll)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range gws.Items {
		out["gateway/"+o.Name] = o.ResourceVersion
	}
	vpcs, err := admin.ovn.Vpcs.List(ctx, listAll)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range vpcs.Items {
		out["vpc/"+o.Name] = o.ResourceVersion
	}
	ds, err := admin.kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ds.Items {
		out["deployment/"+o.Name] = o.ResourceVersion
	}
	ps, err := admin.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range ps.Items {
		out["pod/"+o.Name] = o.ResourceVersion
	}
	evs, err := admin.kube.CoreV1().Events("default").List(ctx, listAll)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range evs.Items {
		out["event/"+o.Name] = o.ResourceVersion
	}
	return out
}
