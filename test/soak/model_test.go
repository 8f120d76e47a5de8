package soak

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// gwModel is what the test last wrote for one gateway: the source of truth for the final
// comparison. Only the churn worker that holds the gateway's lock changes it.
type gwModel struct {
	idx                       int
	name, vpc, subnet, bridge string
	lanIP                     string
	spec                      v1.VpcNatGatewaySpec
	routes                    []v1.StaticRoute
}

const (
	extPrefix    = "192.168.0."
	extBits      = 24
	eipGateway1  = "192.168.0.254"
	eipGateway2  = "192.168.0.253"
	eipPoolSize  = 9
	maxEIPs      = 6
	maxRules     = 12 // per kind
	clientIP     = "192.168.0.50"
	lanIPPrimary = 254
	lanIPOther   = 253
)

func newModel(i int, prefix string) *gwModel {
	m := &gwModel{idx: i, name: fmt.Sprintf("%s-gw%d", prefix, i), vpc: fmt.Sprintf("%s-vpc%d", prefix, i),
		subnet: fmt.Sprintf("%s-sn%d", prefix, i), bridge: fmt.Sprintf("br-g%d", i)}
	m.lanIP = m.inner(lanIPPrimary)
	m.spec = v1.VpcNatGatewaySpec{Vpc: m.vpc, Subnet: m.subnet, LanIP: m.lanIP}
	return m
}

// inner is 10.1.<i>.<host>.
func (m *gwModel) inner(host int) string { return fmt.Sprintf("10.1.%d.%d", m.idx, host) }
func (m *gwModel) cidr() string          { return fmt.Sprintf("10.1.%d.0/24", m.idx) }
func (m *gwModel) pool(k int) string     { return extPrefix + strconv.Itoa(60+eipPoolSize*m.idx+k) }

func (m *gwModel) objects() (*v1.VpcNatGateway, *v1.Vpc, *v1.Subnet) {
	gw := &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: m.name}, Spec: *m.spec.DeepCopy()}
	vpc := &v1.Vpc{ObjectMeta: metav1.ObjectMeta{Name: m.vpc}, Spec: v1.VpcSpec{StaticRoutes: slices.Clone(m.routes)}}
	sn := &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: m.subnet}, Spec: v1.SubnetSpec{Vpc: m.vpc, CIDRBlock: m.cidr(),
		Gateway: m.inner(1), NatGatewayAttachment: &v1.SubnetAttachment{Bridge: m.bridge}}}
	return gw, vpc, sn
}

// valid asks plan.Build whether the test's generator made a spec the product must accept; the
// generator only makes those (an invalid spec would not be projected, by design).
func (m *gwModel) valid() error {
	gw, vpc, sn := m.objects()
	_, _, errs := plan.Build(plan.Inputs{Gateway: gw, Vpc: vpc, Subnets: []*v1.Subnet{sn},
		Config: plan.Config{Image: "x", Enabled: true, NIC: "eth1"}})
	if len(errs) > 0 {
		return errs.ToAggregate()
	}
	return nil
}

func (m *gwModel) clone() *gwModel {
	c := *m
	c.spec = *m.spec.DeepCopy()
	c.routes = slices.Clone(m.routes)
	return &c
}

// --- the expected state, in the test's own terms ---------------------------------------------

type dnatKey struct {
	eip, proto string
	port       int
}
type target struct {
	ip   string
	port int
}

// expected is what the gateway's kernel must hold, derived from the model only.
type expected struct {
	eips     map[string]bool   // "192.168.0.61/24"
	eipGW    string            // default route next hop ("" without EIPs)
	fips     map[string]string // EIP -> internal IP
	dnats    map[dnatKey]target
	snats    map[string]string // internal CIDR (canonical) -> EIP
	dstRoute map[string]string // policyDst CIDR -> next hop
	srcRoute map[string]string // policySrc CIDR -> next hop
	subnet   string            // the subnet's CIDR
	subAddrs map[string]bool   // the subnet NIC's addresses
}

func portOf(v intstr.IntOrString) int {
	if v.Type == intstr.Int {
		return int(v.IntVal)
	}
	n, _ := strconv.Atoi(v.StrVal)
	return n
}

func canonCIDR(s string) string {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, 32).String()
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return s
	}
	return p.Masked().String()
}

