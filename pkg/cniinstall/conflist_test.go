package cniinstall

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// supported is what vpcnat answers to VERSION today (install_test checks against the binary).
var supported = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

var entry = Entry{GatewayNamespaces: []string{"kube-system"}, StateDir: "/run/vpcnat"}

// samples are the default configurations of the primary CNIs and runtimes people run, as they
// write them (testdata/README.md says where each comes from).
var samples = []string{"10-flannel.conflist", "10-calico.conflist", "05-cilium.conflist", "01-kube-ovn.conflist",
	"10-antrea.conflist", "10-weave.conflist", "10-containerd-net.conflist", "10-bridge.conf"}

// TestChainSamples: each primary's default configuration (and a single-plugin .conf) comes out
// as a conflist libcni loads, at the input's cniVersion, with every primary plugin kept byte for
// byte in its place, vpcnat last with the pod-annotations capability; a second run changes
// nothing; the output is the golden file.
func TestChainSamples(t *testing.T) {
	for _, name := range samples {
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			out, changed, err := Chain(in, entry, supported)
			if err != nil {
				t.Fatal(err)
			}
			if !changed {
				t.Error("first run reported no change")
			}
			list, err := libcni.ConfListFromBytes(out)
			if err != nil {
				t.Fatalf("result not loadable by libcni: %v\n%s", err, out)
			}
			last := list.Plugins[len(list.Plugins)-1]
			if last.Network.Type != PluginType || !last.Network.Capabilities[podAnnotationsCapability] {
				t.Errorf("last plugin is %+v, want vpcnat with %s", last.Network, podAnnotationsCapability)
			}
			// libcni re-encodes what it parsed; the file's own bytes are what must be kept.
			want, have := primaries(t, in), primaries(t, out)
			if got := len(have) - 1; got != len(want) {
				t.Fatalf("%d plugins before vpcnat, want %d", got, len(want))
			}
			for i, p := range want {
				if got := have[i]; got != p {
					t.Errorf("plugin %d changed:\n got %s\nwant %s", i, got, p)
				}
			}
			if want := cniVersion(t, in); list.CNIVersion != want {
				t.Errorf("cniVersion %s, want the input's %s", list.CNIVersion, want)
			}
			again, changed, err := Chain(out, entry, supported)
			if err != nil || changed || !bytes.Equal(again, out) {
				t.Errorf("second run: changed=%v err=%v, output differs: %v", changed, err, !bytes.Equal(again, out))
			}
			golden(t, name+".golden", out)
		})
	}
}

// primaries are the compact plugin entries of a conflist, or the plugin of a .conf without
// name and cniVersion.
func primaries(t *testing.T, in []byte) []string {
	t.Helper()
	doc, err := parseObject(in)
	if err != nil {
		t.Fatal(err)
	}
	raw, ok := doc.get("plugins")
	if !ok {
		doc.del("name")
		doc.del("cniVersion")
		b, _ := doc.MarshalJSON()
		return []string{string(b)}
	}
	var ps []json.RawMessage
	if err := json.Unmarshal(raw, &ps); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range ps {
		out = append(out, compact(t, p))
	}
	return out
}

func cniVersion(t *testing.T, conf []byte) string {
	t.Helper()
	var v struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(conf, &v); err != nil {
		t.Fatal(err)
	}
	return v.CNIVersion
}

func compact(t *testing.T, b []byte) string {
	t.Helper()
	var buf bytes.Buffer
	if err := json.Compact(&buf, b); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("output differs from %s:\n%s", path, got)
	}
}

