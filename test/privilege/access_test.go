package privilege

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// identity is one ServiceAccount's clients, all with the same real token.
type identity struct {
	name string
	kube *kubernetes.Clientset
	dyn  *dynamic.DynamicClient
	cfg  *rest.Config
}

func newIdentity(t *testing.T, name string, cfg *rest.Config) *identity {
	t.Helper()
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &identity{name: name, kube: k, dyn: d, cfg: cfg}
}

// resource is one kind the matrix tries.
type resource struct {
	gvr        schema.GroupVersionResource
	kind       string
	namespaced bool
}

func res(group, version, plural, kind string, namespaced bool) resource {
	return resource{gvr: schema.GroupVersionResource{Group: group, Version: version, Resource: plural}, kind: kind, namespaced: namespaced}
}

// catalogue is every kind whose writes are tried: the core workload and configuration kinds,
// RBAC itself, admission (the daemon must not lift its own policy), CRDs, vpcnat's own kinds,
// leases and CSRs.
var catalogue = []resource{
	res("", "v1", "pods", "Pod", true),
	res("", "v1", "services", "Service", true),
	res("", "v1", "configmaps", "ConfigMap", true),
	res("", "v1", "secrets", "Secret", true),
	res("", "v1", "serviceaccounts", "ServiceAccount", true),
	res("", "v1", "events", "Event", true),
	res("", "v1", "nodes", "Node", false),
	res("", "v1", "namespaces", "Namespace", false),
	res("", "v1", "persistentvolumes", "PersistentVolume", false),
	res("apps", "v1", "deployments", "Deployment", true),
	res("apps", "v1", "daemonsets", "DaemonSet", true),
	res("apps", "v1", "replicasets", "ReplicaSet", true),
	res("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
	res("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true),
	res("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false),
	res("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false),
	res("admissionregistration.k8s.io", "v1", "validatingadmissionpolicies", "ValidatingAdmissionPolicy", false),
	res("admissionregistration.k8s.io", "v1", "validatingadmissionpolicybindings", "ValidatingAdmissionPolicyBinding", false),
	res("admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", "ValidatingWebhookConfiguration", false),
	res("admissionregistration.k8s.io", "v1", "mutatingwebhookconfigurations", "MutatingWebhookConfiguration", false),
	res("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", false),
	res("kubeovn.io", "v1", "vpcnatgateways", "VpcNatGateway", false),
	res("kubeovn.io", "v1", "vpcs", "Vpc", false),
	res("kubeovn.io", "v1", "subnets", "Subnet", false),
	res("coordination.k8s.io", "v1", "leases", "Lease", true),
	res("certificates.k8s.io", "v1", "certificatesigningrequests", "CertificateSigningRequest", false),
}

// writeVerbs are tried on every kind of the catalogue.
var writeVerbs = []string{"create", "update", "patch", "delete", "deletecollection"}

// probeName is the object name write attempts use; no such object exists, so a write that RBAC
// lets through fails harmlessly (not found, invalid) instead of changing anything.
const probeName = "vpcnat-priv-probe"

// request is one real request: verb on resource (and subresource) in ns, named name.
type request struct {
	verb string
	r    resource
	sub  string
	ns   string
	name string
}

func (q request) String() string {
	where := q.ns
	if where == "" {
		where = "cluster"
	}
	s := q.r.gvr.Resource
	if q.r.gvr.Group != "" {
		s += "." + q.r.gvr.Group
	}
	if q.sub != "" {
		s += "/" + q.sub
	}
	if q.name != "" {
		return fmt.Sprintf("%s %s %s/%s", q.verb, s, where, q.name)
	}
	return fmt.Sprintf("%s %s in %s", q.verb, s, where)
}

// do makes the request with id's token. A nil error or any error but Forbidden means the request
// got past authorization (and admission, for writes that reach it).
func (id *identity) do(ctx context.Context, q request) error {
	ri := id.dyn.Resource(q.r.gvr)
	var c dynamic.ResourceInterface = ri
	if q.r.namespaced && q.ns != "" {
		c = ri.Namespace(q.ns)
	}
	obj := func() *unstructured.Unstructured {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion(q.r.gvr.GroupVersion().String())
		u.SetKind(q.r.kind)
		u.SetName(q.name)
		if q.r.namespaced {
			u.SetNamespace(q.ns)
		}
		u.SetResourceVersion("1")
		return u
	}
	var subs []string
	if q.sub != "" {
		subs = []string{q.sub}
	}
	var err error
	switch q.verb {
	case "get":
		_, err = c.Get(ctx, q.name, metav1.GetOptions{}, subs...)
	case "list":
		_, err = c.List(ctx, metav1.ListOptions{Limit: 1})
	case "watch":
		var w interface{ Stop() }
		w, err = c.Watch(ctx, metav1.ListOptions{})
		if err == nil {
			w.Stop()
		}
	case "create":
		_, err = c.Create(ctx, obj(), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}, subs...)
	case "update":
		_, err = c.Update(ctx, obj(), metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}, subs...)
	case "patch":
		_, err = c.Patch(ctx, q.name, types.MergePatchType, []byte(`{"metadata":{"labels":{"vpcnat-priv":"probe"}}}`),
			metav1.PatchOptions{DryRun: []string{metav1.DryRunAll}}, subs...)
	case "delete":
		err = c.Delete(ctx, q.name, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}, subs...)
	case "deletecollection":
		err = c.DeleteCollection(ctx, metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}, metav1.ListOptions{})
	default:
		return fmt.Errorf("unknown verb %q", q.verb)
	}
	return err
}

