// Tests of the plugin through libcni with a real conflist: the upstream bridge + host-local
// plugins, then vpcnat (the dispatcher, with this full plugin built next to it), for each CNI
// version, run inside a simulated node namespace.
//
// Address plan: primary pod network 203.0.113.128/25 (bridge cni0 in the node namespace); the
// gateway's subnet NIC holds the seed's 10.0.1.1/24 and 10.0.1.254/24 on node bridge br-sn; the
// node's eth1 (net1's master) is a veth into an otherwise empty namespace.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

var pluginPaths []string

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" || flag.Lookup("test.fuzzworker").Value.String() == "true" {
		os.Exit(m.Run()) // fuzzing FuzzConfig: no plugin binaries needed
	}
	if os.Geteuid() != 0 {
		fmt.Println("skipping the plugin's namespace tests: not root")
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "vpcnat-plugin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if pluginPaths, err = cnichain.PluginDirs(repoRoot(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

var versions = []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"}

// hasCheck: CHECK exists from CNI 0.4.0 on (libcni refuses it for older lists).
func hasCheck(v string) bool { return !strings.HasPrefix(v, "0.3.") }

type harness struct {
	t     *testing.T
	topo  *topo.Topology
	chain *cnichain.Chain
	pods  int
}

// newHarness builds a node namespace (eth1 + bridge br-sn) and a chain running there.
func newHarness(t *testing.T) *harness {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	tp := &topo.Topology{Prefix: topo.NewPrefix()}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Error(err)
		}
	})
	for _, step := range []func() error{
		func() error { return tp.AddNS(topo.Node) },
		func() error { return tp.AddNS(topo.Ext) },
		func() error { return tp.Veth(topo.Node, "eth1", topo.Ext, "p-node") },
		func() error { return tp.Bridge(topo.Node, "br-sn") },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	return &harness{t: t, topo: tp, chain: cnichain.New(tp, pluginPaths, t.TempDir())}
}

// pod makes a pod namespace and its identity.
func (h *harness) pod(namespace string, annots map[string]string) cnichain.Pod {
	h.t.Helper()
	h.pods++
	role := fmt.Sprintf("pod%d", h.pods)
	if err := h.topo.AddNS(role); err != nil {
		h.t.Fatal(err)
	}
	return cnichain.Pod{Role: role, Namespace: namespace, Name: "vpc-nat-gw-ngw-" + role,
		UID: fmt.Sprintf("uid-%s-%d", h.topo.Prefix, h.pods), ContainerID: fmt.Sprintf("ctr-%s-%d", h.topo.Prefix, h.pods), Annotations: annots}
}

func (h *harness) list(version string) *libcni.NetworkConfigList {
	h.t.Helper()
	l, err := h.chain.ConfList(version, true, "")
	if err != nil {
		h.t.Fatal(err)
	}
	return l
}

// gatewayAnnotations are the seed gateway's pod template annotations, net1 on the node's eth1.
func gatewayAnnotations(t *testing.T) map[string]string { return gatewayAnnotationsFor(t, "") }

// gatewayAnnotationsFor is gatewayAnnotations for a gateway of another name (another net1 MAC:
// two macvlans on one master cannot share a MAC).
func gatewayAnnotationsFor(t *testing.T, name string) map[string]string {
	t.Helper()
	in, err := plan.LoadFile(filepath.Join(repoRoot(), "examples", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if name != "" {
		in.Gateway.Name = name
	}
	in.Config.NIC = "eth1"
	nics, _, errs := plan.Build(in)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	a, err := plan.TemplateAnnotations(nics, "ovn-vpc-external-network")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// links lists the link names in a role's namespace, in ifindex order.
func (h *harness) links(role string) string {
	h.t.Helper()
	out, err := h.topo.Exec(role, "ip", "-j", "link", "show")
	if err != nil {
		h.t.Fatal(err)
	}
	var links []struct {
		IfName string `json:"ifname"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		h.t.Fatalf("ip -j link show: %v\n%s", err, out)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.IfName)
	}
	return strings.Join(names, " ")
}

func (h *harness) addrs(role, ifname string) string {
	h.t.Helper()
	out, err := h.topo.Exec(role, "ip", "-o", "-4", "addr", "show", "dev", ifname)
	if err != nil {
		return "error: " + err.Error()
	}
	return out
}

// macvlansOnNode counts macvlans in the node namespace (ours are created directly inside pods,
// so the node must never hold one).
func (h *harness) macvlansOnNode() int {
	out, _ := h.topo.Exec(topo.Node, "ip", "-o", "link", "show", "type", "macvlan")
	return len(strings.Fields(out))
}

func interfaceNames(t *testing.T, res types.Result) []string {
	t.Helper()
	r, err := current.NewResultFromResult(res)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, i := range r.Interfaces {
		names = append(names, i.Name)
	}
	return names
}

func resultJSON(t *testing.T, res types.Result) map[string]any {
	t.Helper()
	b, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// run executes the plugin binary directly (no libcni), for config-level tests.
func run(t *testing.T, command, stdin string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(pluginPaths[0], "vpcnat"))
	cmd.Env = append([]string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=c1", "CNI_NETNS=/var/run/netns/none",
		"CNI_IFNAME=eth0", "CNI_PATH=" + strings.Join(pluginPaths, ":")}, env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}
