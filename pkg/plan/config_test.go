package plan

import (
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	cases := []struct {
		name string
		data map[string]string
		want Config
		err  string
	}{
		{"seed", map[string]string{"image": "kubeovn/vpc-nat-gateway:v1.7.0", "enable-vpc-nat-gw": "true", "nic": "eth1"},
			Config{Enabled: true, Image: "kubeovn/vpc-nat-gateway:v1.7.0", NIC: "eth1", Dataplane: DefaultDataplane}, ""},
		{"disabled", map[string]string{"enable-vpc-nat-gw": "false", "nic": "eth1"}, Config{NIC: "eth1", Dataplane: DefaultDataplane}, ""},
		{"missing key is disabled", map[string]string{"image": "x"}, Config{Image: "x", Dataplane: DefaultDataplane}, ""},
		{"nil data", nil, Config{Dataplane: DefaultDataplane}, ""},
		{"other keys ignored", map[string]string{"enable-vpc-nat-gw": "true", "image": "x", "bgpSpeakerImage": "y"}, Config{Enabled: true, Image: "x", Dataplane: DefaultDataplane}, ""},
		{"not a boolean", map[string]string{"enable-vpc-nat-gw": "yes", "image": "x"}, Config{Image: "x", Dataplane: DefaultDataplane}, `configmap.data[enable-vpc-nat-gw]: Unsupported value: "yes"`},
		{"upper case", map[string]string{"enable-vpc-nat-gw": "True", "image": "x"}, Config{Image: "x", Dataplane: DefaultDataplane}, `"True"`},
		{"enabled without image", map[string]string{"enable-vpc-nat-gw": "true"}, Config{Enabled: true, Dataplane: DefaultDataplane}, "configmap.data[image]: Required"},
		{"nftables", map[string]string{"enable-vpc-nat-gw": "true", "image": "x", "dataplane": "nftables"},
			Config{Enabled: true, Image: "x", Dataplane: "nftables"}, ""},
		{"iptables", map[string]string{"enable-vpc-nat-gw": "true", "image": "x", "dataplane": "iptables"},
			Config{Enabled: true, Image: "x", Dataplane: "iptables"}, ""},
		{"empty dataplane is the default", map[string]string{"image": "x", "dataplane": ""}, Config{Image: "x", Dataplane: DefaultDataplane}, ""},
		{"unknown dataplane", map[string]string{"image": "x", "dataplane": "nft"}, Config{Image: "x", Dataplane: "nft"},
			`configmap.data[dataplane]: Unsupported value: "nft"`},
		{"hostile image", map[string]string{"enable-vpc-nat-gw": "true", "image": "x; rm -rf /"}, Config{Enabled: true, Image: "x; rm -rf /", Dataplane: DefaultDataplane}, `"x; rm -rf /"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, errs := ParseConfig(c.data)
			if got != c.want {
				t.Errorf("config %+v, want %+v", got, c.want)
			}
			switch {
			case c.err == "" && len(errs) > 0:
				t.Errorf("unexpected errors: %v", errs)
			case c.err != "" && (len(errs) != 1 || !strings.Contains(errs[0].Error(), c.err)):
				t.Errorf("errors %v, want one containing %q", errs, c.err)
			}
		})
	}
}