// TestChainExistingEntry: an existing vpcnat entry that is not last, with a stale stateDir, no
// capability and an administrator's per-node master, is moved last and updated; the master is
// kept, members the plugin does not accept are dropped (and reported, with a hint for one that
// differs only in case), and duplicates collapse into one entry.
func TestChainExistingEntry(t *testing.T) {
	in := `{"cniVersion":"1.0.0","name":"n","plugins":[
	  {"type":"vpcnat","stateDir":"/old"},
	  {"type":"bridge","bridge":"cni0"},
	  {"type":"vpcnat","stateDir":"/tmp/x","master":"ens5","custom":{"a":1},"StateDir":"/y","cni.dev/future":1,"args":{"x":1}},
	  {"type":"portmap","capabilities":{"portMappings":true}}]}`
	c, err := ChainReport([]byte(in), entry, supported)
	if err != nil || !c.Changed {
		t.Fatalf("chained=%+v err=%v", c, err)
	}
	list, err := libcni.ConfListFromBytes(c.Conf)
	if err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, p := range list.Plugins {
		types = append(types, p.Network.Type)
	}
	if got := strings.Join(types, ","); got != "bridge,portmap,vpcnat" {
		t.Errorf("chain %s, want bridge,portmap,vpcnat", got)
	}
	got := primaries(t, c.Conf)[2]
	want := `{"type":"vpcnat","stateDir":"/run/vpcnat","master":"ens5","cni.dev/future":1,"args":{"x":1},` +
		`"capabilities":{"io.kubernetes.cri.pod-annotations":true},"gatewayNamespaces":["kube-system"]}`
	if got != want {
		t.Errorf("entry\n got %s\nwant %s", got, want)
	}
	if len(c.Dropped) != 2 || !strings.Contains(c.Dropped[0], `"custom" with value {"a":1}`) ||
		!strings.Contains(c.Dropped[1], `"StateDir" with value "/y"`) || !strings.Contains(c.Dropped[1], `did you mean "stateDir"`) {
		t.Errorf("dropped %q, want custom and StateDir (with a hint), each with its value", c.Dropped)
	}
	// The plain Chain drops the same, and a second run over its output changes nothing.
	out, _, err := Chain([]byte(in), entry, supported)
	if err != nil || !bytes.Equal(out, c.Conf) {
		t.Fatalf("Chain: %v\n%s", err, out)
	}
	again, err := ChainReport(out, entry, supported)
	if err != nil || again.Changed || len(again.Dropped) != 0 {
		t.Errorf("second run: %+v, %v", again, err)
	}
}

// TestChainRefusesInvalidEntry: an entry whose own members the plugin would refuse (kept from
// the node's file or set by the installer's options) is not written; the error names the member
// and the value.
func TestChainRefusesInvalidEntry(t *testing.T) {
	list := func(vpcnat string) []byte {
		return []byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"bridge"},{"type":"vpcnat"` + vpcnat + `}]}`)
	}
	for _, c := range []struct {
		name  string
		in    []byte
		entry Entry
		want  string
	}{
		{"kept master invalid", list(`,"master":"eth0/../x"`), entry, `master: invalid value "eth0/../x"`},
		{"kept master not a string", list(`,"master":5`), entry, `master: invalid value 5`},
		{"kept namespaces invalid", list(`,"gatewayNamespaces":["Kube_System"]`), Entry{}, `gatewayNamespaces[0]: invalid namespace "Kube_System"`},
		{"option stateDir relative", list(``), Entry{StateDir: "run/vpcnat"}, `stateDir: "run/vpcnat" is not an absolute path`},
		{"option master invalid", list(``), Entry{Master: "a b"}, `master: invalid value "a b"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := ChainReport(c.in, c.entry, supported)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want one containing %q", err, c.want)
			}
			if out != nil {
				t.Errorf("output produced: %s", out.Conf)
			}
		})
	}
	// A valid master an administrator set is kept when the options set none.
	c, err := ChainReport(list(`,"master":"ens5"`), Entry{}, supported)
	if err != nil || !strings.Contains(string(c.Conf), `"master": "ens5"`) {
		t.Errorf("valid kept master: %v\n%v", err, c)
	}
}

