package controller

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestRBAC: deploy/controller/10-rbac.yaml grants the controller what it uses (every other test runs
// the controller as this ServiceAccount, which proves it enough) and nothing more: no Secret but
// its webhook certificate's, no webhook configuration but its own, no
// exec, no pod or Deployment deletion, no writes outside the gateway namespace, no other
// ConfigMap, no change to a gateway's spec, no Events read outside the gateway namespace.
func TestRBAC(t *testing.T) {
	type access struct {
		verb, group, resource, sub, ns, name string
	}
	allowed := []access{
		{"list", "kubeovn.io", "vpcnatgateways", "", "", ""},
		{"watch", "kubeovn.io", "subnets", "", "", ""},
		{"update", "kubeovn.io", "vpcnatgateways", "status", "", "ngw"},
		{"update", "kubeovn.io", "vpcs", "status", "", "test-vpc-1"},
		{"create", "apps", "deployments", "", "kube-system", ""},
		{"update", "apps", "deployments", "", "kube-system", "vpc-nat-gw-ngw"},
		{"patch", "", "pods", "", "kube-system", "vpc-nat-gw-ngw-1"},
		{"watch", "", "configmaps", "", "kube-system", "ovn-vpc-nat-gw-config"},
		{"create", "", "events", "", "default", ""},
		{"list", "", "events", "", "kube-system", ""},
		{"watch", "", "events", "", "kube-system", ""},
		{"update", "coordination.k8s.io", "leases", "", "kube-system", "vpcnat-controller"},
		{"update", "kubeovn.io", "subnets", "status", "", "sn"},
		{"create", "", "secrets", "", "kube-system", ""},
		{"get", "", "secrets", "", "kube-system", "vpcnat-webhook-cert"},
		{"update", "", "secrets", "", "kube-system", "vpcnat-webhook-cert"},
		{"watch", "", "secrets", "", "kube-system", "vpcnat-webhook-cert"},
		{"get", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", "vpcnat"},
		{"update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", "vpcnat"},
		{"patch", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", "vpcnat"},
	}
	denied := []access{
		{"get", "", "secrets", "", "kube-system", "anything"},
		{"list", "", "secrets", "", "", ""},
		{"list", "", "secrets", "", "kube-system", ""},
		{"delete", "", "secrets", "", "kube-system", "vpcnat-webhook-cert"},
		{"get", "", "secrets", "", "default", "vpcnat-webhook-cert"},
		{"create", "", "secrets", "", "default", ""},
		{"update", "kubeovn.io", "subnets", "", "", "sn"},
		{"create", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", ""},
		{"update", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", "other"},
		{"delete", "admissionregistration.k8s.io", "validatingwebhookconfigurations", "", "", "vpcnat"},
		{"update", "admissionregistration.k8s.io", "mutatingwebhookconfigurations", "", "", "vpcnat"},
		{"create", "", "pods", "exec", "kube-system", "vpc-nat-gw-ngw-1"},
		{"create", "", "pods", "", "kube-system", ""},
		{"delete", "", "pods", "", "kube-system", "vpc-nat-gw-ngw-1"},
		{"patch", "", "pods", "", "default", "app"},
		{"update", "", "pods", "status", "kube-system", "vpc-nat-gw-ngw-1"},
		{"delete", "apps", "deployments", "", "kube-system", "vpc-nat-gw-ngw"},
		{"create", "apps", "deployments", "", "default", ""},
		{"list", "", "configmaps", "", "kube-system", ""},
		{"get", "", "configmaps", "", "kube-system", "kube-proxy"},
		{"update", "", "configmaps", "", "kube-system", "ovn-vpc-nat-gw-config"},
		{"update", "kubeovn.io", "vpcnatgateways", "", "", "ngw"},
		{"delete", "kubeovn.io", "vpcnatgateways", "", "", "ngw"},
		{"create", "kubeovn.io", "subnets", "", "", ""},
		{"update", "coordination.k8s.io", "leases", "", "kube-system", "kube-controller-manager"},
		{"create", "", "serviceaccounts", "token", "kube-system", "vpcnat-controller"},
		{"get", "", "events", "", "kube-system", "vpc-nat-gw-ngw-1.18a0"},
		{"create", "", "events", "", "kube-system", ""},
		{"delete", "", "events", "", "kube-system", "vpc-nat-gw-ngw-1.18a0"},
		{"list", "", "events", "", "default", ""},
		{"list", "", "events", "", "", ""},
	}
	check := func(a access) (bool, error) {
		r, err := admin.kube.AuthorizationV1().SubjectAccessReviews().Create(context.Background(), &authorizationv1.SubjectAccessReview{
			Spec: authorizationv1.SubjectAccessReviewSpec{
				User:   serviceAccount,
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
				ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: a.verb, Group: a.group, Resource: a.resource,
					Subresource: a.sub, Namespace: a.ns, Name: a.name},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		return r.Status.Allowed, nil
	}
	for _, a := range allowed {
		t.Run(fmt.Sprintf("may %s %s/%s %s/%s", a.verb, a.resource, a.sub, a.ns, a.name), func(t *testing.T) {
			if ok, err := check(a); err != nil || !ok {
				t.Errorf("denied (%v)", err)
			}
		})
	}
	for _, a := range denied {
		t.Run(fmt.Sprintf("may not %s %s/%s %s/%s", a.verb, a.resource, a.sub, a.ns, a.name), func(t *testing.T) {
			if ok, err := check(a); err != nil || ok {
				t.Errorf("allowed (%v)", err)
			}
		})
	}
}

// TestControllerManifests: everything in deploy/controller is accepted by the API server as is
// (server-side dry run with strict field validation).
func TestControllerManifests(t *testing.T) {
	out, err := env.Kubectl(context.Background(), "apply", "--dry-run=server", "--validate=strict", "-f", filepath.Join(repoRoot, "deploy", "controller"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"serviceaccount/vpcnat-controller", "clusterrole.rbac.authorization.k8s.io/vpcnat-controller",
		"role.rbac.authorization.k8s.io/vpcnat-controller", "deployment.apps/vpcnat-controller",
		"service/vpcnat-webhook", "validatingwebhookconfiguration.admissionregistration.k8s.io/vpcnat"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("%s not applied:\n%s", want, out)
		}
	}
}
