package controller

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// CondAddressConflict: another host on one of the gateway's networks claims one of its
// addresses (an EIP, a subnet gateway IP, lanIp), as the daemon's address conflict detection
// reports it. While it is True the gateway is not Ready.
const CondAddressConflict = "AddressConflict"

// Reasons of the AddressConflict condition (and of Ready while it is True).
const (
	ReasonAddressConflict = "AddressConflict"
	ReasonNoConflict      = "NoConflict"
)

// conflictsOf are the conflicts the gateway pod's daemon reports now, whatever generation the
// report is of: they are about the addresses on the wire, not about a spec.
func conflictsOf(o *observation) []annotations.AddressConflict {
	if o.pod == nil || o.report == nil {
		return nil
	}
	return o.report.Conflicts
}

func conflictCondition(o *observation) metav1.Condition {
	cs := conflictsOf(o)
	if len(cs) == 0 {
		return metav1.Condition{Type: CondAddressConflict, Status: metav1.ConditionFalse, Reason: ReasonNoConflict,
			Message: "no other host claims the gateway's addresses"}
	}
	parts := make([]string, 0, maxErrorsShown+1)
	for i, c := range cs {
		if i == maxErrorsShown {
			parts = append(parts, fmt.Sprintf("and %d more", len(cs)-maxErrorsShown))
			break
		}
		state := "held and defended"
		if !c.Claimed {
			state = "not claimed, probed again until free"
		}
		parts = append(parts, fmt.Sprintf("%s on %s is claimed by MAC %s since %s (%s)", c.Address, c.Interface, c.MAC, c.Since, state))
	}
	return metav1.Condition{Type: CondAddressConflict, Status: metav1.ConditionTrue, Reason: ReasonAddressConflict,
		Message: fmt.Sprintf("node %q: %s", o.pod.Spec.NodeName, strings.Join(parts, "; "))}
}
