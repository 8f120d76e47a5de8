package privilege

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

const (
	policyAnnotationMsg = "vpcnat-daemon may change only the vpcnat.kubeovn.io/applied annotation of a pod"
	policyNodeMsg       = "vpcnat-daemon may patch only pods of its own node"
)

// nodes creates node-a and node-b (objects only).
func nodes(t *testing.T) {
	t.Helper()
	for _, n := range []string{"node-a", "node-b"} {
		_, err := admin.CoreV1().Nodes().Create(context.Background(), &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// pod creates a pod in ns on node, running as sa, deleted at the end of the test.
func pod(t *testing.T, ns, name, node, sa string, ann map[string]string) *corev1.Pod {
	t.Helper()
	p, err := admin.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name}, Annotations: ann},
		Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: sa, AutomountServiceAccountToken: ptrTo(false),
			Containers: []corev1.Container{{Name: "c", Image: "vpcnat.local/vpcnat-gateway:dev"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = admin.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: ptrTo[int64](0)})
	})
	return p
}

// secrets creates a Secret in each namespace, so reads of it have something to find.
func secrets(t *testing.T, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		_, err := admin.CoreV1().Secrets(ns).Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "vpcnat-priv-secret"},
			StringData: map[string]string{"password": "not for vpcnat"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
}

// TestDaemonPrivileges: with a real token of deploy/daemonset's ServiceAccount, bound to a daemon
// pod on node-a as the kubelet projects it, the daemon can do what it needs (list and watch its
// node's pods and the ReplicaSets/Deployments of kube-system, record Events, set the applied
// annotation of its node's pods) and nothing else: no Secret anywhere, no other read, no write of
// any kind to anything else (RBAC), and of its pod patches only the applied annotation of a pod
// on its own node (the ValidatingAdmissionPolicy): not another annotation, not another node's
// pod, not labels, not the spec, whichever patch type.
func TestDaemonPrivileges(t *testing.T) {
	ctx := context.Background()
	other := namespace(t, "daemon", nil)
	nodes(t)
	secrets(t, systemNS, "default", other)
	daemonPod := pod(t, systemNS, "vpcnat-daemon-a", "node-a", daemonSA, nil)
	gwAnn := func(name string) map[string]string {
		return map[string]string{annotations.GatewayKey: name, "other": "1"}
	}
	gwA := pod(t, systemNS, "vpc-nat-gw-a", "node-a", "default", gwAnn("a"))
	gwB := pod(t, systemNS, "vpc-nat-gw-b", "node-b", "default", gwAnn("b"))
	pod(t, "default", "app", "node-a", "default", nil)

	d := newIdentity(t, daemonSA, tokenConfig(t, daemonSA, daemonPod))
	who, err := d.kube.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if who.Status.UserInfo.Username != daemonUser {
		t.Fatalf("the token is %q's, want %q", who.Status.UserInfo.Username, daemonUser)
	}
	if got := who.Status.UserInfo.Extra["authentication.kubernetes.io/node-name"]; len(got) != 1 || got[0] != "node-a" {
		t.Fatalf("the bound token names node %v, want node-a", got)
	}

	t.Run("what it needs works", func(t *testing.T) {
		l, err := d.kube.CoreV1().Pods(systemNS).List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=node-a"})
		if err != nil || len(l.Items) != 2 {
			t.Errorf("listing its node's pods: %v (%d pods, want 2)", err, len(l.Items))
		}
		if _, err := d.kube.AppsV1().ReplicaSets(systemNS).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("listing ReplicaSets: %v", err)
		}
		if _, err := d.kube.AppsV1().Deployments(systemNS).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("listing Deployments: %v", err)
		}
		ev := &corev1.Event{ObjectMeta: metav1.ObjectMeta{GenerateName: "vpc-nat-gw-a.", Namespace: systemNS},
			InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: systemNS, Name: gwA.Name, UID: gwA.UID, APIVersion: "v1"},
			Reason:         "SyncFailed", Message: "test", Type: corev1.EventTypeWarning, Source: corev1.EventSource{Component: "vpcnat-daemon"},
			FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(), Count: 1}
		if _, err := d.kube.CoreV1().Events(systemNS).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
			t.Errorf("recording an Event: %v", err)
		}
	})

	t.Run("admission: only the applied annotation of its own node's pods", func(t *testing.T) {
		checkDaemonPatches(t, d, gwA, gwB)
	})

	t.Run("admission: gateway pods only, bound tokens only", func(t *testing.T) {
		nonGateway := pod(t, systemNS, "kube-proxy-a", "node-a", "default", map[string]string{"other": "1"})
		unbound := newIdentity(t, daemonSA, tokenConfig(t, daemonSA, nil))
		checkDaemonGaps(t, d, unbound, nonGateway, gwB)
	})

	t.Run("RBAC: no Secret, no other read, no other write", func(t *testing.T) {
		reads := []request{
			{verb: "get", r: find("pods"), ns: systemNS, name: gwA.Name}, // no get: the informer's cache
		}
		for _, ns := range []string{systemNS, "default", other, ""} {
			reads = append(reads, readsOf(find("secrets"), "vpcnat-priv-secret", ns)...)
			reads = append(reads, readsOf(find("configmaps"), "ovn-vpc-nat-gw-config", ns)...)
			reads = append(reads, readsOf(find("serviceaccounts"), "default", ns)...)
			reads = append(reads, readsOf(find("events"), "", ns)...)
			reads = append(reads, readsOf(find("pods"), "", ns)...)
			reads = append(reads, readsOf(find("replicasets"), "", ns)...)
			reads = append(reads, readsOf(find("deployments"), "", ns)...)
		}
		reads = append(reads, readsOf(find("nodes"), "node-a", "")...)
		reads = append(reads, readsOf(find("vpcnatgateways"), "ngw", "")...)
		reads = append(reads, readsOf(find("roles"), "vpcnat-daemon", systemNS)...)
		reads = append(reads, readsOf(find("validatingadmissionpolicies"), "vpcnat-daemon-pod-patches", "")...)
		checkMatrix(t, d, []string{systemNS, "default", other}, reads, func(q request) bool {
			res := q.r.gvr.Resource
			switch {
			case q.ns != systemNS:
				return false
			case res == "pods":
				return q.verb == "list" || q.verb == "watch" || q.verb == "patch"
			case res == "replicasets" || res == "deployments":
				return q.verb == "list" || q.verb == "watch"
			case res == "events":
				return q.verb == "create" || q.verb == "patch"
			}
			return false
		})
	})

	t.Run("no exec, attach, port-forward, proxy, logs, status, eviction, binding, token or impersonation", func(t *testing.T) {
		checkPodSubresources(t, d, gwA.Name)
	})
}

