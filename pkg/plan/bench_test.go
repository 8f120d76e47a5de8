package plan

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// manyRules is the seed gateway with n rules over 200 EIPs: 10 % SNAT, 40 FIPs (one per EIP, on
// EIPs of their own), the rest DNATs spread over the other EIPs and both protocols.
func manyRules(t testing.TB, n int) Inputs {
	in := seed(t)
	g := &in.Gateway.Spec
	g.Eips, g.FloatingIPRules, g.DnatRules, g.SnatRules = nil, nil, nil, nil
	for i := 1; i <= 200; i++ {
		g.Eips = append(g.Eips, v1.Eip{EipCIDR: fmt.Sprintf("192.168.0.%d/24", i), Gateway: "192.168.0.254"})
	}
	fips, snats := 40, n/10
	for i := range fips {
		g.FloatingIPRules = append(g.FloatingIPRules, v1.FloatingIPRule{Eip: fmt.Sprintf("192.168.0.%d", 1+i), InternalIP: fmt.Sprintf("10.0.1.%d", 100+i)})
	}
	for i := range snats {
		g.SnatRules = append(g.SnatRules, v1.SnatRule{Eip: fmt.Sprintf("192.168.0.%d", 41+i%160), InternalCIDR: fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256)})
	}
	for k := range n - fips - snats {
		g.DnatRules = append(g.DnatRules, v1.DnatRule{
			Eip: fmt.Sprintf("192.168.0.%d", 41+k%160), ExternalPort: intstr.FromInt(10000 + k/320),
			Protocol: []string{"tcp", "udp"}[k/160%2], InternalIP: fmt.Sprintf("10.0.1.%d", 2+k%90), InternalPort: intstr.FromInt(80),
		})
	}
	return in
}

// buildAndValidate is one controller sync (Build) plus one daemon sync (ValidateDesired of the
// annotation it reads).
func buildAndValidate(tb testing.TB, in Inputs) *annotations.Desired {
	_, d, errs := Build(in)
	if len(errs) > 0 {
		tb.Fatalf("Build: %v", errs.ToAggregate())
	}
	if errs := annotations.ValidateDesired(d); len(errs) > 0 {
		tb.Fatalf("ValidateDesired: %v", errs.ToAggregate())
	}
	return d
}

// BenchmarkBuild10k: 10 000 rules over 200 EIPs; the budget is well under 50 ms.
func BenchmarkBuild10k(b *testing.B) {
	in := manyRules(b, 10000)
	b.ReportAllocs()
	for b.Loop() {
		buildAndValidate(b, in)
	}
}

// BenchmarkBuildScaling: 2 000 and 16 000 rules; 8 times the rules should cost about 8 times
// the time (a pairwise check would cost 64 times). A benchmark, not a timed test: compare the two
// lines of one run (`go test -run '^$' -bench BuildScaling ./pkg/plan`).
func BenchmarkBuildScaling(b *testing.B) {
	for _, n := range []int{2000, 16000} {
		in := manyRules(b, n)
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			for b.Loop() {
				buildAndValidate(b, in)
			}
		})
	}
}

// TestManyRulesFit: 10 000 rules build, validate and fit in the desired annotation.
func TestManyRulesFit(t *testing.T) {
	d := buildAndValidate(t, manyRules(t, 10000))
	s, err := annotations.EncodeDesired(d)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) > annotations.MaxTotalSize {
		t.Fatalf("desired annotation for 10000 rules: %d bytes, over the cap %d", len(s), annotations.MaxTotalSize)
	}
	t.Logf("desired annotation for 10000 rules: %d bytes (cap %d)", len(s), annotations.MaxTotalSize)
}

// BenchmarkParseDesired10k is the daemon's side of one sync at 10 000 rules: ParseDesired of the
// annotation the controller wrote (inflate, strict decode, validation).
func BenchmarkParseDesired10k(b *testing.B) {
	d := buildAndValidate(b, manyRules(b, 10000))
	s, err := annotations.EncodeDesired(d)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := annotations.ParseDesired(s); err != nil {
			b.Fatal(err)
		}
	}
}
