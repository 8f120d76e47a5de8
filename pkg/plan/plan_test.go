// Address plan: no network namespaces, only objects. The seed's addresses (192.168.0.0/24
// external with gateway .254, EIPs .111-.112, the VPC subnet 10.0.1.0/24), extra subnets in
// 10.0.2.0/24 and 10.1.0.0/16, 203.0.113.0/24 behind a VPC router at 10.0.1.100.
package plan

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

const seedFile = "../../examples/seed.yaml"

// seed loads examples/seed.yaml afresh: every caller gets objects of its own to mutate.
func seed(t testing.TB) Inputs {
	t.Helper()
	in, err := LoadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// subnet makes a Subnet of the seed's Vpc.
func subnet(name, cidr, gateway string, att *v1.SubnetAttachment) *v1.Subnet {
	return &v1.Subnet{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       v1.SubnetSpec{Vpc: "test-vpc-1", CIDRBlock: cidr, Gateway: gateway, NatGatewayAttachment: att},
	}
}

func mustBuild(t testing.TB, in Inputs) (*annotations.NICPlan, *annotations.Desired) {
	t.Helper()
	p, d, errs := Build(in)
	if len(errs) > 0 {
		t.Fatalf("Build: %v", errs.ToAggregate())
	}
	return p, d
}

// TestSeed: the seed's example applies as is, and what Build makes of it is pinned by a golden
// file (go test ./pkg/plan -update rewrites it; review the diff).
func TestSeed(t *testing.T) {
	plan, d := mustBuild(t, seed(t))
	// What Build emits, the annotation readers accept: the plugin's and the daemon's view agree.
	if errs := annotations.ValidateNICPlan(plan); len(errs) > 0 {
		t.Errorf("ValidateNICPlan refuses Build's plan: %v", errs)
	}
	if errs := annotations.ValidateDesired(d); len(errs) > 0 {
		t.Errorf("ValidateDesired refuses Build's desired state: %v", errs)
	}
	tmpl, err := TemplateAnnotations(plan, "ovn-vpc-external-network")
	if err != nil {
		t.Fatal(err)
	}
	got, err := json.MarshalIndent(map[string]any{"nics": plan, "desired": d, "template": tmpl}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, '\n')
	golden := filepath.Join("testdata", "seed.golden.json")
	if *update {
		if err := os.WriteFile(golden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("Build(seed) differs from %s (run with -update and review the diff):\n%s", golden, got)
	}
}

// TestAnnotationsRoundTrip: the documents survive the trip through the pod annotations.
func TestAnnotationsRoundTrip(t *testing.T) {
	plan, d := mustBuild(t, seed(t))
	tmpl, err := TemplateAnnotations(plan, "ovn-vpc-external-network")
	if err != nil {
		t.Fatal(err)
	}
	p2, err := annotations.ParseNICPlan(tmpl[annotations.NICsKey])
	if err != nil {
		t.Fatal(err)
	}
	s, err := annotations.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := annotations.ParseDesired(s)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal([]any{plan, d})
	b, _ := json.Marshal([]any{p2, d2})
	if !bytes.Equal(a, b) {
		t.Errorf("round trip changed the documents:\n%s\n%s", a, b)
	}
}
