// Package conf parses the vpcnat CNI plugin's configuration (its conflist entry with the
// runtime's pod annotations in runtimeConfig, and prevResult kept as raw JSON) with
// encoding/json, as the full plugin (vpcnat-gateway) reads it. The checks of single values and
// CNI_ARGS are plugins/internal/fastpath's, which the small vpcnat dispatcher runs for every
// pod, so the two cannot disagree about what a value means.
package conf

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/vpcnat/vpcnat/plugins/internal/fastpath"
)

// The contract's names, defaults and CNI_ARGS, shared with the dispatcher.
const (
	GatewayKey               = fastpath.GatewayKey
	PodAnnotationsCapability = fastpath.PodAnnotationsCapability
	DefaultGatewayNamespace  = fastpath.DefaultGatewayNamespace
	DefaultStateDir          = fastpath.DefaultStateDir
)

// Args are the pod's CNI_ARGS.
type Args = fastpath.Args

// ParseArgs parses CNI_ARGS as the CNI library does.
func ParseArgs(s string) (*Args, error) { return fastpath.ParseArgs(s) }

// SupportedVersions are the CNI versions vpcnat speaks.
var SupportedVersions = fastpath.SupportedVersions

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
		if err := fastpath.CheckNamespace(ns); err != nil {
			return fmt.Errorf("vpcnat: gatewayNamespaces[%d]: invalid namespace %q: %w", i, ns, err)
		}
	}
	if !filepath.IsAbs(c.StateDir) {
		return fmt.Errorf("vpcnat: stateDir: %q is not an absolute path", c.StateDir)
	}
	if c.Master != "" {
		if err := fastpath.CheckIfName(c.Master); err != nil {
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
