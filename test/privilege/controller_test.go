package privilege

import (
	"context"
	"encoding/json"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
)

// TestControllerPrivileges: with a real token of deploy/controller's ServiceAccount, the
// controller can do what it needs (read its kinds, create and update gateway Deployments and
// patch gateway pods in kube-system, hold its Lease, record Events, read the kubelet's Events in
// kube-system) and nothing else, shown with
// real requests: it cannot exec into (or attach to, port-forward to, proxy to, evict, debug) any
// pod, read any Secret but its webhook certificate's, read or change Nodes, delete anything,
// change a gateway's spec, write outside kube-system (but Events in default), or touch RBAC,
// CRDs or admission (but the CA bundle of its own webhook configuration).
func TestControllerPrivileges(t *testing.T) {
	ctx := context.Background()
	other := namespace(t, "controller", nil)
	nodes(t)
	secrets(t, systemNS, "default", other)
	gw := pod(t, systemNS, "vpc-nat-gw-c", "node-a", "default", map[string]string{annotations.GatewayKey: "c"})
	c := newIdentity(t, controlSA, tokenConfig(t, controlSA, nil))

	t.Run("what it needs works", func(t *testing.T) {
		ovn, err := kubeovn.NewForConfig(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ovn.VpcNatGateways.List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("listing VpcNatGateways: %v", err)
		}
		if _, err := ovn.Subnets.List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("listing Subnets: %v", err)
		}
		dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "vpc-nat-gw-probe", Namespace: systemNS},
			Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}},
				Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"a": "b"}},
					Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}}}
		if _, err := c.kube.AppsV1().Deployments(systemNS).Create(ctx, dep, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
			t.Errorf("creating a gateway Deployment (dry run): %v", err)
		}
		b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotations.DesiredKey: `{"version":"v1"}`}}})
		if _, err := c.kube.CoreV1().Pods(systemNS).Patch(ctx, gw.Name, types.MergePatchType, b, metav1.PatchOptions{}); err != nil {
			t.Errorf("patching the desired annotation: %v", err)
		}
		if _, err := c.kube.CoreV1().Pods(systemNS).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("listing pods: %v", err)
		}
		if _, err := c.kube.CoordinationV1().Leases(systemNS).Get(ctx, "vpcnat-controller", metav1.GetOptions{}); err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("reading its Lease: %v", err)
		}
		if _, err := c.kube.CoreV1().ConfigMaps(systemNS).List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=ovn-vpc-nat-gw-config"}); err != nil {
			t.Errorf("listing its ConfigMap by name: %v", err)
		}
		if _, err := c.kube.CoreV1().Events(systemNS).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.kind=Pod,reason=FailedCreatePodSandBox,source=kubelet,type=Warning"}); err != nil {
			t.Errorf("listing the kubelet's sandbox Events: %v", err)
		}
		if _, err := c.kube.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=vpcnat"}); err != nil {
			t.Errorf("listing its webhook configuration by name: %v", err)
		}
	})

	t.Run("RBAC: no Secret, no Node, no other read, no other write", func(t *testing.T) {
		extra := []request{
			// Its own Lease only.
			{verb: "update", r: find("leases"), ns: systemNS, name: "vpcnat-controller"},
			{verb: "get", r: find("leases"), ns: systemNS, name: "vpcnat-controller"},
			{verb: "update", r: find("leases"), ns: systemNS, name: "kube-controller-manager"},
			{verb: "get", r: find("leases"), ns: systemNS, name: "kube-scheduler"},
			// Status, not spec.
			{verb: "update", r: find("vpcnatgateways"), sub: "status", name: "ngw"},
			{verb: "update", r: find("vpcs"), sub: "status", name: "test-vpc-1"},
			{verb: "update", r: find("subnets"), sub: "status", name: "sn"},
			{verb: "update", r: find("deployments"), sub: "scale", ns: systemNS, name: "vpc-nat-gw-ngw"},
			// The one ConfigMap: list/watch by name (what its informer does), no get.
			{verb: "get", r: find("configmaps"), ns: systemNS, name: "ovn-vpc-nat-gw-config"},
			// Its webhook certificate's Secret and webhook configuration, and no other.
			{verb: "get", r: find("secrets"), ns: systemNS, name: "vpcnat-webhook-cert"},
			{verb: "update", r: find("secrets"), ns: systemNS, name: "vpcnat-webhook-cert"},
			{verb: "delete", r: find("secrets"), ns: systemNS, name: "vpcnat-webhook-cert"},
			{verb: "get", r: find("secrets"), ns: "default", name: "vpcnat-webhook-cert"},
			{verb: "get", r: find("validatingwebhookconfigurations"), name: "vpcnat"},
			{verb: "update", r: find("validatingwebhookconfigurations"), name: "vpcnat"},
			{verb: "patch", r: find("validatingwebhookconfigurations"), name: "vpcnat"},
			{verb: "delete", r: find("validatingwebhookconfigurations"), name: "vpcnat"},
			{verb: "get", r: find("validatingwebhookconfigurations"), name: "other"},
		}
		for _, ns := range []string{systemNS, "default", other, ""} {
			extra = append(extra, readsOf(find("secrets"), "vpcnat-priv-secret", ns)...)
			extra = append(extra, readsOf(find("configmaps"), "", ns)...)
			extra = append(extra, readsOf(find("serviceaccounts"), "default", ns)...)
			extra = append(extra, readsOf(find("pods"), "", ns)...)
			extra = append(extra, readsOf(find("deployments"), "", ns)...)
			extra = append(extra, readsOf(find("replicasets"), "", ns)...)
			extra = append(extra, readsOf(find("events"), "vpc-nat-gw-c.18a0", ns)...)
		}
		extra = append(extra, readsOf(find("nodes"), "node-a", "")...)
		extra = append(extra, readsOf(find("namespaces"), "default", "")...)
		extra = append(extra, readsOf(find("vpcnatgateways"), "ngw", "")...)
		extra = append(extra, readsOf(find("subnets"), "", "")...)
		extra = append(extra, readsOf(find("clusterroles"), "vpcnat-controller", "")...)
		checkMatrix(t, c, []string{systemNS, "default", other}, extra, func(q request) bool {
			res, v := q.r.gvr.Resource, q.verb
			switch {
			case q.r.gvr.Group == "kubeovn.io" && q.sub == "":
				return v == "list" || v == "watch"
			case q.r.gvr.Group == "kubeovn.io" && q.sub == "status":
				return v == "update"
			case q.ns == "default" && res == "events":
				return v == "create" || v == "patch"
			case res == "validatingwebhookconfigurations":
				return q.name == "vpcnat" && (v == "get" || v == "update" || v == "patch" || v == "list" || v == "watch")
			case q.ns != systemNS || q.sub != "":
				return false
			case res == "deployments":
				return v == "get" || v == "list" || v == "watch" || v == "create" || v == "update"
			case res == "pods":
				return v == "get" || v == "list" || v == "watch" || v == "patch"
			case res == "events":
				return v == "list" || v == "watch"
			case res == "secrets":
				return v == "create" || q.name == "vpcnat-webhook-cert" && (v == "get" || v == "update")
			case res == "leases":
				return v == "create" || q.name == "vpcnat-controller" && (v == "get" || v == "update")
			}
			return false
		})
	})

	t.Run("no exec, attach, port-forward, proxy, logs, status, eviction, binding, token or impersonation", func(t *testing.T) {
		checkPodSubresources(t, c, gw.Name)
	})
}
