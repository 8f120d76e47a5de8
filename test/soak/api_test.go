package soak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// orNull is a list for a JSON merge patch: an empty one must be null, or the field would keep
// its old value.
func orNull[T any](l []T) any {
	if len(l) == 0 {
		return nil
	}
	return l
}

// writeGateway replaces the gateway's spec fields the churn changes with a JSON merge patch: no
// resourceVersion, so no conflict with the controller's status writes, and two writes can
// follow each other within milliseconds.
func (c *cluster) writeGateway(ctx context.Context, m *gwModel) error {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{
		"lanIp":           m.spec.LanIP,
		"eips":            orNull(m.spec.Eips),
		"floatingIpRules": orNull(m.spec.FloatingIPRules),
		"dnatRules":       orNull(m.spec.DnatRules),
		"snatRules":       orNull(m.spec.SnatRules),
	}})
	if err != nil {
		return err
	}
	if _, err := c.ovn.VpcNatGateways.Patch(ctx, m.name, types.MergePatchType, patch, metav1.PatchOptions{FieldValidation: "Strict"}); err != nil {
		return fmt.Errorf("patching VpcNatGateway %s: %w", m.name, err)
	}
	return nil
}

func (c *cluster) writeVpc(ctx context.Context, m *gwModel) error {
	patch, err := json.Marshal(map[string]any{"spec": map[string]any{"staticRoutes": orNull(m.routes)}})
	if err != nil {
		return err
	}
	if _, err := c.ovn.Vpcs.Patch(ctx, m.vpc, types.MergePatchType, patch, metav1.PatchOptions{FieldValidation: "Strict"}); err != nil {
		return fmt.Errorf("patching Vpc %s: %w", m.vpc, err)
	}
	return nil
}

func (c *cluster) create(ctx context.Context, m *gwModel) error {
	gw, vpc, sn := m.objects()
	if _, err := c.ovn.Vpcs.Create(ctx, vpc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Vpc %s: %w", vpc.Name, err)
	}
	if _, err := c.ovn.Subnets.Create(ctx, sn, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating Subnet %s: %w", sn.Name, err)
	}
	if _, err := c.ovn.VpcNatGateways.Create(ctx, gw, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating VpcNatGateway %s: %w", gw.Name, err)
	}
	return nil
}

// gatewayPods lists the gateway's pods.
func (c *cluster) gatewayPods(ctx context.Context, name string) ([]corev1.Pod, error) {
	ps, err := c.kube.CoreV1().Pods(plan.GatewayNamespace).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway + "=" + name})
	if err != nil {
		return nil, err
	}
	return ps.Items, nil
}

// fromDesired is the expectation a desired annotation amounts to, in the test's terms, so that
// it can be compared with the model's.
func fromDesired(d *annotations.Desired, m *gwModel) *expected {
	e := &expected{eips: map[string]bool{}, fips: map[string]string{}, dnats: map[dnatKey]target{},
		snats: map[string]string{}, dstRoute: map[string]string{}, srcRoute: map[string]string{},
		subnet: m.cidr(), subAddrs: map[string]bool{}}
	for _, x := range d.EIPs {
		e.eips[x.EipCIDR] = true
		e.eipGW = x.Gateway
	}
	for _, f := range d.FloatingIPs {
		e.fips[f.EIP] = f.InternalIP
	}
	for _, r := range d.DNATs {
		e.dnats[dnatKey{r.EIP, r.Protocol, r.ExternalPort}] = target{r.InternalIP, r.InternalPort}
	}
	for _, s := range d.SNATs {
		e.snats[s.InternalCIDR] = s.EIP
	}
	for _, r := range d.Routes {
		if r.Policy == annotations.PolicySrc {
			e.srcRoute[r.CIDR] = r.NextHopIP
		} else {
			e.dstRoute[r.CIDR] = r.NextHopIP
		}
	}
	for _, s := range d.Subnets {
		for _, a := range s.Addresses {
			e.subAddrs[a] = true
		}
	}
	return e
}

// converged says why the gateway has not yet caught up with the model, or returns its one pod:
// the controller observed the current generation and reports Ready; the gateway has exactly one
// pod (an old one is gone), bound and with a sandbox; the pod's desired annotation says what the
// model says; and the daemon's applied annotation reports that very document, without error.
func (c *cluster) converged(ctx context.Context, m *gwModel, k *kubelet) (*corev1.Pod, error) {
	gw, err := c.ovn.VpcNatGateways.Get(ctx, m.name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	if gw.Status.ObservedGeneration != gw.Generation {
		return nil, fmt.Errorf("status.observedGeneration %d, generation %d", gw.Status.ObservedGeneration, gw.Generation)
	}
	if r := meta.FindStatusCondition(gw.Status.Conditions, "Ready"); r == nil || r.Status != metav1.ConditionTrue {
		return nil, fmt.Errorf("not Ready: %+v", r)
	}
	pods, err := c.gatewayPods(ctx, m.name)
	if err != nil {
		return nil, err
	}
	if len(pods) != 1 {
		return nil, fmt.Errorf("%d pods", len(pods))
	}
	pod := &pods[0]
	if pod.DeletionTimestamp != nil || pod.Spec.NodeName == "" {
		return nil, fmt.Errorf("pod %s is terminating or unbound", pod.Name)
	}
	if k.sandboxOf(pod) == nil {
		return nil, fmt.Errorf("pod %s has no sandbox yet", pod.Name)
	}
	d, err := annotations.ParseDesired(pod.Annotations[annotations.DesiredKey])
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	if got, want := fromDesired(d, m), m.expected(); !reflect.DeepEqual(got, want) {
		return nil, fmt.Errorf("pod %s: desired annotation (generation %d) is not the model yet: %s", pod.Name, d.Generation,
			strings.Join(diffExpected(want, got), "; "))
	}
	hash, err := annotations.DesiredHash(d)
	if err != nil {
		return nil, err
	}
	raw, ok := pod.Annotations[annotations.AppliedKey]
	if !ok {
		return nil, fmt.Errorf("pod %s: no applied annotation", pod.Name)
	}
	a, err := annotations.ParseApplied(raw)
	if err != nil {
		return nil, fmt.Errorf("pod %s: %w", pod.Name, err)
	}
	if a.Hash != hash {
		return nil, fmt.Errorf("pod %s: applied generation %d, not the desired generation %d", pod.Name, a.Generation, d.Generation)
	}
	if a.Error != "" || len(a.RuleErrors) > 0 {
		return nil, errors.New("pod " + pod.Name + ": applied with errors: " + a.Error + fmt.Sprint(a.RuleErrors))
	}
	return pod, nil
}

// diffExpected lists how got differs from want.
func diffExpected(want, got *expected) []string {
	var out []string
	if want.eipGW != got.eipGW {
		out = append(out, fmt.Sprintf("EIP gateway %q, want %q", got.eipGW, want.eipGW))
	}
	out = append(out, diffSet("eip", want.eips, got.eips)...)
	out = append(out, diffSet("fip", want.fips, got.fips)...)
	out = append(out, diffSet("dnat", want.dnats, got.dnats)...)
	out = append(out, diffSet("snat", want.snats, got.snats)...)
	out = append(out, diffSet("policyDst route", want.dstRoute, got.dstRoute)...)
	out = append(out, diffSet("policySrc route", want.srcRoute, got.srcRoute)...)
	out = append(out, diffSet("subnet address", want.subAddrs, got.subAddrs)...)
	return out
}
