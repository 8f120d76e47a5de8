package controller

import (
	"context"
	"fmt"
	"slices"
	"sort"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// syncGateway brings one gateway's Deployment, pod annotation and status in line with its
// objects. Level-based: it compares what is with what should be and writes only differences.
func (c *Controller) syncGateway(ctx context.Context, name string) (string, error) {
	gw, err := c.gateways.Get(name)
	if apierrors.IsNotFound(err) {
		// The Deployment goes by its owner reference (garbage collector); nothing else is ours.
		c.metrics.forgetGateway(name)
		return resultOK, nil
	}
	if err != nil {
		return resultError, err
	}
	if gw.DeletionTimestamp != nil {
		return resultOK, nil
	}
	logger := klog.FromContext(ctx).WithValues("gateway", name)
	obs := &observation{generation: gw.Generation}
	proj, prob, err := c.project(gw)
	if err != nil {
		return resultError, err
	}
	if prob == nil {
		if prob, err = c.ensureDeployment(ctx, gw, proj.deployment); err != nil {
			return resultError, err
		}
	}
	pods := c.livePods(gw)
	if len(pods) > 0 {
		obs.pod = pods[0]
	}
	if obs.replicas = max(gw.Spec.Replicas, 1); obs.replicas > 1 {
		// A replicated gateway is what its active replica does (replicastatus.go).
		obs.views = replicaViews(pods)
		if p := activeReplica(obs.views); p != nil {
			obs.pod = p
		}
	}
	if prob == nil {
		if prob, err = c.projectToPods(ctx, gw, proj, pods); err != nil {
			return resultError, err
		}
	}
	obs.problem = prob
	if prob == nil {
		obs.desired, obs.hash = proj.desired, proj.hash
	} else if obs.pod != nil {
		// The previous good state, if any, is still in force: report on it.
		if obs.desired, obs.hash, err = c.inForce(ctx, obs.pod); err != nil {
			return resultError, err
		}
	}
	if obs.pod != nil {
		if s, ok := obs.pod.Annotations[annotations.AppliedKey]; ok {
			obs.report, obs.reportErr = annotations.ParseApplied(s)
		}
		if obs.pod.Spec.NodeName != "" && !podReady(obs.pod) {
			obs.podTrouble = c.podTrouble(obs.pod)
		}
	}
	if err := c.updateStatus(ctx, gw, obs); err != nil {
		return resultError, err
	}
	if prob != nil {
		logger.V(2).Info("Not projected", "reason", prob.reason, "message", prob.message)
		return resultInvalid, nil
	}
	return resultOK, nil
}

// ensureDeployment creates or updates the gateway's Deployment. A problem (not an error) is
// something retrying cannot fix: the name taken by someone else's Deployment, or a Deployment
// the API server refuses (an invalid toleration or affinity the CRD schema let through).
func (c *Controller) ensureDeployment(ctx context.Context, gw *v1.VpcNatGateway, want *appsv1.Deployment) (*problem, error) {
	ns, name := want.Namespace, want.Name
	cur, err := c.deployments.Get(name)
	if apierrors.IsNotFound(err) {
		_, err := c.kube.AppsV1().Deployments(ns).Create(ctx, want, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			// Not in the cache: either the cache lags, or the Deployment lacks the gateway label
			// (someone else's, which the label-selected informer never sees). Ask the server.
			if cur, err = c.kube.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
				return nil, fmt.Errorf("reading Deployment %s/%s: %w", ns, name, err)
			}
			if !metav1.IsControlledBy(cur, gw) {
				return conflict(gw, cur), nil
			}
			return nil, fmt.Errorf("Deployment %s/%s exists but is not in the cache yet", ns, name)
		}
		if apierrors.IsInvalid(err) {
			return &problem{ReasonInvalidSpec, "the API server refuses the gateway Deployment: " + err.Error()}, nil
		}
		if err != nil {
			return nil, fmt.Errorf("creating Deployment %s/%s: %w", ns, name, err)
		}
		c.metrics.deployments.WithLabelValues("create").Inc()
		c.recorder.Eventf(gw, corev1.EventTypeNormal, "DeploymentCreated", "Created Deployment %s/%s (image %s)", ns, name, imageOf(want))
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading Deployment %s/%s: %w", ns, name, err)
	}
	if !metav1.IsControlledBy(cur, gw) {
		return conflict(gw, cur), nil
	}
	if cur.DeletionTimestamp != nil || deploymentUpToDate(cur, want) {
		return nil, nil
	}
	_, err = c.kube.AppsV1().Deployments(ns).Update(ctx, updatedDeployment(cur, want), metav1.UpdateOptions{})
	if apierrors.IsInvalid(err) {
		return &problem{ReasonInvalidSpec, "the API server refuses the gateway Deployment: " + err.Error()}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("updating Deployment %s/%s: %w", ns, name, err)
	}
	c.metrics.deployments.WithLabelValues("update").Inc()
	if from, to := imageOf(cur), imageOf(want); from != to {
		c.recorder.Eventf(gw, corev1.EventTypeNormal, "DeploymentUpdated", "Deployment %s/%s: image %s -> %s; the gateway pod is recreated", ns, name, from, to)
	} else {
		c.recorder.Eventf(gw, corev1.EventTypeNormal, "DeploymentUpdated", "Deployment %s/%s: the pod's identity (NIC plan, scheduling or resources) changed; the gateway pod is recreated", ns, name)
	}
	return nil, nil
}

