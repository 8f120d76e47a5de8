package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/test/kubeenv"
)

// TestPodCannotStart: a gateway pod whose sandbox the CNI plugin refuses (the kubelet's Warning
// FailedCreatePodSandBox Events, written here as the kubelet writes them) makes Ready and
// Degraded say so with the plugin's own error, following the newest Event of that pod (not an
// Event about an older pod of the same name); once the sandbox exists, a container waiting on its
// image says why instead; once the pod runs and the daemon reports, the gateway is Ready.
func TestPodCannotStart(t *testing.T) {
	fresh(t)
	createSeed(t)
	startController(t)
	ctx := context.Background()
	t.Cleanup(func() {
		_ = admin.kube.CoreV1().Events(ns).DeleteCollection(ctx, metav1.DeleteOptions{},
			metav1.ListOptions{FieldSelector: "reason=FailedCreatePodSandBox"})
	})

	// The scheduler binds the pod; the kubelet cannot create its sandbox.
	var pod *corev1.Pod
	eventually(t, waitLong, "the gateway's pod", func() error {
		var err error
		pod, err = livePod("ngw")
		return err
	})
	if err := admin.kube.CoreV1().Pods(ns).Bind(ctx, &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: ns, UID: pod.UID},
		Target:     corev1.ObjectReference{Kind: "Node", Name: node},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod = kubeletStatus(t, pod.Name, false, corev1.ContainerStateWaiting{Reason: "ContainerCreating"})
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonPodNotReady, pod.Name, "is Pending")

	nics, err := annotations.ParseNICPlan(pod.Annotations[annotations.NICsKey])
	if err != nil || len(nics.Subnets) == 0 || nics.Subnets[0].Attachment.Bridge == "" {
		t.Fatalf("NIC plan %+v: %v", nics, err)
	}
	// What the plugin says (plugins/vpcnat-gateway via pkg/netconf) when the node lacks the
	// ConfigMap's nic, and when it lacks the Subnet's bridge.
	noNIC := fmt.Sprintf(`vpcnat: link net1: master (the ConfigMap's nic, or master in the node's vpcnat CNI entry) %q in the node netns: Link not found`, nics.External.Master)
	noBridge := fmt.Sprintf(`vpcnat: subnet NIC %s: subnet %s: natGatewayAttachment.bridge %q in the node netns: Link not found`,
		nics.Subnets[0].IfName, nics.Subnets[0].Subnet, nics.Subnets[0].Attachment.Bridge)
	now := time.Now()
	sandbox1 := kubeletSandboxEvent(t, pod.Name, pod.UID, now.Add(-2*time.Second), noNIC)
	cond := condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonPodSandboxFailed,
		fmt.Sprintf("pod %s on node %q cannot start: %s", pod.Name, node, noNIC))
	for _, c := range cond.Status.Conditions {
		if strings.Contains(c.Message, "rpc error") || strings.Contains(c.Message, sandbox1) {
			t.Errorf("%s keeps the runtime's wrapping: %q", c.Type, c.Message)
		}
	}
	condition(t, "ngw", controller.CondDegraded, metav1.ConditionTrue, controller.ReasonPodSandboxFailed, noNIC)
	wantEvent(t, "ngw", controller.ReasonPodSandboxFailed, "Ready=False: pod "+pod.Name)

	// The next attempt fails on the Subnet's bridge. An Event about an older pod of the same
	// name (another UID), newer still, is not this pod's.
	kubeletSandboxEvent(t, pod.Name, "an-older-pod", now.Add(time.Second), `vpcnat: not this pod's`)
	kubeletSandboxEvent(t, pod.Name, pod.UID, now, noBridge)
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonPodSandboxFailed, noBridge)

	// The bridge exists now: the sandbox is made, and the image cannot be pulled.
	image := pod.Spec.Containers[0].Image
	kubeletStatus(t, pod.Name, true, corev1.ContainerStateWaiting{Reason: "ImagePullBackOff",
		Message: fmt.Sprintf("Back-off pulling image %q: ErrImagePull: failed to pull and unpack image %q: not found", image, image)})
	want := fmt.Sprintf("pod %s on node %q cannot start: container %s: ImagePullBackOff: Back-off pulling image %q",
		pod.Name, node, pod.Spec.Containers[0].Name, image)
	condition(t, "ngw", controller.CondReady, metav1.ConditionFalse, controller.ReasonPodFailing, want)
	condition(t, "ngw", controller.CondDegraded, metav1.ConditionTrue, controller.ReasonPodFailing, want)

	// The pod runs (the runner plays the kubelet) and the daemon applies: Ready, no problem.
	runPods(t)
	pod = waitDesired(t, "ngw")
	d, err := annotations.ParseDesired(pod.Annotations[annotations.DesiredKey])
	if err != nil {
		t.Fatal(err)
	}
	writeApplied(t, pod, d, "", nil)
	condition(t, "ngw", controller.CondReady, metav1.ConditionTrue, controller.ReasonReady, pod.Name)
	condition(t, "ngw", controller.CondDegraded, metav1.ConditionFalse, controller.ReasonAsExpected)
	wantEvent(t, "ngw", controller.ReasonReady, "Ready=True")
}

