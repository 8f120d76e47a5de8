package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// checkAdmission: with deploy/daemonset/10-admission.yaml in place, a token of the daemon's
// ServiceAccount bound to a daemon pod on node-a (as the kubelet projects it) may set the
// applied annotation of a pod on node-a, and nothing else: not another annotation, not a label,
// not a pod of node-b. Other users are not affected.
func checkAdmission(t *testing.T, admin kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	for _, n := range []string{"node-a", "node-b"} {
		if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = admin.CoreV1().Nodes().Delete(context.Background(), n, metav1.DeleteOptions{}) })
	}
	mkPod := func(name, node, sa string) *corev1.Pod {
		no := false
		p, err := admin.CoreV1().Pods("kube-system").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": name},
				Annotations: map[string]string{annotations.GatewayKey: name, "other": "1"}},
			Spec: corev1.PodSpec{NodeName: node, ServiceAccountName: sa, AutomountServiceAccountToken: &no,
				Containers: []corev1.Container{{Name: "c", Image: "vpcnat.local/vpcnat-gateway:dev"}}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			zero := int64(0)
			_ = admin.CoreV1().Pods("kube-system").Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
		})
		return p
	}
	if _, err := admin.CoreV1().ServiceAccounts("kube-system").Get(ctx, "default", metav1.GetOptions{}); err != nil {
		if _, err := admin.CoreV1().ServiceAccounts("kube-system").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	daemonPod := mkPod("vpcnat-daemon-a", "node-a", "vpcnat-daemon")
	gwA, gwB := mkPod("gw-a", "node-a", "default"), mkPod("gw-b", "node-b", "default")

	tr, err := admin.CoreV1().ServiceAccounts("kube-system").CreateToken(ctx, "vpcnat-daemon", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{BoundObjectRef: &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1",
			Name: daemonPod.Name, UID: daemonPod.UID}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := apiServer.Get(t)
	daemon, err := kubernetes.NewForConfig(&rest.Config{Host: e.URL, BearerToken: tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: e.Config.TLSClientConfig.CAFile}})
	if err != nil {
		t.Fatal(err)
	}
	who, err := daemon.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := who.Status.UserInfo.Extra["authentication.kubernetes.io/node-name"]; len(got) != 1 || got[0] != "node-a" {
		t.Fatalf("the bound token names node %v, want node-a (the node rule would not be exercised)", got)
	}

	patch := func(c kubernetes.Interface, p *corev1.Pod, meta map[string]any) error {
		b, _ := json.Marshal(map[string]any{"metadata": meta})
		_, err := c.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, types.MergePatchType, b, metav1.PatchOptions{})
		return err
	}
	applied := map[string]any{"annotations": map[string]any{annotations.AppliedKey: `{"version":"v1"}`}}
	// The policy is loaded asynchronously: wait until it denies a forbidden patch (each try
	// sets a new value: a patch that changes nothing passes any old-versus-new rule).
	try := 0
	eventually(t, "the admission policy in force", 15*time.Second, func() bool {
		try++
		return patch(daemon, gwA, map[string]any{"annotations": map[string]any{"other": fmt.Sprint("try-", try)}}) != nil
	})
	for _, c := range []struct {
		name string
		pod  *corev1.Pod
		meta map[string]any
		deny string
	}{
		{"applied on its node", gwA, applied, ""},
		{"applied on another node", gwB, applied, "only pods of its own node"},
		{"another annotation", gwA, map[string]any{"annotations": map[string]any{"other": "3"}}, "only the vpcnat.kubeovn.io/applied annotation"},
		{"an annotation removed", gwA, map[string]any{"annotations": map[string]any{"other": nil}}, "only the vpcnat.kubeovn.io/applied annotation"},
		{"an annotation added", gwA, map[string]any{"annotations": map[string]any{"new": "x"}}, "only the vpcnat.kubeovn.io/applied annotation"},
		{"a label", gwA, map[string]any{"labels": map[string]any{"app": "x"}}, "only the vpcnat.kubeovn.io/applied annotation"},
		{"a finalizer", gwA, map[string]any{"finalizers": []string{"example.com/x"}}, "only the vpcnat.kubeovn.io/applied annotation"},
	} {
		err := patch(daemon, c.pod, c.meta)
		if c.deny == "" && err != nil || c.deny != "" && (err == nil || !strings.Contains(err.Error(), c.deny)) {
			t.Errorf("%s: %v, want denied=%q", c.name, err, c.deny)
		}
	}
	if err := patch(admin, gwA, map[string]any{"labels": map[string]any{"app": "y"}}); err != nil {
		t.Errorf("the policy blocked another user: %v", err)
	}
}
