package annotations

import (
	"fmt"
	"net/netip"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Protocols a DNAT rule may forward.
const (
	ProtocolTCP = "tcp"
	ProtocolUDP = "udp"
)

// ruleValidator checks the rule lists in order: EIPs first, since every rule refers to one, then
// FIPs, since a DNAT may not use an EIP a FIP holds.
type ruleValidator struct {
	net      *networks
	eipIndex map[netip.Addr]int // EIP address -> index in eips
	eipList  []string           // EIP addresses in order, for messages
	fipByEIP map[netip.Addr]int // EIP address -> index in floatingIpRules

	// eipsIncomplete: an EIP so broken that not even its address reads; whether a rule's eip is
	// "one of eips" cannot be told, and that EIP's error is the one to fix.
	eipsIncomplete bool
}

// lenientAddr reads the address part of a broken EIP ("192.168.0.111", "192.168.0.0/24").
func lenientAddr(s string) netip.Addr {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}
	}
	return a
}

func (rv *ruleValidator) eips(list []EIP, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(list) > MaxEIPs {
		errs = append(errs, field.TooMany(path, len(list), MaxEIPs))
	}
	rv.eipIndex = make(map[netip.Addr]int, len(list))
	gateways := make([]netip.Addr, len(list)) // valid on their own; checked against the others below
	for i, e := range list {
		p := path.Index(i)
		hp, fe := ParseIPv4HostPrefix(e.EipCIDR, p.Child("eipCIDR"))
		addr := hp.Addr()
		if fe != nil {
			errs = append(errs, fe)
			// The rules that name this EIP are not wrong too: register what can be read of it.
			addr = lenientAddr(e.EipCIDR)
			rv.eipsIncomplete = rv.eipsIncomplete || !addr.IsValid()
		}
		if j, dup := rv.eipIndex[addr]; dup {
			if fe == nil {
				errs = append(errs, field.Invalid(p.Child("eipCIDR"), e.EipCIDR, fmt.Sprintf("eips[%d] has the same address", j)))
			}
		} else if addr.IsValid() {
			rv.eipIndex[addr] = i
			rv.eipList = append(rv.eipList, addr.String())
			if s, in := rv.net.subnetOf(addr); in && fe == nil {
				errs = append(errs, field.Invalid(p.Child("eipCIDR"), e.EipCIDR,
					fmt.Sprintf("is inside subnet %s (%s): an EIP is an address of the external network", rv.net.names[s], rv.net.cidrs[s])))
			}
		}
		gw, fe := ParseIPv4(e.Gateway, p.Child("gateway"))
		if fe == nil && hp.IsValid() {
			fe = CheckHost(gw, hp, e.Gateway, p.Child("gateway"))
		}
		if fe != nil {
			errs = append(errs, fe)
			continue
		}
		gateways[i] = gw
	}
	shared := -1
	for i, gw := range gateways {
		if !gw.IsValid() {
			continue
		}
		p := path.Index(i).Child("gateway")
		switch j, isEIP := rv.eipIndex[gw]; {
		case isEIP:
			errs = append(errs, field.Invalid(p, list[i].Gateway, fmt.Sprintf("is the address of eips[%d]: the gateway is the external router", j)))
		case shared < 0:
			shared = i
		case gw != gateways[shared]:
			errs = append(errs, field.Invalid(p, list[i].Gateway, fmt.Sprintf(
				"must equal eips[%d].gateway %s: all EIPs share one gateway, which is the gateway's default route", shared, gateways[shared])))
		}
	}
	return errs
}

// eipRef checks a rule's eip: a bare address, one of eips.
func (rv *ruleValidator) eipRef(s string, path *field.Path) (netip.Addr, *field.Error) {
	a, fe := ParseIPv4(s, path)
	if fe != nil {
		return netip.Addr{}, fe
	}
	if _, ok := rv.eipIndex[a]; !ok && !rv.eipsIncomplete {
		known := rv.eipList
		if len(known) > 4 {
			known = append(known[:4:4], "...")
		}
		return netip.Addr{}, field.Invalid(path, s, fmt.Sprintf("must be the address of one of eips (%s)", strings.Join(known, ", ")))
	}
	return a, nil
}

