package admission

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/claims"
)

// Path the webhook serves.
const Path = "/validate"

// maxBody bounds a request: an AdmissionReview carries the object (and the old one on update),
// and a VpcNatGateway's spec can hold thousands of rules.
const maxBody = 8 << 20

// Webhook answers AdmissionReviews (admission.k8s.io/v1) for VpcNatGateways and Subnets.
type Webhook struct {
	lookup  claims.Lookup
	synced  func() bool
	now     func() time.Time
	reviews *prometheus.CounterVec
}

// NewWebhook reads objects through lookup (the controller's caches) once synced says they have
// listed; reg receives its metrics (nil: none).
func NewWebhook(lookup claims.Lookup, synced func() bool, reg prometheus.Registerer) *Webhook {
	w := &Webhook{lookup: lookup, synced: synced, now: time.Now,
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vpcnat_controller_admission_reviews_total",
			Help: "Admission reviews answered, by resource and result (allowed, denied, error).",
		}, []string{"resource", "result"}),
	}
	if reg != nil {
		reg.MustRegister(w.reviews)
	}
	return w
}

// ServeHTTP answers one AdmissionReview. Before the caches have synced it answers 503, an error
// the API server handles by the webhook's failurePolicy (Ignore: the object is admitted, and
// the controller's status path refuses it if it conflicts).
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		http.Error(rw, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if !w.synced() {
		w.reviews.WithLabelValues("", "error").Inc()
		http.Error(rw, "vpcnat-controller's caches have not synced yet", http.StatusServiceUnavailable)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(body) > maxBody {
		w.reviews.WithLabelValues("", "error").Inc()
		http.Error(rw, fmt.Sprintf("reading the request (at most %d bytes): %v", maxBody, err), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		w.reviews.WithLabelValues("", "error").Inc()
		http.Error(rw, fmt.Sprintf("not an AdmissionReview with a request: %v", err), http.StatusBadRequest)
		return
	}
	req := review.Request
	resp := w.review(req)
	resp.UID = req.UID
	result := "allowed"
	if !resp.Allowed {
		result = "denied"
		klog.FromContext(r.Context()).V(2).Info("Refused", "resource", req.Resource.Resource, "name", req.Name,
			"operation", req.Operation, "user", req.UserInfo.Username, "message", resp.Result.Message)
	}
	w.reviews.WithLabelValues(req.Resource.Resource, result).Inc()
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	rw.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(rw).Encode(&out)
}

// review decides one request: creates and updates of the two kinds are checked, anything else
// (the configuration should send nothing else) is allowed.
func (w *Webhook) review(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return allow
	}
	if req.Resource.Group != v1.GroupName || req.SubResource != "" {
		return allow
	}
	var errs field.ErrorList
	var kind string
	switch req.Resource.Resource {
	case "vpcnatgateways":
		kind = "VpcNatGateway"
		var gw v1.VpcNatGateway
		if err := json.Unmarshal(req.Object.Raw, &gw); err != nil {
			return deny(req, "VpcNatGateway", field.ErrorList{field.InternalError(nil, fmt.Errorf("decoding the object: %w", err))})
		}
		w.stamp(&gw.ObjectMeta)
		errs = append(errs, claims.RuleEIPs(&gw)...)
		if fe := claims.GatewaySubnet(w.lookup, &gw); fe != nil {
			errs = append(errs, fe)
		}
		errs = append(errs, claims.GatewayConflicts(w.lookup, &gw)...)
		if fe := claims.ReplicatedSubnets(w.lookup, &gw); fe != nil {
			errs = append(errs, fe)
		}
	case "subnets":
		kind = "Subnet"
		var s v1.Subnet
		if err := json.Unmarshal(req.Object.Raw, &s); err != nil {
			return deny(req, "Subnet", field.ErrorList{field.InternalError(nil, fmt.Errorf("decoding the object: %w", err))})
		}
		w.stamp(&s.ObjectMeta)
		if c := claims.SegmentConflict(w.lookup, &s); c != nil {
			errs = append(errs, c.Error())
		}
		if fe := claims.PrimarySubnetOfReplicated(w.lookup, &s); fe != nil {
			errs = append(errs, fe)
		}
	default:
		return allow
	}
	if len(errs) == 0 {
		return allow
	}
	return deny(req, kind, errs)
}

// stamp gives an object under creation that carries no creation time yet the time now: it is
// the newest claimant.
func (w *Webhook) stamp(m *metav1.ObjectMeta) {
	if m.CreationTimestamp.IsZero() {
		m.CreationTimestamp = metav1.NewTime(w.now())
	}
}

// deny is a refusal in the API server's own words for an invalid object, so that kubectl
// prints: admission webhook "..." denied the request: VpcNatGateway "x" is invalid: spec.eips[0]...
func deny(req *admissionv1.AdmissionRequest, kind string, errs field.ErrorList) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusUnprocessableEntity,
		Reason:  metav1.StatusReasonInvalid,
		Message: fmt.Sprintf("%s %q is invalid: %s", kind, req.Name, errs.ToAggregate().Error()),
	}}
}
