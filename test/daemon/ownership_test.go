package daemon

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/nodeagent"
	"github.com/vpcnat/vpcnat/pkg/state"
	"github.com/vpcnat/vpcnat/test/topo"
)

// TestDaemonIgnoresImpostors: pods that carry the gateway annotation, a valid desired state and
// an attachment record pointing at a netns, but are not gateways — in another namespace (with a
// complete owner chain there), without any owner, or owned by a Deployment no VpcNatGateway
// controls — are never converged nor annotated (no link, no NAT of either backend), while the
// real gateway next to them is. On each NAT backend.
func TestDaemonIgnoresImpostors(t *testing.T) {
	topo.NeedRoot(t)
	forEachDataplane(t, testDaemonIgnoresImpostors)
}

func testDaemonIgnoresImpostors(t *testing.T, plane string) {
	tp := topo.SeedForTest(t)
	c := newCluster(t, tp.Prefix)
	n := newNode(t, c, tp)
	other := c.ns + "-x"
	c.createNamespace(other)
	store := state.Store{Dir: n.chain.StateDir}

	var impostors []*corev1.Pod
	var roles []string
	add := func(name string, mk func(templ map[string]string) *corev1.Pod) {
		in := seedInputsOn(t, 1, plane)
		in.Gateway.Name = name
		templ, d := build(t, in)
		p := mk(templ)
		c.setDesired(p, d)
		role := "imp" + name[len(name)-1:]
		if err := tp.AddNS(role); err != nil {
			t.Fatal(err)
		}
		if err := store.Write(state.Record{PodUID: string(p.UID), Namespace: p.Namespace, Name: p.Name, Gateway: name,
			ContainerID: "ctr-" + name, Netns: tp.Path(role), IfNames: []string{"net1"}}); err != nil {
			t.Fatal(err)
		}
		impostors, roles = append(impostors, p), append(roles, role)
	}
	add("elsewhere1", func(templ map[string]string) *corev1.Pod {
		return c.createGateway("elsewhere1", templ, gatewayObjects{owned: true, ns: other})
	})
	add("ownerless2", func(templ map[string]string) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "ownerless2", Namespace: c.ns, Annotations: templ},
			Spec: podTemplate(nil, nil).Spec}
		p.Spec.NodeName = c.node
		p, err := c.client.CoreV1().Pods(c.ns).Create(context.Background(), p, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	})
	add("unowned3", func(templ map[string]string) *corev1.Pod {
		return c.createGateway("unowned3", templ, gatewayObjects{owned: false})
	})

	// The real gateway, created last: once it is reported, the daemon has seen the others.
	templ, d := build(t, seedInputsOn(t, 1, plane))
	pod := c.createGateway("ngw", templ, gatewayObjects{owned: true})
	n.sandbox(pod, topo.Gateway, "ctr-1-"+tp.Prefix)
	dm := startDaemon(t, c, n, "--resync=1s")
	c.waitApplied(pod, c.setDesired(pod, d), "")
	time.Sleep(1500 * time.Millisecond) // a resync period: any late sync of an impostor would show

	for i, p := range impostors {
		role := roles[i]
		if _, ok := c.getPod(p).Annotations[annotations.AppliedKey]; ok {
			t.Errorf("impostor %s/%s was annotated", p.Namespace, p.Name)
		}
		if links := n.exec(role, "ip", "-o", "link", "show"); strings.Count(links, "\n") != 1 {
			t.Errorf("impostor %d's netns got links:\n%s", i, links)
		}
		if nat, any := n.natOf(role); any {
			t.Errorf("impostor %d's netns got NAT rules:\n%s", i, nat)
		}
		if evs := c.events(p); len(evs) != 0 {
			t.Errorf("events on impostor %s: %+v", p.Name, evs)
		}
	}
	if got := dm.metric("vpcnat_daemon_gateways"); got != 1 {
		t.Errorf("daemon tracks %v gateways, want 1", got)
	}
}

// TestDaemonBadDesired: a desired annotation that fails validation is refused as a whole (its
// netns gets nothing), reported in applied with the field path and the value, and announced by
// a Warning Event; then a valid one whose converge fails in the kernel (no such node NIC) is
// reported and retried with backoff. Meanwhile the node's other gateway is converged and
// updated as usual. Once fixed, the first gateway works. On each NAT backend.
func TestDaemonBadDesired(t *testing.T) {
	topo.NeedRoot(t)
	forEachDataplane(t, testDaemonBadDesired)
}

