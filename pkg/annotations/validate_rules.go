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

// row places the errors of one list entry. The checks of the rule lists make their errors
// without a path and a path is built only for a field that is wrong: the lists hold up to 20 000
// rules per sync, nearly all of them fine.
type row struct {
	errs *field.ErrorList
	list *field.Path
	i    int
}

// add places fe at list[i].name (list[i] for "") and keeps it; it says whether fe was nil.
func (r row) add(fe *field.Error, name string) bool {
	if fe == nil {
		return true
	}
	p := r.list.Index(r.i)
	if name != "" {
		p = p.Child(name)
	}
	fe.Field = p.String()
	*r.errs = append(*r.errs, fe)
	return false
}

func (rv *ruleValidator) floatingIPs(list []FloatingIP, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(list) > MaxFloatingIPs {
		errs = append(errs, field.TooMany(path, len(list), MaxFloatingIPs))
	}
	rv.fipByEIP = make(map[netip.Addr]int, len(list))
	byInternal := make(map[netip.Addr]int, len(list))
	for i := range list {
		f, r := &list[i], row{&errs, path, i}
		eip, fe := rv.eipRef(f.EIP, nil)
		switch j, dup := rv.fipByEIP[eip]; {
		case fe != nil:
			r.add(fe, "eip")
		case dup:
			r.add(field.Invalid(nil, f.EIP, fmt.Sprintf("floatingIpRules[%d] already maps this EIP: an EIP has at most one floating IP", j)), "eip")
		default:
			rv.fipByEIP[eip] = i
		}
		ip, fe := rv.net.internalIP(f.InternalIP, nil)
		switch j, dup := byInternal[ip]; {
		case fe != nil:
			r.add(fe, "internalIp")
		case dup:
			r.add(field.Invalid(nil, f.InternalIP, fmt.Sprintf("floatingIpRules[%d] already maps this internal IP: it can leave by one floating IP only", j)), "internalIp")
		default:
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
	seen := make(map[dnatKey]int, len(list))
	for i := range list {
		d, r := &list[i], row{&errs, path, i}
		eip, fe := rv.eipRef(d.EIP, nil)
		if fe == nil {
			if j, fip := rv.fipByEIP[eip]; fip {
				fe = field.Invalid(nil, d.EIP, fmt.Sprintf("carries floatingIpRules[%d], which already takes all of its ports", j))
			}
		}
		ok := r.add(fe, "eip")
		ok = r.add(checkProtocol(d.Protocol, nil), "protocol") && ok
		ok = r.add(checkPort(d.ExternalPort, nil), "externalPort") && ok
		r.add(checkPort(d.InternalPort, nil), "internalPort")
		_, fe = rv.net.internalIP(d.InternalIP, nil)
		r.add(fe, "internalIp")
		if !ok {
			continue
		}
		k := dnatKey{eip, d.ExternalPort, d.Protocol}
		if j, dup := seen[k]; dup {
			fe := field.Duplicate(nil, fmt.Sprintf("%s:%d/%s", d.EIP, d.ExternalPort, d.Protocol))
			fe.Detail = fmt.Sprintf("dnatRules[%d] already forwards this EIP, port and protocol", j)
			r.add(fe, "")
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
	for i := range list {
		s, r := &list[i], row{&errs, path, i}
		_, fe := rv.eipRef(s.EIP, nil)
		r.add(fe, "eip")
		if a, err := netip.ParseAddr(s.InternalCIDR); err == nil && a.Is4() {
			r.add(field.Invalid(nil, s.InternalCIDR, fmt.Sprintf("must be a prefix: a single address is written %s/32", a)), "internalCIDR")
			continue
		}
		cidr, fe := ParseIPv4Prefix(s.InternalCIDR, nil)
		if !r.add(fe, "internalCIDR") {
			continue
		}
		if j, dup := seen[cidr]; dup {
			fe := field.Duplicate(nil, s.InternalCIDR)
			fe.Detail = fmt.Sprintf("snatRules[%d] already has this internalCIDR: one CIDR leaves by one EIP", j)
			r.add(fe, "internalCIDR")
			continue
		}
		seen[cidr] = i
	}
	return errs
}
