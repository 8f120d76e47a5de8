package plan

import (
	"net/netip"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// rules copies the gateway's rule lists into d in spec order (so paths stay index for index),
// normalised: ports to numbers, protocols to lower case, a bare SNAT address to /32. Whether the
// values are valid is the validator's question, except for a port that is not a number at all.
func (b *builder) rules(d *annotations.Desired) {
	s := &b.gw.Spec
	d.EIPs = make([]annotations.EIP, 0, len(s.Eips))
	d.FloatingIPs = make([]annotations.FloatingIP, 0, len(s.FloatingIPRules))
	d.DNATs = make([]annotations.DNAT, 0, len(s.DnatRules))
	d.SNATs = make([]annotations.SNAT, 0, len(s.SnatRules))
	for _, e := range s.Eips {
		d.EIPs = append(d.EIPs, annotations.EIP{EipCIDR: e.EipCIDR, Gateway: e.Gateway})
	}
	for _, f := range s.FloatingIPRules {
		d.FloatingIPs = append(d.FloatingIPs, annotations.FloatingIP{EIP: f.Eip, InternalIP: f.InternalIP})
	}
	for i := range s.DnatRules {
		r := &s.DnatRules[i]
		d.DNATs = append(d.DNATs, annotations.DNAT{
			EIP:          r.Eip,
			Protocol:     protocol(r.Protocol),
			ExternalPort: b.port(r.ExternalPort, i, "externalPort"),
			InternalIP:   r.InternalIP,
			InternalPort: b.port(r.InternalPort, i, "internalPort"),
		})
	}
	for _, r := range s.SnatRules {
		cidr := r.InternalCIDR
		if a, err := netip.ParseAddr(cidr); err == nil && a.Is4() {
			cidr = netip.PrefixFrom(a, 32).String()
		}
		d.SNATs = append(d.SNATs, annotations.SNAT{EIP: r.Eip, InternalCIDR: cidr})
	}
}

// port reads a port written as a number or a string of digits ("8888", as Kube-OVN accepts). A
// string that is no number is reported here and becomes 0, which the validator's report at the
// same path would only repeat.
func (b *builder) port(v intstr.IntOrString, i int, name string) int {
	if v.Type == intstr.Int {
		return int(v.IntVal)
	}
	s := v.StrVal
	if s != "" && len(s) <= 9 && strings.Trim(s, "0123456789") == "" {
		n, err := strconv.Atoi(s)
		if err == nil {
			return n
		}
	}
	b.add(field.Invalid(specPath.Child("dnatRules").Index(i).Child(name), s, "must be a port number 1-65535"))
	return 0
}

// routes are the Vpc's static routes; a route without policy matches on destination.
func routes(vpc *v1.Vpc) []annotations.Route {
	var out []annotations.Route
	for _, r := range vpc.Spec.StaticRoutes {
		policy := string(r.Policy)
		if policy == "" {
			policy = annotations.PolicyDst
		}
		out = append(out, annotations.Route{Policy: policy, CIDR: r.CIDR, NextHopIP: r.NextHopIP})
	}
	return out
}

// protocol accepts TCP and UDP in any case; anything else stays as written, for the error.
func protocol(s string) string {
	if l := strings.ToLower(s); l == annotations.ProtocolTCP || l == annotations.ProtocolUDP {
		return l
	}
	return s
}
