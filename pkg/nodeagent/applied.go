package nodeagent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// rawHash stands in for annotations.DesiredHash when the annotation does not even parse: the
// hash of its value as is (the controller, which writes only valid states, never matches it).
func rawHash(value string) string {
	sum := sha256.Sum256([]byte(value))
	return hex.EncodeToString(sum[:])
}

// generationOf reads the generation of a desired annotation that failed to parse, best effort
// (plain or compressed form both carry it at the top level), so the controller can tell which
// generation was refused; 0 when not even that can be read.
func generationOf(value string) int64 {
	var probe struct {
		Generation int64 `json:"generation"`
	}
	_ = json.Unmarshal([]byte(value), &probe)
	return probe.Generation
}

// readEncodings are the compressed desired encodings this daemon reads besides gzip, listed in
// every applied report so that the controller writes them to its pods (and never to a pod of an
// older daemon).
var readEncodings = []string{annotations.EncodingParts}

// newApplied is the applied document of a sync of the desired annotation value at gen.
func newApplied(gen int64, hash string, syncErr error, now time.Time) *annotations.Applied {
	a := &annotations.Applied{Version: annotations.Version, Generation: gen, Hash: hash,
		Time: now.UTC().Format(time.RFC3339), Encodings: readEncodings}
	if syncErr != nil {
		a.Error = syncErr.Error()
	}
	return a
}

// sameApplied compares what matters to a reader: everything but the time. Re-patching only the
// time would make every resync of every gateway a write to the API server.
func sameApplied(a, b *annotations.Applied) bool {
	if a == nil || b == nil {
		return a == b
	}
	if a.Generation != b.Generation || a.Hash != b.Hash || a.Error != b.Error || a.Role != b.Role || len(a.RuleErrors) != len(b.RuleErrors) {
		return false
	}
	for k, v := range a.RuleErrors {
		if w, ok := b.RuleErrors[k]; !ok || w != v {
			return false
		}
	}
	return slices.Equal(a.Conflicts, b.Conflicts) && slices.Equal(a.Encodings, b.Encodings)
}

// podApplied is the pod's current applied annotation; nil when absent or unreadable (then it is
// simply overwritten).
func podApplied(pod *corev1.Pod) *annotations.Applied {
	s, ok := pod.Annotations[annotations.AppliedKey]
	if !ok {
		return nil
	}
	a, err := annotations.ParseApplied(s)
	if err != nil {
		klog.V(2).InfoS("Ignoring unreadable applied annotation", "pod", klog.KObj(pod), "err", err)
		return nil
	}
	return a
}

// reportApplied patches the pod's applied annotation to want, with the gateway's address
// conflicts, unless it already says that. The pod comes from the informer cache, which may not
// show our own last patch yet: a patch of the same content computed from the same pod revision
// is not sent again.
func (a *Agent) reportApplied(ctx context.Context, pod *corev1.Pod, g *gateway, want *annotations.Applied) error {
	a.addConflicts(pod, g, want)
	addRole(g, want)
	if sameApplied(podApplied(pod), want) {
		g.reported, g.reportedFrom = want, ""
		return nil
	}
	if sameApplied(g.reported, want) && g.reportedFrom == pod.ResourceVersion {
		return nil
	}
	value, err := annotations.Marshal(want)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"annotations": map[string]string{annotations.AppliedKey: value}}})
	if err != nil {
		return err
	}
	if _, err := a.client.CoreV1().Pods(pod.Namespace).Patch(ctx, pod.Name, types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: fieldManager}); err != nil {
		return fmt.Errorf("patching annotation %s of pod %s/%s: %w", annotations.AppliedKey, pod.Namespace, pod.Name, err)
	}
	a.metrics.patches.Inc()
	klog.V(2).InfoS("Reported applied state", "pod", klog.KObj(pod), "generation", want.Generation, "error", want.Error,
		"conflicts", len(want.Conflicts))
	g.reported, g.reportedFrom = want, pod.ResourceVersion
	return nil
}

// fieldManager names the daemon in the pod's managedFields.
const fieldManager = "vpcnat-daemon"
