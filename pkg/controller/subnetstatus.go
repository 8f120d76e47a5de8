package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/claims"
)

// A Subnet's Ready condition says whether its segment (natGatewayAttachment) is its own: the
// controller writes it only on Subnets with an attachment (pkg/claims' "one segment, one Vpc").
const (
	// ReasonSegmentConflict: another Vpc's Subnet (or one of the same Vpc with an overlapping
	// cidrBlock) holds the segment; no gateway joins this Subnet on it.
	ReasonSegmentConflict = "SegmentConflict"
	// ReasonSegmentOwned: the segment is this Subnet's Vpc's.
	ReasonSegmentOwned = "SegmentOwned"
)

// syncSubnet writes a Subnet's Ready condition from the segment rule.
func (c *Controller) syncSubnet(ctx context.Context, name string) (string, error) {
	s, err := c.subnets.Get(name)
	if apierrors.IsNotFound(err) {
		return resultOK, nil
	}
	if err != nil {
		return resultError, err
	}
	if s.DeletionTimestamp != nil {
		return resultOK, nil
	}
	st := subnetStatus(s, claims.SegmentConflict(c.claims, s))
	if equality.Semantic.DeepEqual(s.Status, st) {
		return resultOK, nil
	}
	upd := s.DeepCopy()
	upd.Status = st
	if _, err := c.ovn.Subnets.UpdateStatus(ctx, upd, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return resultOK, nil
		}
		return resultError, fmt.Errorf("updating status of Subnet %s: %w", name, err)
	}
	c.metrics.statuses.WithLabelValues(string(kindSubnet)).Inc()
	old := meta.FindStatusCondition(s.Status.Conditions, CondReady)
	now := meta.FindStatusCondition(st.Conditions, CondReady)
	if now != nil && now.Reason == ReasonSegmentConflict && (old == nil || old.Reason != now.Reason || old.Message != now.Message) {
		c.recorder.Eventf(s, corev1.EventTypeWarning, ReasonSegmentConflict, "%s", now.Message)
	}
	if now != nil && now.Reason == ReasonSegmentOwned && old != nil && old.Reason == ReasonSegmentConflict {
		c.recorder.Eventf(s, corev1.EventTypeNormal, ReasonSegmentOwned, "%s", now.Message)
	}
	if now != nil && now.Reason == ReasonSegmentConflict {
		return resultInvalid, nil
	}
	return resultOK, nil
}

// subnetStatus is s's status with its Ready condition for the segment verdict: conflict nil
// means the segment is s's. A Subnet without attachment loses a Ready condition of ours.
func subnetStatus(s *v1.Subnet, conflict *claims.Segment) v1.SubnetStatus {
	st := *s.Status.DeepCopy()
	if claims.SegmentKey(s) == "" {
		if c := meta.FindStatusCondition(st.Conditions, CondReady); c != nil &&
			(c.Reason == ReasonSegmentConflict || c.Reason == ReasonSegmentOwned) {
			meta.RemoveStatusCondition(&st.Conditions, CondReady)
		}
		return st
	}
	cond := metav1.Condition{Type: CondReady, ObservedGeneration: s.Generation}
	if conflict != nil {
		name, _ := conflict.Field()
		cond.Status, cond.Reason = metav1.ConditionFalse, ReasonSegmentConflict
		cond.Message = fmt.Sprintf("spec.natGatewayAttachment.%s: %s; no gateway joins this Subnet until that Subnet is gone or moved", name, conflict.Message())
	} else {
		name, value := (&claims.Segment{Subnet: s}).Field()
		cond.Status, cond.Reason = metav1.ConditionTrue, ReasonSegmentOwned
		cond.Message = fmt.Sprintf("%s %s is Vpc %s's segment", name, value, s.Spec.Vpc)
	}
	meta.SetStatusCondition(&st.Conditions, cond)
	return st
}
