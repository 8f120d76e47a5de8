package nodeagent

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	metafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/tools/record"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/state"
)

// fakeKernel holds each netns's state (the JSON of the desired state last converged into it),
// so a new converger of the same netns finds what an old one left, as with the real kernel.
type fakeKernel struct {
	mu    sync.Mutex
	netns map[string]string
	calls []string // "path gen=N full=B"
	fail  map[string]error
	// conflicts and notify per netns: the address conflict detection of the converger made
	// last for it.
	conflicts map[string][]netconf.Conflict
	notify    map[string]func(converge bool)
}

type fakeConverger struct {
	k    *fakeKernel
	path string
}

func (c *fakeConverger) Conflicts() []netconf.Conflict {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	return c.k.conflicts[c.path]
}

func (c *fakeConverger) Defenses() uint64 { return 0 }

// setConflicts changes the conflicts of a netns and notifies its converger, as a listener does.
func (k *fakeKernel) setConflicts(path string, cs []netconf.Conflict) {
	k.mu.Lock()
	k.conflicts[path] = cs
	notify := k.notify[path]
	k.mu.Unlock()
	notify(false)
}

func (c *fakeConverger) Converge(_ context.Context, d *annotations.Desired, full bool) (*netconf.Report, error) {
	c.k.mu.Lock()
	defer c.k.mu.Unlock()
	c.k.calls = append(c.k.calls, fmt.Sprintf("%s gen=%d full=%v", c.path, d.Generation, full))
	if err := c.k.fail[c.path]; err != nil {
		return &netconf.Report{Full: true}, err
	}
	b, _ := json.Marshal(d)
	if c.k.netns[c.path] == string(b) {
		return &netconf.Report{Full: full}, nil
	}
	c.k.netns[c.path] = string(b)
	return &netconf.Report{Full: full, Changes: []string{"converged"}}, nil
}

func (c *fakeConverger) Close() {}

func (k *fakeKernel) callsFor(path string) []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []string
	for _, c := range k.calls {
		if strings.HasPrefix(c, path+" ") {
			out = append(out, c)
		}
	}
	return out
}

// harness runs an Agent against fake API clients and a fake kernel, with real attachment
// records in a temp directory.
type harness struct {
	t        *testing.T
	client   *fake.Clientset
	kernel   *fakeKernel
	store    state.Store
	recorder *record.FakeRecorder
	reg      *prometheus.Registry
}

func metaScheme() *runtime.Scheme {
	s := metafake.NewTestScheme()
	_ = metav1.AddMetaToScheme(s)
	for _, kind := range []string{"ReplicaSet", "Deployment"} {
		gv := schema.GroupVersion{Group: "apps", Version: "v1"}
		s.AddKnownTypeWithName(gv.WithKind(kind), &metav1.PartialObjectMetadata{})
		s.AddKnownTypeWithName(gv.WithKind(kind+"List"), &metav1.PartialObjectMetadataList{})
	}
	return s
}

func partial(kind string, m *metav1.ObjectMeta) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: kind}, ObjectMeta: *m}
}

// start runs an agent for the chains' gateways (their RS and Deployment exist; pods are created
// by the test).
func start(t *testing.T, chains ...*chain) *harness {
	h := &harness{t: t, client: fake.NewClientset(), kernel: &fakeKernel{netns: map[string]string{}, fail: map[string]error{},
		conflicts: map[string][]netconf.Conflict{}, notify: map[string]func(bool){}},
		store: state.Store{Dir: t.TempDir()}, recorder: record.NewFakeRecorder(100), reg: prometheus.NewRegistry()}
	var objs []runtime.Object
	for _, c := range chains {
		objs = append(objs, partial("ReplicaSet", c.rs), partial("Deployment", c.dep))
	}
	meta := metafake.NewSimpleMetadataClient(metaScheme(), objs...)
	a, err := New(Config{NodeName: "node-1", GatewayNamespace: "kube-system", StateDir: h.store.Dir,
		Resync: time.Hour, Workers: 2, SyncTimeout: time.Minute, Registerer: h.reg,
		NewConverger: func(p string, notify func(bool)) Converger {
			h.kernel.mu.Lock()
			defer h.kernel.mu.Unlock()
			h.kernel.notify[p] = notify
			return &fakeConverger{k: h.kernel, path: p}
		}}, h.client, meta, h.recorder)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	return h
}

func desiredValue(gw string, gen int64) string {
	d := &annotations.Desired{Version: annotations.Version, Gateway: gw, Generation: gen,
		External: annotations.ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge", MAC: "02:00:00:00:00:01"},
		Subnets: []annotations.SubnetNIC{{Subnet: "sn", IfName: "eth0", CIDR: "10.0.1.0/24", IP: "10.0.1.254",
			Attachment: annotations.Attachment{Type: annotations.AttachPrimary}}},
		EIPs:  []annotations.EIP{{EipCIDR: "192.168.0.111/24", Gateway: "192.168.0.254"}},
		SNATs: []annotations.SNAT{{EIP: "192.168.0.111", InternalCIDR: "10.0.1.0/24"}},
	}
	v, err := annotations.EncodeDesired(d)
	if err != nil {
		panic(err)
	}
	return v
}

func (h *harness) createPod(c *chain, desired string) *corev1.Pod {
	h.t.Helper()
	p := c.pod.DeepCopy()
	p.Spec.NodeName = "node-1"
	if desired != "" {
		p.Annotations[annotations.DesiredKey] = desired
	}
	p, err := h.client.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

func (h *harness) setDesired(p *corev1.Pod, desired string) {
	h.t.Helper()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{annotations.DesiredKey: desired}}})
	if _, err := h.client.CoreV1().Pods(p.Namespace).Patch(context.Background(), p.Name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) writeRecord(p *corev1.Pod, gw, containerID, netns string) {
	h.t.Helper()
	if err := h.store.Write(state.Record{PodUID: string(p.UID), Namespace: p.Namespace, Name: p.Name, Gateway: gw,
		ContainerID: containerID, Netns: netns, IfNames: []string{"net1"}}); err != nil {
		h.t.Fatal(err)
	}
}

// applied waits until the pod's applied annotation satisfies ok and returns it.
func (h *harness) applied(p *corev1.Pod, ok func(*annotations.Applied) bool) *annotations.Applied {
	h.t.Helper()
	var last *annotations.Applied
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		cur, err := h.client.CoreV1().Pods(p.Namespace).Get(context.Background(), p.Name, metav1.GetOptions{})
		if err != nil {
			h.t.Fatal(err)
		}
		if last = podApplied(cur); last != nil && ok(last) {
			return last
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.t.Fatalf("pod %s: applied annotation %+v never satisfied the condition", p.Name, last)
	return nil
}

// patches counts the patches of the applied annotation sent to the API server.
func (h *harness) patches() int {
	n := 0
	for _, a := range h.client.Actions() {
		if a.GetVerb() == "patch" && a.GetResource().Resource == "pods" && strings.Contains(string(a.(interface{ GetPatch() []byte }).GetPatch()), annotations.AppliedKey) {
			n++
		}
	}
	return n
}
