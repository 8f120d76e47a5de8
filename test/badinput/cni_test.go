package badinput

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

// cniFixture is the simulated node's CNI chain (bridge + host-local, then vpcnat for
// kube-system) with one healthy gateway pod (ngw2, netns gw2) plumbed, and an empty netns (gw)
// for the pods of the cases.
type cniFixture struct {
	t     *testing.T
	tp    *topo.Topology
	chain *cnichain.Chain
	good  []byte // the good conflist
	// templ are the seed gateway's pod template annotations (what the plugin reads).
	templ map[string]string
	// baseline of what must be there between cases.
	nodeLinks, records, ipam []string
	healthy                  string
	healthyPod               cnichain.Pod
	namespace                string
}

const caseNetns = topo.Gateway

func newCNIFixture(t *testing.T, tp *topo.Topology, namespace string) *cniFixture {
	t.Helper()
	chain := cnichain.New(tp, cniPaths, t.TempDir())
	list, err := chain.ConfList("1.1.0", true, `"gatewayNamespaces": ["`+namespace+`"]`)
	if err != nil {
		t.Fatal(err)
	}
	f := &cniFixture{t: t, tp: tp, chain: chain, good: list.Bytes, namespace: namespace}
	nics, _, errs := plan.Build(seedInputs(t))
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	if f.templ, err = plan.TemplateAnnotations(nics, "ovn-vpc-external-network"); err != nil {
		t.Fatal(err)
	}
	return f
}

// templateOf is a gateway's pod template annotations.
func templateOf(t *testing.T, in plan.Inputs) map[string]string {
	t.Helper()
	nics, _, errs := plan.Build(in)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	templ, err := plan.TemplateAnnotations(nics, "ovn-vpc-external-network")
	if err != nil {
		t.Fatal(err)
	}
	return templ
}

// sandbox runs the chain's ADD for a pod (DEL when the test ends), as the runtime does.
func (f *cniFixture) sandbox(p cnichain.Pod) {
	f.t.Helper()
	list, err := libcni.ConfListFromBytes(f.good)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.chain.Add(list, p); err != nil {
		f.t.Fatalf("CNI ADD of %s: %v", p.Name, err)
	}
	f.t.Cleanup(func() { _ = f.chain.Del(list, p) })
}

// setHealthy plumbs the healthy gateway ngw2 (netns gw2) unless a pod is given that already is,
// and takes the baseline of the node.
func (f *cniFixture) setHealthy(p *cnichain.Pod) {
	f.t.Helper()
	if p == nil {
		if err := f.tp.AddNS("gw2"); err != nil {
			f.t.Fatal(err)
		}
		p = &cnichain.Pod{Role: "gw2", Namespace: f.namespace, Name: "vpc-nat-gw-ngw2-0", UID: "uid-ngw2",
			ContainerID: "ctr-ngw2", Annotations: templateOf(f.t, ngw2Inputs(f.t))}
		f.sandbox(*p)
	}
	f.healthyPod = *p
	f.nodeLinks, f.records, f.ipam = links(f.t, f.tp, topo.Node), f.chain.Records(), f.ipamFiles()
	f.healthy = f.healthyState()
}

// healthyState is the healthy gateway's links and addresses and its record.
func (f *cniFixture) healthyState() string {
	out, err := f.tp.Exec(f.healthyPod.Role, "ip", "-o", "-4", "addr", "show")
	if err != nil {
		f.t.Fatal(err)
	}
	rec, err := os.ReadFile(filepath.Join(f.chain.StateDir, f.healthyPod.UID+".json"))
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.Join(links(f.t, f.tp, f.healthyPod.Role), ",") + "\n" + out + string(rec)
}