// rbacAllows asks the API server, with id's own token, whether RBAC allows q
// (SelfSubjectAccessReview).
func (id *identity) rbacAllows(ctx context.Context, q request) (bool, error) {
	ns := ""
	if q.r.namespaced {
		ns = q.ns
	}
	r, err := id.kube.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: q.verb, Group: q.r.gvr.Group, Resource: q.r.gvr.Resource, Subresource: q.sub, Namespace: ns, Name: q.name}},
	}, metav1.CreateOptions{})
	if err != nil {
		return false, fmt.Errorf("SelfSubjectAccessReview: %w", err)
	}
	return r.Status.Allowed, nil
}

// checkMatrix makes every request of the matrix (every write verb on every kind of the
// catalogue, in each namespace given, plus reads) with id's token. allowed says which requests
// RBAC must let through; every other one must be refused with 403 Forbidden by the real API
// server, and the SelfSubjectAccessReview must agree with the real answer either way. Writes are
// dry runs on an object that does not exist: even a wrongly allowed one changes nothing.
func checkMatrix(t *testing.T, id *identity, namespaces []string, reads []request, allowed func(request) bool) {
	t.Helper()
	ctx := context.Background()
	var reqs []request
	for _, r := range catalogue {
		scopes := []string{""}
		if r.namespaced {
			scopes = namespaces
		}
		for _, ns := range scopes {
			for _, v := range writeVerbs {
				name := probeName
				if v == "create" || v == "deletecollection" {
					name = ""
				}
				reqs = append(reqs, request{verb: v, r: r, ns: ns, name: name})
			}
		}
	}
	reqs = append(reqs, reads...)
	denied := 0
	for _, q := range reqs {
		want := allowed(q)
		err := id.do(ctx, q)
		forbidden := apierrors.IsForbidden(err)
		if forbidden && !strings.Contains(err.Error(), "cannot") {
			t.Errorf("%s %s: forbidden, but not by RBAC: %v", id.name, q, err)
		}
		switch {
		case want && forbidden:
			t.Errorf("%s may %s, but the API server refused it: %v", id.name, q, err)
		case !want && !forbidden:
			t.Errorf("%s may not %s, but the API server let it through (%v)", id.name, q, err)
		}
		if !forbidden {
			var status apierrors.APIStatus
			if err != nil && !errors.As(err, &status) {
				t.Errorf("%s %s: not an API answer: %v", id.name, q, err)
			}
		} else {
			denied++
		}
		ok, err := id.rbacAllows(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		if ok == forbidden {
			t.Errorf("%s %s: SelfSubjectAccessReview says allowed=%v, the real request forbidden=%v", id.name, q, ok, forbidden)
		}
	}
	t.Logf("%s: %d real requests, %d refused with 403 as required, %d allowed as required", id.name, len(reqs), denied, len(reqs)-denied)
	if denied == 0 || denied == len(reqs) {
		t.Errorf("%s: %d of %d requests refused: the matrix proves nothing", id.name, denied, len(reqs))
	}
}

// readsOf is the get/list/watch requests of resource r in each scope ("" = all namespaces or the
// cluster), get on name.
func readsOf(r resource, name string, scopes ...string) []request {
	var out []request
	for _, ns := range scopes {
		if name != "" && (ns != "" || !r.namespaced) {
			out = append(out, request{verb: "get", r: r, ns: ns, name: name})
		}
		out = append(out, request{verb: "list", r: r, ns: ns}, request{verb: "watch", r: r, ns: ns})
	}
	return out
}

// find returns the catalogue entry of a resource.
func find(plural string) resource {
	for _, r := range catalogue {
		if r.gvr.Resource == plural {
			return r
		}
	}
	panic("not in the catalogue: " + plural)
}

// checkPodSubresources: the requests that reach into a pod's processes, files or network, or
// change it around the API (exec, attach, port-forward, proxy, ephemeral containers, status,
// eviction, binding, logs), a node's kubelet (nodes/proxy), and tokens of other
// ServiceAccounts, are all refused to id, as real requests. The same exec as admin gets past
// authorization (it fails later: no kubelet), so the 403 is id's.
func checkPodSubresources(t *testing.T, id *identity, pod string) {
	t.Helper()
	ctx := context.Background()
	rc := id.kube.CoreV1().RESTClient()
	type raw struct {
		name string
		req  func(rest.Interface) *rest.Request
	}
	pods := func(c rest.Interface, verb string) *rest.Request {
		return c.Verb(verb).Namespace(systemNS).Resource("pods").Name(pod)
	}
	cases := []raw{
		{"POST pods/exec", func(c rest.Interface) *rest.Request {
			return pods(c, "POST").SubResource("exec").Param("command", "id").Param("stdout", "true")
		}},
		{"GET pods/exec (websocket form)", func(c rest.Interface) *rest.Request {
			return pods(c, "GET").SubResource("exec").Param("command", "id").Param("stdout", "true")
		}},
		{"POST pods/attach", func(c rest.Interface) *rest.Request {
			return pods(c, "POST").SubResource("attach").Param("stdout", "true")
		}},
		{"POST pods/portforward", func(c rest.Interface) *rest.Request {
			return pods(c, "POST").SubResource("portforward").Param("ports", "80")
		}},
		{"GET pods/proxy", func(c rest.Interface) *rest.Request { return pods(c, "GET").SubResource("proxy") }},
		{"GET pods/log", func(c rest.Interface) *rest.Request { return pods(c, "GET").SubResource("log") }},
		{"PATCH pods/ephemeralcontainers", func(c rest.Interface) *rest.Request {
			return pods(c, "PATCH").SubResource("ephemeralcontainers").SetHeader("Content-Type", string(types.StrategicMergePatchType)).
				Body([]byte(`{"spec":{"ephemeralContainers":[{"name":"debug","image":"busybox"}]}}`))
		}},
		{"PATCH pods/status", func(c rest.Interface) *rest.Request {
			return pods(c, "PATCH").SubResource("status").SetHeader("Content-Type", string(types.MergePatchType)).
				Body([]byte(`{"status":{"phase":"Failed"}}`))
		}},
		{"POST pods/eviction", func(c rest.Interface) *rest.Request {
			return pods(c, "POST").SubResource("eviction").SetHeader("Content-Type", "application/json").
				Body([]byte(`{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"` + pod + `","namespace":"` + systemNS + `"}}`))
		}},
		{"POST pods/binding", func(c rest.Interface) *rest.Request {
			return pods(c, "POST").SubResource("binding").SetHeader("Content-Type", "application/json").
				Body([]byte(`{"apiVersion":"v1","kind":"Binding","metadata":{"name":"` + pod + `"},"target":{"kind":"Node","name":"node-b"}}`))
		}},
		{"GET nodes/proxy", func(c rest.Interface) *rest.Request {
			return c.Get().Resource("nodes").Name("node-a").SubResource("proxy", "pods")
		}},
		{"POST serviceaccounts/token of the other component", func(c rest.Interface) *rest.Request {
			return c.Post().Namespace(systemNS).Resource("serviceaccounts").Name(otherSA(id.name)).SubResource("token").
				SetHeader("Content-Type", "application/json").Body([]byte(`{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}`))
		}},
		{"GET secrets with impersonation of system:masters", func(c rest.Interface) *rest.Request {
			return c.Get().Namespace(systemNS).Resource("secrets").SetHeader("Impersonate-User", "admin").SetHeader("Impersonate-Group", "system:masters")
		}},
	}
	for _, c := range cases {
		err := c.req(rc).Do(ctx).Error()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: %s was not refused with 403: %v", id.name, c.name, err)
		}
	}
	// The same exec as admin passes authorization: it fails for another reason.
	if err := cases[0].req(admin.CoreV1().RESTClient()).Do(ctx).Error(); err == nil || apierrors.IsForbidden(err) {
		t.Errorf("admin's exec: %v, want an error other than 403 (the control that 403 is about the identity)", err)
	}
	t.Logf("%s: %d pod/node subresource, token and impersonation requests refused with 403", id.name, len(cases))
}

func otherSA(name string) string {
	if name == daemonSA {
		return controlSA
	}
	return daemonSA
}
