package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// cluster is one test's view of the API server: a gateway namespace of its own, the daemon's
// ServiceAccount and Role (from the manifest) in it, and a node name of its own.
type cluster struct {
	t      *testing.T
	client kubernetes.Interface
	ns     string
	node   string
	// kubeconfig authenticates as the daemon's ServiceAccount: the daemon runs with exactly the
	// manifest's permissions.
	kubeconfig string
}

func newCluster(t *testing.T, prefix string) *cluster {
	t.Helper()
	e := apiServer.Get(t)
	client, err := e.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	c := &cluster{t: t, client: client, ns: "t-" + prefix, node: "node-" + prefix}
	c.createNamespace(c.ns)
	objs := loadManifest(t, "00-rbac.yaml")
	for _, o := range objs {
		// The manifest's objects, moved from kube-system to the test's namespace.
		o.SetNamespace(c.ns)
		if o.GetKind() == "RoleBinding" {
			subjects, _, _ := unstructured.NestedSlice(o.Object, "subjects")
			for _, s := range subjects {
				s.(map[string]any)["namespace"] = c.ns
			}
			_ = unstructured.SetNestedSlice(o.Object, subjects, "subjects")
		}
	}
	createObjects(t, objs, false)
	c.kubeconfig = c.serviceAccountKubeconfig("vpcnat-daemon")
	return c
}

// createNamespace creates a namespace and its default ServiceAccount (no controller-manager
// runs to make it, and pod admission requires it).
func (c *cluster) createNamespace(ns string) {
	c.t.Helper()
	ctx := context.Background()
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.client.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		_ = c.client.CoreV1().Namespaces().Delete(context.Background(), ns, metav1.DeleteOptions{})
	})
}

// serviceAccountKubeconfig writes a kubeconfig with a token of the ServiceAccount (TokenRequest,
// as the kubelet gets one for a pod).
func (c *cluster) serviceAccountKubeconfig(sa string) string {
	c.t.Helper()
	exp := int64(3600)
	tr, err := c.client.CoreV1().ServiceAccounts(c.ns).CreateToken(context.Background(), sa,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("token for ServiceAccount %s/%s: %v", c.ns, sa, err)
	}
	e := apiServer.Get(c.t)
	path := filepath.Join(c.t.TempDir(), sa+".kubeconfig")
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {server: %q, certificate-authority: %q}\n"+
		"users:\n- name: sa\n  user: {token: %q}\ncontexts:\n- name: test\n  context: {cluster: test, user: sa}\ncurrent-context: test\n",
		e.URL, e.Config.TLSClientConfig.CAFile, tr.Status.Token)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		c.t.Fatal(err)
	}
	return path
}

// loadManifest reads the objects of a file of deploy/daemonset.
func loadManifest(t *testing.T, name string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "daemonset", name))
	if err != nil {
		t.Fatal(err)
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var out []*unstructured.Unstructured
	for {
		var o unstructured.Unstructured
		if err := dec.Decode(&o.Object); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(o.Object) > 0 {
			out = append(out, &o)
		}
	}
}

// createObjects creates objects through the dynamic client, as kubectl would; dryRun asks the
// server to validate and admit without storing.
func createObjects(t *testing.T, objs []*unstructured.Unstructured, dryRun bool) {
	t.Helper()
	for _, o := range objs {
		if err := create(t, o, dryRun); err != nil {
			t.Fatal(err)
		}
	}
}

func create(t *testing.T, o *unstructured.Unstructured, dryRun bool) error {
	t.Helper()
	res, err := resourceOf(t, o)
	if err != nil {
		return err
	}
	opts := metav1.CreateOptions{FieldValidation: "Strict"}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	if _, err := res.Create(context.Background(), o, opts); err != nil {
		return fmt.Errorf("creating %s %s/%s: %w", o.GetKind(), o.GetNamespace(), o.GetName(), err)
	}
	return nil
}

// deleteObjects deletes objects (the manifests' objects live in kube-system, shared by every
// test of the API server), tolerating ones already gone.
func deleteObjects(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		res, err := resourceOf(t, o)
		if err == nil {
			err = res.Delete(context.Background(), o.GetName(), metav1.DeleteOptions{})
		}
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("deleting %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

// resourceOf is the dynamic client of an object's resource, found through discovery.
func resourceOf(t *testing.T, o *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	t.Helper()
	e := apiServer.Get(t)
	client, err := e.Clientset()
	if err != nil {
		return nil, err
	}
	groups, err := restmapper.GetAPIGroupResources(client.Discovery())
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(e.Config)
	if err != nil {
		return nil, err
	}
	gvk := o.GroupVersionKind()
	m, err := restmapper.NewDiscoveryRESTMapper(groups).RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", gvk.Kind, o.GetName(), err)
	}
	if o.GetNamespace() == "" {
		return dyn.Resource(m.Resource), nil
	}
	return dyn.Resource(m.Resource).Namespace(o.GetNamespace()), nil
}

func controllerRef(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes, BlockOwnerDeletion: &yes}}
}

