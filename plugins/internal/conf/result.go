package conf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// SupportedVersions are the CNI versions vpcnat speaks.
var SupportedVersions = []string{"0.4.0", "1.0.0", "1.1.0"}

func supported(v string) bool {
	for _, s := range SupportedVersions {
		if s == v {
			return true
		}
	}
	return false
}

// result mirrors the CNI library's results of versions 0.4.0 and 1.x (types/040, types/100),
// field for field with the same JSON types; address fields are kept as text and checked by
// checkResult. Decoding refuses unknown fields, so anything this mirror does not know is left to
// the CNI library (the full plugin).
type result struct {
	CNIVersion string `json:"cniVersion,omitempty"`
	Interfaces []*struct {
		Name       string `json:"name"`
		Mac        string `json:"mac,omitempty"`
		Mtu        int    `json:"mtu,omitempty"` // 1.x only
		Sandbox    string `json:"sandbox,omitempty"`
		SocketPath string `json:"socketPath,omitempty"` // 1.x only
		PciID      string `json:"pciID,omitempty"`      // 1.x only
	} `json:"interfaces,omitempty"`
	IPs []*struct {
		Version   string  `json:"version"` // 0.4.0 only
		Interface *int    `json:"interface,omitempty"`
		Address   *string `json:"address"`
		Gateway   *string `json:"gateway,omitempty"`
	} `json:"ips,omitempty"`
	Routes []*struct {
		Dst      *string `json:"dst"`
		GW       *string `json:"gw,omitempty"`
		MTU      int     `json:"mtu,omitempty"`
		AdvMSS   int     `json:"advmss,omitempty"`
		Priority int     `json:"priority,omitempty"`
		Table    *int    `json:"table,omitempty"`
		Scope    *int    `json:"scope,omitempty"`
	} `json:"routes,omitempty"`
	DNS dns `json:"dns,omitempty"`
}

// CheckPrevResult accepts prevResult only when it can be printed unchanged as the result of a
// configuration of version confVersion: a result of exactly that version, whose every field
// this mirror knows, whose addresses parse, and whose interface indexes point into its own
// interface list. Everything else is for the CNI library to judge (convert or refuse).
func CheckPrevResult(raw json.RawMessage, confVersion string) error {
	var r result
	d := json.NewDecoder(bytes.NewReader(raw))
	d.DisallowUnknownFields()
	if err := d.Decode(&r); err != nil {
		return fmt.Errorf("prevResult: %w", err)
	}
	if d.More() {
		return fmt.Errorf("prevResult: data after the object")
	}
	if r.CNIVersion != confVersion {
		return fmt.Errorf("prevResult: cniVersion %q differs from the configuration's %q", r.CNIVersion, confVersion)
	}
	v1 := confVersion != "0.4.0"
	for i, ifc := range r.Interfaces {
		if ifc == nil {
			return fmt.Errorf("prevResult: interfaces[%d] is null", i)
		}
		if !v1 && (ifc.Mtu != 0 || ifc.SocketPath != "" || ifc.PciID != "") {
			return fmt.Errorf("prevResult: interfaces[%d]: fields of a newer version in a 0.4.0 result", i)
		}
	}
	for i, ip := range r.IPs {
		if ip == nil || ip.Address == nil {
			return fmt.Errorf("prevResult: ips[%d]: no address", i)
		}
		if !checkPrefix(*ip.Address) || ip.Gateway != nil && !checkAddr(*ip.Gateway) {
			return fmt.Errorf("prevResult: ips[%d]: unparsable address or gateway", i)
		}
		if v1 && ip.Version != "" {
			return fmt.Errorf("prevResult: ips[%d]: version is a 0.4.0 field", i)
		}
		if !v1 && ip.Version != "4" && ip.Version != "6" {
			return fmt.Errorf("prevResult: ips[%d]: version %q", i, ip.Version)
		}
		if ip.Interface != nil && (*ip.Interface < 0 || *ip.Interface >= len(r.Interfaces)) {
			return fmt.Errorf("prevResult: ips[%d]: interface %d is not in interfaces", i, *ip.Interface)
		}
	}
	for i, rt := range r.Routes {
		if rt == nil || rt.Dst == nil || !checkPrefix(*rt.Dst) || rt.GW != nil && !checkAddr(*rt.GW) {
			return fmt.Errorf("prevResult: routes[%d]: unparsable destination or gateway", i)
		}
		if !v1 && (rt.MTU != 0 || rt.AdvMSS != 0 || rt.Priority != 0 || rt.Table != nil || rt.Scope != nil) {
			return fmt.Errorf("prevResult: routes[%d]: fields of a newer version in a 0.4.0 result", i)
		}
	}
	return nil
}

// checkAddr accepts what net.ParseIP accepts (and "", which net.IP decodes as no address), or
// less: dotted IPv4 and IPv6 without a zone.
func checkAddr(s string) bool {
	if s == "" {
		return true
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// checkPrefix accepts what net.ParseCIDR accepts, or less.
func checkPrefix(s string) bool {
	i := strings.LastIndexByte(s, '/')
	if i < 0 || !checkAddr(s[:i]) || s[:i] == "" {
		return false
	}
	_, err := netip.ParsePrefix(s)
	return err == nil
}
