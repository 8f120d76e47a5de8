package controller

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// Condition types of a VpcNatGateway.
const (
	// CondReady: the gateway pod runs and the daemon applied the current spec.
	CondReady = "Ready"
	// CondApplied: the daemon applied the state in force on the gateway pod.
	CondApplied = "Applied"
	// CondDegraded: the gateway is not what its spec asks and waiting will not fix it.
	CondDegraded = "Degraded"
)

// Condition reasons.
const (
	ReasonReady              = "Ready"
	ReasonApplied            = "Applied"
	ReasonAsExpected         = "AsExpected"
	ReasonDisabled           = "Disabled"
	ReasonInvalidConfig      = "InvalidConfig"
	ReasonInvalidSpec        = "InvalidSpec"
	ReasonTooLarge           = "TooLarge"
	ReasonDeploymentConflict = "DeploymentConflict"
	ReasonNoPod              = "NoPod"
	ReasonUnscheduled        = "Unscheduled"
	ReasonPodNotReady        = "PodNotReady"
	ReasonPodSandboxFailed   = "PodSandboxFailed" // the kubelet's FailedCreatePodSandBox (a CNI refusal)
	ReasonPodFailing         = "PodFailing"       // a container waits on an error (image pull, crash loop)
	ReasonNotApplied         = "NotApplied"
	ReasonPending            = "Pending"
	ReasonFailed             = "Failed"
	ReasonRulesFailed        = "RulesFailed"
	ReasonBadReport          = "BadReport"
)

// problem is why a gateway's spec is not projected; the state in force (if any) stays.
type problem struct {
	reason  string
	message string
}

// observation is what one sync found and did; status is a pure function of it.
type observation struct {
	generation int64
	problem    *problem
	// pod is the gateway's newest live pod, and podTrouble why it cannot start when something
	// (its container states, the kubelet's Events) says so.
	pod        *corev1.Pod
	podTrouble *problem
	// desired is the state in force on the pod (or about to be, when the spec is projected and
	// the pod does not exist yet), and hash its DesiredHash.
	desired *annotations.Desired
	hash    string
	// report is the pod's applied annotation, or reportErr why it could not be read.
	report    *annotations.Applied
	reportErr error
	// replicas is spec.replicas (at least 1); views the live pods' replica roles, for a
	// replicated gateway (replicastatus.go).
	replicas int32
	views    []replicaView
}

// maxErrorsShown and maxErrorLen keep a condition message readable and far below the API's
// 32 KiB limit whatever the spec holds.
const (
	maxErrorsShown = 5
	maxErrorLen    = 300
)