func testDaemonBadDesired(t *testing.T, plane string) {
	tp := topo.SeedForTest(t)
	c := newCluster(t, tp.Prefix)
	n := newNode(t, c, tp)
	in := seedInputsOn(t, 1, plane)
	templ, good := build(t, in)
	pod := c.createGateway("ngw", templ, gatewayObjects{owned: true})
	n.sandbox(pod, topo.Gateway, "ctr-1-"+tp.Prefix)
	in2 := ngw2Inputs(t, 1, plane)
	templ2, d2 := build(t, in2)
	pod2 := c.createGateway("ngw2", templ2, gatewayObjects{owned: true})
	if err := tp.AddNS("gw2"); err != nil {
		t.Fatal(err)
	}
	n.sandbox(pod2, "gw2", "ctr-2-"+tp.Prefix)
	dm := startDaemon(t, c, n)

	value, err := annotations.EncodeDesired(good)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(value, `"internalPort":80`, `"internalPort":70000`, 1)
	if bad == value {
		t.Fatal("test bug: the desired state has no internalPort 80 to break")
	}
	c.setDesiredRaw(pod, bad)
	c.waitApplied(pod2, c.setDesired(pod2, d2), "")
	a := c.waitApplied(pod, bad, "dnatRules[0].internalPort")
	if a.Generation != 1 || !strings.Contains(a.Error, "70000") {
		t.Errorf("applied %+v: want generation 1 and the value in the error", a)
	}
	if nat, any := n.natOf(topo.Gateway); any {
		t.Errorf("an invalid desired state was (partly) applied:\n%s", nat)
	}
	expectEvent(t, c, pod, nodeagent.ReasonInvalidDesired, "dnatRules[0].internalPort")
	n.listen(topo.Inet, "tcp", topo.InetIP+":8080")
	n.expect(topo.Pod4, "tcp", topo.InetIP+":8080", eip113, "")

	// Valid, but the node has no eth9: the converge fails, is reported and retried.
	in.Config.NIC = "eth9"
	_, broken := build(t, in)
	brokenValue := c.setDesired(pod, broken)
	c.waitApplied(pod, brokenValue, "eth9")
	expectEvent(t, c, pod, nodeagent.ReasonSyncFailed, "eth9")
	eventually(t, "retries of the failing sync", 10*time.Second, func() bool {
		return dm.metric("vpcnat_daemon_syncs_total", "result", "error") >= 3
	})

	// The other gateway is updated meanwhile: a port forward to pod4.
	in2.Gateway.Generation = 2
	in2.Gateway.Spec.DnatRules = []v1.DnatRule{{Eip: eip113, ExternalPort: intstr.FromInt32(8080), Protocol: "tcp",
		InternalIP: topo.Pod4IP, InternalPort: intstr.FromInt32(80)}}
	_, d2 = build(t, in2)
	c.waitApplied(pod2, c.setDesired(pod2, d2), "")
	n.listen(topo.Pod4, "tcp", topo.Pod4IP+":80")
	n.expect(topo.Client, "tcp", eip113+":8080", topo.ClientIP, topo.Pod4IP+":80")

	// Fixed: the first gateway works.
	c.waitApplied(pod, c.setDesired(pod, good), "")
	n.listen(topo.Pod2, "tcp", topo.Pod2IP+":80")
	n.expect(topo.Client, "tcp", eip112+":8888", topo.ClientIP, topo.Pod2IP+":80")
}

// expectEvent waits for a Warning Event of the reason on the pod whose message contains want.
func expectEvent(t *testing.T, c *cluster, pod *corev1.Pod, reason, want string) {
	t.Helper()
	var seen []string
	eventually(t, "event "+reason, 10*time.Second, func() bool {
		seen = seen[:0]
		for _, e := range c.events(pod) {
			seen = append(seen, e.Type+" "+e.Reason+": "+e.Message)
			if e.Type == corev1.EventTypeWarning && e.Reason == reason && strings.Contains(e.Message, want) &&
				e.Source.Component == "vpcnat-daemon" && e.Source.Host == c.node {
				return true
			}
		}
		return false
	})
}
