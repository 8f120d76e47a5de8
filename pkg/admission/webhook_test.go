package admission

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/claims"
)

// Address plan: values in API objects only (203.0.113.0/24).

func post(t *testing.T, w *Webhook, body string) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, Path, strings.NewReader(body)))
	return rec
}

func review(t *testing.T, op admissionv1.Operation, resource string, obj any) string {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{UID: "u-1", Operation: op, Name: "sn-c",
			Resource: metav1.GroupVersionResource{Group: v1.GroupName, Version: "v1", Resource: resource},
			Object:   runtime.RawExtension{Raw: raw}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestWebhookAnswers: before its caches have synced the webhook answers 503 (the API server then
// applies failurePolicy); it answers 400 to what is not an AdmissionReview; it refuses a
// Subnet on another Vpc's segment on CREATE and UPDATE, echoing the request's UID, and lets a
// DELETE through.
func TestWebhookAnswers(t *testing.T) {
	subnets := cache.NewIndexer(cache.MetaNamespaceKeyFunc, claims.SubnetIndexers)
	owner := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "sn-b", CreationTimestamp: metav1.Now()},
		Spec: v1.SubnetSpec{Vpc: "vpc-b", CIDRBlock: "203.0.113.0/24", NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-b"}}}
	if err := subnets.Add(owner); err != nil {
		t.Fatal(err)
	}
	lookup := claims.Caches{Gateways: cache.NewIndexer(cache.MetaNamespaceKeyFunc, claims.GatewayIndexers), Subnets: subnets}
	synced := false
	w := NewWebhook(lookup, func() bool { return synced }, nil)
	thief := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "sn-c"},
		Spec: v1.SubnetSpec{Vpc: "vpc-c", CIDRBlock: "203.0.113.0/24", NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-b"}}}

	if rec := post(t, w, review(t, admissionv1.Create, "subnets", thief)); rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("before sync: %d %s", rec.Code, rec.Body)
	}
	synced = true
	if rec := post(t, w, `{"kind":"NotAReview"}`); rec.Code != http.StatusBadRequest {
		t.Errorf("not a review: %d", rec.Code)
	}
	for _, op := range []admissionv1.Operation{admissionv1.Create, admissionv1.Update, admissionv1.Delete} {
		rec := post(t, w, review(t, op, "subnets", thief))
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("%s: %v %s", op, err, rec.Body)
		}
		if out.Response.UID != "u-1" {
			t.Errorf("%s: uid %q", op, out.Response.UID)
		}
		if op == admissionv1.Delete {
			if !out.Response.Allowed {
				t.Errorf("DELETE refused: %+v", out.Response.Result)
			}
			continue
		}
		if out.Response.Allowed || out.Response.Result == nil ||
			!strings.Contains(out.Response.Result.Message, `Subnet "sn-c" is invalid: spec.natGatewayAttachment.bridge: Invalid value: "br-b"`) ||
			!strings.Contains(out.Response.Result.Message, "Subnet sn-b of Vpc vpc-b") {
			t.Errorf("%s: %+v", op, out.Response)
		}
	}
}

// TestWebhookReplicatedGateway: a gateway with replicas ≥ 2 in a Vpc with a Subnet on the
// primary network is refused naming the Subnet; such a Subnet in the Vpc of a replicated gateway
// is refused naming the gateway; one replica is accepted.
func TestWebhookReplicatedGateway(t *testing.T) {
	subnets := cache.NewIndexer(cache.MetaNamespaceKeyFunc, claims.SubnetIndexers)
	gateways := cache.NewIndexer(cache.MetaNamespaceKeyFunc, claims.GatewayIndexers)
	if err := subnets.Add(&v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "sn-p"}, Spec: v1.SubnetSpec{Vpc: "vpc-a", CIDRBlock: "203.0.113.0/25"}}); err != nil {
		t.Fatal(err)
	}
	if err := gateways.Add(&v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: "gw-ha"}, Spec: v1.VpcNatGatewaySpec{Vpc: "vpc-b", Subnet: "sn-b", Replicas: 2}}); err != nil {
		t.Fatal(err)
	}
	deployments := appslisters.NewDeploymentLister(cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}))
	w := NewWebhook(claims.Caches{Gateways: gateways, Subnets: subnets, Deployments: deployments.Deployments("kube-system")}, func() bool { return true }, nil)
	answer := func(resource string, obj any) *admissionv1.AdmissionResponse {
		t.Helper()
		rec := post(t, w, review(t, admissionv1.Create, resource, obj))
		var out admissionv1.AdmissionReview
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
			t.Fatalf("%v %s", err, rec.Body)
		}
		return out.Response
	}
	gw := &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: "gw-a"}, Spec: v1.VpcNatGatewaySpec{Vpc: "vpc-a", Subnet: "sn-p", Replicas: 1}}
	if r := answer("vpcnatgateways", gw); !r.Allowed {
		t.Errorf("one replica refused: %+v", r.Result)
	}
	gw.Spec.Replicas = 2
	if r := answer("vpcnatgateways", gw); r.Allowed || !strings.Contains(r.Result.Message, "spec.replicas: Invalid value: 2") ||
		!strings.Contains(r.Result.Message, "Subnet sn-p has no natGatewayAttachment") {
		t.Errorf("two replicas with a primary-attached Subnet: %+v", r)
	}
	sn := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: "sn-new"}, Spec: v1.SubnetSpec{Vpc: "vpc-b", CIDRBlock: "203.0.113.128/25"}}
	if r := answer("subnets", sn); r.Allowed || !strings.Contains(r.Result.Message, "spec.natGatewayAttachment: Required value") ||
		!strings.Contains(r.Result.Message, "gw-ha (replicas: 2)") {
		t.Errorf("primary-attached Subnet in a replicated gateway's Vpc: %+v", r)
	}
	sn.Spec.NatGatewayAttachment = &v1.SubnetAttachment{Bridge: "br-new"}
	if r := answer("subnets", sn); !r.Allowed {
		t.Errorf("bridged Subnet refused: %+v", r.Result)
	}
}
