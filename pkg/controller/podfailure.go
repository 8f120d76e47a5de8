package controller

import (
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/tools/cache"

	"github.com/vpcnat/vpcnat/pkg/plan"
)

// Why a gateway pod cannot start. A CNI plugin that refuses a sandbox (the ConfigMap's nic or a
// Subnet's bridge missing on the node) leaves the pod Pending with its containers "waiting:
// ContainerCreating": the reason is only in the kubelet's Warning Events on the pod. A container
// that cannot start (image pull, crash loop) says why in the pod's own status.
//
// How the Events are read: an informer over the gateway namespace's Events, restricted by field
// selector to the kubelet's Warning FailedCreatePodSandBox Events about pods. It holds only Events
// of failing sandboxes (the API server filters them; the kubelet's Event correlator folds a pod's
// retries into one "combined" Event after ten), it is one watch whatever the number of gateways,
// and an Event brings its gateway's sync at once. The other way, a List per sync of a pending pod with the
// gateway requeued every few seconds while it stays so, costs one request per pending gateway
// per period (a wrong nic in the ConfigMap makes every new gateway pending, and a thousand of
// them would use the controller's whole API budget) and reports a cause only at the next poll.
// The price is RBAC: list/watch of Events in that namespace (RBAC cannot follow a field selector).
// FailedMount is not watched: gateway pods have no volume (not even the token's).

const (
	// eventSandboxFailed is the kubelet's reason for a sandbox the runtime did not create
	// (k8s.io/kubernetes pkg/kubelet/events), with the message "Failed to create pod sandbox:
	// <CRI error>".
	eventSandboxFailed = "FailedCreatePodSandBox"
	// kubeletComponent is the kubelet's Event source.
	kubeletComponent = "kubelet"
	// indexInvolvedUID indexes the Event cache by the UID of the pod an Event is about.
	indexInvolvedUID = "involvedUID"
	// maxEventMessage bounds what the Event cache keeps of a message: the kubelet's are a few
	// hundred bytes, and maxPodErrorLen of them is all a condition shows.
	maxEventMessage = 4096
	// maxPodErrorLen bounds the pod's error in a condition message.
	maxPodErrorLen = 512
)

// sandboxEventSelector selects the Events the informer holds.
func sandboxEventSelector() string {
	return fields.SelectorFromSet(fields.Set{
		"involvedObject.kind": "Pod",
		"reason":              eventSandboxFailed,
		"type":                corev1.EventTypeWarning,
		"source":              kubeletComponent,
	}).String()
}

func eventInvolvedUID(obj any) ([]string, error) {
	e, ok := obj.(*corev1.Event)
	if !ok || e.InvolvedObject.UID == "" {
		return nil, nil
	}
	return []string{string(e.InvolvedObject.UID)}, nil
}

// compactEvent is the Event informer's transform: what podTrouble reads, the message bounded.
func compactEvent(obj any) (any, error) {
	e, ok := obj.(*corev1.Event)
	if !ok {
		return obj, nil
	}
	return &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{Name: e.Name, Namespace: e.Namespace, UID: e.UID,
			ResourceVersion: e.ResourceVersion, CreationTimestamp: e.CreationTimestamp},
		InvolvedObject: corev1.ObjectReference{Kind: e.InvolvedObject.Kind, Namespace: e.InvolvedObject.Namespace,
			Name: e.InvolvedObject.Name, UID: e.InvolvedObject.UID},
		Reason: e.Reason, Type: e.Type, Source: e.Source, Count: e.Count,
		Message:        truncate(e.Message, maxEventMessage),
		FirstTimestamp: e.FirstTimestamp, LastTimestamp: e.LastTimestamp, EventTime: e.EventTime, Series: e.Series,
	}, nil
}

