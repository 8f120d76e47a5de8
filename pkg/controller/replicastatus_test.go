package controller

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// replicaPod is a running pod on node whose daemon reported role (none: "").
func replicaPod(t *testing.T, name, node, role string, ready bool) *corev1.Pod {
	t.Helper()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "kube-system", Annotations: map[string]string{}},
		Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	if role != "" {
		s, err := annotations.Marshal(&annotations.Applied{Version: annotations.Version, Generation: 1, Hash: "h", Time: "2026-01-01T00:00:00Z", Role: role})
		if err != nil {
			t.Fatal(err)
		}
		p.Annotations[annotations.AppliedKey] = s
	}
	return p
}

// TestReplicaStatus: a replicated gateway's status shows the active replica's node and the ready
// standbys its daemons report; Degraded turns True (NoStandby) when no standby is ready; a single
// gateway shows neither.
func TestReplicaStatus(t *testing.T) {
	status := func(replicas int32, pods ...*corev1.Pod) v1.VpcNatGatewayStatus {
		o := &observation{generation: 1, replicas: replicas, views: replicaViews(pods)}
		if len(pods) > 0 {
			o.pod = pods[0]
		}
		if p := activeReplica(o.views); p != nil {
			o.pod = p
		}
		return computeStatus(&v1.VpcNatGatewayStatus{}, o)
	}
	degraded := func(st v1.VpcNatGatewayStatus) *metav1.Condition {
		return meta.FindStatusCondition(st.Conditions, CondDegraded)
	}

	st := status(2, replicaPod(t, "b", "node-b", annotations.RoleStandby, true), replicaPod(t, "a", "node-a", annotations.RoleActive, true))
	if st.ActiveNode != "node-a" || st.StandbysReady != 1 || st.Node != "node-a" {
		t.Fatalf("active on node-a, one standby: activeNode %q, standbysReady %d, node %q", st.ActiveNode, st.StandbysReady, st.Node)
	}
	if c := degraded(st); c == nil || c.Status != metav1.ConditionFalse {
		t.Fatalf("Degraded with a ready standby: %+v", c)
	}

	st = status(2, replicaPod(t, "b", "node-b", annotations.RoleStandby, false), replicaPod(t, "a", "node-a", annotations.RoleActive, true))
	if c := degraded(st); st.StandbysReady != 0 || c == nil || c.Status != metav1.ConditionTrue || c.Reason != ReasonNoStandby {
		t.Fatalf("standby not ready: standbysReady %d, Degraded %+v", st.StandbysReady, c)
	}

	st = status(1, replicaPod(t, "a", "node-a", "", true))
	if c := degraded(st); st.ActiveNode != "" || st.StandbysReady != 0 || c.Reason == ReasonNoStandby {
		t.Fatalf("one replica: activeNode %q, standbysReady %d, Degraded %+v", st.ActiveNode, st.StandbysReady, c)
	}
}

// TestFailoverEvent: a move of the active replica between nodes is one Warning Event naming
// both nodes; the first election and a loss of the active replica without a successor are none.
func TestFailoverEvent(t *testing.T) {
	rec := record.NewFakeRecorder(10)
	c := &Controller{recorder: rec}
	gw := &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: "gw1"}}
	for _, step := range []struct{ from, to string }{{"", "node-a"}, {"node-a", ""}, {"node-a", "node-a"}, {"node-a", "node-b"}} {
		gw.Status.ActiveNode = step.from
		c.failoverEvent(gw, v1.VpcNatGatewayStatus{ActiveNode: step.to})
	}
	if len(rec.Events) != 1 {
		t.Fatalf("%d Events, want 1", len(rec.Events))
	}
	if e := <-rec.Events; !strings.Contains(e, "Warning Failover") || !strings.Contains(e, `from node "node-a" to node "node-b"`) {
		t.Fatalf("Event %q", e)
	}
}

// TestActiveReplicaLatestTerm: of two replicas reported active (the old active replica's node died
// with its daemon, so its report and its Ready condition linger), the one with the later term is
// the active one, whichever pod is newer; equal terms show the newest.
func TestActiveReplicaLatestTerm(t *testing.T) {
	withTerm := func(p *corev1.Pod, term uint64) *corev1.Pod {
		s, err := annotations.Marshal(&annotations.Applied{Version: annotations.Version, Generation: 1, Hash: "h",
			Time: "2026-01-01T00:00:00Z", Role: annotations.RoleActive, Term: term})
		if err != nil {
			t.Fatal(err)
		}
		p.Annotations[annotations.AppliedKey] = s
		return p
	}
	// Views are newest first: "new" was created after "old".
	newer := withTerm(replicaPod(t, "new", "node-new", "", true), 3)
	older := withTerm(replicaPod(t, "old", "node-old", "", true), 4)
	if p := activeReplica(replicaViews([]*corev1.Pod{newer, older})); p == nil || p.Name != "old" {
		t.Fatalf("active replica %v, want the later term's pod old", p)
	}
	older = withTerm(replicaPod(t, "old", "node-old", "", true), 2)
	if p := activeReplica(replicaViews([]*corev1.Pod{newer, older})); p == nil || p.Name != "new" {
		t.Fatalf("active replica %v, want the later term's pod new", p)
	}
	older = withTerm(replicaPod(t, "old", "node-old", "", true), 3)
	if p := activeReplica(replicaViews([]*corev1.Pod{newer, older})); p == nil || p.Name != "new" {
		t.Fatalf("equal terms: active replica %v, want the newest pod", p)
	}
}
