package plan

import (
	"fmt"
	"testing"
	"time"

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

// TestBuildScalesLinearly: 8 times the rules must cost far less than 64 times the time (which
// any pairwise check would). Best of three runs each, to keep scheduling noise out.
func TestBuildScalesLinearly(t *testing.T) {
	if testing.Short() {
		t.Skip("timing")
	}
	best := func(n int) time.Duration {
		in := manyRules(t, n)
		m := time.Duration(1 << 62)
		for range 3 {
			start := time.Now()
			buildAndValidate(t, in)
			m = min(m, time.Since(start))
		}
		return m
	}
	small, large := best(2000), best(16000)
	t.Logf("2000 rules: %v, 16000 rules: %v", small, large)
	if large > 24*small {
		t.Errorf("8x the rules took %.1fx the time: something is quadratic", float64(large)/float64(small))
	}
	d := buildAndValidate(t, manyRules(t, 10000))
	s, err := annotations.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("desired annotation for 10000 rules: %d bytes (cap %d)", len(s), annotations.MaxTotalSize)
}
