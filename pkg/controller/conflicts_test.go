package controller

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// A conflict the daemon reports makes AddressConflict True (naming address, interface and
// foreign MAC) and the gateway not Ready, with a Warning transition; once the report has none,
// both recover with Normal transitions.
func TestAddressConflictCondition(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "vpc-nat-gw-ngw-0"},
		Spec: corev1.PodSpec{NodeName: "node-1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	d := &annotations.Desired{Version: annotations.Version, Gateway: "ngw", Generation: 2}
	report := &annotations.Applied{Version: annotations.Version, Generation: 2, Hash: "h", Conflicts: []annotations.AddressConflict{
		{Address: "10.0.1.1", Interface: "vpc-sn", MAC: "02:42:c0:a8:00:6f", Since: "2026-11-26T02:59:58Z", Claimed: true},
		{Address: "192.168.0.111", Interface: "net1", MAC: "02:42:c0:a8:00:70", Since: "2026-11-26T03:00:00Z"},
	}}
	o := &observation{generation: 1, pod: pod, desired: d, hash: "h", report: report}

	st := computeStatus(&v1.VpcNatGatewayStatus{}, o)
	conflict := meta.FindStatusCondition(st.Conditions, CondAddressConflict)
	ready := meta.FindStatusCondition(st.Conditions, CondReady)
	if conflict == nil || conflict.Status != metav1.ConditionTrue || conflict.Reason != ReasonAddressConflict {
		t.Fatalf("AddressConflict condition %+v, want True/%s", conflict, ReasonAddressConflict)
	}
	for _, want := range []string{"10.0.1.1 on vpc-sn is claimed by MAC 02:42:c0:a8:00:6f", "held and defended",
		"192.168.0.111 on net1 is claimed by MAC 02:42:c0:a8:00:70", "not claimed", `node "node-1"`} {
		if !strings.Contains(conflict.Message, want) {
			t.Errorf("AddressConflict message %q lacks %q", conflict.Message, want)
		}
	}
	if ready.Status != metav1.ConditionFalse || ready.Reason != ReasonAddressConflict {
		t.Errorf("Ready %s/%s while addresses are contested, want False/%s", ready.Status, ready.Reason, ReasonAddressConflict)
	}
	if a := meta.FindStatusCondition(st.Conditions, CondApplied); a.Status != metav1.ConditionTrue {
		t.Errorf("Applied %s/%s: a conflict is not an apply failure", a.Status, a.Reason)
	}
	for _, tr := range transitions(nil, st.Conditions) {
		if (tr.Type == CondAddressConflict || tr.Type == CondReady) && healthy(tr) {
			t.Errorf("transition %s=%s (%s) would be a Normal Event, want Warning", tr.Type, tr.Status, tr.Reason)
		}
	}

	quiet := computeStatus(&v1.VpcNatGatewayStatus{}, &observation{generation: 1, pod: pod, desired: d, hash: "h",
		report: &annotations.Applied{Version: annotations.Version, Generation: 2, Hash: "h"}})
	for _, tr := range transitions(nil, quiet.Conditions) {
		if tr.Type == CondAddressConflict {
			t.Errorf("a new gateway without conflicts has an AddressConflict transition (an Event): %+v", tr)
		}
	}

	over := *report
	over.Conflicts = nil
	o.report = &over
	st2 := computeStatus(&st, o)
	conflict = meta.FindStatusCondition(st2.Conditions, CondAddressConflict)
	ready = meta.FindStatusCondition(st2.Conditions, CondReady)
	if conflict.Status != metav1.ConditionFalse || conflict.Reason != ReasonNoConflict || ready.Status != metav1.ConditionTrue {
		t.Errorf("after the conflicts ended: AddressConflict %s/%s, Ready %s/%s", conflict.Status, conflict.Reason, ready.Status, ready.Reason)
	}
	trs := transitions(st.Conditions, st2.Conditions)
	if len(trs) != 2 {
		t.Errorf("transitions %+v, want AddressConflict and Ready", trs)
	}
	for _, tr := range trs {
		if !healthy(tr) {
			t.Errorf("transition %s=%s (%s) would be a Warning", tr.Type, tr.Status, tr.Reason)
		}
	}
}

// The conflict gauge follows the report and goes with the gateway.
func TestAddressConflictMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newMetrics(reg)
	pod := &corev1.Pod{Spec: corev1.PodSpec{NodeName: "node-1"}}
	report := &annotations.Applied{Conflicts: []annotations.AddressConflict{{Address: "10.0.1.1"}, {Address: "10.0.1.254"}}}
	// gauge is the series' value, -1 when there is none.
	gauge := func() float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "vpcnat_controller_address_conflicts" {
				for _, s := range mf.GetMetric() {
					return s.GetGauge().GetValue()
				}
			}
		}
		return -1
	}
	m.observeConflicts("ngw", &observation{pod: pod, report: report})
	if v := gauge(); v != 2 {
		t.Errorf("vpcnat_controller_address_conflicts{gateway=ngw} = %v, want 2", v)
	}
	m.observeConflicts("ngw", &observation{pod: pod, report: &annotations.Applied{}})
	if v := gauge(); v != 0 {
		t.Errorf("after the conflicts ended: %v, want 0", v)
	}
	m.forgetGateway("ngw")
	if v := gauge(); v != -1 {
		t.Errorf("a series (%v) left after the gateway was deleted", v)
	}
}