func (m *gwModel) expected() *expected {
	e := &expected{eips: map[string]bool{}, fips: map[string]string{}, dnats: map[dnatKey]target{},
		snats: map[string]string{}, dstRoute: map[string]string{}, srcRoute: map[string]string{},
		subnet: m.cidr(), subAddrs: map[string]bool{m.inner(1) + "/24": true, m.lanIP + "/24": true}}
	for _, x := range m.spec.Eips {
		e.eips[x.EipCIDR] = true
		e.eipGW = x.Gateway
	}
	for _, f := range m.spec.FloatingIPRules {
		e.fips[f.Eip] = f.InternalIP
	}
	for _, d := range m.spec.DnatRules {
		e.dnats[dnatKey{d.Eip, strings.ToLower(d.Protocol), portOf(d.ExternalPort)}] = target{d.InternalIP, portOf(d.InternalPort)}
	}
	for _, s := range m.spec.SnatRules {
		e.snats[canonCIDR(s.InternalCIDR)] = s.Eip
	}
	for _, r := range m.routes {
		if r.Policy == v1.PolicySrc {
			e.srcRoute[r.CIDR] = r.NextHopIP
		} else {
			e.dstRoute[r.CIDR] = r.NextHopIP
		}
	}
	return e
}

// --- mutations ---------------------------------------------------------------------------------

// mutation changes a model copy in place; false when it does not apply to this model's state.
type mutation func(m *gwModel, r *rand.Rand) bool

func (m *gwModel) eipAddrs() []string {
	var out []string
	for _, e := range m.spec.Eips {
		out = append(out, strings.Split(e.EipCIDR, "/")[0])
	}
	return out
}

func (m *gwModel) freePoolAddr(r *rand.Rand) (string, bool) {
	used := m.eipAddrs()
	var free []string
	for k := range eipPoolSize {
		if a := m.pool(k); !slices.Contains(used, a) {
			free = append(free, a)
		}
	}
	if len(free) == 0 {
		return "", false
	}
	return free[r.IntN(len(free))], true
}

func (m *gwModel) eipGW() string {
	if len(m.spec.Eips) > 0 {
		return m.spec.Eips[0].Gateway
	}
	return eipGateway1
}

func (m *gwModel) hasFIP(eip string) bool {
	return slices.ContainsFunc(m.spec.FloatingIPRules, func(f v1.FloatingIPRule) bool { return f.Eip == eip })
}

func (m *gwModel) hasDNAT(eip string) bool {
	return slices.ContainsFunc(m.spec.DnatRules, func(d v1.DnatRule) bool { return d.Eip == eip })
}

// eipFor picks an EIP that may take a new rule of kind ("fip": no FIP and no DNAT on it;
// "dnat": no FIP on it; "snat": any).
func (m *gwModel) eipFor(kind string, r *rand.Rand, except string) (string, bool) {
	var ok []string
	for _, a := range m.eipAddrs() {
		if a == except {
			continue
		}
		switch {
		case kind == "fip" && (m.hasFIP(a) || m.hasDNAT(a)):
		case kind == "dnat" && m.hasFIP(a):
		default:
			ok = append(ok, a)
		}
	}
	if len(ok) == 0 {
		return "", false
	}
	return ok[r.IntN(len(ok))], true
}

func (m *gwModel) randInternal(r *rand.Rand) string { return m.inner(10 + r.IntN(191)) }

// freeFIPInternal is an internal IP no FIP maps to yet.
func (m *gwModel) freeFIPInternal(r *rand.Rand) string {
	for {
		ip := m.randInternal(r)
		if !slices.ContainsFunc(m.spec.FloatingIPRules, func(f v1.FloatingIPRule) bool { return f.InternalIP == ip }) {
			return ip
		}
	}
}

func randPort(r *rand.Rand) intstr.IntOrString {
	p := 1000 + r.IntN(200)
	if r.IntN(4) == 0 { // Kube-OVN's string form
		return intstr.FromString(strconv.Itoa(p))
	}
	return intstr.FromInt32(int32(p))
}

func randProto(r *rand.Rand) string {
	return []string{"tcp", "udp", "udp", "TCP", "UDP"}[r.IntN(5)]
}

// dnatFree says no DNAT but index skip uses eip:port/proto.
func (m *gwModel) dnatFree(eip, proto string, port, skip int) bool {
	for i, d := range m.spec.DnatRules {
		if i != skip && d.Eip == eip && strings.EqualFold(d.Protocol, proto) && portOf(d.ExternalPort) == port {
			return false
		}
	}
	return true
}

