package nodeagent

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// The owner chain of a gateway pod, as the controller builds it and the Deployment and
// ReplicaSet controllers keep it.
var (
	replicaSetGK    = schema.GroupKind{Group: "apps", Kind: "ReplicaSet"}
	deploymentGK    = schema.GroupKind{Group: "apps", Kind: "Deployment"}
	vpcNatGatewayGK = schema.GroupKind{Group: "kubeovn.io", Kind: "VpcNatGateway"}
)

// Resources the owner lookup reads (metadata only).
const (
	replicaSets = "replicasets"
	deployments = "deployments"
)

// ownerGetter returns the metadata of a ReplicaSet or Deployment (resource replicasets or
// deployments) of the gateway namespace, or a NotFound error.
type ownerGetter func(resource, name string) (metav1.Object, error)

// gatewayOf returns the name of the gateway a pod serves, or "" and why it is not a gateway pod.
// The annotation alone proves nothing (any user may set it on any pod), so the pod must be in
// the gateway namespace and controlled by a ReplicaSet, controlled by the gateway's Deployment,
// controlled by the VpcNatGateway the annotation names; owner UIDs must match the objects found,
// so a stale reference to a deleted and recreated object of the same name does not count.
func gatewayOf(pod *corev1.Pod, namespace string, get ownerGetter) (name, notGateway string) {
	name = pod.Annotations[annotations.GatewayKey]
	switch {
	case name == "":
		return "", "no " + annotations.GatewayKey + " annotation"
	case pod.Namespace != namespace:
		return "", fmt.Sprintf("namespace %s is not the gateway namespace %s", pod.Namespace, namespace)
	}
	rs, why := controlledBy(pod, replicaSetGK, replicaSets, get)
	if rs == nil {
		return "", "pod: " + why
	}
	dep, why := controlledBy(rs, deploymentGK, deployments, get)
	if dep == nil {
		return "", "replicaset " + rs.GetName() + ": " + why
	}
	if want := plan.DeploymentName(name); dep.GetName() != want {
		return "", fmt.Sprintf("deployment %s is not gateway %s's (%s)", dep.GetName(), name, want)
	}
	ref := metav1.GetControllerOfNoCopy(dep)
	if ref == nil || groupKindOf(ref) != vpcNatGatewayGK || ref.Name != name {
		return "", fmt.Sprintf("deployment %s is not controlled by VpcNatGateway %s", dep.GetName(), name)
	}
	return name, ""
}

// controlledBy returns obj's controller when it is of kind gk and exists with the UID the
// reference names.
func controlledBy(obj metav1.Object, gk schema.GroupKind, resource string, get ownerGetter) (metav1.Object, string) {
	ref := metav1.GetControllerOfNoCopy(obj)
	if ref == nil || groupKindOf(ref) != gk {
		return nil, "not controlled by a " + gk.Kind
	}
	owner, err := get(resource, ref.Name)
	switch {
	case apierrors.IsNotFound(err):
		return nil, fmt.Sprintf("its %s %s does not exist", gk.Kind, ref.Name)
	case err != nil:
		return nil, fmt.Sprintf("looking up %s %s: %v", gk.Kind, ref.Name, err)
	case owner.GetUID() != ref.UID:
		return nil, fmt.Sprintf("its %s %s has UID %s, not %s", gk.Kind, ref.Name, owner.GetUID(), ref.UID)
	}
	return owner, ""
}

func groupKindOf(ref *metav1.OwnerReference) schema.GroupKind {
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return schema.GroupKind{}
	}
	return schema.GroupKind{Group: gv.Group, Kind: ref.Kind}
}
