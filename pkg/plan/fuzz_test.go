package plan

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// Fuzz targets of the spec reader and validator. Seeds are in testdata/fuzz/<FuzzName>/
// (examples/seed.yaml, valid variants of it and a selection of the bad-input catalogue, as YAML
// files); run one with
//
//	go test -run '^$' -fuzz '^FuzzLoadBuild$' -fuzztime 1m ./pkg/plan
//
// or all of them with hack/fuzz.sh.

// errText is a Build result's errors as one string, for comparisons.
func errText(errs field.ErrorList) string {
	if agg := errs.ToAggregate(); agg != nil {
		return agg.Error()
	}
	return ""
}

// checkBuild: Build never panics, is deterministic, and whatever it accepts the annotation
// readers accept too (through the real encoding), unchanged.
func checkBuild(t *testing.T, in Inputs) {
	t.Helper()
	p, d, errs := Build(in)
	p2, d2, errs2 := Build(in)
	if !reflect.DeepEqual(p, p2) || !reflect.DeepEqual(d, d2) || errText(errs) != errText(errs2) {
		t.Fatalf("Build is not deterministic:\n%v\n%v", errText(errs), errText(errs2))
	}
	if len(errs) > 0 {
		if p != nil || d != nil {
			t.Fatalf("Build returned a result and errors: %v", errText(errs))
		}
		for _, fe := range errs {
			if fe.Field == "" || fe.Error() == "" {
				t.Fatalf("an error without a field path or message: %#v", fe)
			}
		}
		return
	}
	if p == nil || d == nil {
		t.Fatal("Build returned neither a result nor errors")
	}
	if errs := annotations.ValidateDesired(d); len(errs) > 0 {
		t.Fatalf("Build accepted what ValidateDesired refuses: %v", errText(errs))
	}
	if errs := annotations.ValidateNICPlan(p); len(errs) > 0 {
		t.Fatalf("Build accepted what ValidateNICPlan refuses: %v", errText(errs))
	}
	enc, err := annotations.EncodeDesired(d)
	if err != nil {
		t.Fatal(err)
	}
	back, err := annotations.ParseDesired(enc)
	if err != nil {
		t.Fatalf("the daemon would refuse Build's desired state: %v", err)
	}
	if !reflect.DeepEqual(back, d) {
		t.Fatalf("the desired annotation does not round-trip:\n%+v\n%+v", d, back)
	}
	ps, err := annotations.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	pback, err := annotations.ParseNICPlan(ps)
	if err != nil {
		t.Fatalf("the plugin would refuse Build's NIC plan: %v", err)
	}
	if !reflect.DeepEqual(pback, p) {
		t.Fatalf("the NIC plan annotation does not round-trip:\n%+v\n%+v", p, pback)
	}
}

// FuzzLoadBuild: a spec file (as vpcnat-daemon apply reads it) never makes LoadFile's decoder or
// Build panic; decoding and building are deterministic; whatever Build accepts passes
// annotations.ValidateDesired and ValidateNICPlan and survives the annotation encoding.
func FuzzLoadBuild(f *testing.F) {
	seedText, err := os.ReadFile(seedFile)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seedText)
	f.Fuzz(func(t *testing.T, data []byte) {
		in, err := decode(data)
		in2, err2 := decode(data)
		if (err == nil) != (err2 == nil) || err != nil && err.Error() != err2.Error() || !reflect.DeepEqual(in, in2) {
			t.Fatalf("decode is not deterministic: %v / %v", err, err2)
		}
		if err != nil {
			if in.Gateway != nil {
				t.Fatalf("decode returned objects and an error: %v", err)
			}
			return
		}
		if in.Gateway == nil {
			t.Fatal("decode accepted a file without a VpcNatGateway")
		}
		checkBuild(t, in)
	})
}

// FuzzBuildSpec varies the values of the seed's objects directly (faster than through YAML):
// the ConfigMap, the Subnet, lanIp, one EIP and one rule of each kind, a Vpc route.
func FuzzBuildSpec(f *testing.F) {
	f.Add("eth1", "true", "img", "10.0.1.0/24", "10.0.1.1", "br-sn", "10.0.1.254", "192.168.0.112/24", "192.168.0.254",
		"192.168.0.112", "tcp", "8888", "10.0.1.10", "80", "10.0.1.0/24", "0.0.0.0/0", "10.0.1.254")
	f.Fuzz(func(t *testing.T, nic, enable, image, cidr, subnetGW, bridge, lanIP, eipCIDR, eipGW,
		ruleEIP, proto, extPort, internalIP, intPort, internalCIDR, routeCIDR, nextHop string) {
		cfg, cerrs := ParseConfig(map[string]string{KeyNIC: nic, KeyEnable: enable, KeyImage: image})
		if len(cerrs) == 0 && cfg.Enabled && (cfg.Image == "" || strings.ContainsAny(cfg.Image, " \t\r\n")) {
			t.Fatalf("ParseConfig accepted image %q", cfg.Image)
		}
		in := seed(t)
		in.Config = cfg
		sn := in.Subnets[0]
		sn.Spec.CIDRBlock, sn.Spec.Gateway = cidr, subnetGW
		if bridge == "" {
			sn.Spec.NatGatewayAttachment = nil
		} else {
			sn.Spec.NatGatewayAttachment = &v1.SubnetAttachment{Bridge: bridge}
		}
		s := &in.Gateway.Spec
		s.LanIP = lanIP
		s.Eips = append(s.Eips, v1.Eip{EipCIDR: eipCIDR, Gateway: eipGW})
		s.DnatRules = append(s.DnatRules, v1.DnatRule{Eip: ruleEIP, Protocol: proto,
			ExternalPort: intstr.Parse(extPort), InternalIP: internalIP, InternalPort: intstr.Parse(intPort)})
		s.SnatRules = append(s.SnatRules, v1.SnatRule{Eip: ruleEIP, InternalCIDR: internalCIDR})
		s.FloatingIPRules = append(s.FloatingIPRules, v1.FloatingIPRule{Eip: ruleEIP, InternalIP: internalIP})
		in.Vpc.Spec.StaticRoutes = append(in.Vpc.Spec.StaticRoutes, v1.StaticRoute{Policy: v1.PolicySrc, CIDR: routeCIDR, NextHopIP: nextHop})
		checkBuild(t, in)
	})
}