// snatCIDRs are the candidate internal CIDRs: the subnet, its halves and quarters, some /27s
// and single addresses (written bare, as Kube-OVN allows).
func (m *gwModel) snatCIDRs() []string {
	out := []string{m.cidr()}
	for _, s := range []string{"0/25", "128/25", "0/26", "64/26", "192/26", "32/27", "96/27", "160/27", "10", "20", "30"} {
		out = append(out, fmt.Sprintf("10.1.%d.%s", m.idx, s))
	}
	return out
}

func (m *gwModel) freeSNATCIDR(r *rand.Rand) (string, bool) {
	var free []string
	for _, c := range m.snatCIDRs() {
		if !slices.ContainsFunc(m.spec.SnatRules, func(s v1.SnatRule) bool { return canonCIDR(s.InternalCIDR) == canonCIDR(c) }) {
			free = append(free, c)
		}
	}
	if len(free) == 0 {
		return "", false
	}
	return free[r.IntN(len(free))], true
}

func (m *gwModel) routeCIDRs(policy v1.RoutePolicy) []string {
	var out []string
	for k := range 8 {
		if policy == v1.PolicySrc {
			out = append(out, fmt.Sprintf("10.1.%d.%d/27", m.idx, 32*k))
		} else {
			out = append(out, fmt.Sprintf("203.0.113.%d/28", 16*k))
		}
	}
	return out
}

func (m *gwModel) freeRouteCIDR(policy v1.RoutePolicy, r *rand.Rand) (string, bool) {
	var free []string
	for _, c := range m.routeCIDRs(policy) {
		if !slices.ContainsFunc(m.routes, func(x v1.StaticRoute) bool { return x.CIDR == c && policyOf(x) == policy }) {
			free = append(free, c)
		}
	}
	if len(free) == 0 {
		return "", false
	}
	return free[r.IntN(len(free))], true
}

func policyOf(x v1.StaticRoute) v1.RoutePolicy {
	if x.Policy == "" {
		return v1.PolicyDst
	}
	return x.Policy
}

func (m *gwModel) randNextHop(r *rand.Rand) string { return m.inner(100 + r.IntN(10)) }

func randPolicy(r *rand.Rand) v1.RoutePolicy {
	if r.IntN(2) == 0 {
		return v1.PolicySrc
	}
	return v1.PolicyDst
}

// adders make one new rule of a kind (used by the add and the quick add/delete operations).
var adders = map[string]mutation{
	"eip": func(m *gwModel, r *rand.Rand) bool {
		a, ok := m.freePoolAddr(r)
		if !ok || len(m.spec.Eips) >= maxEIPs {
			return false
		}
		m.spec.Eips = append(m.spec.Eips, v1.Eip{EipCIDR: a + "/" + strconv.Itoa(extBits), Gateway: m.eipGW()})
		return true
	},
	"fip": func(m *gwModel, r *rand.Rand) bool {
		eip, ok := m.eipFor("fip", r, "")
		if !ok {
			return false
		}
		m.spec.FloatingIPRules = append(m.spec.FloatingIPRules, v1.FloatingIPRule{Eip: eip, InternalIP: m.freeFIPInternal(r)})
		return true
	},
	"dnat": func(m *gwModel, r *rand.Rand) bool {
		eip, ok := m.eipFor("dnat", r, "")
		if !ok || len(m.spec.DnatRules) >= maxRules {
			return false
		}
		d := v1.DnatRule{Eip: eip, ExternalPort: randPort(r), Protocol: randProto(r), InternalIP: m.randInternal(r), InternalPort: randPort(r)}
		if !m.dnatFree(d.Eip, d.Protocol, portOf(d.ExternalPort), -1) {
			return false
		}
		m.spec.DnatRules = append(m.spec.DnatRules, d)
		return true
	},
	"snat": func(m *gwModel, r *rand.Rand) bool {
		eip, ok := m.eipFor("snat", r, "")
		c, ok2 := m.freeSNATCIDR(r)
		if !ok || !ok2 {
			return false
		}
		m.spec.SnatRules = append(m.spec.SnatRules, v1.SnatRule{Eip: eip, InternalCIDR: c})
		return true
	},
	"route": func(m *gwModel, r *rand.Rand) bool {
		p := randPolicy(r)
		c, ok := m.freeRouteCIDR(p, r)
		if !ok || len(m.routes) >= maxRules {
			return false
		}
		m.routes = append(m.routes, v1.StaticRoute{Policy: p, CIDR: c, NextHopIP: m.randNextHop(r)})
		return true
	},
}

