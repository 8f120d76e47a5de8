package plan

import (
	"strings"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// TemplateAnnotations are the gateway Deployment's pod template annotations: the seed's keys and
// the NIC plan. networkName is the external network's attachment, "name" (in kube-system, as in
// the seed) or "namespace/name". The desired state is deliberately not among them: it goes on the
// running pod, since a change to the template restarts the gateway and a rule change must not.
// logical_switch and ip_address list the subnets and the gateway's address in each, position for
// position, spec.subnet (and so lanIp) first.
func TemplateAnnotations(plan *annotations.NICPlan, networkName string) (map[string]string, error) {
	nics, err := annotations.Marshal(plan)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(networkName, "/") {
		networkName = ConfigMapNamespace + "/" + networkName
	}
	switches := make([]string, len(plan.Subnets))
	ips := make([]string, len(plan.Subnets))
	for i, s := range plan.Subnets {
		switches[i], ips[i] = s.Subnet, s.IP
	}
	return map[string]string{
		annotations.GatewayKey:       plan.Gateway,
		annotations.NetworksKey:      networkName,
		annotations.LogicalSwitchKey: strings.Join(switches, ","),
		annotations.IPAddressKey:     strings.Join(ips, ","),
		annotations.NICsKey:          nics,
	}, nil
}
