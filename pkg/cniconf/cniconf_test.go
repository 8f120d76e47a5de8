package cniconf

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// TestNamesAgree: the written-out checks accept exactly what the libraries they stand in for
// accept.
func TestNamesAgree(t *testing.T) {
	if MaxIfNameLen != annotations.MaxIfNameLen {
		t.Errorf("MaxIfNameLen %d, annotations.MaxIfNameLen %d", MaxIfNameLen, annotations.MaxIfNameLen)
	}
	names := []string{"", "a", "kube-system", "Kube-System", "-a", "a-", "a_b", "a.b", "0", "9-9", strings.Repeat("a", 63), strings.Repeat("a", 64),
		"eth0", "eth0/../x", "net1", ".", "..", "..a", "a:b", "a b", "$(reboot)", "é", strings.Repeat("e", 15), strings.Repeat("e", 16)}
	for _, n := range names {
		if got, want := CheckNamespace(n) == nil, len(validation.IsDNS1123Label(n)) == 0; got != want {
			t.Errorf("namespace %q: accepted %v, k8s IsDNS1123Label %v", n, got, want)
		}
		if got, want := CheckIfName(n) == nil, annotations.CheckIfName(n, field.NewPath("x")) == nil; got != want {
			t.Errorf("ifname %q: accepted %v, annotations.CheckIfName %v", n, got, want)
		}
	}
}

func TestKnownAndHint(t *testing.T) {
	for _, k := range []string{"master", "stateDir", "cni.dev/valid-attachments", "cni.dev/future", "prevResult"} {
		if !Known(k) {
			t.Errorf("Known(%q) = false", k)
		}
	}
	for _, k := range []string{"Master", "statedir", "custom", "ipMasq", ""} {
		if Known(k) {
			t.Errorf("Known(%q) = true", k)
		}
	}
	if h := Hint("Master"); !strings.Contains(h, `"master"`) {
		t.Errorf("Hint(Master) = %q", h)
	}
	if h := Hint("custom"); h != "" {
		t.Errorf("Hint(custom) = %q", h)
	}
}

func TestOwnValidate(t *testing.T) {
	if err := (Own{}).Validate(); err != nil {
		t.Errorf("empty (all defaults): %v", err)
	}
	if err := (Own{GatewayNamespaces: []string{"kube-system"}, StateDir: "/run/vpcnat", Master: "eth1"}).Validate(); err != nil {
		t.Errorf("valid: %v", err)
	}
	for want, o := range map[string]Own{
		`gatewayNamespaces[1]: invalid namespace "Kube_System"`: {GatewayNamespaces: []string{"a", "Kube_System"}},
		`stateDir: "relative/dir"`:                              {StateDir: "relative/dir"},
		`stateDir: "/run/vpcnat/"`:                              {StateDir: "/run/vpcnat/"},
		`master: invalid value "eth0/../x"`:                     {Master: "eth0/../x"},
	} {
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%+v: %v, want an error containing %s", o, err, want)
		}
	}
}
