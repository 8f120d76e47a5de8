package controller

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// SpecHashKey, on a gateway Deployment, is the hash of the Deployment spec the controller last
// wrote. Comparing it instead of the live spec keeps API-server defaulting (which fills dozens of
// template fields) from looking like a change, so an unchanged gateway costs no write.
const SpecHashKey = annotations.Prefix + "spec-hash"

// ContainerName is the gateway pod's one container.
const ContainerName = "vpc-nat-gw"

// gatewayUID and gatewayGID: the gateway container runs as nobody. It does nothing: the plugin
// and the daemon do all privileged work from the host side, so it needs no identity at all.
const gatewayUID, gatewayGID = 65534, 65534

// AppLabel is Kube-OVN's app label value for a gateway's pods.
func AppLabel(gateway string) string { return plan.DeploymentName(gateway) }

// parseSelector turns spec.selector's "key: value" strings (Kube-OVN's form) into a node selector.
func parseSelector(sel []string) (map[string]string, field.ErrorList) {
	var errs field.ErrorList
	out := map[string]string{}
	for i, s := range sel {
		p := field.NewPath("spec", "selector").Index(i)
		k, v, ok := strings.Cut(s, ":")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok {
			errs = append(errs, field.Invalid(p, s, `must be "key: value"`))
			continue
		}
		for _, m := range validation.IsQualifiedName(k) {
			errs = append(errs, field.Invalid(p, s, "label key: "+m))
		}
		for _, m := range validation.IsValidLabelValue(v) {
			errs = append(errs, field.Invalid(p, s, "label value: "+m))
		}
		if old, dup := out[k]; dup && old != v {
			errs = append(errs, field.Invalid(p, s, fmt.Sprintf("key %s is already selected with value %q", k, old)))
		}
		out[k] = v
	}
	if len(out) == 0 {
		return nil, errs
	}
	return out, errs
}

// buildDeployment is the gateway's Deployment. Its pod template holds only what makes up the
// pod's identity (image, NIC plan, scheduling, resources): the rules travel in the running pod's
// desired annotation, so changing them never restarts the gateway.
func buildDeployment(gw *v1.VpcNatGateway, namespace, image string, tmplAnnotations, nodeSelector map[string]string) *appsv1.Deployment {
	labels := map[string]string{plan.LabelGateway: gw.Name, plan.LabelApp: AppLabel(gw.Name)}
	var resources corev1.ResourceRequirements
	if gw.Spec.Resources != nil {
		resources = *gw.Spec.Resources.DeepCopy()
	}
	var affinity *corev1.Affinity
	if gw.Spec.Affinity != nil {
		affinity = gw.Spec.Affinity.DeepCopy()
	}
	var tolerations []corev1.Toleration
	for _, t := range gw.Spec.Tolerations {
		tolerations = append(tolerations, *t.DeepCopy())
	}
	replicas, strategy := replicaPlan(gw)
	if replicas > 1 {
		affinity = withReplicaAntiAffinity(affinity, gw.Name)
	}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{
			Name:      plan.DeploymentName(gw.Name),
			Namespace: namespace,
			Labels:    maps.Clone(labels),
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: v1.SchemeGroupVersion.String(), Kind: "VpcNatGateway",
				Name: gw.Name, UID: gw.UID,
				Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
			}},
		},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Strategy: strategy,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{plan.LabelGateway: gw.Name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: maps.Clone(tmplAnnotations)},
				Spec: corev1.PodSpec{
					AutomountServiceAccountToken: ptr.To(false),
					EnableServiceLinks:           ptr.To(false),
					NodeSelector:                 nodeSelector,
					Tolerations:                  tolerations,
					Affinity:                     affinity,
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot:   ptr.To(true),
						RunAsUser:      ptr.To[int64](gatewayUID),
						RunAsGroup:     ptr.To[int64](gatewayGID),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:            ContainerName,
						Image:           image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Resources:       resources,
						SecurityContext: &corev1.SecurityContext{
							Privileged:               ptr.To(false),
							RunAsNonRoot:             ptr.To(true),
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
	if replicas > 1 {
		withFailoverAgent(&d.Spec.Template.Spec.Containers[0], gw)
	}
	d.Annotations = map[string]string{SpecHashKey: specHash(d)}
	return d
}

// replicaPlan is the Deployment's replica count and update strategy. One replica: Recreate, as
// two unreplicated pods of one gateway would both hold its EIPs and answer ARP for them. Two or
// more: the failover agents elect one active replica among however many run, so a rolling update
// that replaces one pod at a time (never a surge: the anti-affinity leaves no node for it) keeps
// an active replica throughout (docs/ha.md).
func replicaPlan(gw *v1.VpcNatGateway) (int32, appsv1.DeploymentStrategy) {
	n := max(gw.Spec.Replicas, 1)
	if n == 1 {
		return 1, appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	}
	return n, appsv1.DeploymentStrategy{
		Type: appsv1.RollingUpdateDeploymentStrategyType,
		RollingUpdate: &appsv1.RollingUpdateDeployment{
			MaxSurge:       ptr.To(intstr.FromInt32(0)),
			MaxUnavailable: ptr.To(intstr.FromInt32(1)),
		},
	}
}

// withReplicaAntiAffinity adds (to a copy the caller owns) a required pod anti-affinity on
// kubernetes.io/hostname against the gateway's own pods: replicas on one node fail together,
// which is what they are there to avoid. A replica that finds no free node stays Pending, and
// status counts it as no standby.
func withReplicaAntiAffinity(a *corev1.Affinity, gateway string) *corev1.Affinity {
	if a == nil {
		a = &corev1.Affinity{}
	}
	if a.PodAntiAffinity == nil {
		a.PodAntiAffinity = &corev1.PodAntiAffinity{}
	}
	a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution = append(
		a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution,
		corev1.PodAffinityTerm{
			LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{plan.LabelGateway: gateway}},
			TopologyKey:   corev1.LabelHostname,
		})
	return a
}

