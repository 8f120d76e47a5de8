package nodeagent

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

func controllerRef(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	yes := true
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes}
}

// chain is a gateway pod's owner chain as the controller and the apps controllers make it.
type chain struct {
	pod *corev1.Pod
	rs  *metav1.ObjectMeta
	dep *metav1.ObjectMeta
}

func newChain(gw string) *chain {
	dep := &metav1.ObjectMeta{Name: "vpc-nat-gw-" + gw, Namespace: "kube-system", UID: "dep-uid",
		OwnerReferences: []metav1.OwnerReference{controllerRef("kubeovn.io/v1", "VpcNatGateway", gw, "gw-uid")}}
	rs := &metav1.ObjectMeta{Name: dep.Name + "-5d8f", Namespace: "kube-system", UID: "rs-uid",
		OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "Deployment", dep.Name, dep.UID)}}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-x7k2q", Namespace: "kube-system", UID: "pod-uid",
		Annotations:     map[string]string{annotations.GatewayKey: gw},
		OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID)}}}
	return &chain{pod: pod, rs: rs, dep: dep}
}

func (c *chain) get(resource, name string) (metav1.Object, error) {
	var m *metav1.ObjectMeta
	switch resource {
	case replicaSets:
		m = c.rs
	case deployments:
		m = c.dep
	}
	if m == nil || m.Name != name {
		return nil, apierrors.NewNotFound(schema.GroupResource{Group: "apps", Resource: resource}, name)
	}
	return m, nil
}

// TestGatewayOf: only a pod of the gateway namespace whose full owner chain leads to the
// VpcNatGateway its annotation names is a gateway; each way of only pretending is refused with
// a reason that says what is wrong.
func TestGatewayOf(t *testing.T) {
	if name, why := gatewayOf(newChain("ngw").pod, "kube-system", newChain("ngw").get); name != "ngw" {
		t.Fatalf("the real gateway pod refused: %s", why)
	}
	for _, c := range []struct {
		name   string
		mutate func(*chain)
		want   string
	}{
		{"no annotation", func(c *chain) { delete(c.pod.Annotations, annotations.GatewayKey) }, "no ovn.kubernetes.io/vpc_nat_gw"},
		{"other namespace", func(c *chain) { c.pod.Namespace = "default" }, "not the gateway namespace"},
		{"no owner", func(c *chain) { c.pod.OwnerReferences = nil }, "not controlled by a ReplicaSet"},
		{"owner not controller", func(c *chain) { c.pod.OwnerReferences[0].Controller = nil }, "not controlled by a ReplicaSet"},
		{"owned by a StatefulSet", func(c *chain) { c.pod.OwnerReferences[0].Kind = "StatefulSet" }, "not controlled by a ReplicaSet"},
		{"ReplicaSet of another group", func(c *chain) { c.pod.OwnerReferences[0].APIVersion = "example.com/v1" }, "not controlled by a ReplicaSet"},
		{"ReplicaSet missing", func(c *chain) { c.rs = nil }, "ReplicaSet vpc-nat-gw-ngw-5d8f does not exist"},
		{"ReplicaSet recreated", func(c *chain) { c.rs.UID = "other" }, "has UID other"},
		{"bare ReplicaSet", func(c *chain) { c.rs.OwnerReferences = nil }, "not controlled by a Deployment"},
		{"Deployment missing", func(c *chain) { c.dep = nil }, "Deployment vpc-nat-gw-ngw does not exist"},
		{"Deployment recreated", func(c *chain) { c.dep.UID = "other" }, "has UID other"},
		{"Deployment of another name", func(c *chain) {
			c.dep.Name = "mine"
			c.rs.OwnerReferences[0].Name = "mine"
		}, "deployment mine is not gateway ngw's"},
		{"Deployment not owned", func(c *chain) { c.dep.OwnerReferences = nil }, "not controlled by VpcNatGateway ngw"},
		{"owned by another gateway", func(c *chain) { c.dep.OwnerReferences[0].Name = "other" }, "not controlled by VpcNatGateway ngw"},
		{"owned by another kind", func(c *chain) { c.dep.OwnerReferences[0].Kind = "Vpc" }, "not controlled by VpcNatGateway ngw"},
		{"owned by another group", func(c *chain) { c.dep.OwnerReferences[0].APIVersion = "kubeovn.example/v1" }, "not controlled by VpcNatGateway ngw"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ch := newChain("ngw")
			c.mutate(ch)
			name, why := gatewayOf(ch.pod, "kube-system", ch.get)
			if name != "" || !strings.Contains(why, c.want) {
				t.Errorf("gatewayOf = %q, %q; want refused with %q", name, why, c.want)
			}
		})
	}
}
