// Package conf parses the vpcnat CNI plugin's configuration (its conflist entry with the
// runtime's pod annotations in runtimeConfig, and prevResult kept as raw JSON), as the full
// plugin (vpcnat-gateway) reads it: strictly and case-sensitively (a member name that differs
// from a known one, even only in case, is refused, as is a repeated one), every error naming the
// field and its value. The checks of single values and CNI_ARGS are
// plugins/internal/fastpath's, which the small vpcnat dispatcher runs for every pod, so the two
// cannot disagree about what a value means.
//
// Which members are accepted (the list is pkg/cniconf's, shared with the dispatcher and the
// installer; CNI spec, "Network configuration" and "Plugin configuration
// objects": a plugin may refuse fields it does not know, except inside args and runtimeConfig):
//   - vpcnat's own: gatewayNamespaces, stateDir, master;
//   - what the spec defines for every plugin and a runtime or libcni puts there: cniVersion,
//     name, type, capabilities, ipam, dns, args, prevResult, runtimeConfig and
//     cni.dev/valid-attachments (GC); any other member of the spec's reserved "cni.dev/"
//     namespace is ignored too (a newer libcni may add one, and it cannot be a typo of ours);
//   - inside runtimeConfig, only io.kubernetes.cri.pod-annotations is read: other capabilities
//     are ignored, as the spec requires; args and ipam's members other than type are not
//     vpcnat's and are ignored.
//
// Anything else at the top level (a typo such as "Master" or "statedir", or a field of another
// plugin such as ipMasq that vpcnat does not implement) is refused: silently ignoring it would put
// net1 on the wrong NIC or the records in the wrong directory.
package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/containernetworking/cni/pkg/types"
	sigsjson "sigs.k8s.io/json"

	"github.com/vpcnat/vpcnat/pkg/cniconf"
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
	// StateDir holds the attachment records the daemon reads (default /run/vpcnat): an
	// absolute, clean path.
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

// ReservedPrefix is the spec's namespace of member names ("cni.dev/..."): accepted and, except
// cni.dev/valid-attachments, ignored.
const ReservedPrefix = cniconf.ReservedPrefix

// ValidAttachmentsKey is the member libcni adds for GC.
const ValidAttachmentsKey = cniconf.ValidAttachmentsKey

// Parse decodes and validates the configuration, filling in the defaults. prevResult is kept as
// raw JSON (it must be an object or absent); the full plugin parses it with the CNI library.
func Parse(stdin []byte) (*Conf, error) {
	c, _, err := ParsePluginConf(stdin)
	return c, err
}

// ParsePluginConf is Parse that also returns the CNI library's view of the standard members
// (version, name, type, capabilities, ipam type, dns, prevResult as raw JSON, and GC's valid
// attachments), filled from the same strictly decoded members.
func ParsePluginConf(stdin []byte) (*Conf, *types.PluginConf, error) {
	members, err := readObject(stdin)
	if err != nil {
		return nil, nil, fmt.Errorf("vpcnat: invalid network configuration JSON: %w", err)
	}
	c := &Conf{}
	pc := &types.PluginConf{}
	for _, m := range members {
		if bytes.Equal(m.raw, []byte("null")) {
			continue // as encoding/json: null leaves the field at its zero value
		}
		switch m.key {
		case "cniVersion":
			err = decode(m.key, m.raw, &c.CNIVersion, "a string")
		case "name":
			err = decode(m.key, m.raw, &c.Name, "a string")
		case "type":
			err = decode(m.key, m.raw, &c.Type, "a string")
		case "gatewayNamespaces":
			err = decode(m.key, m.raw, &c.GatewayNamespaces, "a list of namespace names")
		case "stateDir":
			err = decode(m.key, m.raw, &c.StateDir, "a string")
		case "master":
			err = decode(m.key, m.raw, &c.Master, "a string")
		case "runtimeConfig":
			err = c.readRuntimeConfig(m.raw)
		case "prevResult":
			if m.raw[0] != '{' {
				return nil, nil, fmt.Errorf("vpcnat: prevResult: not a JSON object: %s", cniconf.Clip(m.raw))
			}
			c.PrevResult = m.raw
			if err = json.Unmarshal(m.raw, &pc.RawPrevResult); err != nil {
				err = fmt.Errorf("vpcnat: prevResult: invalid value %s: %w", cniconf.Clip(m.raw), err)
			}
		case "capabilities":
			err = decode(m.key, m.raw, &pc.Capabilities, "an object of capability names to true or false")
		case "ipam":
			var ipam map[string]json.RawMessage // the IPAM plugin's; vpcnat reads only its type
			if err = decode(m.key, m.raw, &ipam, "an object"); err == nil && ipam["type"] != nil {
				err = decode("ipam.type", ipam["type"], &pc.IPAM.Type, "a string")
			}
		case "dns":
			err = decode(m.key, m.raw, &pc.DNS, "an object with nameservers, domain, search and options")
		case "args":
			var args map[string]json.RawMessage // the runtime's; vpcnat reads none of it
			err = decode(m.key, m.raw, &args, "an object")
		case ValidAttachmentsKey:
			err = decode(m.key, m.raw, &pc.ValidAttachments, "a list of {containerID, ifname}")
		default:
			if !cniconf.Known(m.key) {
				return nil, nil, unknownField(m.key, m.raw)
			}
		}
		if err != nil {
			return nil, nil, err
		}
	}
	if len(c.GatewayNamespaces) == 0 {
		c.GatewayNamespaces = []string{DefaultGatewayNamespace}
	}
	if c.StateDir == "" {
		c.StateDir = DefaultStateDir
	}
	if err := c.Validate(); err != nil {
		return nil, nil, err
	}
	pc.CNIVersion, pc.Name, pc.Type = c.CNIVersion, c.Name, c.Type
	return c, pc, nil
}

