package main

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// cluster creates gateway objects as the controller and the apps controllers would (no
// controller-manager runs): Deployment controlled by the VpcNatGateway, ReplicaSet, Pod bound to
// the node.
type cluster struct {
	client   kubernetes.Interface
	ns, node string
	// dataplane is the ConfigMap's dataplane key every gateway is built with.
	dataplane string
	// encoding is the desired annotation's compressed form: "auto" (as the controller: the
	// parts encoding once the pod's daemon lists it in its applied report), "gzip" or "parts".
	encoding string
	// readsParts: the pods whose daemon listed the parts encoding in its last report seen.
	readsParts map[string]bool
	// lastEncoding is the form of the last desired annotation written: plain, gzip or deflate-parts.
	lastEncoding string
}

func (c *cluster) setup(ctx context.Context) error {
	if _, err := c.client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// Pod admission wants the default ServiceAccount; no controller-manager makes it here.
	_, err := c.client.CoreV1().ServiceAccounts(c.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
	return err
}

func controllerRef(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes}}
}

// gateway creates the objects of one gateway with the NIC plan of in and returns the pod.
func (c *cluster) gateway(ctx context.Context, in plan.Inputs) (*corev1.Pod, error) {
	nics, _, errs := plan.Build(in)
	if len(errs) > 0 {
		return nil, fmt.Errorf("gateway %s: %w", in.Gateway.Name, errs.ToAggregate())
	}
	templ, err := plan.TemplateAnnotations(nics, "ovn-vpc-external-network")
	if err != nil {
		return nil, err
	}
	gw := in.Gateway.Name
	labels := map[string]string{plan.LabelGateway: gw}
	no := false
	tpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: templ},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "gateway", Image: "vpcnat.local/vpcnat-gateway:dev"}}}}
	dep, err := c.client.AppsV1().Deployments(c.ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: plan.DeploymentName(gw), Namespace: c.ns, Labels: labels,
			OwnerReferences: controllerRef("kubeovn.io/v1", "VpcNatGateway", gw, types.UID("uid-"+gw))},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels}, Template: tpl},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	rs, err := c.client.AppsV1().ReplicaSets(c.ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-5f6d", Namespace: c.ns, Labels: labels,
			OwnerReferences: controllerRef("apps/v1", "Deployment", dep.Name, dep.UID)},
		Spec: appsv1.ReplicaSetSpec{Selector: dep.Spec.Selector, Template: tpl},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-b7x9q", Namespace: c.ns, Labels: labels, Annotations: templ,
		OwnerReferences: controllerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID)}, Spec: tpl.Spec}
	pod.Spec.NodeName = c.node
	return c.client.CoreV1().Pods(c.ns).Create(ctx, pod, metav1.CreateOptions{})
}

// desired writes the desired state of in on the pod and returns the annotation's size and the
// hash an applied annotation reports for it (annotations.DesiredHash).
func (c *cluster) desired(ctx context.Context, pod *corev1.Pod, in plan.Inputs) (size int, hash string, err error) {
	patch, size, hash, err := c.desiredPatch(pod, in)
	if err != nil {
		return 0, "", err
	}
	return size, hash, c.send(ctx, pod, patch)
}

// send applies the merge patch to the pod.
func (c *cluster) send(ctx context.Context, pod *corev1.Pod, patch []byte) error {
	_, err := c.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

// desiredPatch is the controller's work before its patch: the desired state of in for the pod
// (plan.Build), its annotation value, the merge patch that writes it, its size and hash.
func (c *cluster) desiredPatch(pod *corev1.Pod, in plan.Inputs) (patch []byte, size int, hash string, err error) {
	in.Config.Dataplane = c.dataplane
	_, d, errs := plan.Build(in)
	if len(errs) > 0 {
		return nil, 0, "", fmt.Errorf("gateway %s: %w", in.Gateway.Name, errs.ToAggregate())
	}
	encode := annotations.EncodeDesired
	if c.encoding == "parts" || c.encoding == "auto" && c.readsParts[pod.Name] {
		encode = annotations.EncodeDesiredParts
	}
	v, err := encode(d)
	if err != nil {
		return nil, 0, "", err
	}
	var env struct {
		Encoding string `json:"encoding"`
	}
	if err := json.Unmarshal([]byte(v), &env); err != nil {
		return nil, 0, "", err
	}
	c.lastEncoding = cmp.Or(env.Encoding, "plain")
	hash, err = annotations.DesiredHash(d)
	if err != nil {
		return nil, 0, "", err
	}
	patch, err = json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotations.DesiredKey: v}}})
	return patch, len(v), hash, err
}

// applied is the pod's applied annotation (nil when none).
func (c *cluster) applied(ctx context.Context, pod *corev1.Pod) (*annotations.Applied, error) {
	p, err := c.client.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	s, ok := p.Annotations[annotations.AppliedKey]
	if !ok {
		return nil, nil
	}
	a, err := annotations.ParseApplied(s)
	if err == nil {
		c.readsParts[pod.Name] = slices.Contains(a.Encodings, annotations.EncodingParts)
	}
	return a, err
}
