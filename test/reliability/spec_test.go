package reliability

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// bigSpec is a deterministic mixed gateway of about 2 000 rules, described by slots: each rule
// kind has a fixed number of slots, and a slot's content is a pure function of (slot, version),
// so a mutation bumps versions and never produces a collision the validator would refuse
// (every slot owns its own range of ports, addresses or prefixes).
//
// Address plan (crash and edit tests; no traffic): external 192.168.0.0/22 with the EIP gateway
// 192.168.3.254, EIPs from 192.168.0.10; subnet sn 10.0.0.0/16 (gateway 10.0.0.1, lanIp
// 10.0.0.25x) on br-sn, subnet sn2 10.1.0.0/24 (gateway 10.1.0.1) on br-sn2; VPC routers 10.0.0.100-.199;
// destinations of static routes 172.16.0.0/12.
type bigSpec struct {
	eipV    []int  // per EIP slot: its address version
	eipOn   []bool // per EIP slot: present (only spare slots ever go away)
	fipV    []int
	dnatV   []int
	dnatOn  []bool
	snatV   []int
	snatOn  []bool
	dstV    []int
	srcV    []int
	lanV    int
	sn2V    int // sn2's gateway address version
	seedMix uint64
	plane   string // the ConfigMap's dataplane ("" = iptables)
}

const (
	nFIP     = 20 // on EIP slots 0..19
	nDNATEIP = 40 // EIP slots 20..59 carry the port forwards
	nSpare   = 2  // EIP slots 60..61: no rules, come and go
	nEIP     = nFIP + nDNATEIP + nSpare
	nDNAT    = 1800
	nSNAT    = 100
	nDst     = 20
	nSrc     = 5
	extGW    = "192.168.3.254"
)

func newBigSpec(seed uint64) *bigSpec {
	s := &bigSpec{seedMix: seed,
		eipV: make([]int, nEIP), eipOn: make([]bool, nEIP), fipV: make([]int, nFIP),
		dnatV: make([]int, nDNAT), dnatOn: make([]bool, nDNAT), snatV: make([]int, nSNAT), snatOn: make([]bool, nSNAT),
		dstV: make([]int, nDst), srcV: make([]int, nSrc)}
	for i := range s.eipOn {
		s.eipOn[i] = true
	}
	for i := range s.dnatOn {
		s.dnatOn[i] = true
	}
	for i := range s.snatOn {
		s.snatOn[i] = true
	}
	return s
}

func (s *bigSpec) clone() *bigSpec {
	c := *s
	c.eipV, c.eipOn, c.fipV = append([]int(nil), s.eipV...), append([]bool(nil), s.eipOn...), append([]int(nil), s.fipV...)
	c.dnatV, c.dnatOn = append([]int(nil), s.dnatV...), append([]bool(nil), s.dnatOn...)
	c.snatV, c.snatOn = append([]int(nil), s.snatV...), append([]bool(nil), s.snatOn...)
	c.dstV, c.srcV = append([]int(nil), s.dstV...), append([]int(nil), s.srcV...)
	return &c
}

// mutate changes about frac of every kind of rule in place (new versions: new addresses, ports,
// protocols, internal IPs, prefixes, next hops), removes or restores some DNATs and SNATs and
// toggles the spare EIPs, lanIp and sn2's gateway now and then. Deterministic in r.
func (s *bigSpec) mutate(r *rand.Rand, frac float64) *bigSpec {
	c := s.clone()
	bump := func(v []int) {
		for i := range v {
			if r.Float64() < frac {
				v[i]++
			}
		}
	}
	toggle := func(on []bool) {
		for i := range on {
			// Removed ones come back (an add), a few others go (a removal).
			on[i] = !on[i] || r.Float64() >= frac/5
		}
	}
	// EIP addresses of the rule-carrying slots change rarely (every rule of that EIP follows).
	for i := 0; i < nFIP+nDNATEIP; i++ {
		if r.Float64() < frac/5 {
			c.eipV[i]++
		}
	}
	for i := nFIP + nDNATEIP; i < nEIP; i++ {
		if r.Float64() < 0.5 {
			c.eipOn[i] = !c.eipOn[i]
		}
		if r.Float64() < frac {
			c.eipV[i]++
		}
	}
	bump(c.fipV)
	bump(c.dnatV)
	toggle(c.dnatOn)
	bump(c.snatV)
	toggle(c.snatOn)
	bump(c.dstV)
	bump(c.srcV)
	if r.Float64() < frac {
		c.lanV++
	}
	if r.Float64() < frac {
		c.sn2V++
	}
	return c
}