// errorsMessage names the field and value of the first errors and says how many more there are.
func errorsMessage(errs field.ErrorList) string {
	parts := make([]string, 0, maxErrorsShown+1)
	for i, e := range errs {
		if i == maxErrorsShown {
			parts = append(parts, fmt.Sprintf("and %d more", len(errs)-maxErrorsShown))
			break
		}
		s := e.Error()
		if len(s) > maxErrorLen {
			s = s[:maxErrorLen] + "..."
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "; ")
}

// computeStatus is the gateway's new status; old (a cache object's) is not changed. Condition
// transition times move only when a condition's status does (meta.SetStatusCondition).
func computeStatus(old *v1.VpcNatGatewayStatus, o *observation) v1.VpcNatGatewayStatus {
	st := *old.DeepCopy()
	st.ObservedGeneration = o.generation
	st.Pod, st.Node = "", ""
	if o.pod != nil {
		st.Pod, st.Node = o.pod.Namespace+"/"+o.pod.Name, o.pod.Spec.NodeName
	}
	var matching *annotations.Applied
	if o.report != nil && o.desired != nil && o.report.Hash == o.hash {
		matching = o.report
	}
	failed := 0
	st.Rules, st.EipCount = nil, 0
	if o.desired != nil {
		st.Rules, failed = ruleStatuses(o.desired, matching)
		st.EipCount = int32(len(o.desired.EIPs))
	}
	applied := appliedCondition(o, matching, failed, len(st.Rules))
	conflict := conflictCondition(o)
	set := func(c metav1.Condition) {
		c.ObservedGeneration = o.generation
		meta.SetStatusCondition(&st.Conditions, c)
	}
	set(applied)
	set(readyCondition(o, applied, conflict))
	set(degradedCondition(o, applied))
	set(conflict)
	setReplicaStatus(&st, o, set)
	return st
}

func appliedCondition(o *observation, matching *annotations.Applied, failed, rules int) metav1.Condition {
	c := metav1.Condition{Type: CondApplied, Status: metav1.ConditionFalse}
	gen := "nothing"
	if o.desired != nil {
		gen = fmt.Sprintf("generation %d", o.desired.Generation)
	}
	switch {
	case o.desired == nil:
		c.Reason, c.Message = ReasonNotApplied, "no state is in force"
	case o.pod == nil:
		c.Reason, c.Message = ReasonNoPod, fmt.Sprintf("waiting for the gateway pod to apply %s", gen)
	case o.reportErr != nil:
		c.Reason, c.Message = ReasonBadReport, o.reportErr.Error()
	case o.report == nil:
		c.Reason, c.Message = ReasonPending, fmt.Sprintf("waiting for the daemon on node %q to apply %s", o.pod.Spec.NodeName, gen)
	case matching == nil:
		c.Reason, c.Message = ReasonPending, fmt.Sprintf("the daemon reports generation %d; waiting for it to apply %s", o.report.Generation, gen)
	case matching.Error != "":
		c.Reason, c.Message = ReasonFailed, fmt.Sprintf("applying %s failed: %s", gen, matching.Error)
	case failed > 0:
		c.Reason, c.Message = ReasonRulesFailed, fmt.Sprintf("%d of %d rules of %s failed (see status.rules)", failed, rules, gen)
	default:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonApplied
		c.Message = fmt.Sprintf("the daemon on node %q applied %s", o.pod.Spec.NodeName, gen)
	}
	return c
}

func readyCondition(o *observation, applied, conflict metav1.Condition) metav1.Condition {
	c := metav1.Condition{Type: CondReady, Status: metav1.ConditionFalse}
	switch p := o.pod; {
	case o.problem != nil:
		c.Reason, c.Message = o.problem.reason, o.problem.message
	case p == nil:
		c.Reason, c.Message = ReasonNoPod, "the gateway Deployment has no pod yet"
	case p.Spec.NodeName == "":
		c.Reason, c.Message = ReasonUnscheduled, fmt.Sprintf("pod %s is not scheduled", p.Name)
	case !podReady(p) && o.podTrouble != nil:
		c.Reason, c.Message = o.podTrouble.reason, o.podTrouble.message
	case !podReady(p):
		c.Reason, c.Message = ReasonPodNotReady, fmt.Sprintf("pod %s on node %q is %s, not ready", p.Name, p.Spec.NodeName, p.Status.Phase)
	case applied.Status != metav1.ConditionTrue:
		c.Reason, c.Message = ReasonNotApplied, applied.Message
	case conflict.Status == metav1.ConditionTrue:
		// Hosts that follow the other host's MAC do not reach the gateway.
		c.Reason, c.Message = ReasonAddressConflict, conflict.Message
	default:
		c.Status, c.Reason = metav1.ConditionTrue, ReasonReady
		c.Message = fmt.Sprintf("pod %s on node %q runs generation %d", p.Name, p.Spec.NodeName, o.desired.Generation)
	}
	return c
}

func degradedCondition(o *observation, applied metav1.Condition) metav1.Condition {
	c := metav1.Condition{Type: CondDegraded, Status: metav1.ConditionTrue}
	switch {
	case o.problem != nil:
		c.Reason, c.Message = o.problem.reason, o.problem.message
	case o.podTrouble != nil && o.pod != nil && !podReady(o.pod):
		// A node without the ConfigMap's nic or a Subnet's bridge, an image that does not
		// exist: the kubelet retries forever, and someone has to act.
		c.Reason, c.Message = o.podTrouble.reason, o.podTrouble.message
	case applied.Reason == ReasonFailed || applied.Reason == ReasonRulesFailed || applied.Reason == ReasonBadReport:
		c.Reason, c.Message = applied.Reason, applied.Message
	default:
		c.Status, c.Reason, c.Message = metav1.ConditionFalse, ReasonAsExpected, "no problem known"
	}
	return c
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// transitions are the conditions whose status or reason differ between old and new, for Events.
func transitions(old, new []metav1.Condition) []metav1.Condition {
	var out []metav1.Condition
	for _, n := range new {
		o := meta.FindStatusCondition(old, n.Type)
		if o == nil && n.Type == CondAddressConflict && n.Status == metav1.ConditionFalse {
			continue // nothing happened: no Event on every gateway's creation (or upgrade)
		}
		if o == nil || o.Status != n.Status || o.Reason != n.Reason {
			out = append(out, n)
		}
	}
	return out
}

// healthy says whether a condition's Event is Normal: its good state, or a wait that is part
// of every change (the pod being created, the daemon applying an edit). Warnings are for what
// needs someone's attention.
func healthy(c metav1.Condition) bool {
	if c.Type == CondDegraded || c.Type == CondAddressConflict {
		return c.Status == metav1.ConditionFalse
	}
	switch c.Reason {
	case ReasonReady, ReasonApplied, ReasonPending, ReasonNotApplied, ReasonNoPod, ReasonUnscheduled:
		return true
	}
	return c.Status == metav1.ConditionTrue
}