// KeepaliveBinary is the failover agent in the gateway image (cmd/vpcnat-keepalive).
const KeepaliveBinary = "/usr/local/bin/vpcnat-keepalive"

// withFailoverAgent makes the gateway container of a replicated gateway run the failover agent
// instead of the do-nothing process, with spec.bfd's timing. The agent sends heartbeats and ARP
// from packet sockets (CAP_NET_RAW) and sets its NICs' ARP flag (CAP_NET_ADMIN), both in the
// pod's own network namespace, which is all these capabilities reach from there. It runs as
// UID 0 because a container's added capabilities are effective only for root: the runtime sets
// no ambient capabilities for another user, and the image carries no file capabilities. It
// still has no other capability, no privilege escalation and a read-only root (docs/ha.md).
func withFailoverAgent(c *corev1.Container, gw *v1.VpcNatGateway) {
	var bfd v1.BFDConfig
	if gw.Spec.BFD != nil {
		bfd = *gw.Spec.BFD
	}
	c.Command = []string{KeepaliveBinary,
		"--gateway=" + gw.Name,
		fmt.Sprintf("--min-rx=%d", bfd.MinRX), fmt.Sprintf("--min-tx=%d", bfd.MinTX), fmt.Sprintf("--multiplier=%d", bfd.Multiplier),
		"--exclude=" + annotations.PrimaryIfName, "--replica-macs"}
	c.Env = append(c.Env, corev1.EnvVar{Name: "POD_NAME", ValueFrom: &corev1.EnvVarSource{
		FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}}})
	c.SecurityContext.RunAsUser = ptr.To[int64](0)
	c.SecurityContext.RunAsGroup = ptr.To[int64](0)
	c.SecurityContext.RunAsNonRoot = ptr.To(false)
	c.SecurityContext.Capabilities = &corev1.Capabilities{
		Drop: []corev1.Capability{"ALL"},
		Add:  []corev1.Capability{"NET_ADMIN", "NET_RAW"},
	}
}

// specHash is the hex SHA-256 of the Deployment's labels and spec as the controller builds them.
func specHash(d *appsv1.Deployment) string {
	keys := make([]string, 0, len(d.Labels))
	for k := range d.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, d.Labels[k])
	}
	// encoding/json sorts map keys, so equal specs encode equally.
	_ = json.NewEncoder(h).Encode(d.Spec)
	return hex.EncodeToString(h.Sum(nil))[:32]
}

// deploymentUpToDate says whether cur is the Deployment want describes, as far as the controller
// cares: same spec hash, labels and controller.
func deploymentUpToDate(cur, want *appsv1.Deployment) bool {
	if cur.Annotations[SpecHashKey] != want.Annotations[SpecHashKey] {
		return false
	}
	for k, v := range want.Labels {
		if cur.Labels[k] != v {
			return false
		}
	}
	return true
}

// updatedDeployment is cur (a cache object, left as it is) with want's spec, labels and hash,
// keeping what others added (the deployment controller's revision annotation, other labels).
func updatedDeployment(cur, want *appsv1.Deployment) *appsv1.Deployment {
	d := cur.DeepCopy()
	if d.Labels == nil {
		d.Labels = map[string]string{}
	}
	maps.Copy(d.Labels, want.Labels)
	if d.Annotations == nil {
		d.Annotations = map[string]string{}
	}
	d.Annotations[SpecHashKey] = want.Annotations[SpecHashKey]
	d.Spec = *want.Spec.DeepCopy()
	return d
}

// imageOf is the gateway container's image in a Deployment, for Events.
func imageOf(d *appsv1.Deployment) string {
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.Name == ContainerName {
			return c.Image
		}
	}
	return ""
}
