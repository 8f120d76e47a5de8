package controller

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// TestDeploymentReplicas: one replica (or the field unset) keeps the single-pod Deployment
// (Recreate, no anti-affinity, the same spec hash as before replicas existed); two or more
// replicas get that count, a rolling update without surge, and a required anti-affinity on the
// node name against the gateway's own pods, added to the user's affinity without changing it.
func TestDeploymentReplicas(t *testing.T) {
	gw := &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: "gw1"}}
	unset := buildDeployment(gw, "kube-system", "img", nil, nil)
	gw.Spec.Replicas = 1
	one := buildDeployment(gw, "kube-system", "img", nil, nil)
	if *one.Spec.Replicas != 1 || one.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType || one.Spec.Template.Spec.Affinity != nil {
		t.Fatalf("replicas 1: replicas %d, strategy %s, affinity %v", *one.Spec.Replicas, one.Spec.Strategy.Type, one.Spec.Template.Spec.Affinity)
	}
	if unset.Annotations[SpecHashKey] != one.Annotations[SpecHashKey] {
		t.Fatalf("replicas unset and 1 build different Deployments")
	}

	user := &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{}}
	gw.Spec.Affinity = user
	gw.Spec.Replicas = 3
	three := buildDeployment(gw, "kube-system", "img", nil, nil)
	if *three.Spec.Replicas != 3 {
		t.Fatalf("replicas 3: Deployment has %d", *three.Spec.Replicas)
	}
	ru := three.Spec.Strategy.RollingUpdate
	if three.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxSurge.IntValue() != 0 || ru.MaxUnavailable.IntValue() != 1 {
		t.Fatalf("replicas 3: strategy %+v", three.Spec.Strategy)
	}
	a := three.Spec.Template.Spec.Affinity
	if a == nil || a.NodeAffinity == nil || a.PodAntiAffinity == nil {
		t.Fatalf("replicas 3: affinity %+v", a)
	}
	terms := a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution
	if len(terms) != 1 || terms[0].TopologyKey != corev1.LabelHostname || terms[0].LabelSelector.MatchLabels[plan.LabelGateway] != "gw1" {
		t.Fatalf("replicas 3: anti-affinity %+v", terms)
	}
	if user.PodAntiAffinity != nil {
		t.Fatalf("the gateway's own affinity was changed: %+v", user)
	}
}