// removeLast undoes an adder: the rule it appended.
func removeLast(m *gwModel, kind string) {
	switch kind {
	case "eip":
		m.spec.Eips = m.spec.Eips[:len(m.spec.Eips)-1]
	case "fip":
		m.spec.FloatingIPRules = m.spec.FloatingIPRules[:len(m.spec.FloatingIPRules)-1]
	case "dnat":
		m.spec.DnatRules = m.spec.DnatRules[:len(m.spec.DnatRules)-1]
	case "snat":
		m.spec.SnatRules = m.spec.SnatRules[:len(m.spec.SnatRules)-1]
	case "route":
		m.routes = m.routes[:len(m.routes)-1]
	}
}

// dropEIP removes an EIP and every rule on it.
func (m *gwModel) dropEIP(i int) {
	a := strings.Split(m.spec.Eips[i].EipCIDR, "/")[0]
	m.spec.Eips = slices.Delete(m.spec.Eips, i, i+1)
	m.spec.FloatingIPRules = slices.DeleteFunc(m.spec.FloatingIPRules, func(f v1.FloatingIPRule) bool { return f.Eip == a })
	m.spec.DnatRules = slices.DeleteFunc(m.spec.DnatRules, func(d v1.DnatRule) bool { return d.Eip == a })
	m.spec.SnatRules = slices.DeleteFunc(m.spec.SnatRules, func(s v1.SnatRule) bool { return s.Eip == a })
}