// checkDaemonPatches: real patches of gateway pods with the daemon's token. On its node's pod only
// the applied annotation may change; everything else is refused by the admission policy (RBAC
// allows pods/patch in kube-system, as the SelfSubjectAccessReview shows: only the real request
// shows the refusal).
func checkDaemonPatches(t *testing.T, d *identity, gwA, gwB *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	patch := func(p *corev1.Pod, pt types.PatchType, body string) error {
		_, err := d.kube.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, pt, []byte(body), metav1.PatchOptions{})
		return err
	}
	merge := func(meta map[string]any) string {
		b, _ := json.Marshal(map[string]any{"metadata": meta})
		return string(b)
	}
	// The policy is loaded asynchronously: wait until it refuses a forbidden patch (a new value
	// each try: a patch that changes nothing passes every old-versus-new rule).
	try := 0
	eventually(t, "the admission policy in force", 30*time.Second, func() bool {
		try++
		return patch(gwA, types.MergePatchType, merge(map[string]any{"annotations": map[string]any{"other": fmt.Sprint("try-", try)}})) != nil
	})
	applied := func(v string) map[string]any {
		return map[string]any{"annotations": map[string]any{annotations.AppliedKey: v}}
	}
	cases := []struct {
		name string
		pod  *corev1.Pod
		pt   types.PatchType
		body string
		deny string
	}{
		{"applied, its node (merge)", gwA, types.MergePatchType, merge(applied(`{"version":"v1","generation":1}`)), ""},
		{"applied, its node (strategic)", gwA, types.StrategicMergePatchType, merge(applied(`{"version":"v1","generation":2}`)), ""},
		{"applied, its node (JSON patch)", gwA, types.JSONPatchType,
			`[{"op":"replace","path":"/metadata/annotations/vpcnat.kubeovn.io~1applied","value":"{\"version\":\"v1\",\"generation\":3}"}]`, ""},
		{"applied, another node's pod", gwB, types.MergePatchType, merge(applied(`{"version":"v1"}`)), policyNodeMsg},
		{"the desired annotation", gwA, types.MergePatchType, merge(map[string]any{"annotations": map[string]any{annotations.DesiredKey: "{}"}}), policyAnnotationMsg},
		{"the gateway annotation removed", gwA, types.MergePatchType, merge(map[string]any{"annotations": map[string]any{annotations.GatewayKey: nil}}), policyAnnotationMsg},
		{"applied and another annotation together", gwA, types.MergePatchType,
			merge(map[string]any{"annotations": map[string]any{annotations.AppliedKey: "x", "other": "2"}}), policyAnnotationMsg},
		{"a label", gwA, types.MergePatchType, merge(map[string]any{"labels": map[string]any{"app": "x"}}), policyAnnotationMsg},
		{"a label (JSON patch)", gwA, types.JSONPatchType, `[{"op":"add","path":"/metadata/labels/evil","value":"1"}]`, policyAnnotationMsg},
		{"an owner reference", gwA, types.MergePatchType, merge(map[string]any{"ownerReferences": []any{map[string]any{
			"apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "00000000-0000-0000-0000-000000000001"}}}), policyAnnotationMsg},
		{"a finalizer", gwA, types.MergePatchType, merge(map[string]any{"finalizers": []string{"example.com/x"}}), policyAnnotationMsg},
		{"the spec: the container's image", gwA, types.StrategicMergePatchType,
			`{"spec":{"containers":[{"name":"c","image":"registry.example/evil:1"}]}}`, policyAnnotationMsg},
		{"the spec: a toleration", gwA, types.MergePatchType,
			`{"spec":{"tolerations":[{"key":"k","operator":"Exists","effect":"NoExecute","tolerationSeconds":1}]}}`, policyAnnotationMsg},
		{"the spec: activeDeadlineSeconds", gwA, types.MergePatchType, `{"spec":{"activeDeadlineSeconds":1}}`, policyAnnotationMsg},
	}
	for _, c := range cases {
		err := patch(c.pod, c.pt, c.body)
		switch {
		case c.deny == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.deny != "" && (err == nil || !apierrors.IsInvalid(err) && !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), c.deny)):
			t.Errorf("%s: %v, want refused by the admission policy (%q)", c.name, err, c.deny)
		}
	}
	// RBAC alone would allow these: the policy is what refuses them.
	if ok, err := d.rbacAllows(ctx, request{verb: "patch", r: find("pods"), ns: systemNS, name: gwB.Name}); err != nil || !ok {
		t.Errorf("SelfSubjectAccessReview of a patch of %s: %v, %v (want allowed by RBAC)", gwB.Name, ok, err)
	}
	// A full update is not a patch: RBAC refuses it.
	cur, err := admin.CoreV1().Pods(gwA.Namespace).Get(ctx, gwA.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Annotations[annotations.AppliedKey] = "update"
	if _, err := d.kube.CoreV1().Pods(cur.Namespace).Update(ctx, cur, metav1.UpdateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("update (PUT) of its node's pod: %v, want 403", err)
	}
	// Nothing refused left a trace: the pods hold what the allowed patches wrote and nothing else.
	for _, p := range []*corev1.Pod{gwA, gwB} {
		now, err := admin.CoreV1().Pods(p.Namespace).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if now.Spec.Containers[0].Image != p.Spec.Containers[0].Image || len(now.Spec.Tolerations) != len(p.Spec.Tolerations) ||
			now.Spec.ActiveDeadlineSeconds != nil || now.Labels["app"] != p.Labels["app"] || len(now.Finalizers) != 0 ||
			len(now.OwnerReferences) != 0 || now.Annotations[annotations.GatewayKey] != p.Annotations[annotations.GatewayKey] ||
			now.Annotations[annotations.DesiredKey] != "" {
			t.Errorf("%s was changed by a refused patch: %+v", p.Name, now.ObjectMeta)
		}
	}
	if got, _ := admin.CoreV1().Pods(gwB.Namespace).Get(ctx, gwB.Name, metav1.GetOptions{}); got != nil && got.Annotations[annotations.AppliedKey] != "" {
		t.Errorf("another node's pod got an applied annotation: %q", got.Annotations[annotations.AppliedKey])
	}
	t.Logf("%d real pod patches: %d allowed, the rest refused by the admission policy", len(cases), 3)
}

// checkDaemonGaps covers two holes this test found in an earlier deploy/daemonset/10-admission.yaml:
//   - any pod of kube-system on the daemon's node could get an applied annotation, not only
//     gateway pods;
//   - a token of the daemon's ServiceAccount that names no node (TokenRequest without a bound
//     pod, a legacy Secret token) was not held to the node rule and could patch any node's
//     gateway pods.
func checkDaemonGaps(t *testing.T, bound, unbound *identity, nonGateway, otherNodeGateway *corev1.Pod) {
	t.Helper()
	ctx := context.Background()
	applied := []byte(`{"metadata":{"annotations":{"vpcnat.kubeovn.io/applied":"{\"version\":\"v1\"}"}}}`)
	t.Run("a pod of its node that is not a gateway", func(t *testing.T) {
		_, err := bound.kube.CoreV1().Pods(systemNS).Patch(ctx, nonGateway.Name, types.MergePatchType, applied, metav1.PatchOptions{})
		if err == nil || !strings.Contains(err.Error(), "only gateway pods") {
			t.Errorf("applied annotation on a non-gateway pod: %v, want refused", err)
		}
	})
	t.Run("a token without a node", func(t *testing.T) {
		_, err := unbound.kube.CoreV1().Pods(systemNS).Patch(ctx, otherNodeGateway.Name, types.MergePatchType, applied, metav1.PatchOptions{})
		if err == nil || !strings.Contains(err.Error(), policyNodeMsg) {
			t.Errorf("an unbound token patched another node's gateway pod: %v, want refused", err)
		}
	})
}
