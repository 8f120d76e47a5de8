// Package conf parses what the vpcnat CNI plugin is given (its conflist entry with the runtime's
// pod annotations, CNI_ARGS, prevResult) and decides whether a call is the normal-pod pass-through
// that the small `vpcnat` dispatcher answers itself. It imports the standard library only, and
// none of it that starts slowly (no net, no regexp, no cgo): `vpcnat` runs for every pod on the
// node, and its start-up is most of what it costs. The full plugin (`vpcnat-gateway`) parses its
// configuration with the same code, so the two cannot disagree about what a configuration means.
package conf

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
)

// Keys of the annotation contract (pkg/annotations holds the same; a test keeps them equal).
const (
	// GatewayKey marks a pod as a vpcnat gateway.
	GatewayKey = "ovn.kubernetes.io/vpc_nat_gw"
	// PodAnnotationsCapability is how containerd and CRI-O hand pod annotations to plugins.
	PodAnnotationsCapability = "io.kubernetes.cri.pod-annotations"
)

// DefaultGatewayNamespace is the only namespace whose pods can be gateways unless configured.
const DefaultGatewayNamespace = "kube-system"

// DefaultStateDir is where the attachment records live (pkg/state.DefaultDir; a test keeps them
// equal).
const DefaultStateDir = "/run/vpcnat"

// MaxIfNameLen is the kernel's limit (IFNAMSIZ - 1).
const MaxIfNameLen = 15

// Conf is vpcnat's entry in the conflist, as the runtime passes it.
type Conf struct {
	CNIVersion string `json:"cniVersion,omitempty"`
	Name       string `json:"name,omitempty"`
	Type       string `json:"type,omitempty"`

	// GatewayNamespaces are the only namespaces whose pods can be gateways (default
	// kube-system): a user who puts the gateway annotation on a pod elsewhere gets nothing.
	GatewayNamespaces []string `json:"gatewayNamespaces,omitempty"`
	// StateDir holds the attachment records the daemon reads (default /run/vpcnat).
	StateDir string `json:"stateDir,omitempty"`
	// Master, when set, is this node's NIC for net1, overriding the NIC plan's (nodes whose
	// underlay NIC has another name).
	Master string `json:"master,omitempty"`

	RuntimeConfig RuntimeConfig `json:"runtimeConfig,omitempty"`

	// PrevResult is the previous plugin's result, exactly as it came.
	PrevResult json.RawMessage `json:"prevResult,omitempty"`
}

// RuntimeConfig holds the capabilities vpcnat asks for.
type RuntimeConfig struct {
	PodAnnotations map[string]string `json:"io.kubernetes.cri.pod-annotations,omitempty"`
}

// wire is what Parse decodes: Conf plus the rest of the CNI library's PluginConf with the same
// JSON types, so that a document the library refuses (a number where it wants an object, say) is
// refused here too.
type wire struct {
	Conf
	Capabilities map[string]bool `json:"capabilities,omitempty"`
	IPAM         struct {
		Type string `json:"type,omitempty"`
	} `json:"ipam,omitempty"`
	DNS              dns `json:"dns,omitempty"`
	ValidAttachments []struct {
		ContainerID string `json:"containerID"`
		IfName      string `json:"ifname"`
	} `json:"cni.dev/valid-attachments,omitempty"`
}

type dns struct {
	Nameservers []string `json:"nameservers,omitempty"`
	Domain      string   `json:"domain,omitempty"`
	Search      []string `json:"search,omitempty"`
	Options     []string `json:"options,omitempty"`
}

// Parse decodes and validates the configuration, filling in the defaults. prevResult is kept as
// raw JSON (it must be an object or absent); the full plugin parses it with the CNI library.
func Parse(stdin []byte) (*Conf, error) {
	var w wire
	if err := json.Unmarshal(stdin, &w); err != nil {
		return nil, fmt.Errorf("vpcnat: invalid network configuration JSON: %w", err)
	}
	c := &w.Conf
	if p := strings.TrimSpace(string(c.PrevResult)); p == "null" {
		c.PrevResult = nil
	} else if p != "" && p[0] != '{' {
		return nil, fmt.Errorf("vpcnat: prevResult: not a JSON object: %.40s", p)
	}
	if len(c.GatewayNamespaces) == 0 {
		c.GatewayNamespaces = []string{DefaultGatewayNamespace}
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// Validate checks vpcnat's own fields (after defaulting), each error naming the field and value.
func (c *Conf) Validate() error {
	for i, ns := range c.GatewayNamespaces {
		if err := CheckNamespace(ns); err != nil {
			return fmt.Errorf("vpcnat: gatewayNamespaces[%d]: invalid namespace %q: %w", i, ns, err)
		}
	}
	if !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("vpcnat: stateDir: %q is not an absolute path", c.StateDir)
	}
	if c.Master != "" {
		if err := CheckIfName(c.Master); err != nil {
			return fmt.Errorf("vpcnat: master: invalid value %q: %w", c.Master, err)
		}
	}
	return nil
}

// IsGateway reports whether the pod is a gateway: in a gateway namespace and carrying the gateway
// annotation. Annotations come only from the runtime (containerd and CRI-O pass them): no API
// call, so CNI ADD never depends on the API server. A runtime that passes none makes every pod a
// normal pod.
func (c *Conf) IsGateway(a *Args) bool {
	if a.PodNamespace == "" {
		return false
	}
	in := false
	for _, ns := range c.GatewayNamespaces {
		in = in || ns == a.PodNamespace
	}
	if !in {
		return false
	}
	_, ok := c.RuntimeConfig.PodAnnotations[GatewayKey]
	return ok
}

// CheckNamespace checks a Kubernetes namespace name: an RFC 1123 label (at most 63 characters,
// lowercase letters, digits and '-', starting and ending with a letter or digit), the rule of
// k8s.io/apimachinery's IsDNS1123Label (a test checks that the two agree).
func CheckNamespace(s string) error {
	if s == "" || len(s) > 63 {
		return fmt.Errorf("must be 1-63 characters long (RFC 1123 label), has %d", len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
		if !alnum && (c != '-' || i == 0 || i == len(s)-1) {
			return fmt.Errorf("character %q at %d: an RFC 1123 label is lowercase letters, digits and '-', starting and ending with a letter or digit", c, i)
		}
	}
	return nil
}

// CheckIfName checks a Linux interface name the way pkg/annotations does for the NIC plan: 1-15
// characters out of letters, digits, '.', '_' and '-', not "." or "..".
func CheckIfName(s string) error {
	switch {
	case s == "":
		return fmt.Errorf("an interface name is required")
	case len(s) > MaxIfNameLen:
		return fmt.Errorf("an interface name has at most %d characters", MaxIfNameLen)
	case s == "." || s == "..":
		return fmt.Errorf("is not an interface name")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !nameChar(c) {
			return fmt.Errorf("character %q is not allowed in an interface name: use letters, digits, '.', '_' and '-'", c)
		}
	}
	return nil
}

func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}
