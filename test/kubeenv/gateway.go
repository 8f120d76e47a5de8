package kubeenv

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// LiveGatewayPod is gateway's one pod in namespace that is not being deleted, from the server.
func LiveGatewayPod(ctx context.Context, client kubernetes.Interface, namespace, gateway string) (*corev1.Pod, error) {
	ps, err := client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway + "=" + gateway})
	if err != nil {
		return nil, fmt.Errorf("listing the pods of gateway %s: %w", gateway, err)
	}
	var live []*corev1.Pod
	for i := range ps.Items {
		if ps.Items[i].DeletionTimestamp == nil {
			live = append(live, &ps.Items[i])
		}
	}
	if len(live) != 1 {
		return nil, fmt.Errorf("gateway %s has %d live pods", gateway, len(live))
	}
	return live[0], nil
}

// ReportApplied does what the daemon does once it has converged pod to d: it patches the
// applied annotation (d's generation and hash, now, syncErr and ruleErrors) onto the pod, as
// fieldManager.
func ReportApplied(ctx context.Context, client kubernetes.Interface, pod *corev1.Pod, d *annotations.Desired, syncErr string, ruleErrors map[string]string, fieldManager string) error {
	hash, err := annotations.DesiredHash(d)
	if err != nil {
		return fmt.Errorf("hashing the desired state: %w", err)
	}
	value, err := annotations.Marshal(annotations.Applied{Version: annotations.Version, Generation: d.Generation, Hash: hash,
		Time: time.Now().UTC().Format(time.RFC3339), Error: syncErr, RuleErrors: ruleErrors})
	if err != nil {
		return fmt.Errorf("encoding the applied annotation: %w", err)
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotations.AppliedKey: value}}})
	if err != nil {
		return err
	}
	if _, err := client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("patching %s on pod %s/%s: %w", annotations.AppliedKey, pod.Namespace, pod.Name, err)
	}
	return nil
}
