package annotations

import "k8s.io/apimachinery/pkg/util/validation/field"

// ValidateNICPlan checks a NIC plan. TODO(helper): replaced by the full validator.
func ValidateNICPlan(p *NICPlan) field.ErrorList { return nil }

// ValidateDesired checks a desired state. TODO(helper): replaced by the full validator.
func ValidateDesired(d *Desired) field.ErrorList { return nil }
