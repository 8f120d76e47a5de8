// Package fastpath is what the vpcnat dispatcher runs for every pod: it decides whether a CNI
// call is the normal-pod pass-through that needs nothing but the configuration, and answers it.
// It links nothing that starts slowly (no encoding/json, fmt, regexp, net or cgo): the start-up
// of the binary is most of what a chained plugin costs. Whatever it is not sure of is handed,
// unchanged, to the full plugin; so it only ever answers a call the full plugin answers the same
// way, and plugins/vpcnat-gateway's fuzz target checks exactly that against the full plugin's
// own parsing (plugins/internal/conf, encoding/json and the CNI library).
package fastpath

import (
	"errors"
	"io/fs"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/vpcnat/vpcnat/pkg/cniconf"
)

// Env is what the runtime passes in the environment (CNI spec, "Parameters").
type Env struct {
	Command, ContainerID, Netns, IfName, Args, Path, NetnsOverride string
}

// EnvFrom reads the CNI variables.
func EnvFrom(getenv func(string) string) Env {
	return Env{
		Command: getenv("CNI_COMMAND"), ContainerID: getenv("CNI_CONTAINERID"), Netns: getenv("CNI_NETNS"),
		IfName: getenv("CNI_IFNAME"), Args: getenv("CNI_ARGS"), Path: getenv("CNI_PATH"),
		NetnsOverride: getenv("CNI_NETNS_OVERRIDE"),
	}
}

// CheckNetns reports whether skel, after ADD and DEL, compares CNI_NETNS with the plugin's own
// network namespace (it does unless CNI_NETNS_OVERRIDE is "1" or "true", any case).
func (e Env) CheckNetns() bool {
	return strings.ToUpper(e.NetnsOverride) != "TRUE" && e.NetnsOverride != "1"
}

// Exists reports whether a file exists; an error wrapping fs.ErrNotExist means it does not.
type Exists func(path string) (bool, error)

