// Package plan is the one pure function from objects to a gateway's NIC plan and desired state:
// the VpcNatGateway, its Vpc and Subnets and the ConfigMap go in, the two annotation documents
// come out, or every problem with its field path. The controller, the daemon's no-cluster apply
// mode and the tests all call Build, so the three programs cannot disagree about what a spec
// means. It does no I/O except LoadFile's read of the file it is given.
package plan

import (
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// Inputs are the objects one gateway is built from. Build only reads them.
type Inputs struct {
	Gateway *v1.VpcNatGateway
	// Vpc is the gateway's Vpc; nil when it does not exist.
	Vpc *v1.Vpc
	// Subnets may include other Vpcs' subnets: the gateway joins those of its own Vpc.
	Subnets []*v1.Subnet
	Config  Config
}

// Field paths of the objects: the gateway's are spec.xxx, the others are named by object.
var specPath = field.NewPath("spec")

func vpcPath(name string) *field.Path    { return field.NewPath("vpc").Key(name) }
func subnetPath(name string) *field.Path { return field.NewPath("subnet").Key(name) }

// Build turns the objects into the NIC plan and the desired state. On any problem it returns
// nil, nil and every problem, each once: the checks of the objects themselves (names, the Vpc,
// the Subnets, lanIp, the ConfigMap) are made here in the objects' field names, the rest by
// annotations.ValidateDesiredAt on what they were turned into, with paths rooted at the objects.
// Nothing half-built ever leaves.
func Build(in Inputs) (*annotations.NICPlan, *annotations.Desired, field.ErrorList) {
	if in.Gateway == nil {
		return nil, nil, field.ErrorList{field.Required(field.NewPath("vpcNatGateway"), "no VpcNatGateway given")}
	}
	b := &builder{in: in, gw: in.Gateway, reported: map[string]bool{}}
	b.checkConfig()
	b.checkGateway()
	vpc := b.checkVpc()
	b.vpcOK = vpc != nil
	d := &annotations.Desired{
		Version:    annotations.Version,
		Gateway:    b.gw.Name,
		Generation: b.gw.Generation,
		External: annotations.ExternalNIC{
			IfName: annotations.ExternalIfName,
			Master: in.Config.NIC,
			Mode:   annotations.MacvlanModeBridge,
			MAC:    ExternalMAC(b.gw.Name),
		},
		Subnets:   b.subnetNICs(),
		Dataplane: in.Config.Dataplane,
	}
	if b.gw.Spec.Replicas > 1 {
		d.Replicas = int(b.gw.Spec.Replicas)
		b.checkReplicas(d)
	}
	b.rules(d)
	paths := annotations.Paths{Rules: specPath, PlanChecked: true, SubnetsUnknown: !b.subnetsKnown}
	if vpc != nil {
		d.Routes = routes(vpc)
		paths.Routes = vpcPath(vpc.Name).Child("spec", "staticRoutes")
	}
	for _, fe := range annotations.ValidateDesiredAt(d, paths) {
		// A value Build could not even convert (port "abc") was reported here and replaced by a
		// placeholder; the validator's view of the placeholder is the same problem again.
		if !b.reported[fe.Field] {
			b.errs = append(b.errs, fe)
		}
	}
	if len(b.errs) > 0 {
		return nil, nil, b.errs
	}
	plan := &annotations.NICPlan{
		Version:  annotations.Version,
		Gateway:  d.Gateway,
		External: d.External,
		Subnets:  cloneNICs(d.Subnets),
	}
	return plan, d, nil
}

// builder collects Build's own errors and the paths they were reported at.
type builder struct {
	in       Inputs
	gw       *v1.VpcNatGateway
	errs     field.ErrorList
	reported map[string]bool

	// vpcOK: spec.vpc names the Vpc given. subnetsKnown: also spec.subnet is one of its
	// subnets, so the gateway's subnets are what the user meant and an address outside all of
	// them is really outside.
	vpcOK, subnetsKnown bool
}

func (b *builder) add(fe *field.Error) {
	if fe != nil {
		b.errs = append(b.errs, fe)
		b.reported[fe.Field] = true
	}
}

func (b *builder) checkConfig() {
	c := b.in.Config
	if !c.Enabled {
		b.add(field.Invalid(configPath(KeyEnable), "false", fmt.Sprintf(
			"ConfigMap %s/%s: %s is false (or the ConfigMap is missing): no gateway is created",
			ConfigMapNamespace, ConfigMapName, KeyEnable)))
	}
	b.add(annotations.CheckIfName(c.NIC, configPath(KeyNIC)))
}

// checkGateway checks the gateway's own metadata: its name becomes part of the Deployment's and
// pod's names.
func (b *builder) checkGateway() {
	p := field.NewPath("metadata")
	if b.gw.Name == "" {
		b.add(field.Required(p.Child("name"), "the gateway's name"))
	} else if msgs := validation.IsDNS1123Label(b.gw.Name); len(msgs) > 0 {
		b.add(field.Invalid(p.Child("name"), b.gw.Name, strings.Join(msgs, "; ")))
	}
	if b.gw.Generation < 0 {
		b.add(field.Invalid(p.Child("generation"), b.gw.Generation, "must be >= 0"))
	}
}

// checkVpc checks spec.vpc against the Vpc given and returns the Vpc when it is the gateway's.
func (b *builder) checkVpc() *v1.Vpc {
	name, vpc, p := b.gw.Spec.Vpc, b.in.Vpc, specPath.Child("vpc")
	if name == "" {
		b.add(field.Required(p, "the Vpc the gateway serves"))
		return nil
	}
	if b.checkObjectName(name, p) {
		return nil
	}
	if vpc == nil || vpc.Name != name {
		fe := field.NotFound(p, name)
		fe.Detail = "no Vpc of this name"
		if vpc != nil {
			fe.Detail += fmt.Sprintf(" (the Vpc given is %q)", vpc.Name)
		}
		b.add(fe)
		return nil
	}
	return vpc
}

// checkObjectName reports a name that is not a DNS-1123 subdomain, as the API server requires of
// Vpc and Subnet names; it says whether it reported.
func (b *builder) checkObjectName(name string, p *field.Path) bool {
	if name == "" {
		b.add(field.Required(p, "a name"))
		return true
	}
	msgs := validation.IsDNS1123Subdomain(name)
	if len(msgs) > 0 {
		b.add(field.Invalid(p, name, strings.Join(msgs, "; ")))
	}
	return len(msgs) > 0
}

func cloneNICs(in []annotations.SubnetNIC) []annotations.SubnetNIC {
	out := make([]annotations.SubnetNIC, len(in))
	for i, n := range in {
		out[i] = n
		out[i].Addresses = append([]string(nil), n.Addresses...)
	}
	return out
}
