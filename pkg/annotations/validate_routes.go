package annotations

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

type routeKey struct {
	policy string
	cidr   netip.Prefix
}

// validateRoutes checks the Vpc's static routes and records the policyDst prefixes, behind
// which rules may point at hosts. A next hop must be on-link: inside one of the subnets.
func validateRoutes(list []Route, path *field.Path, net *networks) field.ErrorList {
	var errs field.ErrorList
	if len(list) > MaxRoutes {
		errs = append(errs, field.TooMany(path, len(list), MaxRoutes))
	}
	seen := make(map[routeKey]int, len(list))
	for i, r := range list {
		p := path.Index(i)
		policyOK := r.Policy == PolicyDst || r.Policy == PolicySrc
		if !policyOK {
			errs = append(errs, field.NotSupported(p.Child("policy"), r.Policy, []string{PolicyDst, PolicySrc}))
		}
		cidr, fe := ParseIPv4Prefix(r.CIDR, p.Child("cidr"))
		if fe != nil || !policyOK {
			// It might have been a policyDst route some rule's internal IP lies behind.
			net.routesComplete = net.routesComplete && r.Policy == PolicySrc
		}
		switch {
		case fe != nil:
			errs = append(errs, fe)
		case !policyOK:
		case seen[routeKey{r.Policy, cidr}] > 0:
			fe := field.Duplicate(p.Child("cidr"), r.CIDR)
			fe.Detail = fmt.Sprintf("%s[%d] has the same policy and cidr", leaf(path), seen[routeKey{r.Policy, cidr}]-1)
			errs = append(errs, fe)
		default:
			seen[routeKey{r.Policy, cidr}] = i + 1
			if r.Policy == PolicyDst && cidr.Bits() > 0 {
				net.behind.add(cidr, i)
			}
		}
		hop, fe := ParseIPv4(r.NextHopIP, p.Child("nextHopIP"))
		if fe == nil {
			if s, ok := net.subnetOf(hop); ok {
				fe = CheckHost(hop, net.cidrs[s], r.NextHopIP, p.Child("nextHopIP"))
			} else if net.subnetsComplete {
				fe = field.Invalid(p.Child("nextHopIP"), r.NextHopIP, fmt.Sprintf(
					"must be on-link, inside one of the gateway's subnets (%s)", net.describe()))
			}
		}
		if fe != nil {
			errs = append(errs, fe)
		}
	}
	return errs
}

// leaf is the last name of a path: "staticRoutes" for vpc[test-vpc-1].spec.staticRoutes.
func leaf(p *field.Path) string {
	s := p.String()
	return s[strings.LastIndexByte(s, '.')+1:]
}