// Answer answers the calls that need nothing but the configuration: ADD and DEL of a normal
// pod. handled=false means "not sure": the caller must hand the call, unchanged, to the full
// plugin, which then gives the answer (a result, or an error naming what is wrong). Answer
// handles a call only when the full plugin would succeed and do nothing else than:
//   - ADD: print prevResult (here: byte for byte as it came, already of the configuration's
//     version, so no conversion is needed);
//   - DEL: nothing, because the pod has no attachment record.
//
// Every check of the CNI library's skel and of the full plugin is made here too, or the call is
// not handled: the environment, the network name, the version, vpcnat's fields, CNI_ARGS, and
// prevResult. Gateway pods (and any pod with a record, on DEL) are never handled here.
func Answer(env Env, stdin []byte, exists Exists) (stdout []byte, handled bool) {
	switch env.Command {
	case "ADD":
		if env.Netns == "" {
			return nil, false
		}
	case "DEL":
	default: // CHECK, GC, STATUS, VERSION and anything unknown: the full plugin
		return nil, false
	}
	if !validName(env.ContainerID) || !validIfName(env.IfName) || env.Path == "" {
		return nil, false
	}
	c, ok := readConf(stdin)
	if !ok {
		return nil, false
	}
	args, err := ParseArgs(env.Args)
	if err != nil || c.isGateway(args) {
		return nil, false
	}
	if env.Command == "ADD" {
		if c.prevResult == nil { // a chained plugin without prevResult: the full plugin refuses
			return nil, false
		}
		return c.prevResult.raw, true
	}
	key := args.RecordKey()
	if !recordName(key) {
		return []byte{}, true // pkg/state writes no record of such a name
	}
	has, err := exists(filepath.Join(c.stateDir, key+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		has, err = false, nil
	}
	if err != nil || has {
		return nil, false
	}
	return []byte{}, true
}

// conf is what the fast path needs of the configuration.
type conf struct {
	version           string
	gatewayNamespaces []string
	stateDir          string
	annotations       map[string]bool // the pod's annotation keys
	prevResult        *value
}

func (c *conf) isGateway(a *Args) bool {
	if a.PodNamespace == "" || !c.annotations[GatewayKey] {
		return false
	}
	for _, ns := range c.gatewayNamespaces {
		if ns == a.PodNamespace {
			return true
		}
	}
	return false
}

// knownTopLevel: every member is one the full plugin accepts (cniconf.Known: exact case, or in
// the reserved "cni.dev/" namespace).
func knownTopLevel(o *value) bool {
	for _, k := range o.keys {
		if !cniconf.Known(k) {
			return false
		}
	}
	return true
}

// readConf reads and checks the configuration as the full plugin does; ok=false for anything
// the full plugin would refuse, and for anything this reader does not interpret exactly as
// encoding/json does (a null, a repeated member, a member name differing in case, an escape
// or a non-ASCII byte in a string whose value matters).
func readConf(stdin []byte) (*conf, bool) {
	top, err := parseJSON(stdin)
	if err != nil || top.kind != kObject || !membersOK(top, cniconf.Fields) || !knownTopLevel(top) {
		return nil, false
	}
	c := &conf{gatewayNamespaces: []string{DefaultGatewayNamespace}, stateDir: DefaultStateDir}
	for i, k := range top.keys {
		v := top.vals[i]
		ok := true
		switch k {
		case "cniVersion":
			c.version, ok = v.str()
			ok = ok && supported(c.version)
		case "name":
			var name string
			name, ok = v.str()
			ok = ok && validName(name) // skel's check of the network name
		case "type":
			ok = v.kind == kString
		case "gatewayNamespaces":
			ok = v.kind == kArray
			var nss []string
			for _, e := range v.elems {
				ns, plain := e.str()
				ok = ok && plain && cniconf.CheckNamespace(ns) == nil
				nss = append(nss, ns)
			}
			if len(nss) > 0 {
				c.gatewayNamespaces = nss
			}
		case "stateDir":
			var dir string
			dir, ok = v.str()
			if dir != "" {
				c.stateDir = dir
			}
			ok = ok && cniconf.CheckStateDir(c.stateDir) == nil
		case "master":
			var m string
			m, ok = v.str()
			ok = ok && (m == "" || cniconf.CheckIfName(m) == nil)
		case "runtimeConfig":
			ok = c.readRuntimeConfig(v)
		case "prevResult":
			c.prevResult = v
		case "capabilities":
			ok = v.kind == kObject && membersOK(v, nil)
			for _, b := range v.vals {
				ok = ok && b.kind == kBool
			}
		case "ipam":
			ok = v.kind == kObject && membersOK(v, []string{"type"}) && (v.get("type") == nil || v.get("type").kind == kString)
		case "dns":
			ok = dnsOK(v) && exactly(v, "nameservers", "domain", "search", "options")
		case "args":
			ok = v.kind == kObject && membersOK(v, nil) // its content is the runtime's, ignored
		case "cni.dev/valid-attachments":
			ok = v.kind == kArray
			for _, a := range v.elems {
				ok = ok && a.kind == kObject && exactly(a, "containerID", "ifname")
				for _, f := range []string{"containerID", "ifname"} {
					ok = ok && (a.get(f) == nil || a.get(f).kind == kString)
				}
			}
		}
		if !ok {
			return nil, false
		}
	}
	if c.version == "" {
		return nil, false // skel: no cniVersion means 0.1.0, which vpcnat does not speak
	}
	if top.get("name") == nil {
		return nil, false // skel: "missing network name"
	}
	if c.prevResult != nil && !prevResultOK(c.prevResult, c.version) {
		return nil, false
	}
	return c, true
}

func (c *conf) readRuntimeConfig(v *value) bool {
	if v.kind != kObject || !membersOK(v, []string{PodAnnotationsCapability}) {
		return false
	}
	a := v.get(PodAnnotationsCapability)
	if a == nil {
		return true
	}
	if a.kind != kObject || !membersOK(a, nil) {
		return false
	}
	c.annotations = make(map[string]bool, len(a.keys))
	for i, k := range a.keys {
		if a.vals[i].kind != kString {
			return false
		}
		c.annotations[k] = true
	}
	return true
}

// membersOK: no member is null, no name repeats, and no name differs from one of known only in
// case; with known nil, names are compared exactly (a map's keys).
func membersOK(o *value, known []string) bool {
	for i, k := range o.keys {
		if o.vals[i].kind == kNull {
			return false
		}
		for j := 0; j < i; j++ {
			if o.keys[j] == k || known != nil && strings.EqualFold(o.keys[j], k) {
				return false
			}
		}
		for _, n := range known {
			if k != n && strings.EqualFold(k, n) {
				return false
			}
		}
	}
	return true
}

func dnsOK(v *value) bool {
	fields := []string{"nameservers", "domain", "search", "options"}
	if v.kind != kObject || !membersOK(v, fields) {
		return false
	}
	for _, f := range fields {
		m := v.get(f)
		switch {
		case m == nil:
		case f == "domain":
			if m.kind != kString {
				return false
			}
		default:
			if !stringArray(m) {
				return false
			}
		}
	}
	return true
}

func stringArray(v *value) bool {
	if v.kind != kArray {
		return false
	}
	for _, e := range v.elems {
		if e.kind != kString {
			return false
		}
	}
	return true
}

// prevResultOK accepts prevResult only when it can be printed unchanged as the result of a
// configuration of version confVersion: a result of exactly that version (types/040 or
// types/100 of the CNI library), with only the members that version has, every address
// parsing, and interface indexes inside its own interface list. Everything else is for the CNI
// library to judge (convert or refuse).
func prevResultOK(r *value, confVersion string) bool {
	v1 := !strings.HasPrefix(confVersion, "0.") // 0.3.x and 0.4.0 share types/040
	if r.kind != kObject || !exactly(r, "cniVersion", "interfaces", "ips", "routes", "dns") {
		return false
	}
	if v, _ := r.get("cniVersion").str(); v != confVersion {
		return false
	}
	ifaceFields := []string{"name", "mac", "sandbox"}
	if v1 {
		ifaceFields = append(ifaceFields, "mtu", "socketPath", "pciID")
	}
	nIfaces := 0
	if ifs := r.get("interfaces"); ifs != nil {
		if ifs.kind != kArray {
			return false
		}
		for _, i := range ifs.elems {
			if i.kind != kObject || !exactly(i, ifaceFields...) {
				return false
			}
			for k, name := range i.keys {
				if ok := name == "mtu" && i.vals[k].smallInt() || name != "mtu" && i.vals[k].kind == kString; !ok {
					return false
				}
			}
		}
		nIfaces = len(ifs.elems)
	}
	ipFields := []string{"interface", "address", "gateway"}
	if !v1 {
		ipFields = append(ipFields, "version")
	}
	if ips := r.get("ips"); ips != nil {
		if ips.kind != kArray {
			return false
		}
		for _, ip := range ips.elems {
			if ip.kind != kObject || !exactly(ip, ipFields...) || !prefixOK(ip.get("address")) || !addrOK(ip.get("gateway")) {
				return false
			}
			if i := ip.get("interface"); i != nil && (!i.smallInt() || i.intValue() < 0 || i.intValue() >= nIfaces) {
				return false
			}
			if ver, _ := ip.get("version").str(); !v1 && ver != "4" && ver != "6" {
				return false
			}
		}
	}
	routeFields := []string{"dst", "gw"}
	if v1 {
		routeFields = append(routeFields, "mtu", "advmss", "priority", "table", "scope")
	}
	if routes := r.get("routes"); routes != nil {
		if routes.kind != kArray {
			return false
		}
		for _, rt := range routes.elems {
			if rt.kind != kObject || !exactly(rt, routeFields...) || !prefixOK(rt.get("dst")) || !addrOK(rt.get("gw")) {
				return false
			}
			for k, name := range rt.keys {
				if name != "dst" && name != "gw" && !rt.vals[k].smallInt() {
					return false
				}
			}
		}
	}
	if dns := r.get("dns"); dns != nil && !dnsOK(dns) {
		return false
	}
	return true
}

// exactly: membersOK, and every member is one of names (encoding/json with unknown fields
// disallowed, and exact case).
func exactly(o *value, names ...string) bool {
	if !membersOK(o, names) {
		return false
	}
	for _, k := range o.keys {
		found := false
		for _, n := range names {
			found = found || k == n
		}
		if !found {
			return false
		}
	}
	return true
}

// addrOK accepts an absent member, "" (which net.IP decodes as no address), or what
// net.ParseIP accepts, or less: IPv4 and IPv6 without a zone.
func addrOK(v *value) bool {
	if v == nil {
		return true
	}
	s, ok := v.str()
	if !ok {
		return false
	}
	if s == "" {
		return true
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Zone() == ""
}

// prefixOK accepts what net.ParseCIDR accepts, or less; the member is required.
func prefixOK(v *value) bool {
	s, ok := v.str()
	if !ok {
		return false
	}
	i := strings.LastIndexByte(s, '/')
	if i <= 0 {
		return false
	}
	if a, err := netip.ParseAddr(s[:i]); err != nil || a.Zone() != "" {
		return false
	}
	_, err := netip.ParsePrefix(s)
	return err == nil
}