// gatewayObjects are what the controller and the apps controllers would have made for a
// gateway: Deployment (controlled by the VpcNatGateway), ReplicaSet, Pod on the test's node.
type gatewayObjects struct {
	owned bool // the Deployment is controlled by the VpcNatGateway (false: an impostor's)
	ns    string
}

// createGateway creates a gateway pod with its owner chain in ns (the test's gateway namespace
// unless given) and returns the pod. The pod carries the template annotations.
func (c *cluster) createGateway(gw string, templ map[string]string, o gatewayObjects) *corev1.Pod {
	c.t.Helper()
	ctx := context.Background()
	ns := o.ns
	if ns == "" {
		ns = c.ns
	}
	labels := map[string]string{plan.LabelGateway: gw, plan.LabelApp: plan.DeploymentName(gw)}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: plan.DeploymentName(gw), Namespace: ns, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Template: podTemplate(labels, templ),
		},
	}
	if o.owned {
		dep.OwnerReferences = controllerRef("kubeovn.io/v1", "VpcNatGateway", gw, types.UID("gw-uid-"+gw))
	}
	dep, err := c.client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-7c9d", Namespace: ns, Labels: labels,
			OwnerReferences: controllerRef("apps/v1", "Deployment", dep.Name, dep.UID)},
		Spec: appsv1.ReplicaSetSpec{Selector: dep.Spec.Selector, Template: dep.Spec.Template},
	}
	if rs, err = c.client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	tpl := rs.Spec.Template
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-x2k4p", Namespace: ns, Labels: tpl.Labels, Annotations: tpl.Annotations,
			OwnerReferences: controllerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID)},
		Spec: tpl.Spec,
	}
	pod.Spec.NodeName = c.node
	if pod, err = c.client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	return pod
}

func podTemplate(labels, annots map[string]string) corev1.PodTemplateSpec {
	no := false
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: annots},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no,
			Containers:                   []corev1.Container{{Name: "gateway", Image: "vpcnat.local/vpcnat-gateway:dev"}},
		},
	}
}

// setDesired writes the desired annotation on the pod, as the controller does.
func (c *cluster) setDesired(pod *corev1.Pod, d *annotations.Desired) string {
	c.t.Helper()
	v, err := annotations.EncodeDesired(d)
	if err != nil {
		c.t.Fatal(err)
	}
	c.setDesiredRaw(pod, v)
	return v
}

func (c *cluster) setDesiredRaw(pod *corev1.Pod, value string) {
	c.t.Helper()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotations.DesiredKey: value}}})
	if _, err := c.client.CoreV1().Pods(pod.Namespace).Patch(context.Background(), pod.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *cluster) getPod(pod *corev1.Pod) *corev1.Pod {
	c.t.Helper()
	p, err := c.client.CoreV1().Pods(pod.Namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	return p
}

// applied returns the pod's applied annotation, nil when it has none.
func (c *cluster) applied(pod *corev1.Pod) *annotations.Applied {
	c.t.Helper()
	s, ok := c.getPod(pod).Annotations[annotations.AppliedKey]
	if !ok {
		return nil
	}
	a, err := annotations.ParseApplied(s)
	if err != nil {
		c.t.Fatalf("pod %s: %v", pod.Name, err)
	}
	return a
}

// waitApplied waits until the applied annotation reports the desired value (by its hash)
// with the given error ("" for success) and returns it. The applied hash is that of the
// desired state's canonical JSON, which is the annotation's value itself below the compression
// threshold (as for every spec of these tests), and of an unparsable value the value's.
func (c *cluster) waitApplied(pod *corev1.Pod, desired, wantErr string) *annotations.Applied {
	c.t.Helper()
	var a *annotations.Applied
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		a = c.applied(pod)
		if a != nil && a.Hash == hashOf(desired) && (a.Error == "") == (wantErr == "") && strings.Contains(a.Error, wantErr) {
			return a
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.t.Fatalf("pod %s: applied %+v never reported hash %s with error %q", pod.Name, a, hashOf(desired), wantErr)
	return nil
}

// events lists the Events about a pod.
func (c *cluster) events(pod *corev1.Pod) []corev1.Event {
	c.t.Helper()
	l, err := c.client.CoreV1().Events(pod.Namespace).List(context.Background(), metav1.ListOptions{
		FieldSelector: "involvedObject.name=" + pod.Name})
	if err != nil {
		c.t.Fatal(err)
	}
	return l.Items
}
