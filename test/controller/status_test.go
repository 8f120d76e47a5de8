package controller

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller"
)

// TestStatusFromApplied: the status follows what the daemon reports in the pod's applied
// annotation (written here by hand): nothing yet, a report about an older state, a failed rule,
// a failed sync, a malformed report, and success; with one Event per transition.
func TestStatusFromApplied(t *testing.T) {
	pod := runningSeed(t)
	d, err := annotations.ParseDesired(pod.Annotations[annotations.DesiredKey])
	if err != nil {
		t.Fatal(err)
	}
	rules := func(state string, failed map[string]string) []v1.RuleStatus {
		out := []v1.RuleStatus{
			{Kind: "eip", Key: "192.168.0.111/24"}, {Kind: "eip", Key: "192.168.0.112/24"},
			{Kind: "fip", Key: "192.168.0.111"}, {Kind: "dnat", Key: "192.168.0.112:8888/tcp"}, {Kind: "snat", Key: "10.0.1.0/24"},
		}
		for i := range out {
			out[i].State = state
			if e, ok := failed[out[i].Key]; ok {
				out[i].State, out[i].Error = controller.StateFailed, e
			}
		}
		return out
	}
	checkRules := func(gw *v1.VpcNatGateway, want []v1.RuleStatus) {
		t.Helper()
		if !reflect.DeepEqual(gw.Status.Rules, want) {
			t.Fatalf("status.rules\n got %+v\nwant %+v", gw.Status.Rules, want)
		}
		if gw.Status.Pod != ns+"/"+pod.Name || gw.Status.Node != node || gw.Status.EipCount != 2 {
			t.Fatalf("status pod %q node %q eipCount %d", gw.Status.Pod, gw.Status.Node, gw.Status.EipCount)
		}
	}

	// No report yet.
	gw := condition(t, "ngw", controller.CondApplied, metav1.ConditionFalse, controller.ReasonPending, "waiting for the daemon on node \"node-1\"")
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonNotApplied)
	checkRules(gw, rules(controller.StatePending, nil))

	// A report about another (older) state: still pending.
	old := *d
	old.DNATs = nil
	old.Generation--
	writeApplied(t, pod, &old, "", nil)
	condition(t, "ngw", controller.CondApplied, metav1.ConditionFalse, controller.ReasonPending, "the daemon reports generation")
	checkRules(getGateway(t, "ngw"), rules(controller.StatePending, nil))

	// One rule failed.
	failed := map[string]string{"192.168.0.112:8888/tcp": "iptables-restore: line 7 failed"}
	writeApplied(t, pod, d, "", failed)
	gw = condition(t, "ngw", controller.CondApplied, metav1.ConditionFalse, controller.ReasonRulesFailed, "1 of 5 rules")
	condition(t, "ngw", controller.CondDegraded, metav1.ConditionTrue, controller.ReasonRulesFailed)
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonNotApplied)
	checkRules(gw, rules(controller.StateApplied, failed))
	wantEvent(t, "ngw", controller.ReasonRulesFailed, "Applied=False")

	// Success.
	writeApplied(t, pod, d, "", nil)
	gw = condition(t, "ngw", controller.CondReady, metav1.ConditionTrue, controller.ReasonReady, pod.Name, "node-1")
	condition(t, "ngw", controller.CondApplied, metav1.ConditionTrue, controller.ReasonApplied)
	condition(t, "ngw", controller.CondDegraded, metav1.ConditionFalse, controller.ReasonAsExpected)
	checkRules(gw, rules(controller.StateApplied, nil))
	wantEvent(t, "ngw", controller.ReasonReady, "Ready=True")
	wantEvent(t, "ngw", controller.ReasonAsExpected, "Degraded=False")

	// The sync as a whole failed: every rule's state is unknown, so Failed.
	writeApplied(t, pod, d, "entering netns: no such file", nil)
	gw = condition(t, "ngw", controller.CondApplied, metav1.ConditionFalse, controller.ReasonFailed, "entering netns")
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonNotApplied)
	want := rules(controller.StateFailed, nil)
	for i := range want {
		want[i].Error = "entering netns: no such file"
	}
	checkRules(gw, want)

	// A report that does not parse.
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotations.AppliedKey: `{"version":"v1","generation":"x"}`}}})
	if _, err := admin.kube.CoreV1().Pods(ns).Patch(context.Background(), pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	condition(t, "ngw", controller.CondDegraded, metav1.ConditionTrue, controller.ReasonBadReport, annotations.AppliedKey)

	// The pod not ready (its container died): Ready says so, whatever the report.
	writeApplied(t, pod, d, "", nil)
	condition(t, "ngw", controller.CondReady, metav1.ConditionTrue, controller.ReasonReady)
	p, err := admin.kube.CoreV1().Pods(ns).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			p.Status.Conditions[i].Status = corev1.ConditionFalse
		}
	}
	if _, err := admin.kube.CoreV1().Pods(ns).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonPodNotReady, pod.Name)
	wantEvent(t, "ngw", controller.ReasonPodNotReady, "Ready=False")
}
