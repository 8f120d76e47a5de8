package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/state"
)

// Event reasons on gateway pods.
const (
	// ReasonInvalidDesired: the desired annotation cannot be applied as written; nothing of it
	// was applied, the netns keeps its previous state.
	ReasonInvalidDesired = "InvalidDesiredState"
	// ReasonSyncFailed: a converge failed; it is retried with backoff.
	ReasonSyncFailed = "SyncFailed"
	// ReasonAddressConflict: another host claims one of the gateway's addresses (one Warning
	// per conflict).
	ReasonAddressConflict = "AddressConflict"
)

// resyncJitter spreads each gateway's resync over up to 10 % more than the period.
const resyncJitter = 0.1

// sync makes the netns of the gateway pod key match its desired annotation and reports the
// result on the pod. It returns when to look again without a failure (0: on the next event),
// or an error to retry with backoff.
func (a *Agent) sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil || ns != a.cfg.GatewayNamespace {
		return 0, nil // a record of a pod elsewhere: never a gateway of ours
	}
	pod, err := a.pods.Get(name)
	if apierrors.IsNotFound(err) {
		a.forget(key, "pod deleted")
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if pod.DeletionTimestamp != nil || pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		a.forget(key, "pod terminating")
		return 0, nil
	}
	gwName, why := gatewayOf(pod, a.cfg.GatewayNamespace, a.getOwner)
	if gwName == "" {
		klog.V(4).InfoS("Not a gateway pod: ignored", "pod", key, "reason", why)
		a.forget(key, "not a gateway pod: "+why)
		return 0, nil
	}
	raw, ok := pod.Annotations[annotations.DesiredKey]
	if !ok {
		klog.V(4).InfoS("Gateway pod has no desired state yet", "pod", key)
		return 0, nil
	}
	g := a.lookup(key, gwName, pod.UID)
	d, hash, fresh, err := g.desired(raw, a.parseDesired)
	if err == nil && fresh {
		withReplicaMACs(d, pod.Name) // once per parse: d is cached
	}
	if err != nil {
		if fresh {
			a.metrics.syncs.WithLabelValues(resultInvalid).Inc()
			a.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonInvalidDesired, "Nothing applied: %v", err)
			klog.ErrorS(err, "Desired state refused: nothing applied", "pod", key, "gateway", gwName)
		}
		// Retrying cannot fix an annotation: the next one the controller writes is a new event.
		return 0, a.reportApplied(ctx, pod, g, newApplied(generationOf(raw), hash(), err, time.Now()))
	}

	rec, err := a.store.Read(string(pod.UID))
	if errors.Is(err, fs.ErrNotExist) {
		klog.V(2).InfoS("Gateway pod has no attachment record yet (sandbox not plumbed)", "pod", key)
		a.metrics.syncs.WithLabelValues(resultNoRecord).Inc()
		g.detach() // its sandbox, if it had one, is gone: the next record is a new one
		return recordWait, nil
	}
	if err == nil {
		err = checkRecord(rec, pod, gwName)
	}
	if err != nil {
		return 0, a.failed(ctx, pod, g, d, hash(), err)
	}

	newSandbox := g.attach(rec, func(nsPath string) Converger {
		return a.cfg.NewConverger(nsPath, a.conflictChanged(key, g))
	})
	full := newSandbox || time.Since(g.lastFull) >= a.cfg.Resync
	recheck := g.recheck.Swap(false)
	if !full && !recheck && g.synced == raw {
		// In sync: the usual reaction to our own patch, or to a change of the pod we do not use.
		return roleRecheckOf(d), a.reportApplied(ctx, pod, g, newApplied(d.Generation, hash(), nil, time.Now()))
	}
	// Converged before the hash of its report is computed (~1 ms at 10 000 rules).
	full, err = a.converge(ctx, g, d, full)
	if err != nil {
		g.synced = ""
		return 0, a.failed(ctx, pod, g, d, hash(), err)
	}
	g.synced = raw
	a.metrics.syncs.WithLabelValues(resultSuccess).Inc()
	a.metrics.applied(gwName, d, float64(time.Now().Unix()))
	if full {
		// Each gateway keeps its own resync timer, jittered, so a node's gateways (all
		// converged at start-up) are not all read back at the same moment. Set here, not by
		// the return value: a failed patch below must not cost the gateway its drift repair.
		a.queue.AddAfter(key, wait.Jitter(a.cfg.Resync, resyncJitter))
	}
	return roleRecheckOf(d), a.reportApplied(ctx, pod, g, newApplied(d.Generation, hash(), nil, time.Now()))
}

