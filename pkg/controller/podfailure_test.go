package controller

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// kubeletMessage is a FailedCreatePodSandBox message as the kubelet (Eventf "Failed to create
// pod sandbox: %v"), containerd 1.6 ("failed to setup network for sandbox %q: %w") and libcni
// ("plugin type=%q name=%q failed (add): %w") compose it around a plugin's error.
func kubeletMessage(sandbox, pluginType, pluginErr string) string {
	return `Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox "` + sandbox +
		`": plugin type="` + pluginType + `" name="k8s-pod-network" failed (add): ` + pluginErr
}

// TestSandboxError: the plugin's own message is what a condition shows, without the sandbox ID
// (new at each retry), on one line and bounded; other failures keep naming the plugin.
func TestSandboxError(t *testing.T) {
	ours := `vpcnat: link net1: master (the ConfigMap's nic, or master in the node's vpcnat CNI entry) "eth9" in the node netns: Link not found`
	id1, id2 := strings.Repeat("a1", 32), strings.Repeat("b2", 32)
	for name, tc := range map[string]struct{ in, want string }{
		"ours":       {kubeletMessage(id1, "vpcnat", ours), ours},
		"retry":      {kubeletMessage(id2, "vpcnat", ours), ours},
		"aggregated": {"(combined from similar events): " + kubeletMessage(id1, "vpcnat", ours), ours},
		"joined": {kubeletMessage(id1, "vpcnat", ours+"\nvpcnat: rolling back the failed ADD: link vpc-1 gone\n"),
			ours + "; vpcnat: rolling back the failed ADD: link vpc-1 gone"},
		"other plugin": {kubeletMessage(id1, "bridge", "failed to allocate for range 0: no IP addresses available in range set"),
			`setting up the network: plugin type="bridge" name="k8s-pod-network" failed (add): failed to allocate for range 0: no IP addresses available in range set`},
		"unwrapped":   {"vpcnat: pod kube-system/p: annotation x", "vpcnat: pod kube-system/p: annotation x"},
		"other words": {"Failed to create pod sandbox: rpc error: code = DeadlineExceeded desc = context deadline exceeded", "context deadline exceeded"},
		"runtime wraps ours": {"Failed to create pod sandbox: rpc error: code = Unknown desc = network setup: vpcnat: subnet sn: bridge \"br-x\" not found",
			`vpcnat: subnet sn: bridge "br-x" not found`},
	} {
		if got := sandboxError(tc.in); got != tc.want {
			t.Errorf("%s:\n got %q\nwant %q", name, got, tc.want)
		}
	}

	// Bounded, and cut on a rune boundary: the start of the plugin's message (which names the
	// field and value) is kept.
	long := `vpcnat: link net1: master "eth9": ` + strings.Repeat("é", 2000)
	got := sandboxError(kubeletMessage(id1, "vpcnat", long))
	if len(got) > maxPodErrorLen || !strings.HasPrefix(got, `vpcnat: link net1: master "eth9": `) || !strings.HasSuffix(got, "...") {
		t.Fatalf("long message: %d bytes: %q", len(got), got)
	}
	if kept := strings.TrimSuffix(got, "..."); !strings.HasPrefix(long, kept) || !utf8.ValidString(kept) {
		t.Fatalf("not a prefix cut on a rune boundary: ...%q", got[len(got)-10:])
	}
}