// eventHandler queues the gateway of the pod an Event is about; the pod cache holds only
// gateway pods, so an Event about any other pod of the namespace is dropped here.
func (c *Controller) eventHandler() cache.ResourceEventHandler {
	each := func(obj any) {
		e, ok := object(obj).(*corev1.Event)
		if !ok {
			return
		}
		p, err := c.pods.Get(e.InvolvedObject.Name)
		if err != nil || p.UID != e.InvolvedObject.UID {
			return
		}
		if name := p.Labels[plan.LabelGateway]; name != "" {
			c.enqueueGateway(name)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { each(obj) },
		UpdateFunc: func(_, n any) { each(n) },
		DeleteFunc: each,
	}
}

// podTrouble says why pod (not ready) cannot start, or nil when nothing says so (it may just
// be starting). The pod's own container states first: they cost nothing, and a container that
// waits on its image has a sandbox, so an older sandbox Event no longer applies.
func (c *Controller) podTrouble(p *corev1.Pod) *problem {
	prefix := fmt.Sprintf("pod %s on node %q cannot start: ", p.Name, p.Spec.NodeName)
	if msg := containerTrouble(p); msg != "" {
		return &problem{ReasonPodFailing, prefix + msg}
	}
	if sandboxReady(p) {
		return nil
	}
	if e := c.newestSandboxEvent(p); e != nil {
		return &problem{ReasonPodSandboxFailed, prefix + sandboxError(e.Message)}
	}
	return nil
}

// containerTrouble is the first container's reason (and message) for waiting, unless it is
// one of the waits of every start. Gateway pods have no init containers.
func containerTrouble(p *corev1.Pod) string {
	for _, s := range p.Status.ContainerStatuses {
		w := s.State.Waiting
		if w == nil || w.Reason == "" || w.Reason == "ContainerCreating" || w.Reason == "PodInitializing" {
			continue
		}
		msg := "container " + s.Name + ": " + w.Reason
		if w.Message != "" {
			msg += ": " + oneLine(w.Message)
		}
		return truncate(msg, maxPodErrorLen)
	}
	return ""
}

// sandboxReady: the kubelet reports the sandbox created and its network set up
// (PodReadyToStartContainers, on by default since Kubernetes 1.29). Without the condition (an
// older kubelet) nothing says the Events are stale, and the newest is the best guess.
func sandboxReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReadyToStartContainers {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// newestSandboxEvent is the kubelet's last FailedCreatePodSandBox Event about this pod (by UID:
// a recreated pod of the same name starts clean).
func (c *Controller) newestSandboxEvent(p *corev1.Pod) *corev1.Event {
	if c.events == nil {
		return nil
	}
	objs, _ := c.events.ByIndex(indexInvolvedUID, string(p.UID))
	var newest *corev1.Event
	for _, o := range objs {
		e, ok := o.(*corev1.Event)
		if !ok || e.Reason != eventSandboxFailed || e.Type != corev1.EventTypeWarning || e.InvolvedObject.Kind != "Pod" {
			continue
		}
		if newest == nil || lastSeen(newest).Before(lastSeen(e)) ||
			lastSeen(newest).Equal(lastSeen(e)) && newest.Name < e.Name {
			newest = e
		}
	}
	return newest
}

// lastSeen is when an Event last happened, whichever API wrote it (core/v1 counts in
// lastTimestamp, events.k8s.io/v1 in series).
func lastSeen(e *corev1.Event) time.Time {
	t := e.CreationTimestamp.Time
	for _, c := range []time.Time{e.LastTimestamp.Time, e.EventTime.Time} {
		if c.After(t) {
			t = c
		}
	}
	if e.Series != nil && e.Series.LastObservedTime.After(t) {
		t = e.Series.LastObservedTime.Time
	}
	return t
}

// sandboxError is the useful part of a FailedCreatePodSandBox message, which wraps a CNI error
// in the kubelet's, the CRI's and the runtime's words (containerd 1.6 + libcni):
//
//	Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for
//	sandbox "<id>": plugin type="vpcnat" name="<network>" failed (add): vpcnat: <our error>
//
// Our plugin's messages begin with "vpcnat: " and name the field and value; that part is kept.
// Another plugin's failure keeps libcni's naming of it. The sandbox ID, new at each retry, is
// dropped, so that a retry failing the same way writes no new status.
func sandboxError(msg string) string {
	msg = strings.TrimPrefix(msg, "(combined from similar events): ") // client-go's aggregation
	msg = strings.TrimPrefix(msg, "Failed to create pod sandbox: ")
	if rest, ok := strings.CutPrefix(msg, "rpc error: code = "); ok {
		if _, desc, ok := strings.Cut(rest, " desc = "); ok {
			msg = desc
		}
	}
	if i := strings.Index(msg, `type="vpcnat"`); i >= 0 {
		if _, ours, ok := strings.Cut(msg[i:], "failed (add): "); ok {
			return truncate(oneLine(ours), maxPodErrorLen)
		}
	}
	if strings.HasPrefix(msg, "vpcnat: ") {
		return truncate(oneLine(msg), maxPodErrorLen)
	}
	if i := strings.Index(msg, ": vpcnat: "); i >= 0 {
		return truncate(oneLine(msg[i+2:]), maxPodErrorLen)
	}
	if rest, ok := strings.CutPrefix(msg, `failed to setup network for sandbox "`); ok {
		if _, after, ok := strings.Cut(rest, `": `); ok {
			msg = "setting up the network: " + after
		}
	}
	return truncate(oneLine(msg), maxPodErrorLen)
}

// oneLine joins the lines of a multi-line error (errors.Join) with "; ".
func oneLine(s string) string {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// truncate cuts s to at most n bytes (on a rune boundary), marking the cut with "...".
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