// mutations are the churn's operations by kind, each weighted. Edits change one field of one
// rule in place (the rule keeps its position in the list).
var mutations = []struct {
	kind   string
	weight int
	fn     mutation
}{
	{"eip/add", 3, adders["eip"]},
	{"eip/del", 2, func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.Eips) == 0 {
			return false
		}
		m.dropEIP(r.IntN(len(m.spec.Eips)))
		return true
	}},
	{"eip/edit-eipCIDR", 2, func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.Eips) == 0 {
			return false
		}
		i := r.IntN(len(m.spec.Eips))
		old := strings.Split(m.spec.Eips[i].EipCIDR, "/")[0]
		a, ok := m.freePoolAddr(r)
		if !ok {
			return false
		}
		// The rules on it follow the address, in the same write.
		m.spec.Eips[i].EipCIDR = a + "/" + strconv.Itoa(extBits)
		for j := range m.spec.FloatingIPRules {
			if m.spec.FloatingIPRules[j].Eip == old {
				m.spec.FloatingIPRules[j].Eip = a
			}
		}
		for j := range m.spec.DnatRules {
			if m.spec.DnatRules[j].Eip == old {
				m.spec.DnatRules[j].Eip = a
			}
		}
		for j := range m.spec.SnatRules {
			if m.spec.SnatRules[j].Eip == old {
				m.spec.SnatRules[j].Eip = a
			}
		}
		return true
	}},
	{"eip/edit-gateway", 1, func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.Eips) == 0 {
			return false
		}
		gw := eipGateway1
		if m.spec.Eips[0].Gateway == eipGateway1 {
			gw = eipGateway2
		}
		for i := range m.spec.Eips { // all EIPs of a gateway share one gateway
			m.spec.Eips[i].Gateway = gw
		}
		return true
	}},
	{"fip/add", 3, adders["fip"]},
	{"fip/del", 2, func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.FloatingIPRules) == 0 {
			return false
		}
		i := r.IntN(len(m.spec.FloatingIPRules))
		m.spec.FloatingIPRules = slices.Delete(m.spec.FloatingIPRules, i, i+1)
		return true
	}},
	{"fip/edit-eip", 2, func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.FloatingIPRules) == 0 {
			return false
		}
		i := r.IntN(len(m.spec.FloatingIPRules))
		eip, ok := m.eipFor("fip", r, m.spec.FloatingIPRules[i].Eip)
		if !ok {
			return false
		}
		m.spec.FloatingIPRules[i].Eip = eip
		return true
	}},
	{"fip/edit-internalIp", 2, func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.FloatingIPRules) == 0 {
			return false
		}
		m.spec.FloatingIPRules[r.IntN(len(m.spec.FloatingIPRules))].InternalIP = m.freeFIPInternal(r)
		return true
	}},
	{"dnat/add", 5, adders["dnat"]},
	{"dnat/del", 3, func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.DnatRules) == 0 {
			return false
		}
		i := r.IntN(len(m.spec.DnatRules))
		m.spec.DnatRules = slices.Delete(m.spec.DnatRules, i, i+1)
		return true
	}},
	{"dnat/edit-eip", 2, dnatEdit(func(m *gwModel, d *v1.DnatRule, r *rand.Rand) bool {
		eip, ok := m.eipFor("dnat", r, d.Eip)
		d.Eip = eip
		return ok
	})},
	{"dnat/edit-externalPort", 2, dnatEdit(func(m *gwModel, d *v1.DnatRule, r *rand.Rand) bool {
		d.ExternalPort = randPort(r)
		return true
	})},
	{"dnat/edit-protocol", 2, dnatEdit(func(m *gwModel, d *v1.DnatRule, r *rand.Rand) bool {
		if strings.EqualFold(d.Protocol, "tcp") {
			d.Protocol = "udp"
		} else {
			d.Protocol = "tcp"
		}
		return true
	})},
	{"dnat/edit-internalIp", 2, dnatEdit(func(m *gwModel, d *v1.DnatRule, r *rand.Rand) bool {
		d.InternalIP = m.randInternal(r)
		return true
	})},
	{"dnat/edit-internalPort", 2, dnatEdit(func(m *gwModel, d *v1.DnatRule, r *rand.Rand) bool {
		d.InternalPort = randPort(r)
		return true
	})},
	{"snat/add", 3, adders["snat"]},
	{"snat/del", 2, func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.SnatRules) == 0 {
			return false
		}
		i := r.IntN(len(m.spec.SnatRules))
		m.spec.SnatRules = slices.Delete(m.spec.SnatRules, i, i+1)
		return true
	}},
	{"snat/edit-eip", 2, func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.SnatRules) == 0 {
			return false
		}
		i := r.IntN(len(m.spec.SnatRules))
		eip, ok := m.eipFor("snat", r, m.spec.SnatRules[i].Eip)
		m.spec.SnatRules[i].Eip = eip
		return ok
	}},
	{"snat/edit-internalCIDR", 2, func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.SnatRules) == 0 {
			return false
		}
		c, ok := m.freeSNATCIDR(r)
		m.spec.SnatRules[r.IntN(len(m.spec.SnatRules))].InternalCIDR = c
		return ok
	}},
	{"route/add", 2, adders["route"]},
	{"route/del", 2, func(m *gwModel, r *rand.Rand) bool {
		if len(m.routes) == 0 {
			return false
		}
		i := r.IntN(len(m.routes))
		m.routes = slices.Delete(m.routes, i, i+1)
		return true
	}},
	{"route/edit-cidr", 1, routeEdit(func(m *gwModel, x *v1.StaticRoute, r *rand.Rand) bool {
		c, ok := m.freeRouteCIDR(policyOf(*x), r)
		x.CIDR = c
		return ok
	})},
	{"route/edit-nextHopIP", 1, routeEdit(func(m *gwModel, x *v1.StaticRoute, r *rand.Rand) bool {
		x.NextHopIP = m.randNextHop(r)
		return true
	})},
	{"route/edit-policy", 1, routeEdit(func(m *gwModel, x *v1.StaticRoute, r *rand.Rand) bool {
		if policyOf(*x) == v1.PolicySrc {
			x.Policy = v1.PolicyDst
		} else {
			x.Policy = v1.PolicySrc
		}
		c, ok := m.freeRouteCIDR(x.Policy, r) // a source prefix is a VPC one, a destination one not
		x.CIDR = c
		return ok
	})},
}

func dnatEdit(f func(m *gwModel, d *v1.DnatRule, r *rand.Rand) bool) mutation {
	return func(m *gwModel, r *rand.Rand) bool {
		if len(m.spec.DnatRules) == 0 {
			return false
		}
		i := r.IntN(len(m.spec.DnatRules))
		d := &m.spec.DnatRules[i]
		if !f(m, d, r) {
			return false
		}
		return m.dnatFree(d.Eip, d.Protocol, portOf(d.ExternalPort), i)
	}
}

func routeEdit(f func(m *gwModel, x *v1.StaticRoute, r *rand.Rand) bool) mutation {
	return func(m *gwModel, r *rand.Rand) bool {
		if len(m.routes) == 0 {
			return false
		}
		return f(m, &m.routes[r.IntN(len(m.routes))], r)
	}
}
