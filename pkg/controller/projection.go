package controller

import (
	"encoding/json"
	"fmt"
	"slices"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/claims"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// projection is everything a valid gateway turns into: the Deployment and the desired
// annotation's value. Computed from cache objects without changing them, with no API call.
type projection struct {
	desired    *annotations.Desired
	value      string // the desired annotation, in the encoding every daemon reads
	parts      string // the same in the parts encoding (partsValue), "" until needed
	hash       string // annotations.DesiredHash(desired)
	nics       string // the NIC plan annotation on the pod template
	deployment *appsv1.Deployment
}

const previousStays = "nothing of this spec is applied; the previous state stays in force"

// project builds the gateway's projection, or says why there is none.
func (c *Controller) project(gw *v1.VpcNatGateway) (*projection, *problem, error) {
	cfg, prob, err := c.config()
	if prob != nil || err != nil {
		return nil, prob, err
	}
	vpc, err := c.vpcs.Get(gw.Spec.Vpc)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, nil, fmt.Errorf("reading Vpc %s: %w", gw.Spec.Vpc, err)
	}
	if apierrors.IsNotFound(err) {
		vpc = nil
	}
	nics, desired, errs := plan.Build(plan.Inputs{Gateway: gw, Vpc: vpc, Subnets: c.subnetsFor(gw), Config: cfg})
	errs = append(errs, claims.GatewayConflicts(c.claims, gw)...)
	nodeSelector, selErrs := parseSelector(gw.Spec.Selector)
	errs = append(errs, selErrs...)
	// The app label's value is vpc-nat-gw-<name> (Kube-OVN's), and label values are limited.
	for _, m := range validation.IsValidLabelValue(AppLabel(gw.Name)) {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), gw.Name, "label app="+AppLabel(gw.Name)+": "+m))
	}
	if len(errs) > 0 {
		return nil, &problem{ReasonInvalidSpec, errorsMessage(errs) + "; " + previousStays}, nil
	}
	tmpl, err := plan.TemplateAnnotations(nics, c.opts.ExternalNetwork)
	if err != nil {
		return nil, nil, fmt.Errorf("template annotations: %w", err)
	}
	value, err := annotations.EncodeDesired(desired)
	if err != nil {
		return nil, nil, err
	}
	hash, err := annotations.DesiredHash(desired)
	if err != nil {
		return nil, nil, err
	}
	// The pod starts with the template's annotations and then gets the desired one: refuse here
	// a state that can never fit, before anything changes. projectToPod checks each real pod,
	// which may carry more annotations.
	if size := annotationsSize(tmpl) + len(annotations.DesiredKey) + len(value); size > annotations.MaxTotalSize {
		return nil, tooLarge(len(value), size), nil
	}
	return &projection{
		desired:    desired,
		value:      value,
		hash:       hash,
		nics:       tmpl[annotations.NICsKey],
		deployment: buildDeployment(gw, c.opts.GatewayNamespace, cfg.Image, tmpl, nodeSelector),
	}, nil, nil
}

// config reads the ConfigMap; a missing or disabled one is a problem for every gateway.
func (c *Controller) config() (plan.Config, *problem, error) {
	name := plan.ConfigMapNamespace + "/" + plan.ConfigMapName
	cm, err := c.configMaps.Get(plan.ConfigMapName)
	if apierrors.IsNotFound(err) {
		return plan.Config{}, &problem{ReasonDisabled, fmt.Sprintf(
			"ConfigMap %s does not exist: no gateway is created, and an existing gateway Deployment is left as it is", name)}, nil
	}
	if err != nil {
		return plan.Config{}, nil, fmt.Errorf("reading ConfigMap %s: %w", name, err)
	}
	cfg, errs := plan.ParseConfig(cm.Data)
	if len(errs) > 0 {
		return plan.Config{}, &problem{ReasonInvalidConfig, fmt.Sprintf("ConfigMap %s: %s; %s", name, errorsMessage(errs), previousStays)}, nil
	}
	if !cfg.Enabled {
		return plan.Config{}, &problem{ReasonDisabled, fmt.Sprintf(
			"ConfigMap %s: %s is not \"true\": no gateway is created, and an existing gateway Deployment is left as it is", name, plan.KeyEnable)}, nil
	}
	return cfg, nil, nil
}

