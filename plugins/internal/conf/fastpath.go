package conf

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"strings"
	"unicode"
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

// RecordLookup reports whether the pod's attachment record exists: (false, nil) when there is
// none (an error wrapping fs.ErrNotExist or ErrNoSuchRecord counts as none).
type RecordLookup func(stateDir, key string) (bool, error)

// ErrNoSuchRecord is what a RecordLookup may return for a key that cannot name a record.
var ErrNoSuchRecord = errors.New("no such record")

// FastPath answers the calls that need nothing but the configuration: ADD and DEL of a normal
// pod. handled=false means "not sure": the caller must hand the call, unchanged, to the full
// plugin, which then gives the answer (a result, or an error naming what is wrong). So FastPath
// handles a call only when the full plugin would succeed and do nothing else than:
//   - ADD: print prevResult (here: byte for byte as it came, already of the configuration's
//     version, so no conversion is needed);
//   - DEL: nothing, because the pod has no attachment record.
//
// Every check of the CNI library's skel and of the full plugin is made here too, or the call is
// not handled: the environment, the network name, the version, vpcnat's fields, CNI_ARGS, and
// prevResult. Gateway pods (and any pod with a record, on DEL) are never handled here.
func FastPath(env Env, stdin []byte, lookup RecordLookup) (stdout []byte, handled bool) {
	switch env.Command {
	case "ADD":
		if env.Netns == "" {
			return nil, false
		}
	case "DEL":
	default: // CHECK, GC, STATUS, VERSION and anything unknown: the full plugin
		return nil, false
	}
	if validContainerID(env.ContainerID) != nil || validIfName(env.IfName) != nil || env.Path == "" {
		return nil, false
	}
	c, err := Parse(stdin)
	if err != nil || !supported(c.CNIVersion) || validName(c.Name) != nil || duplicateKeys(stdin) {
		return nil, false
	}
	args, err := ParseArgs(env.Args)
	if err != nil || c.IsGateway(args) {
		return nil, false
	}
	if c.PrevResult != nil && CheckPrevResult(c.PrevResult, c.CNIVersion) != nil {
		return nil, false
	}
	if env.Command == "ADD" {
		if c.PrevResult == nil { // a chained plugin without prevResult: the full plugin refuses
			return nil, false
		}
		return c.PrevResult, true
	}
	has, err := lookup(c.StateDir, args.RecordKey())
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrNoSuchRecord) {
		has, err = false, nil
	}
	if err != nil || has {
		return nil, false
	}
	return []byte{}, true
}

// duplicateKeys reports whether the configuration object repeats a key (comparing as
// encoding/json matches field names, case-insensitively): decoders differ in what they make of
// a repeated prevResult (the CNI library merges the two objects into one map).
func duplicateKeys(stdin []byte) bool {
	d := json.NewDecoder(bytes.NewReader(stdin))
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return true
	}
	seen := map[string]bool{}
	for d.More() {
		t, err := d.Token()
		k, ok := t.(string)
		if err != nil || !ok {
			return true
		}
		k = strings.ToLower(k)
		if seen[k] {
			return true
		}
		seen[k] = true
		var skip json.RawMessage
		if err := d.Decode(&skip); err != nil {
			return true
		}
	}
	return false
}

// The checks of the CNI library's skel and utils packages (CNI_CONTAINERID, CNI_IFNAME, the
// network name), written out: their regexp costs start-up time.

func validName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '.' && c != '-') {
			return errors.New("invalid character")
		}
	}
	return nil
}

func validContainerID(s string) error { return validName(s) }

func validIfName(s string) error {
	if s == "" || len(s) > MaxIfNameLen || s == "." || s == ".." {
		return errors.New("invalid interface name")
	}
	for _, r := range s {
		if r == '/' || r == ':' || unicode.IsSpace(r) {
			return errors.New("invalid interface name")
		}
	}
	return nil
}
