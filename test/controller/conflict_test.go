package controller

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/controller"
)

// writeConflicts reports d as applied with conflicts, as the daemon does when its listener
// finds another host on one of the gateway's addresses.
func writeConflicts(t *testing.T, pod *corev1.Pod, d *annotations.Desired, cs []annotations.AddressConflict) {
	t.Helper()
	hash, err := annotations.DesiredHash(d)
	if err != nil {
		t.Fatal(err)
	}
	value, err := annotations.Marshal(annotations.Applied{Version: annotations.Version, Generation: d.Generation, Hash: hash,
		Time: time.Now().UTC().Format(time.RFC3339), Conflicts: cs})
	if err != nil {
		t.Fatal(err)
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotations.AppliedKey: value}}})
	if _, err := admin.kube.CoreV1().Pods(pod.Namespace).Patch(context.Background(), pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestStatusAddressConflict: a conflict in the daemon's report makes the gateway
// AddressConflict=True (naming the address, the NIC and the foreign MAC) and Ready=False with
// reason AddressConflict, with Warning Events; the applied state stays Applied. When the report
// has no conflict any more, both recover.
func TestStatusAddressConflict(t *testing.T) {
	pod := runningSeed(t)
	d, err := annotations.ParseDesired(pod.Annotations[annotations.DesiredKey])
	if err != nil {
		t.Fatal(err)
	}
	writeApplied(t, pod, d, "", nil)
	condition(t, "ngw", controller.CondReady, metav1.ConditionTrue, controller.ReasonReady)
	condition(t, "ngw", controller.CondAddressConflict, metav1.ConditionFalse, controller.ReasonNoConflict)

	writeConflicts(t, pod, d, []annotations.AddressConflict{{Address: "192.168.0.111", Interface: "net1",
		MAC: "02:42:c0:a8:00:6f", Since: "2026-11-26T02:59:58Z", Claimed: false}})
	condition(t, "ngw", controller.CondAddressConflict, metav1.ConditionTrue, controller.ReasonAddressConflict,
		"192.168.0.111 on net1 is claimed by MAC 02:42:c0:a8:00:6f", "not claimed", `node "`+node+`"`)
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonAddressConflict, "192.168.0.111")
	condition(t, "ngw", controller.CondApplied, metav1.ConditionTrue, controller.ReasonApplied)
	wantEvent(t, "ngw", controller.ReasonAddressConflict, "AddressConflict=True")
	wantEvent(t, "ngw", controller.ReasonAddressConflict, "Ready=False")

	writeApplied(t, pod, d, "", nil)
	condition(t, "ngw", controller.CondAddressConflict, metav1.ConditionFalse, controller.ReasonNoConflict)
	condition(t, "ngw", controller.CondReady, metav1.ConditionTrue, controller.ReasonReady)
	wantEvent(t, "ngw", controller.ReasonNoConflict, "AddressConflict=False")
}