// h is a deterministic hash of the spec's seed and some numbers.
func (s *bigSpec) h(parts ...int) uint64 {
	x := s.seedMix*0x9E3779B97F4A7C15 + 1
	for _, p := range parts {
		x ^= uint64(p) + 0x9E3779B97F4A7C15 + (x << 6) + (x >> 2)
		x *= 0xBF58476D1CE4E5B9
		x ^= x >> 31
	}
	return x
}

func (s *bigSpec) eipAddr(i int) string {
	base := netip.MustParseAddr("192.168.0.10").As4()
	n := uint32(base[2])<<8 | uint32(base[3])
	n += uint32(i*16 + s.eipV[i]%16)
	return fmt.Sprintf("192.168.%d.%d", n>>8, n&0xff)
}

// inputs builds the plan inputs of the spec (gateway ngw, Vpc vpc1, subnets sn and sn2).
func (s *bigSpec) inputs() plan.Inputs {
	gw := &v1.VpcNatGateway{
		TypeMeta:   metav1.TypeMeta{APIVersion: "kubeovn.io/v1", Kind: "VpcNatGateway"},
		ObjectMeta: metav1.ObjectMeta{Name: "ngw", Generation: 1},
		Spec: v1.VpcNatGatewaySpec{Vpc: "vpc1", Subnet: "sn",
			LanIP: fmt.Sprintf("10.0.0.%d", 254-s.lanV%3)},
	}
	for i := 0; i < nEIP; i++ {
		if s.eipOn[i] {
			gw.Spec.Eips = append(gw.Spec.Eips, v1.Eip{EipCIDR: s.eipAddr(i) + "/22", Gateway: extGW})
		}
	}
	for k := 0; k < nFIP; k++ {
		gw.Spec.FloatingIPRules = append(gw.Spec.FloatingIPRules, v1.FloatingIPRule{Eip: s.eipAddr(k),
			InternalIP: fmt.Sprintf("10.0.%d.%d", 100+s.fipV[k]%50, k+1)})
	}
	for j := 0; j < nDNAT; j++ {
		if !s.dnatOn[j] {
			continue
		}
		v := s.dnatV[j]
		x := s.h(1, j, v)
		proto := "tcp"
		if x%3 == 0 {
			proto = "udp"
		}
		gw.Spec.DnatRules = append(gw.Spec.DnatRules, v1.DnatRule{
			Eip:          s.eipAddr(nFIP + j%nDNATEIP),
			ExternalPort: intstr.FromInt32(int32(1024 + (j/nDNATEIP)*64 + v%64)),
			Protocol:     proto,
			InternalIP:   fmt.Sprintf("10.0.%d.%d", 1+(x>>8)%90, 2+(x>>16)%250),
			InternalPort: intstr.FromInt32(int32(1 + (x>>24)%65535)),
		})
	}
	lens := []int{24, 25, 26, 27, 28, 32}
	for k := 0; k < nSNAT; k++ {
		if !s.snatOn[k] {
			continue
		}
		x := s.h(2, k, s.snatV[k])
		l := lens[x%uint64(len(lens))]
		size := 1 << (32 - l)
		off := int((x>>8)%uint64(256/size)) * size
		cidr := fmt.Sprintf("10.0.%d.%d/%d", k, off, l)
		if l == 32 {
			cidr = fmt.Sprintf("10.0.%d.%d", k, off)
		}
		eipSlot := int((x >> 20) % uint64(nFIP+nDNATEIP))
		gw.Spec.SnatRules = append(gw.Spec.SnatRules, v1.SnatRule{Eip: s.eipAddr(eipSlot), InternalCIDR: cidr})
	}
	vpc := &v1.Vpc{TypeMeta: metav1.TypeMeta{APIVersion: "kubeovn.io/v1", Kind: "Vpc"}, ObjectMeta: metav1.ObjectMeta{Name: "vpc1"}}
	for r := 0; r < nDst; r++ {
		x := s.h(3, r, s.dstV[r])
		vpc.Spec.StaticRoutes = append(vpc.Spec.StaticRoutes, v1.StaticRoute{Policy: v1.RoutePolicy(annotations.PolicyDst),
			CIDR: fmt.Sprintf("172.%d.%d.0/24", 16+r%16, (r/16)*128+int(x%128)), NextHopIP: fmt.Sprintf("10.0.0.%d", 100+(x>>8)%50)})
	}
	for r := 0; r < nSrc; r++ {
		x := s.h(4, r, s.srcV[r])
		vpc.Spec.StaticRoutes = append(vpc.Spec.StaticRoutes, v1.StaticRoute{Policy: v1.RoutePolicy(annotations.PolicySrc),
			CIDR: fmt.Sprintf("10.0.%d.0/%d", 200+r, 24+int(x%3)), NextHopIP: fmt.Sprintf("10.0.0.%d", 150+(x>>8)%50)})
	}
	subnet := func(name, cidr, gwIP, bridge string) *v1.Subnet {
		return &v1.Subnet{TypeMeta: metav1.TypeMeta{APIVersion: "kubeovn.io/v1", Kind: "Subnet"}, ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: v1.SubnetSpec{Vpc: "vpc1", CIDRBlock: cidr, Gateway: gwIP, NatGatewayAttachment: &v1.SubnetAttachment{Bridge: bridge}}}
	}
	return plan.Inputs{Gateway: gw, Vpc: vpc, Subnets: []*v1.Subnet{
		subnet("sn", "10.0.0.0/16", "10.0.0.1", "br-sn"),
		subnet("sn2", "10.1.0.0/24", fmt.Sprintf("10.1.0.%d", 1+s.sn2V%2), "br-sn2"),
	}, Config: plan.Config{Enabled: true, NIC: "eth1", Dataplane: s.dataplane()}}
}