func conflict(gw *v1.VpcNatGateway, d *appsv1.Deployment) *problem {
	return &problem{ReasonDeploymentConflict, fmt.Sprintf(
		"Deployment %s/%s exists and is not controlled by this VpcNatGateway (uid %s): delete it or rename the gateway", d.Namespace, d.Name, gw.UID)}
}

// livePods are the gateway's pods that are not going away, newest first. A pod counts only when
// its controller is a ReplicaSet of the gateway's Deployment (named <deployment>-<template
// hash>): a look-alike pod carrying the gateway label gets nothing.
func (c *Controller) livePods(gw *v1.VpcNatGateway) []*corev1.Pod {
	all, _ := c.pods.List(labels.SelectorFromSet(labels.Set{plan.LabelGateway: gw.Name}))
	var out []*corev1.Pod
	for _, p := range all {
		if p.DeletionTimestamp != nil || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		ref := metav1.GetControllerOf(p)
		hash := p.Labels[appsv1.DefaultDeploymentUniqueLabelKey]
		if ref == nil || ref.Kind != "ReplicaSet" || hash == "" || ref.Name != plan.DeploymentName(gw.Name)+"-"+hash {
			continue
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreationTimestamp.Equal(&out[j].CreationTimestamp) {
			return out[j].CreationTimestamp.Before(&out[i].CreationTimestamp)
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// projectToPods writes the desired annotation on each live pod created from the current
// template (same NIC plan); a pod of an older template is about to be replaced (Recreate). The
// same merge patch writes the pod's network status (networkstatus.go), again whenever it would
// say something else (the pod got its IP); a pod on which both are current is not patched.
func (c *Controller) projectToPods(ctx context.Context, gw *v1.VpcNatGateway, proj *projection, pods []*corev1.Pod) (*problem, error) {
	for _, p := range pods {
		if p.Annotations[annotations.NICsKey] != proj.nics {
			continue
		}
		value, err := proj.valueFor(p, &c.partsCache)
		if err != nil {
			return nil, err
		}
		digest := desiredDigest(value)
		status, err := buildNetworkStatus(p, proj.desired)
		if err != nil {
			return nil, err
		}
		if p.Annotations[annotations.DesiredKey] == digest && p.Annotations[annotations.NetworkStatusKey] == status {
			continue
		}
		others := 0
		for k, v := range p.Annotations {
			if k != annotations.DesiredKey && k != annotations.NetworkStatusKey {
				others += len(k) + len(v)
			}
		}
		size := others + len(annotations.DesiredKey) + len(value) + len(annotations.NetworkStatusKey) + len(status)
		if size > annotations.MaxTotalSize {
			return tooLarge(len(value), size), nil
		}
		patch, err := desiredPatch(value, status)
		if err != nil {
			return nil, err
		}
		_, err = c.kube.CoreV1().Pods(p.Namespace).Patch(ctx, p.Name, mergePatch, patch, metav1.PatchOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("patching pod %s/%s: %w", p.Namespace, p.Name, err)
		}
		c.metrics.patches.Inc()
		// Logged, not an Event: edits can be frequent, and Events of one object share a spam
		// budget that the condition transitions must not lose to them.
		klog.FromContext(ctx).V(2).Info("Projected the desired state", "gateway", gw.Name, "pod", p.Name,
			"generation", proj.desired.Generation, "bytes", len(value))
	}
	return nil, nil
}

// updateStatus writes the status computed from obs when it differs, then the Events of the
// transitions: after the write, so that a restarted controller does not repeat them.
func (c *Controller) updateStatus(ctx context.Context, gw *v1.VpcNatGateway, obs *observation) error {
	st := computeStatus(&gw.Status, obs)
	c.metrics.observeConflicts(gw.Name, obs)
	c.metrics.observeStatus(gw, &st)
	if equality.Semantic.DeepEqual(gw.Status, st) {
		return nil
	}
	upd := gw.DeepCopy()
	upd.Status = st
	_, err := c.ovn.VpcNatGateways.UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("updating status of VpcNatGateway %s: %w", gw.Name, err)
	}
	c.metrics.statuses.WithLabelValues(string(kindGateway)).Inc()
	c.failoverEvent(gw, st)
	for _, t := range transitions(gw.Status.Conditions, st.Conditions) {
		typ := corev1.EventTypeWarning
		if healthy(t) {
			typ = corev1.EventTypeNormal
		}
		c.recorder.Eventf(gw, typ, t.Reason, "%s=%s: %s", t.Type, t.Status, t.Message)
	}
	return nil
}

// syncVpc writes the list of a Vpc's gateways into its status.
func (c *Controller) syncVpc(ctx context.Context, name string) (string, error) {
	vpc, err := c.vpcs.Get(name)
	if apierrors.IsNotFound(err) {
		return resultOK, nil
	}
	if err != nil {
		return resultError, err
	}
	objs, _ := c.gwIndexer.ByIndex(indexVpc, name)
	var names []string
	for _, o := range objs {
		if gw, ok := o.(*v1.VpcNatGateway); ok {
			names = append(names, gw.Name)
		}
	}
	sort.Strings(names)
	if slices.Equal(vpc.Status.NatGateways, names) {
		return resultOK, nil
	}
	upd := vpc.DeepCopy()
	upd.Status.NatGateways = names
	if _, err := c.ovn.Vpcs.UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return resultError, fmt.Errorf("updating status of Vpc %s: %w", name, err)
	}
	c.metrics.statuses.WithLabelValues(string(kindVpc)).Inc()
	return resultOK, nil
}