func unknownField(key string, raw json.RawMessage) error {
	return fmt.Errorf("vpcnat: network configuration: unknown field %q with value %s%s", key, cniconf.Clip(raw), cniconf.Hint(key))
}

func (c *Conf) readRuntimeConfig(raw json.RawMessage) error {
	var rc map[string]json.RawMessage // unknown capabilities are ignored (CNI spec)
	if err := decode("runtimeConfig", raw, &rc, "an object"); err != nil {
		return err
	}
	a, ok := rc[PodAnnotationsCapability]
	if !ok || bytes.Equal(a, []byte("null")) {
		return nil
	}
	path := "runtimeConfig." + PodAnnotationsCapability
	var annots map[string]json.RawMessage
	if err := decode(path, a, &annots, "an object of annotation names to strings"); err != nil {
		return err
	}
	c.RuntimeConfig.PodAnnotations = make(map[string]string, len(annots))
	for k, v := range annots {
		var s string
		if err := decode(fmt.Sprintf("%s[%q]", path, k), v, &s, "a string"); err != nil {
			return err
		}
		c.RuntimeConfig.PodAnnotations[k] = s
	}
	return nil
}

type member struct {
	key string
	raw json.RawMessage
}

// readObject splits a JSON object into its members, in order, refusing a repeated name and
// anything after the object.
func readObject(b []byte) ([]member, error) {
	d := json.NewDecoder(bytes.NewReader(b))
	if t, err := d.Token(); err != nil {
		return nil, err
	} else if t != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object: %s", cniconf.Clip(b))
	}
	var ms []member
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		if err != nil {
			return nil, err
		}
		key, _ := t.(string)
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return nil, fmt.Errorf("field %q: %w", key, err)
		}
		if seen[key] {
			return nil, fmt.Errorf("duplicate field %q (value %s)", key, cniconf.Clip(raw))
		}
		seen[key] = true
		ms = append(ms, member{key, raw})
	}
	if _, err := d.Token(); err != nil { // the closing brace
		return nil, err
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, fmt.Errorf("data after the top-level object: %s", cniconf.Clip(b[d.InputOffset():]))
	}
	return ms, nil
}

// decode decodes one member strictly (exact case; unknown and duplicate fields are errors).
func decode(path string, raw json.RawMessage, into any, want string) error {
	strict, err := sigsjson.UnmarshalStrict(raw, into)
	if err == nil && len(strict) > 0 {
		err = errors.Join(strict...)
	}
	if err != nil {
		return fmt.Errorf("vpcnat: %s: invalid value %s (want %s): %w", path, cniconf.Clip(raw), want, err)
	}
	return nil
}

// Validate checks vpcnat's own fields (after defaulting), each error naming the field and value
// (the rules are pkg/cniconf's, which the installer checks the entries it writes with).
func (c *Conf) Validate() error {
	own := cniconf.Own{GatewayNamespaces: c.GatewayNamespaces, StateDir: c.StateDir, Master: c.Master}
	if c.StateDir == "" {
		// Parse defaults it; a Conf built by hand must still name one.
		return fmt.Errorf("vpcnat: stateDir: %w", cniconf.CheckStateDir(c.StateDir))
	}
	if err := own.Validate(); err != nil {
		return fmt.Errorf("vpcnat: %w", err)
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
