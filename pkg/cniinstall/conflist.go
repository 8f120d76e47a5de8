// Package cniinstall installs the vpcnat CNI plugin on a node: the binary into the CNI bin
// directory and a "vpcnat" entry at the end of the chain in the node's network configuration,
// the file the container runtime uses (the first one by name). It is idempotent: a second run
// changes nothing, and a run after the primary CNI rewrote its file puts the entry back.
package cniinstall

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/containernetworking/cni/libcni"

	"github.com/vpcnat/vpcnat/pkg/cniconf"
)

// PluginType is vpcnat's "type" in a conflist.
const PluginType = "vpcnat"

// podAnnotationsCapability makes containerd and CRI-O pass the pod's annotations to the
// plugin in runtimeConfig: without it the plugin cannot see that a pod is a gateway.
const podAnnotationsCapability = "io.kubernetes.cri.pod-annotations"

// Entry is what the installer sets in vpcnat's conflist entry. Other members of an existing
// entry that the plugin accepts (say a "master" an administrator set for this node) are kept;
// members the plugin does not accept are dropped (see Chained.Dropped): the plugin refuses a
// configuration with an unknown member, so keeping one would make every pod creation on the
// node fail.
type Entry struct {
	// GatewayNamespaces: the only namespaces whose pods can be gateways (empty: the plugin's
	// default, kube-system).
	GatewayNamespaces []string
	// StateDir: where the plugin writes attachment records for the daemon ("": its default).
	StateDir string
	// Master: this node's NIC for net1 ("": leave the entry's as it is).
	Master string
}

// Chain returns the network configuration conf with vpcnat chained last, and whether that
// differs from conf. A single-plugin configuration (.conf) becomes a conflist. supported are
// the CNI versions the plugin speaks. The list's cniVersion is never changed: the runtime
// calls every member at that version, and a primary's plugin may speak nothing newer
// (weave-net's speaks up to 0.3.x: raised to 0.4.0, every pod's ADD on the node fails with
// "incompatible CNI versions"). A list at a version the plugin does not speak is refused and
// left as it is, since chaining vpcnat into it would make every pod's ADD fail instead.
func Chain(conf []byte, e Entry, supported []string) ([]byte, bool, error) {
	c, err := ChainReport(conf, e, supported)
	if err != nil {
		return nil, false, err
	}
	return c.Conf, c.Changed, nil
}

// Chained is the outcome of ChainReport.
type Chained struct {
	// Conf is the network configuration with vpcnat chained last; Changed whether it differs
	// from the input.
	Conf    []byte
	Changed bool
	// Dropped are the members of the existing vpcnat entry that were not kept because the
	// plugin does not accept them, each saying which member, its value and why.
	Dropped []string
}

// ChainReport is Chain that also reports what it dropped from an existing vpcnat entry.
func ChainReport(conf []byte, e Entry, supported []string) (*Chained, error) {
	doc, err := parseObject(conf)
	if err != nil {
		return nil, fmt.Errorf("network configuration: %w", err)
	}
	in, err := doc.MarshalJSON()
	if err != nil {
		return nil, fmt.Errorf("network configuration: %w", err)
	}
	if _, isList := doc.get("plugins"); !isList {
		if doc, err = toList(doc); err != nil {
			return nil, err
		}
	}
	if err := checkVersion(doc, supported); err != nil {
		return nil, err
	}
	var plugins []json.RawMessage
	raw, _ := doc.get("plugins")
	if err := json.Unmarshal(raw, &plugins); err != nil {
		return nil, fmt.Errorf("network configuration: plugins: %w", err)
	}
	kept, old, err := withoutVpcnat(plugins)
	if err != nil {
		return nil, err
	}
	if err := refuseMetaPlugin(kept); err != nil {
		return nil, err
	}
	if len(kept) == 0 {
		return nil, fmt.Errorf("network configuration: no plugin before %s to chain after", PluginType)
	}
	entry, dropped, err := e.render(old)
	if err != nil {
		return nil, err
	}
	doc.set("plugins", mustRaw(append(kept, entry)))
	out, err := doc.MarshalJSON()
	if err != nil {
		return nil, err
	}
	if _, err := libcni.ConfListFromBytes(out); err != nil {
		return nil, fmt.Errorf("the chained configuration is not valid for libcni: %w", err)
	}
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, out, "", "  "); err != nil {
		return nil, err
	}
	pretty.WriteByte('\n')
	// Compare content (order included), not layout: a file that already says the same thing
	// in another layout is left alone.
	return &Chained{Conf: pretty.Bytes(), Changed: !bytes.Equal(in, out), Dropped: dropped}, nil
}

// toList turns a single-plugin configuration into a conflist of that one plugin: name and
// cniVersion stay at the top, every other field becomes the plugin's.
func toList(conf object) (object, error) {
	var plugin, list object
	for _, m := range conf {
		switch m.key {
		case "name", "cniVersion":
			list = append(list, m)
		default:
			plugin = append(plugin, m)
		}
	}
	if _, ok := plugin.get("type"); !ok {
		return nil, fmt.Errorf("network configuration: neither a conflist (plugins) nor a plugin (type)")
	}
	list.set("plugins", mustRaw([]object{plugin}))
	return list, nil
}

// ErrMetaPlugin is the error of a configuration whose plugin is Multus.
var ErrMetaPlugin = errors.New("the node's network configuration is Multus's")

