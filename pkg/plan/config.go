package plan

import (
	"strings"
	"unicode"

	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// The ConfigMap that switches the feature on, as in the seed (and Kube-OVN).
const (
	ConfigMapNamespace = "kube-system"
	ConfigMapName      = "ovn-vpc-nat-gw-config"

	// KeyImage is the gateway pod's image.
	KeyImage = "image"
	// KeyEnable is "true" or "false"; a missing key is "false", as in Kube-OVN.
	KeyEnable = "enable-vpc-nat-gw"
	// KeyNIC is the node NIC under net1 (the macvlan's master).
	KeyNIC = "nic"
	// KeyDataplane picks the NAT backend of every gateway: "nftables" (the default when the key
	// is missing or empty) or "iptables" (docs/nftables.md). vpcnat's own key, not Kube-OVN's.
	KeyDataplane = "dataplane"
	// DefaultDataplane is the backend of a ConfigMap without the key. A running gateway of the
	// other backend switches at the next converge, new backend first, so an upgrade that
	// changes it keeps established flows (docs/nftables.md, "Choosing").
	DefaultDataplane = annotations.DataplaneNFTables
)

// Config is the ConfigMap kube-system/ovn-vpc-nat-gw-config, parsed. The zero value is what a
// missing ConfigMap means: disabled.
type Config struct {
	Enabled bool
	Image   string
	NIC     string
	// Dataplane is annotations.DataplaneIPTables or DataplaneNFTables. ParseConfig fills in
	// DefaultDataplane for a missing key; "" (a Config built by hand) means iptables, as a
	// desired annotation without the key does.
	Dataplane string
}

// configPath is where a ConfigMap key's errors point: configmap.data[nic].
func configPath(key string) *field.Path { return field.NewPath("configmap", "data").Key(key) }

// ParseConfig reads the ConfigMap's data. It checks the form of each value; whether the values
// allow a gateway (enabled, nic set and a valid interface name) is Build's question, so that one
// problem is reported once. Keys it does not know are left alone: the ConfigMap may carry other
// components' settings.
func ParseConfig(data map[string]string) (Config, field.ErrorList) {
	var errs field.ErrorList
	c := Config{Image: data[KeyImage], NIC: data[KeyNIC], Dataplane: data[KeyDataplane]}
	switch c.Dataplane {
	case "":
		c.Dataplane = DefaultDataplane
	case annotations.DataplaneIPTables, annotations.DataplaneNFTables:
	default:
		errs = append(errs, field.NotSupported(configPath(KeyDataplane), c.Dataplane,
			[]string{annotations.DataplaneIPTables, annotations.DataplaneNFTables}))
	}
	switch v, ok := data[KeyEnable]; {
	case !ok || v == "false":
	case v == "true":
		c.Enabled = true
	default:
		errs = append(errs, field.NotSupported(configPath(KeyEnable), v, []string{"true", "false"}))
	}
	switch {
	case c.Enabled && c.Image == "":
		errs = append(errs, field.Required(configPath(KeyImage), "the gateway pod's image"))
	case strings.IndexFunc(c.Image, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		errs = append(errs, field.Invalid(configPath(KeyImage), c.Image, "an image reference has no spaces or control characters"))
	}
	return c, errs
}