func (f *cniFixture) ipamFiles() []string {
	var out []string
	_ = filepath.Walk(filepath.Join(f.chain.Dir, "ipam"), func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() && !strings.HasPrefix(info.Name(), "last_reserved_ip") && info.Name() != "lock" {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

// rtView is the runtime's request in a form the catalogue can change.
type rtView struct {
	ContainerID    string            `json:"containerID"`
	IfName         string            `json:"ifName"`
	Args           map[string]string `json:"args"`
	CapabilityArgs map[string]any    `json:"capabilityArgs"`
}

var argOrder = []string{"IgnoreUnknown", "K8S_POD_NAMESPACE", "K8S_POD_NAME", "K8S_POD_UID", "K8S_POD_INFRA_CONTAINER_ID"}

func (v rtView) conf(netns string) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: v.ContainerID, NetNS: netns, IfName: v.IfName, CapabilityArgs: v.CapabilityArgs}
	var keys []string
	for k := range v.Args {
		if !slices.Contains(argOrder, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range append(slices.Clone(argOrder), keys...) {
		if val, ok := v.Args[k]; ok {
			rt.Args = append(rt.Args, [2]string{k, val})
		}
	}
	return rt
}

// goodRT is the seed gateway pod's request.
func (f *cniFixture) goodRT() rtView {
	annots := map[string]any{}
	for k, v := range f.templ {
		annots[k] = v
	}
	return rtView{ContainerID: "ctr-case", IfName: "eth0",
		Args: map[string]string{"IgnoreUnknown": "1", "K8S_POD_NAMESPACE": f.namespace, "K8S_POD_NAME": "vpc-nat-gw-ngw-0",
			"K8S_POD_UID": "uid-case", "K8S_POD_INFRA_CONTAINER_ID": "ctr-case"},
		CapabilityArgs: map[string]any{cnichain.PodAnnotationsCapability: annots}}
}

// run runs one verb of the chain for a case: conflist bytes and the runtime's request.
func (f *cniFixture) run(verb string, conflist []byte, rt rtView) error {
	list, err := libcni.ConfListFromBytes(conflist)
	if err != nil {
		return fmt.Errorf("libcni: %w", err)
	}
	rc := rt.conf(f.tp.Path(caseNetns))
	ctx := context.Background()
	return f.tp.Do(topo.Node, func() error {
		switch verb {
		case "ADD":
			_, err := f.chain.CNI.AddNetworkList(ctx, list, rc)
			return err
		case "DEL":
			return f.chain.CNI.DelNetworkList(ctx, list, rc)
		case "CHECK":
			return f.chain.CNI.CheckNetworkList(ctx, list, rc)
		case "GC":
			return f.chain.CNI.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: f.healthyPod.ContainerID, IfName: "eth0"}}})
		case "STATUS":
			return f.chain.CNI.GetStatusNetworkList(ctx, list)
		}
		return fmt.Errorf("unknown verb %s", verb)
	})
}

// leftovers says what vpcnat left of a refused case: NICs in the pod's netns, node links, records.
func (f *cniFixture) leftovers() []string {
	var out []string
	for _, l := range links(f.t, f.tp, caseNetns) {
		if l != "lo" && l != "eth0" {
			out = append(out, "link "+l+" in the pod's netns")
		}
	}
	for _, l := range links(f.t, f.tp, topo.Node) {
		if !slices.Contains(f.nodeLinks, l) && !strings.HasPrefix(l, "veth") {
			out = append(out, "node link "+l)
		}
	}
	if r := f.chain.Records(); !slices.Equal(r, f.records) {
		out = append(out, fmt.Sprintf("records %v, want %v", r, f.records))
	}
	return out
}

// cleanUp runs DEL as the runtime does after a failed ADD (with the case's configuration, then
// the good one) and checks the node is back to the baseline: the pod's netns empty, no link,
// record or IP allocation left.
func (f *cniFixture) cleanUp(c Case, conflist []byte, rt rtView) {
	f.t.Helper()
	_ = f.run("DEL", conflist, rt)
	_ = f.run("DEL", f.good, f.goodRT())
	if l := links(f.t, f.tp, caseNetns); !slices.Equal(l, []string{"lo"}) {
		f.t.Errorf("%s: after DEL the pod's netns has links %v", c, l)
	}
	if l := links(f.t, f.tp, topo.Node); !slices.Equal(l, f.nodeLinks) {
		f.t.Errorf("%s: after DEL the node has links %v, want %v", c, l, f.nodeLinks)
	}
	if r := f.chain.Records(); !slices.Equal(r, f.records) {
		f.t.Errorf("%s: after DEL records %v, want %v", c, r, f.records)
	}
	if ip := f.ipamFiles(); !slices.Equal(ip, f.ipam) {
		f.t.Errorf("%s: after DEL IP allocations %v, want %v", c, ip, f.ipam)
	}
}

