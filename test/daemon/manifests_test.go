package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestManifests: every object of deploy/daemonset is accepted by the real API server with strict
// field validation (unknown or duplicate fields are errors), in kube-system as shipped; the
// DaemonSet comes back as written (hostNetwork, the mount propagation of the netns mount); and
// the Role grants the daemon's ServiceAccount exactly what it uses and nothing around it.
func TestManifests(t *testing.T) {
	e := apiServer.Get(t)
	client, err := e.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	var all []*unstructured.Unstructured
	for _, f := range []string{"00-rbac.yaml", "10-admission.yaml", "20-configmap.yaml", "30-daemonset.yaml"} {
		objs := loadManifest(t, f)
		if len(objs) == 0 {
			t.Fatalf("%s holds no object", f)
		}
		all = append(all, objs...)
	}
	createObjects(t, all, true) // server-side dry run first: validation and admission only
	createObjects(t, all, false)
	t.Cleanup(func() { deleteObjects(t, all) })

	ctx := context.Background()
	ds, err := client.AppsV1().DaemonSets("kube-system").Get(ctx, "vpcnat-daemon", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	checkDaemonSet(t, ds)
	checkAdmission(t, client)

	user := "system:serviceaccount:kube-system:vpcnat-daemon"
	for _, c := range []struct {
		ns, verb, group, resource string
		allowed                   bool
	}{
		{"kube-system", "list", "", "pods", true},
		{"kube-system", "watch", "", "pods", true},
		{"kube-system", "patch", "", "pods", true},
		{"kube-system", "list", "apps", "replicasets", true},
		{"kube-system", "watch", "apps", "deployments", true},
		{"kube-system", "create", "", "events", true},
		{"kube-system", "patch", "", "events", true},
		// Nothing else: not other verbs, not other namespaces, not other resources.
		{"kube-system", "delete", "", "pods", false},
		{"kube-system", "update", "", "pods", false},
		{"kube-system", "create", "", "pods/exec", false},
		{"kube-system", "patch", "apps", "deployments", false},
		{"kube-system", "get", "", "secrets", false},
		{"kube-system", "get", "", "configmaps", false},
		{"default", "patch", "", "pods", false},
		{"default", "list", "", "pods", false},
		{"", "get", "", "nodes", false},
		{"", "list", "kubeovn.io", "vpcnatgateways", false},
	} {
		sar, err := client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
			Spec: authzv1.SubjectAccessReviewSpec{User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"},
				ResourceAttributes: &authzv1.ResourceAttributes{Namespace: c.ns, Verb: c.verb, Group: c.group, Resource: c.resource}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != c.allowed {
			t.Errorf("%s %s.%s in %q: allowed=%v, want %v", c.verb, c.resource, c.group, c.ns, sar.Status.Allowed, c.allowed)
		}
	}
}

// checkDaemonSet checks what the API server stored of the properties the daemon relies on.
func checkDaemonSet(t *testing.T, ds *appsv1.DaemonSet) {
	t.Helper()
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork || spec.ServiceAccountName != "vpcnat-daemon" {
		t.Errorf("hostNetwork=%v serviceAccount=%q", spec.HostNetwork, spec.ServiceAccountName)
	}
	// install-cni (init), then the daemon and the cni-keeper sidecar (daemon/flags_test.go
	// checks that the sidecar installs what the init container does).
	if len(spec.InitContainers) != 1 || len(spec.Containers) != 2 || spec.Containers[0].Name != "vpcnat-daemon" ||
		spec.Containers[1].Name != "cni-keeper" {
		t.Fatalf("%d init containers, %d containers (first %q): want install-cni; vpcnat-daemon, cni-keeper",
			len(spec.InitContainers), len(spec.Containers), spec.Containers[0].Name)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range spec.Containers[0].VolumeMounts {
		mounts[m.MountPath] = m
	}
	if m := mounts["/var/run/netns"]; m.MountPropagation == nil || *m.MountPropagation != corev1.MountPropagationHostToContainer {
		t.Errorf("netns mount %+v: want HostToContainer propagation", m)
	}
	if _, ok := mounts["/run/vpcnat"]; !ok {
		t.Error("daemon does not mount the attachment records")
	}
	env := fmt.Sprint(spec.Containers[0].Env)
	if want := "spec.nodeName"; !strings.Contains(env, want) {
		t.Errorf("NODE_NAME not from %s: %s", want, env)
	}
}
