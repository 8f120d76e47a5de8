package controller

import (
	"strconv"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// Rule kinds and states of VpcNatGateway.status.rules.
const (
	KindEIP  = "eip"
	KindFIP  = "fip"
	KindDNAT = "dnat"
	KindSNAT = "snat"

	StateApplied = "Applied"
	StatePending = "Pending"
	StateFailed  = "Failed"
)

// RuleKey is one rule's key in status.rules and in the applied annotation's ruleErrors:
//
//	eip   the EIP with its prefix          192.168.0.111/24
//	fip   the EIP (one FIP per EIP)        192.168.0.111
//	dnat  EIP:port/protocol                192.168.0.112:8888/tcp
//	snat  the internal CIDR                10.0.1.0/24
//
// Within a kind each key is unique (the validator refuses duplicates), and across kinds they
// cannot collide: only an EIP key is an address with a prefix that is not a network address.
// The daemon must name rules the same way in ruleErrors.
type RuleKey struct {
	Kind string
	Key  string
}

// RuleKeys lists the rules of a desired state in spec order: EIPs, FIPs, DNATs, SNATs.
func RuleKeys(d *annotations.Desired) []RuleKey {
	out := make([]RuleKey, 0, len(d.EIPs)+len(d.FloatingIPs)+len(d.DNATs)+len(d.SNATs))
	for _, e := range d.EIPs {
		out = append(out, RuleKey{KindEIP, e.EipCIDR})
	}
	for _, f := range d.FloatingIPs {
		out = append(out, RuleKey{KindFIP, f.EIP})
	}
	for _, r := range d.DNATs {
		out = append(out, RuleKey{KindDNAT, r.EIP + ":" + strconv.Itoa(r.ExternalPort) + "/" + r.Protocol})
	}
	for _, s := range d.SNATs {
		out = append(out, RuleKey{KindSNAT, s.InternalCIDR})
	}
	return out
}

// maxStatusRules bounds status.rules: a gateway may have 27 000 rules, and one entry each would
// take the object past etcd's 1.5 MiB. Above it, the rules that need attention are listed first.
const maxStatusRules = 5000

// ruleStatuses lists the state of every rule of the state in force. report is the daemon's
// report about exactly this state (same hash), or nil when it has not reported on it yet.
// It returns the entries and how many rules failed.
func ruleStatuses(d *annotations.Desired, report *annotations.Applied) ([]v1.RuleStatus, int) {
	keys := RuleKeys(d)
	out := make([]v1.RuleStatus, 0, len(keys))
	failed := 0
	for _, k := range keys {
		rs := v1.RuleStatus{Kind: k.Kind, Key: k.Key, State: StatePending}
		switch {
		case report == nil:
		case report.RuleErrors[k.Key] != "":
			rs.State, rs.Error = StateFailed, report.RuleErrors[k.Key]
		case report.Error != "":
			// The sync as a whole failed: what of this rule is in the kernel is unknown.
			rs.State, rs.Error = StateFailed, report.Error
		default:
			rs.State = StateApplied
		}
		if rs.State == StateFailed {
			failed++
		}
		out = append(out, rs)
	}
	if len(out) <= maxStatusRules {
		return out, failed
	}
	// Failed, then Pending, then Applied, each in spec order.
	trimmed := make([]v1.RuleStatus, 0, maxStatusRules)
	for _, state := range []string{StateFailed, StatePending, StateApplied} {
		for _, rs := range out {
			if rs.State == state && len(trimmed) < maxStatusRules {
				trimmed = append(trimmed, rs)
			}
		}
	}
	return trimmed, failed
}