// TestChainKeepsValues: numbers and string escapes of the primary's configuration survive
// untouched (a float64 round trip would turn 9007199254740993 into ...992).
func TestChainKeepsValues(t *testing.T) {
	in := `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"x","big":9007199254740993,"f":1.50,"s":"a\u0026b"}]}`
	out, _, err := Chain([]byte(in), entry, supported)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"9007199254740993", "1.50", `"a\u0026b"`} {
		if !strings.Contains(string(out), s) {
			t.Errorf("%s lost:\n%s", s, out)
		}
	}
}

// TestChainRefuses: what cannot be chained safely is refused with a message saying why, and
// nothing is produced.
func TestChainRefuses(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"not json", `{"plugins": [`, "network configuration"},
		{"array", `[]`, "not a JSON object"},
		{"trailing data", `{"cniVersion":"1.0.0","name":"n","type":"bridge"} {}`, "data after"},
		{"neither list nor plugin", `{"cniVersion":"1.0.0","name":"n"}`, "neither a conflist"},
		{"no version", `{"name":"n","plugins":[{"type":"bridge"}]}`, "no cniVersion"},
		{"newer version", `{"cniVersion":"9.0.0","name":"n","plugins":[{"type":"bridge"}]}`, `cniVersion "9.0.0"`},
		{"only vpcnat", `{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"vpcnat"}]}`, "no plugin before"},
		{"plugins not a list", `{"cniVersion":"1.0.0","name":"n","plugins":{"type":"bridge"}}`, "plugins"},
		{"no name", `{"cniVersion":"1.0.0","plugins":[{"type":"bridge"}]}`, "not valid for libcni"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, _, err := Chain([]byte(c.in), entry, supported)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want one containing %q", err, c.want)
			}
			if out != nil {
				t.Errorf("output produced: %s", out)
			}
		})
	}
}

// TestChainVersion: the list's cniVersion is never changed (the runtime calls every member at
// it, and a primary may speak nothing newer); a version the plugin does not speak, older or
// newer, is refused with ErrVersion, naming the version and what the plugin speaks.
func TestChainVersion(t *testing.T) {
	for _, v := range supported {
		in := `{"cniVersion":"` + v + `","name":"n","plugins":[{"type":"bridge"}]}`
		out, _, err := Chain([]byte(in), entry, supported)
		if err != nil {
			t.Fatalf("%s: %v", v, err)
		}
		list, err := libcni.ConfListFromBytes(out)
		if err != nil {
			t.Fatal(err)
		}
		if list.CNIVersion != v {
			t.Errorf("cniVersion %s -> %s, want it kept", v, list.CNIVersion)
		}
	}
	for _, v := range []string{"0.1.0", "0.2.0", "1.2.0"} {
		in := `{"cniVersion":"` + v + `","name":"n","plugins":[{"type":"bridge"}]}`
		_, _, err := Chain([]byte(in), entry, supported)
		if !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), `"`+v+`"`) || !strings.Contains(err.Error(), "0.3.0") {
			t.Errorf("cniVersion %s: %v, want ErrVersion naming it and the versions spoken", v, err)
		}
	}
}

// TestChainRefusesMultus: a node whose first configuration is Multus's (the thin plugin's .conf
// or the thick plugin's shim) is refused with ErrMetaPlugin naming the type: vpcnat does not
// chain itself after Multus (docs/cni.md).
func TestChainRefusesMultus(t *testing.T) {
	for _, typ := range []string{"multus", "multus-shim"} {
		in := `{"cniVersion":"0.3.1","name":"multus-cni-network","type":"` + typ + `","clusterNetwork":"/host/etc/cni/net.d/10-calico.conflist"}`
		_, _, err := Chain([]byte(in), entry, supported)
		if !errors.Is(err, ErrMetaPlugin) || !strings.Contains(err.Error(), `"`+typ+`"`) {
			t.Errorf("%s: %v, want ErrMetaPlugin naming the type", typ, err)
		}
	}
}
