package conf

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/cniinstall"
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
		`{"capabilities":5}`:                    `capabilities: invalid value 5`,
		`{"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"a":1}}}`: `runtimeConfig.io.kubernetes.cri.pod-annotations["a"]: invalid value 1`,
		// Strict and case-sensitive: no member is read under another name, none is ignored.
		`{"Master":"eth1"}`:                   `unknown field "Master" with value "eth1" (did you mean "master"`,
		`{"statedir":"/x"}`:                   `unknown field "statedir" with value "/x"`,
		`{"ipMasq":true}`:                     `unknown field "ipMasq" with value true`,
		`{"master":5}`:                        `master: invalid value 5 (want a string)`,
		`{"stateDir":7}`:                      `stateDir: invalid value 7 (want a string)`,
		`{"gatewayNamespaces":"kube-system"}`: `gatewayNamespaces: invalid value "kube-system"`,
		`{"master":"eth1","master":"eth2"}`:   `duplicate field "master"`,
		`{"dns":{"nameserver":["1.1.1.1"]}}`:  `dns: invalid value {"nameserver":["1.1.1.1"]}`,
		`{"cni.dev/valid-attachments":[{"containerID":"c","ifName":"eth0"}]}`: `cni.dev/valid-attachments: invalid value`,
		`{"args":"x"}`:        `args: invalid value "x"`,
		`{"ipam":{"type":1}}`: `ipam.type: invalid value 1`,
		`{"name":"n"} x`:      `invalid network configuration JSON`,
		// stateDir must be absolute and clean.
		`{"stateDir":"/run/vpcnat/../../etc"}`: `stateDir: "/run/vpcnat/../../etc" is not a clean path (it would be "/etc"`,
		`{"stateDir":"/run/vpcnat/"}`:          `stateDir: "/run/vpcnat/" is not a clean path`,
		`{"stateDir":"/run//vpcnat"}`:          `stateDir: "/run//vpcnat" is not a clean path`,
		`{"stateDir":"/run/./vpcnat"}`:         `stateDir: "/run/./vpcnat" is not a clean path`,
	} {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", in, err, want)
		}
	}
}

// TestParseAcceptsStandardKeys: every member the CNI spec defines, or a runtime / libcni puts in
// a plugin's configuration, is accepted; unknown capabilities, ipam's and args' contents and
// other reserved cni.dev/ members are ignored.
func TestParseAcceptsStandardKeys(t *testing.T) {
	in := `{"cniVersion":"1.1.0","name":"n","type":"vpcnat","capabilities":{"io.kubernetes.cri.pod-annotations":true,"portMappings":true},` +
		`"ipam":{"type":"host-local","ranges":[[{"subnet":"10.0.0.0/24"}]]},"dns":{"nameservers":["10.0.0.10"],"domain":"d","search":["s"],"options":["o"]},` +
		`"args":{"cni":{"ips":["10.0.0.5"]}},"runtimeConfig":{"portMappings":[{"hostPort":80}],"IO.kubernetes.cri.pod-annotations":5,` +
		`"io.kubernetes.cri.pod-annotations":{"ovn.kubernetes.io/vpc_nat_gw":"g"}},"prevResult":{"cniVersion":"1.1.0"},` +
		`"cni.dev/valid-attachments":[{"containerID":"c","ifname":"eth0"}],"cni.dev/future-thing":{"x":1},` +
		`"gatewayNamespaces":["kube-system"],"stateDir":"/run/vpcnat","master":"eth1"}`
	c, pc, err := ParsePluginConf([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if c.Master != "eth1" || c.RuntimeConfig.PodAnnotations[GatewayKey] != "g" || pc.IPAM.Type != "host-local" ||
		len(pc.ValidAttachments) != 1 || pc.ValidAttachments[0].IfName != "eth0" || !pc.Capabilities["portMappings"] ||
		pc.DNS.Domain != "d" || pc.RawPrevResult["cniVersion"] != "1.1.0" || pc.CNIVersion != "1.1.0" || pc.Name != "n" {
		t.Errorf("parsed %+v / %+v", c, pc)
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

// TestInstallerEntryAccepted: the vpcnat entry the installer (pkg/cniinstall) writes from an
// existing entry full of members the plugin refuses is one this parser accepts, with the
// administrator's valid members kept.
func TestInstallerEntryAccepted(t *testing.T) {
	in := `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},
	  {"type":"vpcnat","master":"ens5","custom":{"a":1},"Master":"x","statedir":"/y","ipMasq":true,"cni.dev/future":1,
	   "args":{"k":"v"},"dns":{"nameservers":["10.0.0.10"]},"ipam":{"type":"x"}}]}`
	out, _, err := cniinstall.Chain([]byte(in), cniinstall.Entry{StateDir: "/run/vpcnat-test"}, SupportedVersions)
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Plugins []json.RawMessage `json:"plugins"`
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatal(err)
	}
	c, err := Parse(list.Plugins[len(list.Plugins)-1])
	if err != nil {
		t.Fatalf("the plugin refuses the installer's entry: %v\n%s", err, out)
	}
	if c.Master != "ens5" || c.StateDir != "/run/vpcnat-test" {
		t.Errorf("parsed %+v, want master ens5 and stateDir /run/vpcnat-test", c)
	}
}
