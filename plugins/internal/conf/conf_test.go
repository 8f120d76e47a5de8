package conf

import (
	"strings"
	"testing"
)

// TestParse: defaults, and each bad field refused with its name and value.
func TestParse(t *testing.T) {
	c, err := Parse([]byte(`{"cniVersion":"1.1.0","name":"n","prevResult":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.GatewayNamespaces) != 1 || c.GatewayNamespaces[0] != DefaultGatewayNamespace || c.StateDir != DefaultStateDir || c.PrevResult != nil {
		t.Errorf("defaults: %+v", c)
	}
	for in, want := range map[string]string{
		`{"gatewayNamespaces":["ok","Bad_NS"]}`: `gatewayNamespaces[1]: invalid namespace "Bad_NS"`,
		`{"stateDir":"run/x"}`:                  `stateDir: "run/x"`,
		`{"master":"eth0:1"}`:                   `master: invalid value "eth0:1"`,
		`{"prevResult":[1]}`:                    `prevResult`,
		`{"capabilities":5}`:                    `invalid network configuration JSON`,
		`{"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"a":1}}}`: `invalid network configuration JSON`,
	} {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", in, err, want)
		}
	}
}

// TestIsGateway: only a pod in a gateway namespace carrying the gateway annotation.
func TestIsGateway(t *testing.T) {
	c, err := Parse([]byte(`{"gatewayNamespaces":["kube-system","gw"],"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"ovn.kubernetes.io/vpc_nat_gw":"g"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]bool{"kube-system": true, "gw": true, "default": false, "": false, "Kube-system": false} {
		if got := c.IsGateway(&Args{PodNamespace: ns}); got != want {
			t.Errorf("namespace %q: gateway %v, want %v", ns, got, want)
		}
	}
	c.RuntimeConfig.PodAnnotations = map[string]string{"ovn.kubernetes.io/vpc_nat_gw_other": "g"}
	if c.IsGateway(&Args{PodNamespace: "kube-system"}) {
		t.Error("a pod without the gateway annotation is a gateway")
	}
}
