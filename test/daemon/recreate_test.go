package daemon

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/test/topo"
)

// TestDaemonReplacementPodOldSandboxLast: a deleted gateway pod's replacement (same
// ReplicaSet, new name and UID) is plumbed while the old pod's sandbox is being torn down, as
// the kubelet and the runtime do when the pod is deleted (nothing orders the two pods'
// sandboxes): the old sandbox's CNI DEL deletes its net1 (so the replacement's ADD, which
// waits for net1's MAC, goes ahead), the replacement's ADD replaces the node-side veth of the
// subnet NIC (its name is the gateway's, not the sandbox's), and then the old DEL deletes the
// node-side veth its record names: the replacement's, taking its subnet NIC and the routes
// through it along. Nothing of the replacement's pod changes after that, so only the removal of
// the old record can tell the daemon; it must converge the replacement again at once (in the
// e2e test, the recreated gateway forwarded nothing for the subnet for minutes: until the
// resync). On each NAT backend.
func TestDaemonReplacementPodOldSandboxLast(t *testing.T) {
	topo.NeedRoot(t)
	forEachDataplane(t, testDaemonReplacementPodOldSandboxLast)
}

func testDaemonReplacementPodOldSandboxLast(t *testing.T, plane string) {
	g := newSeedGatewayOn(t, plane)
	g.works()
	old := g.c.getPod(g.pod)

	// The replacement pod, from the same ReplicaSet, with the template's annotations.
	ann := map[string]string{}
	for k, v := range old.Annotations {
		if k != annotations.DesiredKey && k != annotations.AppliedKey {
			ann[k] = v
		}
	}
	rs := metav1.GetControllerOf(old)
	repl := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-b8p4z", Namespace: old.Namespace, Labels: old.Labels,
			Annotations: ann, OwnerReferences: old.OwnerReferences},
		Spec: *old.Spec.DeepCopy(),
	}
	repl, err := g.c.client.CoreV1().Pods(repl.Namespace).Create(context.Background(), repl, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The old pod is deleted, the replacement scheduled; the old sandbox's DEL starts with net1.
	if err := g.c.client.CoreV1().Pods(old.Namespace).Delete(context.Background(), old.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	g.n.exec(topo.Gateway, "ip", "link", "del", annotations.ExternalIfName)
	const role = "gwb"
	if err := g.n.topo.AddNS(role); err != nil {
		t.Fatal(err)
	}
	g.n.sandbox(repl, role, "ctr-2-"+g.n.topo.Prefix)
	desired := g.desired
	g.c.setDesiredRaw(repl, desired)
	g.c.waitApplied(repl, desired, "")
	g.works()
	subnetNIC := subnetIfName(t, g.n.exec(role, "ip", "-o", "link", "show"))
	// What the subnet NIC carries (link indexes aside: a recreated veth has new ones).
	state := func() string {
		addrs := peerIndex.ReplaceAllString(g.n.exec(role, "ip", "-4", "-br", "addr", "show"), "")
		return addrs + g.n.exec(role, "ip", "-4", "route", "show", "table", "all")
	}
	want := state()
	if !strings.Contains(want, subnetNIC) {
		t.Fatalf("no route or address on %s before the old sandbox's DEL:\n%s", subnetNIC, want)
	}

	// The rest of the old sandbox's DEL: the node-side veth its record names, then the record.
	if err := g.n.chain.Del(g.n.list, g.sandbox); err != nil {
		t.Fatal(err)
	}
	var got string
	deadline := time.Now().Add(5 * time.Second)
	for got = state(); got != want; got = state() {
		if time.Now().After(deadline) {
			t.Fatalf("the replacement's subnet NIC %s, its addresses and routes not back within 5s after the old sandbox's DEL:\n"+
				"--- want\n%s--- got\n%s", subnetNIC, want, got)
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.works()
	if diff := g.n.check(role, g.d); !diff.Empty() {
		t.Errorf("the replacement after the old sandbox's DEL: %s", diff)
	}
	if a := g.c.applied(repl); a == nil || a.Hash != hashOf(desired) || a.Error != "" {
		t.Errorf("applied %+v on the replacement", a)
	}
}

// peerIndex is the "@ifN" of a veth's name in ip's output: the peer's link index.
var peerIndex = regexp.MustCompile(`@if[0-9]+`)

// subnetIfName finds the subnet NIC (a veth into the subnet's bridge) in `ip -o link show`.
func subnetIfName(t *testing.T, links string) string {
	t.Helper()
	for _, l := range strings.Split(links, "\n") {
		// "N: vpc-xxx@ifM: <...>": the plugin names subnet NICs with the vpc- prefix.
		fs := strings.Fields(l)
		if len(fs) > 1 && strings.HasPrefix(fs[1], "vpc-") {
			name, _, _ := strings.Cut(strings.TrimSuffix(fs[1], ":"), "@")
			return name
		}
	}
	t.Fatalf("no subnet NIC (vpc-*) in the gateway netns:\n%s", links)
	return ""
}