// TestPodTrouble: the container's waiting reason first, then the newest sandbox Event of this
// pod (by UID), unless the kubelet says the sandbox is ready; waits of every start are no trouble.
func TestPodTrouble(t *testing.T) {
	events := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{indexInvolvedUID: eventInvolvedUID})
	c := &Controller{events: events}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "p", UID: "u1"}, Spec: corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodPending,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReadyToStartContainers, Status: corev1.ConditionFalse}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "gateway",
				State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}}}}
	if p := c.podTrouble(pod); p != nil {
		t.Fatalf("no Event yet: %+v", p)
	}
	event := func(name string, uid string, at time.Time, msg string) {
		t.Helper()
		e, _ := compactEvent(&corev1.Event{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: name},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: "kube-system", Name: "p", UID: types.UID(uid)},
			Reason:         eventSandboxFailed, Type: corev1.EventTypeWarning, Source: corev1.EventSource{Component: kubeletComponent},
			FirstTimestamp: metav1.NewTime(at), LastTimestamp: metav1.NewTime(at), Message: msg})
		if err := events.Add(e); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Unix(1_000_000, 0)
	event("p.2", "u1", t0.Add(2*time.Second), kubeletMessage("s2", "vpcnat", `vpcnat: subnet sn: bridge "br-sn": Link not found`))
	event("p.1", "u1", t0.Add(time.Second), kubeletMessage("s1", "vpcnat", `vpcnat: link net1: master "eth9": Link not found`))
	event("q.3", "u0", t0.Add(3*time.Second), kubeletMessage("s3", "vpcnat", "vpcnat: another pod's"))
	want := &problem{ReasonPodSandboxFailed, `pod p on node "n1" cannot start: vpcnat: subnet sn: bridge "br-sn": Link not found`}
	if p := c.podTrouble(pod); p == nil || *p != *want {
		t.Fatalf("got %+v, want %+v", p, want)
	}

	// The sandbox exists: the Events are about an earlier attempt.
	pod.Status.Conditions[0].Status = corev1.ConditionTrue
	if p := c.podTrouble(pod); p != nil {
		t.Fatalf("sandbox ready: %+v", p)
	}

	// A container waiting on its image: the pod's own status says why, the Events do not count.
	pod.Status.ContainerStatuses[0].State.Waiting = &corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
		Message: `Back-off pulling image "registry.example/vpcnat/gateway:v9"`}
	pod.Status.Conditions[0].Status = corev1.ConditionFalse
	want = &problem{ReasonPodFailing, `pod p on node "n1" cannot start: container gateway: ImagePullBackOff: Back-off pulling image "registry.example/vpcnat/gateway:v9"`}
	if p := c.podTrouble(pod); p == nil || *p != *want {
		t.Fatalf("got %+v, want %+v", p, want)
	}

	// The cache keeps the waiting state (bounded) and nothing else of the container statuses.
	pod.Status.ContainerStatuses = append(pod.Status.ContainerStatuses, corev1.ContainerStatus{Name: "other", Image: "i",
		State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}})
	pod.Status.ContainerStatuses[0].State.Waiting.Message = strings.Repeat("x", 10_000)
	obj, _ := compactPod(pod.DeepCopy())
	cs := obj.(*corev1.Pod).Status.ContainerStatuses
	if len(cs) != 1 || cs[0].Name != "gateway" || cs[0].State.Waiting.Reason != "ImagePullBackOff" || len(cs[0].State.Waiting.Message) > maxEventMessage {
		t.Fatalf("cached container statuses %+v", cs)
	}
}

// TestPodTroubleStatus: a pod that cannot start makes Ready and Degraded say why (a Warning
// each); once it runs, they are back to Ready and AsExpected.
func TestPodTroubleStatus(t *testing.T) {
	d, _ := build(t, seedInputs(t), "img")
	hash, err := annotations.DesiredHash(d)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "p"}, Spec: corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodPending}}
	trouble := &problem{ReasonPodSandboxFailed, `pod p on node "n1" cannot start: vpcnat: link net1: master "eth9": Link not found`}
	obs := &observation{generation: 1, pod: pod, podTrouble: trouble, desired: d, hash: hash}
	st := computeStatus(&v1.VpcNatGatewayStatus{}, obs)
	for _, typ := range []string{CondReady, CondDegraded} {
		c := meta.FindStatusCondition(st.Conditions, typ)
		if c == nil || c.Reason != ReasonPodSandboxFailed || c.Message != trouble.message || healthy(*c) {
			t.Errorf("%s: %+v", typ, c)
		}
	}
	obs.podTrouble = nil
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}
	obs.report = &annotations.Applied{Hash: hash}
	ok := computeStatus(&st, obs)
	tr := transitions(st.Conditions, ok.Conditions)
	if len(tr) != 3 || tr[1].Type != CondReady || tr[1].Reason != ReasonReady || tr[2].Reason != ReasonAsExpected {
		t.Errorf("transitions %+v", tr)
	}
}