// multusTypes are the types Multus's configurations carry (thin plugin, thick plugin's shim).
var multusTypes = []string{"multus", "multus-shim"}

// refuseMetaPlugin refuses to chain after Multus (docs/cni.md): Multus acts on the gateway pod's
// k8s.v1.cni.cncf.io/networks annotation itself and needs that NetworkAttachmentDefinition; the
// Multus daemon also regenerates its file, which would then exist twice. The file is left as
// it is.
func refuseMetaPlugin(plugins []json.RawMessage) error {
	for i, p := range plugins {
		var t struct {
			Type string `json:"type"`
		}
		if json.Unmarshal(p, &t) == nil && slices.Contains(multusTypes, t.Type) {
			return fmt.Errorf("network configuration: plugins[%d] has type %q: %w; %s does not chain itself after Multus "+
				"(see docs/cni.md), the file is left as it is", i, t.Type, ErrMetaPlugin, PluginType)
		}
	}
	return nil
}

// ErrVersion is the error of a configuration whose cniVersion the plugin does not speak.
var ErrVersion = errors.New("cniVersion not spoken by " + PluginType)

// checkVersion requires the list's cniVersion to be one the plugin speaks.
func checkVersion(doc object, supported []string) error {
	raw, ok := doc.get("cniVersion")
	var v string
	if ok {
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("network configuration: cniVersion: %w", err)
		}
	}
	if v == "" {
		return fmt.Errorf("network configuration: no cniVersion")
	}
	if slices.Contains(supported, v) {
		return nil
	}
	return fmt.Errorf("network configuration: cniVersion %q: %w (it speaks %v); the file is left as it is, "+
		"since the runtime calls every member of the list at its version and %s would fail every pod's ADD on the node: "+
		"set the primary CNI's cniVersion to one of those if its plugins speak it", v, ErrVersion, supported, PluginType)
}

// withoutVpcnat returns the plugins other than vpcnat, and vpcnat's existing entry (the last,
// if there are several), which is moved to the end: it extends the result every other plugin
// built, so it must come last.
func withoutVpcnat(plugins []json.RawMessage) (kept []json.RawMessage, old object, err error) {
	for i, p := range plugins {
		var t struct {
			Type string `json:"type"`
		}
		if err := json.Unmarshal(p, &t); err != nil {
			return nil, nil, fmt.Errorf("network configuration: plugins[%d]: %w", i, err)
		}
		if t.Type != PluginType {
			kept = append(kept, p)
			continue
		}
		if old, err = parseObject(p); err != nil {
			return nil, nil, fmt.Errorf("network configuration: plugins[%d]: %w", i, err)
		}
	}
	return kept, old, nil
}

// render is the entry: old's members the plugin accepts, in their order, with ours set; dropped
// says which of old's members were left out and why. The entry is then checked with the
// plugin's own rules (pkg/cniconf): an entry the plugin would refuse is an error, never written.
func (e Entry) render(old object) (json.RawMessage, []string, error) {
	var o object
	var dropped []string
	for _, m := range old {
		if cniconf.Known(m.key) {
			o = append(o, m)
			continue
		}
		dropped = append(dropped, fmt.Sprintf("member %q with value %s: the %s plugin accepts no such member%s (it would refuse the configuration and fail every pod creation on the node)",
			m.key, cniconf.Clip(m.value), PluginType, cniconf.Hint(m.key)))
	}
	o.set("type", mustRaw(PluginType))
	caps := object{}
	if raw, ok := o.get("capabilities"); ok {
		var err error
		if caps, err = parseObject(raw); err != nil {
			return nil, nil, fmt.Errorf("network configuration: %s capabilities: %w", PluginType, err)
		}
	}
	caps.set(podAnnotationsCapability, mustRaw(true))
	o.set("capabilities", mustRaw(caps))
	if len(e.GatewayNamespaces) > 0 {
		o.set("gatewayNamespaces", mustRaw(e.GatewayNamespaces))
	}
	if e.StateDir != "" {
		o.set("stateDir", mustRaw(e.StateDir))
	}
	if e.Master != "" {
		o.set("master", mustRaw(e.Master))
	}
	if err := checkEntry(o); err != nil {
		return nil, nil, fmt.Errorf("network configuration: %s entry: %w", PluginType, err)
	}
	raw, err := o.MarshalJSON()
	return raw, dropped, err
}

// checkEntry checks an entry with the plugin's rules: only members it accepts, and valid values
// of vpcnat's own members. (libcni's parse of the whole list checks the types of the standard
// members.)
func checkEntry(o object) error {
	var own cniconf.Own
	for _, m := range o {
		if !cniconf.Known(m.key) {
			return fmt.Errorf("unknown member %q with value %s%s", m.key, cniconf.Clip(m.value), cniconf.Hint(m.key))
		}
		var into any
		want := "a string"
		switch m.key {
		case "gatewayNamespaces":
			into, want = &own.GatewayNamespaces, "a list of namespace names"
		case "stateDir":
			into = &own.StateDir
		case "master":
			into = &own.Master
		default:
			continue
		}
		if err := json.Unmarshal(m.value, into); err != nil {
			return fmt.Errorf("%s: invalid value %s (want %s): %w", m.key, cniconf.Clip(m.value), want, err)
		}
	}
	if err := own.Validate(); err != nil {
		return err
	}
	return nil
}