// parseDesired decodes (with the gateway's decoder, which reuses the parts of its last
// annotation) and validates the annotation, checks it is this gateway's, and returns
// it with its applied hash (of the state as the controller wrote it: before this node's master
// override), computed when first asked for. An unusable annotation's hash is that of its raw value.
func (a *Agent) parseDesired(dd *annotations.DesiredDecoder, raw, gwName string) (*annotations.Desired, func() string, error) {
	d, hash, err := dd.ParseDeferHash(raw)
	unusable := func() string { return rawHash(raw) }
	if err != nil {
		return nil, unusable, err
	}
	if d.Gateway != gwName {
		return nil, unusable, fmt.Errorf("annotation %s: gateway: Invalid value: %q: the pod is gateway %q's",
			annotations.DesiredKey, d.Gateway, gwName)
	}
	if a.cfg.Master != "" {
		d.External.Master = a.cfg.Master
	}
	return d, hash, nil
}

// checkRecord: the record the plugin wrote for this pod UID is this pod's and gateway's.
func checkRecord(rec *state.Record, pod *corev1.Pod, gwName string) error {
	if rec.Namespace != pod.Namespace || rec.Name != pod.Name || rec.Gateway != gwName {
		return fmt.Errorf("attachment record of pod UID %s is for %s/%s (gateway %q), not %s/%s (gateway %q)",
			pod.UID, rec.Namespace, rec.Name, rec.Gateway, pod.Namespace, pod.Name, gwName)
	}
	if rec.Netns == "" {
		return fmt.Errorf("attachment record of pod %s/%s names no netns", pod.Namespace, pod.Name)
	}
	return nil
}

// converge runs one converge on the node side. It is not cut short by shutdown (a converge is
// a few ms to a second; stopping half-way would leave a half-updated gateway), only by the
// sync timeout.
// It returns whether the converge was full (netconf makes it full after any failure).
func (a *Agent) converge(ctx context.Context, g *gateway, d *annotations.Desired, full bool) (bool, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.SyncTimeout)
	defer cancel()
	start := time.Now()
	var rep *netconf.Report
	err := a.node.do(func() error {
		var err error
		rep, err = g.conv.Converge(ctx, d, full)
		return err
	})
	changes := 0
	if rep != nil {
		changes = len(rep.Changes)
		full = rep.Full
	}
	a.metrics.observe(g.name, full, time.Since(start).Seconds(), changes)
	if full && err == nil {
		g.lastFull = start
	}
	klog.V(2).InfoS("Converged gateway", "gateway", g.name, "netns", g.netns, "generation", d.Generation,
		"full", full, "changes", changes, "duration", time.Since(start), "err", err)
	return full, err
}

// failed reports a failed sync: applied carries the error, the pod gets a Warning Event, and the
// error goes back to the queue for a retry with backoff.
func (a *Agent) failed(ctx context.Context, pod *corev1.Pod, g *gateway, d *annotations.Desired, hash string, err error) error {
	a.metrics.syncs.WithLabelValues(resultError).Inc()
	a.recorder.Eventf(pod, corev1.EventTypeWarning, ReasonSyncFailed, "Converging generation %d: %v", d.Generation, err)
	if perr := a.reportApplied(ctx, pod, g, newApplied(d.Generation, hash, err, time.Now())); perr != nil {
		return errors.Join(err, perr)
	}
	return err
}

// getOwner reads a ReplicaSet's or Deployment's metadata from the cache.
func (a *Agent) getOwner(resource, name string) (metav1.Object, error) {
	obj, err := a.owners[resource].Get(name)
	if err != nil {
		return nil, err
	}
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%s %s: unexpected cache object %T", resource, name, obj)
	}
	return m, nil
}