// subnetsFor lists the Subnets of the gateway's Vpc, and spec.subnet's Subnet wherever it
// belongs (so that Build can say it is of another Vpc). They are cache objects: Build only reads.
func (c *Controller) subnetsFor(gw *v1.VpcNatGateway) []*v1.Subnet {
	var out []*v1.Subnet
	seen := map[string]bool{}
	if gw.Spec.Vpc != "" {
		objs, _ := c.subnetIndex.ByIndex(indexVpc, gw.Spec.Vpc)
		for _, o := range objs {
			if s, ok := o.(*v1.Subnet); ok {
				out, seen[s.Name] = append(out, s), true
			}
		}
	}
	if s, err := c.subnets.Get(gw.Spec.Subnet); err == nil && !seen[s.Name] {
		out = append(out, s)
	}
	return out
}

// annotationsSize counts annotations as the API server does against MaxTotalSize.
func annotationsSize(m map[string]string) int {
	n := 0
	for k, v := range m {
		n += len(k) + len(v)
	}
	return n
}

func tooLarge(value, total int) *problem {
	return &problem{ReasonTooLarge, fmt.Sprintf(
		"the desired state is %d bytes encoded; with the pod's other annotations that is %d bytes, over the API server's limit of %d for a pod's annotations: remove rules; %s",
		value, total, annotations.MaxTotalSize, previousStays)}
}

const mergePatch = types.MergePatchType

// valueFor is the desired annotation for pod p: in the parts encoding when p's daemon reads it
// (its applied report lists it: a one-rule edit then costs the daemon only the changed parts),
// else in the encoding every daemon reads, so controller and daemons upgrade in either order.
func (proj *projection) valueFor(p *corev1.Pod, cache *partsCache) (string, error) {
	a, err := annotations.ParseApplied(p.Annotations[annotations.AppliedKey])
	if err != nil || !slices.Contains(a.Encodings, annotations.EncodingParts) {
		return proj.value, nil
	}
	if proj.parts == "" {
		if proj.parts, err = cache.get(proj.hash, proj.value, func() (string, error) {
			return annotations.EncodeDesiredParts(proj.desired)
		}); err != nil {
			return "", err
		}
	}
	return proj.parts, nil
}

// partsCache holds the parts encoding of the last large desired states by their hash, so that
// the syncs of a gateway whose state did not change (its pods' status, the daemons' reports:
// most syncs) do not compress it again (~30 ms at 10 000 rules). Small states are plain JSON in
// either encoding and are not kept.
type partsCache struct {
	mu sync.Mutex
	m  map[string]string
}

// partsCacheSize bounds the cache: a few gateways edited at once; ~70 KiB each at 10 000 rules.
const partsCacheSize = 16

func (c *partsCache) get(hash, plain string, encode func() (string, error)) (string, error) {
	c.mu.Lock()
	v, ok := c.m[hash]
	c.mu.Unlock()
	if ok {
		return v, nil
	}
	v, err := encode()
	if err != nil || v == plain {
		return v, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= partsCacheSize {
		c.m = map[string]string{} // dropped at once: cheaper to keep than a recency order
	}
	c.m[hash] = v
	return v, nil
}

// desiredPatch is a JSON merge patch setting the desired annotation and the network status: it
// touches those two keys, never the daemon's applied annotation or anyone else's.
func desiredPatch(value, networkStatus string) ([]byte, error) {
	b, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		annotations.DesiredKey: value, annotations.NetworkStatusKey: networkStatus}}})
	if err != nil {
		return nil, fmt.Errorf("encoding patch: %w", err)
	}
	return b, nil
}
