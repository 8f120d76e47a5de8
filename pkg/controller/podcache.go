package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// The pod cache holds, instead of each gateway pod's desired annotation (10 KB for 100 rules,
// 110 KB for 10 000), a digest of it: the controller only ever compares the annotation with what
// it would write, and needs its size for the 256 KiB check. With a thousand gateways that is most
// of the pod cache. The content itself is read from the API server in the one case that needs
// it (a gateway whose spec is refused, whose status reports on the state still in force).

// digestPrefix cannot start a real desired annotation, which is a JSON object.
const digestPrefix = "sha256:"

// desiredDigest is the cache's stand-in for a desired annotation value: its hash and length.
func desiredDigest(value string) string {
	sum := sha256.Sum256([]byte(value))
	return digestPrefix + hex.EncodeToString(sum[:]) + ":" + strconv.Itoa(len(value))
}

// digestLen is the length of the value a digest stands for.
func digestLen(d string) int {
	i := strings.LastIndexByte(d, ':')
	n, err := strconv.Atoi(d[i+1:])
	if !strings.HasPrefix(d, digestPrefix) || i < 0 || err != nil {
		return len(d) // not a digest: the value itself
	}
	return n
}

// compactPod is the pod informer's transform: it keeps what the controller reads of a gateway
// pod (metadata, node, phase, conditions, IPs for the network status, and why its containers
// wait, the message bounded) and replaces the desired annotation by its digest. The object is
// fresh from the decoder, not yet shared, so changing it here is safe.
func compactPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil
	}
	p.ManagedFields = nil
	if v, ok := p.Annotations[annotations.DesiredKey]; ok && !strings.HasPrefix(v, digestPrefix) {
		p.Annotations[annotations.DesiredKey] = desiredDigest(v)
	}
	p.Spec = corev1.PodSpec{NodeName: p.Spec.NodeName}
	var waiting []corev1.ContainerStatus
	for _, cs := range p.Status.ContainerStatuses {
		if w := cs.State.Waiting; w != nil {
			waiting = append(waiting, corev1.ContainerStatus{Name: cs.Name, State: corev1.ContainerState{
				Waiting: &corev1.ContainerStateWaiting{Reason: w.Reason, Message: truncate(w.Message, maxEventMessage)}}})
		}
	}
	p.Status = corev1.PodStatus{Phase: p.Status.Phase, Conditions: p.Status.Conditions, ContainerStatuses: waiting,
		PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs}
	return p, nil
}

// inForce reads the desired state on the pod from the API server (the cache has only its
// digest); nil when it has none, or one that does not parse (which the daemon refuses as well).
func (c *Controller) inForce(ctx context.Context, cached *corev1.Pod) (*annotations.Desired, string, error) {
	if _, ok := cached.Annotations[annotations.DesiredKey]; !ok {
		return nil, "", nil
	}
	p, err := c.kube.CoreV1().Pods(cached.Namespace).Get(ctx, cached.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, "", nil // gone since the cache saw it; its deletion event brings a new sync
	}
	if err != nil {
		return nil, "", fmt.Errorf("reading pod %s/%s: %w", cached.Namespace, cached.Name, err)
	}
	d, err := annotations.ParseDesired(p.Annotations[annotations.DesiredKey])
	if err != nil {
		return nil, "", nil
	}
	h, err := annotations.DesiredHash(d)
	if err != nil {
		return nil, "", err
	}
	return d, h, nil
}
