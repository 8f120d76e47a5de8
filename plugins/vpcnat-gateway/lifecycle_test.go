package main

import (
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

// TestIdempotency: ADD twice, DEL twice, DEL without ADD, DEL after the netns is gone, and GC
// keeping only the valid attachments.
func TestIdempotency(t *testing.T) {
	h := newHarness(t)
	list := h.list("1.1.0")
	annots := gatewayAnnotations(t)

	a := h.pod("kube-system", annots)
	if _, err := h.chain.Add(list, a); err != nil {
		t.Fatal(err)
	}
	// A second ADD of vpcnat (the runtime retrying): the same config and prevResult again. The
	// upstream bridge plugin refuses a second ADD itself, so vpcnat is invoked alone.
	if _, err := h.chain.Add(list, a); err == nil {
		t.Fatal("the bridge plugin accepted a second ADD; the test assumption is wrong")
	}
	cached, err := h.chain.CNI.GetNetworkListCachedResult(list, h.chain.Runtime(a))
	if err != nil || cached == nil {
		t.Fatalf("no cached result: %v", err)
	}
	prev, _ := json.Marshal(cached)
	annotsJSON, _ := json.Marshal(annots)
	conf := `{"cniVersion":"1.1.0","name":"k8s-pod-network","type":"vpcnat","stateDir":"` + h.chain.StateDir +
		`","prevResult":` + string(prev) + `,"runtimeConfig":{"io.kubernetes.cri.pod-annotations":` + string(annotsJSON) + `}}`
	var out string
	if err := h.topo.Do(topo.Node, func() error {
		var err error
		out, err = run(t, "ADD", conf, "CNI_NETNS="+h.topo.Path(a.Role), "CNI_CONTAINERID="+a.ContainerID,
			"CNI_ARGS=K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME="+a.Name+";K8S_POD_UID="+a.UID)
		return err
	}); err != nil {
		t.Errorf("second ADD of vpcnat: %v\n%s", err, out)
	}
	if got := h.links(a.Role); strings.Count(got, "net1") != 1 {
		t.Errorf("after two ADDs: links %q", got)
	}
	if err := h.chain.Del(list, a); err != nil {
		t.Fatal(err)
	}
	if err := h.chain.Del(list, a); err != nil {
		t.Errorf("second DEL: %v", err)
	}

	never := h.pod("kube-system", annots)
	if err := h.chain.Del(list, never); err != nil {
		t.Errorf("DEL without ADD: %v", err)
	}

	// DEL after the runtime already destroyed the netns: succeeds and drops the record.
	gone := h.pod("kube-system", annots)
	if _, err := h.chain.Add(list, gone); err != nil {
		t.Fatal(err)
	}
	if err := h.topo.DelNS(gone.Role); err != nil {
		t.Fatal(err)
	}
	if err := h.chain.Del(list, gone); err != nil {
		t.Errorf("DEL after the netns is gone: %v", err)
	}
	if recs := h.chain.Records(); len(recs) != 0 {
		t.Errorf("records after DEL of a vanished pod: %v", recs)
	}

	// GC keeps only valid attachments.
	keep, drop := h.pod("kube-system", gatewayAnnotationsFor(t, "keep")), h.pod("kube-system", gatewayAnnotationsFor(t, "drop"))
	for _, p := range []cnichain.Pod{keep, drop} {
		if _, err := h.chain.Add(list, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.chain.GC(list, []types.GCAttachment{{ContainerID: keep.ContainerID, IfName: "eth0"}}); err != nil {
		t.Fatal(err)
	}
	if recs := h.chain.Records(); len(recs) != 1 || recs[0] != keep.UID+".json" {
		t.Errorf("records after GC: %v, want only %s.json", recs, keep.UID)
	}
}

// TestBadAnnotations: a gateway pod with a bad NIC plan gets a CNI error naming the annotation
// and the value, and no link, address or record of ours.
func TestBadAnnotations(t *testing.T) {
	h := newHarness(t)
	good := gatewayAnnotations(t)
	nics := good[annotations.NICsKey]
	cases := map[string]struct{ nics, want string }{
		"not JSON":         {"{", annotations.NICsKey},
		"unknown field":    {strings.Replace(nics, `"gateway"`, `"gatewai":"x","gateway"`, 1), "gatewai"},
		"wrong version":    {strings.Replace(nics, `"version":"v1"`, `"version":"v9"`, 1), `"v9"`},
		"bad CIDR":         {strings.Replace(nics, "10.0.1.254/24", "10.0.1.254/33", 1), "10.0.1.254/33"},
		"unknown attach":   {strings.Replace(nics, `"type":"bridge"`, `"type":"vxlan"`, 1), "vxlan"},
		"overlong ifname":  {strings.Replace(nics, `"ifname":"net1"`, `"ifname":"net1-much-too-long-name"`, 1), "net1-much-too-long-name"},
		"missing master":   {strings.Replace(nics, `"master":"eth1"`, `"master":""`, 1), "master"},
		"master not there": {strings.Replace(nics, `"master":"eth1"`, `"master":"eth9"`, 1), "eth9"},
		"bridge not there": {strings.Replace(nics, `"bridge":"br-sn"`, `"bridge":"br-nope"`, 1), "br-nope"},
		"hostile ifname":   {strings.Replace(nics, `"master":"eth1"`, `"master":"$(reboot)"`, 1), "$(reboot)"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if c.nics == nics {
				t.Fatalf("case %q does not change the annotation", name)
			}
			annots := maps.Clone(good)
			annots[annotations.NICsKey] = c.nics
			p := h.pod("kube-system", annots)
			_, err := h.chain.Add(h.list("1.1.0"), p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("ADD error %v, want one naming %q", err, c.want)
			}
			if got := h.links(p.Role); got != "lo eth0" {
				t.Errorf("links left after a refused ADD: %q (want the primary's eth0 only)", got)
			}
			if recs := h.chain.Records(); len(recs) != 0 {
				t.Errorf("records left: %v", recs)
			}
			if h.macvlansOnNode() != 0 {
				t.Error("macvlan left on the node")
			}
		})
	}
}

// TestBadConfig: the plugin's own configuration is validated, each error naming the field.
func TestBadConfig(t *testing.T) {
	if len(pluginPaths) == 0 {
		t.Skip("needs root (plugin binary built in TestMain)")
	}
	prev := `"prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0"}],"ips":[]}`
	for field, conf := range map[string]string{
		"gatewayNamespaces": `"gatewayNamespaces":["Kube_System"]`,
		"stateDir":          `"stateDir":"relative/dir"`,
		"master":            `"master":"eth0/../x"`,
	} {
		out, err := run(t, "ADD", `{"cniVersion":"1.1.0","name":"n","type":"vpcnat",`+conf+`,`+prev+`}`, "CNI_ARGS=K8S_POD_NAMESPACE=default")
		if err == nil || !strings.Contains(out, field) {
			t.Errorf("%s: %v, output %s; want an error naming the field", field, err, out)
		}
	}
	out, err := run(t, "ADD", `{"cniVersion":"1.1.0","name":"n","type":"vpcnat"}`)
	if err == nil || !strings.Contains(out, "prevResult") {
		t.Errorf("unchained ADD: %v %s; want a refusal naming prevResult", err, out)
	}
}

// TestStatus: STATUS fails when the state directory cannot be written.
func TestStatus(t *testing.T) {
	h := newHarness(t)
	if err := h.chain.Status(h.list("1.1.0")); err != nil {
		t.Errorf("STATUS with a writable state dir: %v", err)
	}
	f := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.chain.StateDir = filepath.Join(f, "state")
	if err := h.chain.Status(h.list("1.1.0")); err == nil || !strings.Contains(err.Error(), "state") {
		t.Errorf("STATUS with an unwritable state dir: %v", err)
	}
}

// TestDelWithoutPodIdentity: DEL without CNI_ARGS (no pod UID, namespace or name: no record can
// have such a name) succeeds, in the full plugin as in the dispatcher.
func TestDelWithoutPodIdentity(t *testing.T) {
	if len(pluginPaths) == 0 {
		t.Skip("needs root (plugin binaries built in TestMain)")
	}
	conf := `{"cniVersion":"1.1.0","name":"n","type":"vpcnat","stateDir":"` + t.TempDir() + `"}`
	for _, bin := range []string{"vpcnat", "vpcnat-gateway"} {
		cmd := exec.Command(filepath.Join(pluginPaths[0], bin))
		cmd.Env = []string{"CNI_COMMAND=DEL", "CNI_CONTAINERID=c1", "CNI_IFNAME=eth0", "CNI_PATH=" + strings.Join(pluginPaths, ":")}
		cmd.Stdin = strings.NewReader(conf)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: DEL without CNI_ARGS: %v\n%s", bin, err, out)
		}
	}
}