// dataplane is the spec's backend: plane, or the ConfigMap's default (what the written spec's
// ConfigMap without the key reads as).
func (s *bigSpec) dataplane() string {
	if s.plane == "" {
		return plan.DefaultDataplane
	}
	return s.plane
}

// rules counts the spec's rules and routes.
func (s *bigSpec) rules() int {
	in := s.inputs()
	sp := in.Gateway.Spec
	return len(sp.Eips) + len(sp.FloatingIPRules) + len(sp.DnatRules) + len(sp.SnatRules) + len(in.Vpc.Spec.StaticRoutes)
}

// build validates the inputs and returns the desired state; a test bug if invalid.
func build(tb testing.TB, in plan.Inputs) *annotations.Desired {
	tb.Helper()
	_, d, errs := plan.Build(in)
	if len(errs) > 0 {
		tb.Fatalf("generated spec is invalid: %v", errs.ToAggregate())
	}
	return d
}

// writeSpec writes the inputs as the multi-document YAML `vpcnat-daemon apply --spec` reads.
func writeSpec(tb testing.TB, path string, in plan.Inputs) {
	tb.Helper()
	var b bytes.Buffer
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "ovn-vpc-nat-gw-config", Namespace: "kube-system"},
		Data:       map[string]string{"image": "vpcnat.local/vpcnat-gateway:dev", "enable-vpc-nat-gw": "true", "nic": in.Config.NIC}}
	// A Config built by hand without a dataplane means iptables; a ConfigMap without the key
	// means the default backend, so the file always names it.
	cm.Data["dataplane"] = annotations.DataplaneIPTables
	if in.Config.Dataplane != "" {
		cm.Data["dataplane"] = in.Config.Dataplane
	}
	objs := []any{cm, in.Vpc}
	for _, sn := range in.Subnets {
		objs = append(objs, sn)
	}
	objs = append(objs, in.Gateway)
	for _, o := range objs {
		y, err := yaml.Marshal(o)
		if err != nil {
			tb.Fatal(err)
		}
		b.WriteString("---\n")
		b.Write(y)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
}

// TestBigSpecValid: the generator's specs and their mutations are valid, about 2 000 rules, and
// a mutation changes something of every kind.
func TestBigSpecValid(t *testing.T) {
	s := newBigSpec(1)
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20; i++ {
		d := build(t, s.inputs())
		if n := s.rules(); n < 1900 || n > 2100 {
			t.Errorf("spec %d: %d rules", i, n)
		}
		if len(d.DNATs) < 1700 || len(d.FloatingIPs) != nFIP {
			t.Errorf("spec %d: %d DNATs, %d FIPs", i, len(d.DNATs), len(d.FloatingIPs))
		}
		s = s.mutate(r, 0.1)
	}
	path := t.TempDir() + "/spec.yaml"
	writeSpec(t, path, s.inputs())
	in, err := plan.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := s.inputs()
	if want.Config.Dataplane == "" {
		want.Config.Dataplane = annotations.DataplaneIPTables // as writeSpec names it
	}
	d1, d2 := build(t, in), build(t, want)
	if y1, y2 := mustJSON(t, d1), mustJSON(t, d2); y1 != y2 {
		t.Errorf("the written spec does not read back the same")
	}
}

func mustJSON(tb testing.TB, v any) string {
	b, err := yaml.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}
