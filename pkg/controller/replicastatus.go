package controller

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// ReasonNoStandby: a replicated gateway has no standby replica ready to take over.
const ReasonNoStandby = "NoStandby"

// ReasonFailover is the Event of a replicated gateway whose active replica moved to another node.
const ReasonFailover = "Failover"

// replicaView is one replica of a replicated gateway as its pod shows it: the failover agent
// decides the role in the data plane, the daemon reports it in the applied annotation
// (docs/ha.md); the controller only shows it.
type replicaView struct {
	pod   *corev1.Pod
	role  string
	term  uint64
	ready bool
}

// replicaViews reads the role each live pod's daemon reported; a pod without a readable report
// has no role yet.
func replicaViews(pods []*corev1.Pod) []replicaView {
	out := make([]replicaView, 0, len(pods))
	for _, p := range pods {
		v := replicaView{pod: p, ready: p.Spec.NodeName != "" && podReady(p)}
		if s, ok := p.Annotations[annotations.AppliedKey]; ok {
			if a, err := annotations.ParseApplied(s); err == nil {
				v.role, v.term = a.Role, a.Term
			}
		}
		out = append(out, v)
	}
	return out
}

// activeReplica is the pod of the ready replica reported active with the latest election term,
// nil when none is reported active. Two are reported active after a takeover whose old active
// replica cannot report any more (its node died with its daemon, and its pod stays Ready until
// the node is NotReady, ~40 s), or while a partition heals (at most a heartbeat interval): the
// later term is the one that answers (docs/ha.md, election rule 5). Equal terms (reports of
// daemons that predate the term): the newest pod (views are newest first).
func activeReplica(views []replicaView) *corev1.Pod {
	var best *replicaView
	for i := range views {
		v := &views[i]
		if v.ready && v.role == annotations.RoleActive && (best == nil || v.term > best.term) {
			best = v
		}
	}
	if best == nil {
		return nil
	}
	return best.pod
}

// setReplicaStatus fills activeNode and standbysReady of a replicated gateway (both empty for
// one replica) and makes Degraded say so when no standby is ready, unless it already reports a
// problem of its own.
func setReplicaStatus(st *v1.VpcNatGatewayStatus, o *observation, set func(metav1.Condition)) {
	st.ActiveNode, st.StandbysReady = "", 0
	if o.replicas < 2 {
		return
	}
	if p := activeReplica(o.views); p != nil {
		st.ActiveNode = p.Spec.NodeName
	}
	for _, v := range o.views {
		if v.ready && v.role == annotations.RoleStandby {
			st.StandbysReady++
		}
	}
	for _, c := range st.Conditions {
		if c.Type == CondDegraded && c.Status == metav1.ConditionTrue {
			return
		}
	}
	if st.StandbysReady == 0 {
		active := "no replica is active"
		if st.ActiveNode != "" {
			active = fmt.Sprintf("the active replica runs on node %q", st.ActiveNode)
		}
		set(metav1.Condition{Type: CondDegraded, Status: metav1.ConditionTrue, Reason: ReasonNoStandby,
			Message: fmt.Sprintf("replicas: %d, and no standby replica is ready to take over; %s", o.replicas, active)})
	}
}

// failoverEvent records a move of the active replica from one node to another, after the status
// that shows it was written.
func (c *Controller) failoverEvent(gw *v1.VpcNatGateway, st v1.VpcNatGatewayStatus) {
	from, to := gw.Status.ActiveNode, st.ActiveNode
	if from == "" || to == "" || from == to {
		return
	}
	c.recorder.Eventf(gw, corev1.EventTypeWarning, ReasonFailover,
		"the active replica moved from node %q to node %q (the replica on %q stopped answering or gave the role up; its agent logs why)", from, to, from)
}