func (rv *ruleValidator) floatingIPs(list []FloatingIP, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(list) > MaxFloatingIPs {
		errs = append(errs, field.TooMany(path, len(list), MaxFloatingIPs))
	}
	rv.fipByEIP = make(map[netip.Addr]int, len(list))
	byInternal := make(map[netip.Addr]int, len(list))
	for i, f := range list {
		p := path.Index(i)
		if eip, fe := rv.eipRef(f.EIP, p.Child("eip")); fe != nil {
			errs = append(errs, fe)
		} else if j, dup := rv.fipByEIP[eip]; dup {
			errs = append(errs, field.Invalid(p.Child("eip"), f.EIP, fmt.Sprintf("floatingIpRules[%d] already maps this EIP: an EIP has at most one floating IP", j)))
		} else {
			rv.fipByEIP[eip] = i
		}
		if ip, fe := rv.net.internalIP(f.InternalIP, p.Child("internalIp")); fe != nil {
			errs = append(errs, fe)
		} else if j, dup := byInternal[ip]; dup {
			errs = append(errs, field.Invalid(p.Child("internalIp"), f.InternalIP, fmt.Sprintf("floatingIpRules[%d] already maps this internal IP: it can leave by one floating IP only", j)))
		} else {
			byInternal[ip] = i
		}
	}
	return errs
}

type dnatKey struct {
	eip   netip.Addr
	port  int
	proto string
}

func (rv *ruleValidator) dnats(list []DNAT, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(list) > MaxDNATs {
		errs = append(errs, field.TooMany(path, len(list), MaxDNATs))
	}
	add := func(fe *field.Error) bool {
		if fe != nil {
			errs = append(errs, fe)
		}
		return fe == nil
	}
	seen := make(map[dnatKey]int, len(list))
	for i, r := range list {
		p := path.Index(i)
		eip, fe := rv.eipRef(r.EIP, p.Child("eip"))
		if fe == nil {
			if j, fip := rv.fipByEIP[eip]; fip {
				fe = field.Invalid(p.Child("eip"), r.EIP, fmt.Sprintf("carries floatingIpRules[%d], which already takes all of its ports", j))
			}
		}
		ok := add(fe)
		ok = add(checkProtocol(r.Protocol, p.Child("protocol"))) && ok
		ok = add(checkPort(r.ExternalPort, p.Child("externalPort"))) && ok
		add(checkPort(r.InternalPort, p.Child("internalPort")))
		_, fe = rv.net.internalIP(r.InternalIP, p.Child("internalIp"))
		add(fe)
		if !ok {
			continue
		}
		k := dnatKey{eip, r.ExternalPort, r.Protocol}
		if j, dup := seen[k]; dup {
			fe := field.Duplicate(p, fmt.Sprintf("%s:%d/%s", r.EIP, r.ExternalPort, r.Protocol))
			fe.Detail = fmt.Sprintf("dnatRules[%d] already forwards this EIP, port and protocol", j)
			errs = append(errs, fe)
			continue
		}
		seen[k] = i
	}
	return errs
}

func checkProtocol(s string, path *field.Path) *field.Error {
	switch s {
	case ProtocolTCP, ProtocolUDP:
		return nil
	case "":
		return field.Required(path, "tcp or udp")
	}
	return field.NotSupported(path, s, []string{ProtocolTCP, ProtocolUDP})
}

func checkPort(port int, path *field.Path) *field.Error {
	if port < 1 || port > 65535 {
		return field.Invalid(path, port, "must be a port number 1-65535")
	}
	return nil
}

func (rv *ruleValidator) snats(list []SNAT, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(list) > MaxSNATs {
		errs = append(errs, field.TooMany(path, len(list), MaxSNATs))
	}
	seen := make(map[netip.Prefix]int, len(list))
	for i, r := range list {
		p := path.Index(i)
		if _, fe := rv.eipRef(r.EIP, p.Child("eip")); fe != nil {
			errs = append(errs, fe)
		}
		cp := p.Child("internalCIDR")
		if a, err := netip.ParseAddr(r.InternalCIDR); err == nil && a.Is4() {
			errs = append(errs, field.Invalid(cp, r.InternalCIDR, fmt.Sprintf("must be a prefix: a single address is written %s/32", a)))
			continue
		}
		cidr, fe := ParseIPv4Prefix(r.InternalCIDR, cp)
		if fe != nil {
			errs = append(errs, fe)
			continue
		}
		if j, dup := seen[cidr]; dup {
			fe := field.Duplicate(cp, r.InternalCIDR)
			fe.Detail = fmt.Sprintf("snatRules[%d] already has this internalCIDR: one CIDR leaves by one EIP", j)
			errs = append(errs, fe)
			continue
		}
		seen[cidr] = i
	}
	return errs
}

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
