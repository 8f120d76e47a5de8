package controller

import (
	"slices"
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

// TestDeploymentFailoverAgent: a replicated gateway's container runs the failover agent with
// spec.bfd's timing, its pod name from the downward API, and NET_ADMIN and NET_RAW as its only
// capabilities; one replica runs the do-nothing process with no capability.
func TestDeploymentFailoverAgent(t *testing.T) {
	gw := &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: "gw1"}}
	one := buildDeployment(gw, "kube-system", "img", nil, nil).Spec.Template.Spec.Containers[0]
	if len(one.Command) != 0 || len(one.SecurityContext.Capabilities.Add) != 0 || one.SecurityContext.RunAsUser != nil {
		t.Fatalf("one replica: command %q, capabilities %+v, user %v (want the pod's)", one.Command, one.SecurityContext.Capabilities, one.SecurityContext.RunAsUser)
	}

	gw.Spec.Replicas = 2
	gw.Spec.BFD = &v1.BFDConfig{Enabled: true, MinRX: 200, MinTX: 150, Multiplier: 4}
	c := buildDeployment(gw, "kube-system", "img", nil, nil).Spec.Template.Spec.Containers[0]
	want := []string{KeepaliveBinary, "--gateway=gw1", "--min-rx=200", "--min-tx=150", "--multiplier=4", "--exclude=eth0", "--replica-macs"}
	if !slices.Equal(c.Command, want) {
		t.Fatalf("command %q, want %q", c.Command, want)
	}
	if len(c.Env) != 1 || c.Env[0].Name != "POD_NAME" || c.Env[0].ValueFrom.FieldRef.FieldPath != "metadata.name" {
		t.Fatalf("env %+v, want POD_NAME from metadata.name", c.Env)
	}
	sc := c.SecurityContext
	if !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_ADMIN", "NET_RAW"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Fatalf("capabilities %+v, want all dropped but NET_ADMIN and NET_RAW", sc.Capabilities)
	}
	if *sc.Privileged || *sc.AllowPrivilegeEscalation || !*sc.ReadOnlyRootFilesystem {
		t.Fatalf("security context %+v: want unprivileged, no escalation, read-only root", sc)
	}
}