// kubeletStatus writes the pod status a kubelet reports for a bound pod whose container waits:
// Pending, the sandbox made or not (PodReadyToStartContainers), not ready.
func kubeletStatus(t *testing.T, name string, sandbox bool, waiting corev1.ContainerStateWaiting) *corev1.Pod {
	t.Helper()
	ctx := context.Background()
	var out *corev1.Pod
	eventually(t, 10*time.Second, "status of pod "+name, func() error {
		p, err := admin.kube.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		now := metav1.Now()
		cond := func(typ corev1.PodConditionType, ok bool, reason string) corev1.PodCondition {
			c := corev1.PodCondition{Type: typ, Status: corev1.ConditionFalse, Reason: reason, LastTransitionTime: now}
			if ok {
				c.Status, c.Reason = corev1.ConditionTrue, ""
			}
			return c
		}
		p.Status.Phase = corev1.PodPending
		p.Status.HostIP = "127.0.0.1"
		p.Status.StartTime = &now
		p.Status.Conditions = []corev1.PodCondition{
			cond(corev1.PodReadyToStartContainers, sandbox, ""),
			cond(corev1.PodInitialized, true, ""),
			cond(corev1.PodReady, false, "ContainersNotReady"),
			cond(corev1.ContainersReady, false, "ContainersNotReady"),
			cond(corev1.PodScheduled, true, ""),
		}
		p.Status.ContainerStatuses = nil
		for _, c := range p.Spec.Containers {
			w := waiting
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
				Name: c.Name, Image: c.Image, State: corev1.ContainerState{Waiting: &w}})
		}
		out, err = admin.kube.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	return out
}

// kubeletSandboxEvent creates the Event a kubelet records when the runtime cannot create pod's
// sandbox because a CNI plugin refused it (k8s.io/kubernetes pkg/kubelet/kuberuntime: Eventf
// "Failed to create pod sandbox: %v"; containerd 1.6: "failed to setup network for sandbox %q";
// libcni: "plugin type=%q name=%q failed (add): %w"), and returns the sandbox ID in it.
func kubeletSandboxEvent(t *testing.T, pod string, uid types.UID, at time.Time, pluginErr string) string {
	t.Helper()
	sandbox := fmt.Sprintf("%064x", at.UnixNano())
	ts := metav1.NewTime(at)
	e := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: fmt.Sprintf("%s.%x", pod, at.UnixNano()), Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: pod, UID: uid, APIVersion: "v1"},
		Reason:         "FailedCreatePodSandBox",
		Message: fmt.Sprintf(`Failed to create pod sandbox: rpc error: code = Unknown desc = failed to setup network for sandbox %q: plugin type="vpcnat" name="k8s-pod-network" failed (add): %s`,
			sandbox, pluginErr),
		Source:         corev1.EventSource{Component: "kubelet", Host: node},
		FirstTimestamp: ts, LastTimestamp: ts, Count: 1, Type: corev1.EventTypeWarning,
		ReportingController: "kubelet", ReportingInstance: node,
	}
	if _, err := admin.kube.CoreV1().Events(ns).Create(context.Background(), e, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return sandbox
}

// TestWorksWithoutEventsRBAC: a controller whose RBAC predates the Events informer (its image
// updated without deploy/controller) still projects gateways; only the sandbox errors are missing.
func TestWorksWithoutEventsRBAC(t *testing.T) {
	fresh(t)
	ctx := context.Background()
	const user = "vpcnat-controller-without-events"
	role, err := admin.kube.RbacV1().Roles(ns).Get(ctx, "vpcnat-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var rules []rbacv1.PolicyRule
	for _, r := range role.Rules {
		if !slices.Contains(r.Resources, "events") {
			rules = append(rules, r)
		}
	}
	if len(rules) == len(role.Rules) {
		t.Fatalf("Role %s/vpcnat-controller has no rule for events: %+v", ns, role.Rules)
	}
	subject := []rbacv1.Subject{{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: user}}
	older := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns}, Rules: rules}
	objs := []func() error{
		func() error {
			_, err := admin.kube.RbacV1().Roles(ns).Create(ctx, older, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := admin.kube.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user, Namespace: ns},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: user}, Subjects: subject}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := admin.kube.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: user},
				RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "vpcnat-controller"}, Subjects: subject}, metav1.CreateOptions{})
			return err
		},
	}
	for _, create := range objs {
		if err := create(); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		_ = admin.kube.RbacV1().ClusterRoleBindings().Delete(ctx, user, metav1.DeleteOptions{})
		_ = admin.kube.RbacV1().RoleBindings(ns).Delete(ctx, user, metav1.DeleteOptions{})
		_ = admin.kube.RbacV1().Roles(ns).Delete(ctx, user, metav1.DeleteOptions{})
	})
	cfg := rest.CopyConfig(env.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := newClients(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.kube.CoreV1().Events(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("listing events as %s: %v, want forbidden", user, err)
	}
	ctrl, err := controller.New(c.kube, c.ovn, controller.Options{Workers: 2, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	kubeenv.RunInBackground(t, "controller", ctrl.Run)
	createSeed(t)
	runPods(t)
	waitDesired(t, "ngw")
}
