package plan

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	gwDoc = `apiVersion: kubeovn.io/v1
kind: VpcNatGateway
metadata: {name: ngw}
spec: {vpc: test-vpc-1, subnet: sn, lanIp: 10.0.1.254}
`
	cmDoc = `apiVersion: v1
kind: ConfigMap
metadata: {name: ovn-vpc-nat-gw-config, namespace: kube-system}
data: {image: x, enable-vpc-nat-gw: "true", nic: eth1}
`
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadFileRefuses(t *testing.T) {
	seedText, err := os.ReadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, content string
		want          []string
	}{
		{"unknown kind", gwDoc + "---\napiVersion: v1\nkind: Service\nmetadata: {name: x}\n", []string{"document 2", "kind Service of apiVersion v1 is not supported"}},
		{"unknown field", strings.Replace(gwDoc, "lanIp:", "lanIP:", 1), []string{"document 1 (VpcNatGateway)", `unknown field "spec.lanIP"`}},
		{"unknown nested field", strings.Replace(string(seedText), "eipCIDR: 192.168.0.112/24", "eipCidr: 192.168.0.112/24", 1),
			[]string{"document 4 (VpcNatGateway)", `unknown field "spec.eips[1].eipCidr"`}},
		{"duplicate field", gwDoc + "status: {}\nstatus: {}\n", []string{"document 1 (VpcNatGateway)", `"status"`}},
		{"seed's unquoted true", strings.Replace(string(seedText), `enable-vpc-nat-gw: "true"`, "enable-vpc-nat-gw: true", 1), []string{"document 1 (ConfigMap)", "data"}},
		{"config not a boolean", strings.Replace(cmDoc, `"true"`, `"on"`, 1) + "---\n" + gwDoc, []string{"document 1 (ConfigMap)", `configmap.data[enable-vpc-nat-gw]: Unsupported value: "on"`}},
		{"other ConfigMap", strings.Replace(cmDoc, "ovn-vpc-nat-gw-config", "mine", 1) + "---\n" + gwDoc, []string{"document 1 (ConfigMap)", "kube-system/mine"}},
		{"wrong version", strings.Replace(gwDoc, "kubeovn.io/v1", "kubeovn.io/v2", 1), []string{"document 1", "apiVersion kubeovn.io/v2 is not supported"}},
		{"no kind", "metadata: {name: x}\n", []string{"document 1", "apiVersion and kind are required"}},
		{"not an object", "- a\n- b\n", []string{"document 1", "not a Kubernetes object"}},
		{"two gateways", gwDoc + "---\n" + gwDoc, []string{"document 2 (VpcNatGateway)", "a second VpcNatGateway"}},
		{"no gateway", cmDoc, []string{"no VpcNatGateway"}},
		{"invalid YAML", gwDoc + "---\nkind: [\n", []string{"document 2"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := LoadFile(writeFile(t, c.content))
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := LoadFile(filepath.Join(t.TempDir(), "nope.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// TestLoadFileConfig: a file without the ConfigMap stands on its own (enabled, the caller names
// the NIC); one with it is taken as it is.
func TestLoadFileConfig(t *testing.T) {
	in, err := LoadFile(writeFile(t, "---\n# comments only\n---\n"+gwDoc+"---\n"))
	if err != nil {
		t.Fatal(err)
	}
	if in.Config != (Config{Enabled: true, Dataplane: DefaultDataplane}) || in.Gateway.Name != "ngw" || in.Vpc != nil || len(in.Subnets) != 0 {
		t.Errorf("inputs %+v", in)
	}
	in, err = LoadFile(writeFile(t, strings.Replace(cmDoc, `"true"`, `"false"`, 1)+"---\n"+gwDoc))
	if err != nil {
		t.Fatal(err)
	}
	if in.Config != (Config{Image: "x", NIC: "eth1", Dataplane: DefaultDataplane}) {
		t.Errorf("config %+v", in.Config)
	}
	if _, _, errs := Build(in); len(errs) == 0 || errs[0].Field != "configmap.data[enable-vpc-nat-gw]" {
		t.Errorf("a disabled ConfigMap in the file must refuse the gateway: %v", errs)
	}
}
