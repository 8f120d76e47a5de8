package plan

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// TestNamesAreStable pins the derived names: changing them is an upgrade hazard (every gateway's
// MAC and NICs would change on the next controller release), so it must be a visible decision.
func TestNamesAreStable(t *testing.T) {
	for got, want := range map[string]string{
		ExternalMAC("ngw"):      "02:c8:ca:97:ff:41",
		SubnetIfName("sn"):      "vpc-2010c9e0d4e",
		HostIfName("ngw", "sn"): "vnat994b11266d6",
	} {
		if got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	}
}

// TestNameProperties over many names: valid for the kernel and the validator, owned prefix,
// deterministic, and distinct for distinct inputs.
func TestNameProperties(t *testing.T) {
	p := field.NewPath("x")
	macs, ifnames, hosts := map[string]string{}, map[string]string{}, map[string]string{}
	for i := range 2000 {
		name := fmt.Sprintf("gw-%d", i)
		mac, ifn, host := ExternalMAC(name), SubnetIfName(name), HostIfName(name, "sn")
		if mac != ExternalMAC(name) || ifn != SubnetIfName(name) || host != HostIfName(name, "sn") {
			t.Fatalf("%s: not deterministic", name)
		}
		if fe := annotations.CheckMAC(mac, p); fe != nil || !strings.HasPrefix(mac, "02:") {
			t.Fatalf("%s: MAC %s: %v", name, mac, fe)
		}
		for _, n := range []struct{ s, prefix string }{{ifn, SubnetIfNamePrefix}, {host, HostIfNamePrefix}} {
			if fe := annotations.CheckIfName(n.s, p); fe != nil || len(n.s) != annotations.MaxIfNameLen || !strings.HasPrefix(n.s, n.prefix) {
				t.Fatalf("%s: ifname %s: %v", name, n.s, fe)
			}
		}
		for _, m := range []struct {
			seen map[string]string
			v    string
		}{{macs, mac}, {ifnames, ifn}, {hosts, host}} {
			if other, dup := m.seen[m.v]; dup {
				t.Fatalf("%s and %s both give %s", other, name, m.v)
			}
			m.seen[m.v] = name
		}
	}
	if HostIfName("ab", "c") == HostIfName("a", "bc") {
		t.Error("HostIfName does not separate its two names")
	}
	if HostIfName("ngw", "sn") == HostIfName("ngw2", "sn") {
		t.Error("two gateways on one bridge would share a veth name")
	}
}
