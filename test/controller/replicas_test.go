package controller

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// reportRole plays the daemon of one replica: the applied annotation for d, with the replica's
// role as the failover agent set it ("" for none).
func reportRole(t *testing.T, pod *corev1.Pod, d *annotations.Desired, role string) {
	t.Helper()
	hash, err := annotations.DesiredHash(d)
	if err != nil {
		t.Fatal(err)
	}
	value, err := annotations.Marshal(annotations.Applied{Version: annotations.Version, Generation: d.Generation, Hash: hash,
		Time: time.Now().UTC().Format(time.RFC3339), Role: role})
	if err != nil {
		t.Fatal(err)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotations.AppliedKey: value}}})
	if _, err := admin.kube.CoreV1().Pods(pod.Namespace).Patch(context.Background(), pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestReplicatedGateway: with spec.replicas 2 the gateway gets a Deployment of two pods with a
// required anti-affinity on the node name running the failover agent, both pods get the desired
// state (which names the replicas), and the status shows what their daemons report: the active
// replica's node, the ready standbys, Degraded=True/NoStandby without one.
func TestReplicatedGateway(t *testing.T) {
	fresh(t)
	in := seed(t)
	in.Gateway.Spec.Replicas = 2
	in.Gateway.Spec.BFD = &v1.BFDConfig{Enabled: true, MinRX: 100, MinTX: 100, Multiplier: 3}
	createConfig(t, configMap(image1, "true", "eth1"))
	createObjects(t, in.Vpc, in.Subnets, in.Gateway)
	ctrl := startController(t)
	runPods(t)

	d := getDeployment(t, "ngw")
	terms := d.Spec.Template.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if *d.Spec.Replicas != 2 || len(terms) != 1 || terms[0].TopologyKey != corev1.LabelHostname {
		t.Fatalf("Deployment: replicas %d, anti-affinity %+v", *d.Spec.Replicas, terms)
	}
	if c := d.Spec.Template.Spec.Containers[0]; len(c.Command) == 0 || c.Command[0] != controller.KeepaliveBinary {
		t.Fatalf("the gateway container runs %q, want the failover agent", c.Command)
	}

	want, wantDoc := expectedDesired(t, "ngw")
	if wantDoc.Replicas != 2 {
		t.Fatalf("desired replicas %d, want 2", wantDoc.Replicas)
	}
	var pods []*corev1.Pod
	eventually(t, waitLong, "desired state on both replicas", func() error {
		list, err := admin.kube.CoreV1().Pods(ns).List(context.Background(),
			metav1.ListOptions{LabelSelector: labels.Set{plan.LabelGateway: "ngw"}.String()})
		if err != nil {
			return err
		}
		pods = nil
		for i := range list.Items {
			p := &list.Items[i]
			if p.DeletionTimestamp == nil && p.Spec.NodeName != "" && p.Annotations[annotations.DesiredKey] == want {
				pods = append(pods, p)
			}
		}
		if len(pods) != 2 {
			return errorf("%d of 2 replicas carry the desired state", len(pods))
		}
		return nil
	})
	slices.SortFunc(pods, func(a, b *corev1.Pod) int { return strings.Compare(a.Name, b.Name) })

	replicaStatus := func(active string, standbys int32, degradedReason string) {
		t.Helper()
		eventually(t, waitLong, "replica status", func() error {
			gw := getGateway(t, "ngw")
			c := meta.FindStatusCondition(gw.Status.Conditions, controller.CondDegraded)
			if gw.Status.ActiveNode != active || gw.Status.StandbysReady != standbys || c == nil || c.Reason != degradedReason {
				return errorf("activeNode %q, standbysReady %d, Degraded %+v", gw.Status.ActiveNode, gw.Status.StandbysReady, c)
			}
			return nil
		})
	}
	// No daemon has reported yet: not Ready.
	ctrl.wantGauge(t, "vpcnat_controller_gateway_ready", "ngw", 0)
	reportRole(t, pods[0], wantDoc, annotations.RoleActive)
	reportRole(t, pods[1], wantDoc, annotations.RoleStandby)
	replicaStatus(pods[0].Spec.NodeName, 1, controller.ReasonAsExpected)
	condition(t, "ngw", controller.CondReady, metav1.ConditionTrue, controller.ReasonReady, pods[0].Name)
	ctrl.wantGauge(t, "vpcnat_controller_gateway_ready", "ngw", 1)
	ctrl.wantGauge(t, "vpcnat_controller_gateway_standbys_ready", "ngw", 1)

	// The standby's daemon reports no role (its agent has not marked the NICs yet): no standby.
	reportRole(t, pods[1], wantDoc, "")
	replicaStatus(pods[0].Spec.NodeName, 0, controller.ReasonNoStandby)
	ctrl.wantGauge(t, "vpcnat_controller_gateway_standbys_ready", "ngw", 0)

	// Deleted: its series go.
	if err := admin.ovn.VpcNatGateways.Delete(context.Background(), "ngw", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	ctrl.wantGauge(t, "vpcnat_controller_gateway_ready", "ngw", -1)
	ctrl.wantGauge(t, "vpcnat_controller_gateway_standbys_ready", "ngw", -1)
}

// TestReplicasValidation: the API server defaults replicas to 1 and refuses replicas outside
// 1-5 and a bfd detection time (minRX × multiplier) above 30 s, naming the field.
func TestReplicasValidation(t *testing.T) {
	fresh(t)
	gw := createSeed(t)
	if stored := getGateway(t, gw.Name); stored.Spec.Replicas != 1 {
		t.Fatalf("replicas defaulted to %d, want 1", stored.Spec.Replicas)
	}
	ctx := context.Background()
	for what, change := range map[string]func(*v1.VpcNatGateway){
		"spec.replicas": func(g *v1.VpcNatGateway) { g.Spec.Replicas = 6 },
		"spec.bfd":      func(g *v1.VpcNatGateway) { g.Spec.BFD = &v1.BFDConfig{MinRX: 5000, Multiplier: 10} },
	} {
		g := getGateway(t, gw.Name)
		change(g)
		_, err := admin.ovn.VpcNatGateways.Update(ctx, g, metav1.UpdateOptions{})
		if err == nil || !strings.Contains(err.Error(), what) {
			t.Errorf("%s: update %v, want it refused naming the field", what, err)
		}
	}
}