// cniInput is the conflist and request of a cni (or annotation-through-plugin) case.
func (f *cniFixture) cniInput(c Case) (verb string, conflist []byte, rt rtView, err error) {
	base, verb, _ := strings.Cut(c.Base, "@")
	if verb == "" {
		verb = "ADD"
	}
	rt = f.goodRT()
	doc, err := toJSON(f.good)
	if err != nil {
		return "", nil, rt, err
	}
	switch base {
	case "conf":
		doc, err = applySets(doc, rebase(c.Input, "plugins[1]."))
	case "conflist":
		doc, err = applySets(doc, c.Input)
	case "rt":
		var v any
		b, _ := json.Marshal(rt)
		if v, err = toJSON(b); err == nil {
			if v, err = applySets(v, c.Input); err == nil {
				b, _ = json.Marshal(v)
				rt = rtView{}
				err = json.Unmarshal(b, &rt)
			}
		}
	case "podannots":
		var v any
		if v, err = applySets(rt.CapabilityArgs[cnichain.PodAnnotationsCapability], c.Input); err == nil {
			rt.CapabilityArgs[cnichain.PodAnnotationsCapability] = v
		}
	case "nics":
		annots := rt.CapabilityArgs[cnichain.PodAnnotationsCapability].(map[string]any)
		if raw, ok := strings.CutPrefix(c.Input, "raw:"); ok {
			annots["vpcnat.kubeovn.io/nics"] = raw
			break
		}
		var v any
		if v, err = toJSON([]byte(f.templ["vpcnat.kubeovn.io/nics"])); err == nil {
			if v, err = applySets(v, c.Input); err == nil {
				b, _ := json.Marshal(v)
				annots["vpcnat.kubeovn.io/nics"] = string(b)
			}
		}
	default:
		err = fmt.Errorf("unknown base %q", base)
	}
	if err != nil {
		return "", nil, rt, fmt.Errorf("%s: %w", c, err)
	}
	conflist, err = json.Marshal(doc)
	return verb, conflist, rt, err
}

// rebase prefixes every path of a sets object (keeps '!').
func rebase(sets, prefix string) string {
	var keys []string
	dec := json.NewDecoder(strings.NewReader(sets))
	dec.UseNumber()
	if _, err := dec.Token(); err != nil {
		return sets
	}
	var parts []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return sets
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return sets
		}
		k := tok.(string)
		keys = append(keys, k)
		if strings.HasPrefix(k, "!") {
			k = "!" + prefix + k[1:]
		} else {
			k = prefix + k
		}
		kb, _ := json.Marshal(k)
		parts = append(parts, string(kb)+":"+string(val))
	}
	return "{" + strings.Join(parts, ",") + "}"
}

// runCNICases runs cases through the chain: each must fail with the fragment, leave nothing of
// vpcnat behind, and DEL must bring the node back to its baseline.
func (f *cniFixture) runCases(t *testing.T, k *counter, cases []Case) {
	for _, c := range cases {
		t.Run(c.ID, func(t *testing.T) {
			k.ran++
			f.t = t
			verb, conflist, rt, err := f.cniInput(c)
			if err != nil {
				t.Fatal(err)
			}
			err = f.run(verb, conflist, rt)
			if verdict := checkError(c, err); verdict != nil {
				t.Error(verdict)
			}
			if left := f.leftovers(); len(left) > 0 {
				t.Errorf("%s: the refused %s left: %s", c, verb, strings.Join(left, "; "))
			}
			f.cleanUp(c, conflist, rt)
			if !t.Failed() {
				k.rejected++
			}
		})
	}
}

// TestCNI: the cni cases through libcni with the real chain; afterwards the healthy gateway's
// NICs, addresses and record are as they were, and a good ADD + DEL of the case pod still works.
func TestCNI(t *testing.T) {
	topo.NeedRoot(t)
	cases := casesOf(t, "cni")
	tp := topo.SeedForTest(t)
	f := newCNIFixture(t, tp, "kube-system")
	f.setHealthy(nil)
	k := &counter{layer: "cni"}
	defer k.report(t)
	f.runCases(t, k, cases)
	f.t = t
	if got := f.healthyState(); got != f.healthy {
		t.Errorf("the healthy gateway changed:\n--- before\n%s\n--- after\n%s", f.healthy, got)
	}
	if err := f.run("ADD", f.good, f.goodRT()); err != nil {
		t.Errorf("a good ADD after the bad cases: %v", err)
	}
	f.cleanUp(Case{ID: "good"}, f.good, f.goodRT())
}
