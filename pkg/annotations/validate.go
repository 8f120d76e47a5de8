package annotations

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Limits on list sizes. They bound the work of one sync (every rule is a line of one
// iptables-restore transaction and a conntrack check) and keep one object within what the API
// server stores. Note that the 256 KiB annotation cap (MaxTotalSize) binds first for the desired
// document: at roughly 100 bytes per DNAT rule it holds a few thousand rules, and the controller
// refuses a larger gateway with a clear status instead.
const (
	// MaxEIPs bounds the addresses on net1 (each is announced by gratuitous ARP on every sync
	// that adds it).
	MaxEIPs = 1024
	// MaxFloatingIPs: at most one per EIP, so no more than MaxEIPs.
	MaxFloatingIPs = 1024
	// MaxDNATs bounds the port forwards (one rule each in a per-EIP chain).
	MaxDNATs = 20000
	// MaxSNATs bounds the SNAT rules (one rule each, longest prefix first).
	MaxSNATs = 5000
	// MaxRoutes bounds the Vpc static routes installed in the gateway's table.
	MaxRoutes = 1024
	// MaxSubnets bounds the gateway's subnet NICs (one netdev and one connected route each).
	MaxSubnets = 64
)

// Interface names. Every NIC vpcnat creates carries one of its own prefixes, so the plugin and
// the daemon can tell what they own from everything else on the pod and the node, and never
// delete or reconfigure a foreign interface because an annotation named it.
const (
	// PrimaryIfName is the pod's primary interface, put there by the primary CNI; only a primary
	// attachment uses it.
	PrimaryIfName = "eth0"
	// SubnetIfNamePrefix starts the name of every gateway-side subnet NIC vpcnat creates.
	SubnetIfNamePrefix = "vpc-"
	// HostIfNamePrefix starts the name of every node-side veth vpcnat creates.
	HostIfNamePrefix = "vnat"
)

// Paths roots the field paths of ValidateDesiredAt's errors, so that one validator speaks both
// the annotation document's language and the objects' the document was built from.
type Paths struct {
	// Rules is the parent of eips, floatingIpRules, dnatRules and snatRules: "spec" for the
	// VpcNatGateway (the JSON names are the CR's), nil for the annotation document.
	Rules *field.Path
	// Routes is the route list itself: vpc[test-vpc-1].spec.staticRoutes for the Vpc, nil for
	// the annotation document's "routes".
	Routes *field.Path
	// PlanChecked says the caller has already checked the NIC-plan half of the document (gateway
	// name, generation, external and subnet NICs) against the objects it came from: plan.Build
	// does, so its errors name Subnet.spec.cidrBlock and spec.lanIp rather than subnets[0].cidr
	// and addresses[1]. The subnets are then only read, to place rules and routes.
	PlanChecked bool
	// SubnetsUnknown says the caller could not tell which subnets the gateway has (its Vpc or
	// spec.subnet is broken, and it said so): "outside every subnet" is then not reported, as it
	// would only repeat that error once per rule.
	SubnetsUnknown bool
}

// ValidateDesired checks a desired-state annotation document; paths are rooted at the document.
func ValidateDesired(d *Desired) field.ErrorList { return ValidateDesiredAt(d, Paths{}) }

// ValidateDesiredAt checks a desired state and returns every problem found. Checks that depend on
// a value that is itself invalid (an address against an unparseable CIDR) are skipped rather
// than reported twice. The work is linear in the number of rules: maps, no pairwise loops.
func ValidateDesiredAt(d *Desired, p Paths) field.ErrorList {
	errs, _ := validateDesiredAt(d, p)
	return errs
}

// validateDesiredAt is ValidateDesiredAt, and the rule validator as it stands after the FIPs: what
// a DNAT or SNAT rule is checked against (DesiredDecoder checks the rules of changed parts with it).
func validateDesiredAt(d *Desired, p Paths) (field.ErrorList, *ruleValidator) {
	if d == nil {
		return field.ErrorList{field.Required(field.NewPath("desired"), "no desired state")}, nil
	}
	var errs field.ErrorList
	if !p.PlanChecked {
		errs = append(errs, validateGatewayName(d.Gateway, field.NewPath("gateway"))...)
		if d.Generation < 0 {
			errs = append(errs, field.Invalid(field.NewPath("generation"), d.Generation, "must be >= 0"))
		}
		errs = append(errs, validateExternal(&d.External, field.NewPath("external"))...)
		errs = append(errs, validateSubnetNICs(d.Subnets, field.NewPath("subnets"))...)
	}
	if d.Replicas != 0 && (d.Replicas < 2 || d.Replicas > MaxReplicas) {
		errs = append(errs, field.Invalid(field.NewPath("replicas"), d.Replicas, fmt.Sprintf("must be 2-%d, or absent for one replica", MaxReplicas)))
	}
	if d.Dataplane != "" && d.Dataplane != DataplaneIPTables && d.Dataplane != DataplaneNFTables {
		errs = append(errs, field.NotSupported(field.NewPath("dataplane"), d.Dataplane, []string{DataplaneIPTables, DataplaneNFTables}))
	}
	net := newNetworks(d.Subnets)
	net.subnetsComplete = net.subnetsComplete && !p.SubnetsUnknown
	routes := p.Routes
	if routes == nil {
		routes = field.NewPath("routes")
	}
	errs = append(errs, validateRoutes(d.Routes, routes, net)...)

	rv := &ruleValidator{net: net}
	errs = append(errs, rv.eips(d.EIPs, child(p.Rules, "eips"))...)
	errs = append(errs, rv.floatingIPs(d.FloatingIPs, child(p.Rules, "floatingIpRules"))...)
	errs = append(errs, rv.dnats(d.DNATs, child(p.Rules, "dnatRules"))...)
	errs = append(errs, rv.snats(d.SNATs, child(p.Rules, "snatRules"))...)
	return errs, rv
}

// ValidateNICPlan checks a NIC-plan annotation document with the same external and subnet checks
// as ValidateDesired; paths are rooted at the document.
func ValidateNICPlan(p *NICPlan) field.ErrorList {
	if p == nil {
		return field.ErrorList{field.Required(field.NewPath("nics"), "no NIC plan")}
	}
	errs := validateGatewayName(p.Gateway, field.NewPath("gateway"))
	errs = append(errs, validateExternal(&p.External, field.NewPath("external"))...)
	return append(errs, validateSubnetNICs(p.Subnets, field.NewPath("subnets"))...)
}

// validateGatewayName: the name becomes part of the Deployment's and pod's names and labels.
func validateGatewayName(name string, path *field.Path) field.ErrorList {
	if name == "" {
		return field.ErrorList{field.Required(path, "the gateway's name")}
	}
	if msgs := validation.IsDNS1123Label(name); len(msgs) > 0 {
		return field.ErrorList{field.Invalid(path, name, strings.Join(msgs, "; "))}
	}
	return nil
}

// child is root.name, or a root path name when root is nil (the document itself).
func child(root *field.Path, name string) *field.Path {
	if root == nil {
		return field.NewPath(name)
	}
	return root.Child(name)
}
