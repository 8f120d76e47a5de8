package daemon

import (
	"context"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/test/topo"
)

// TestDaemonAppliesDesired, on each NAT backend: the seed's desired state written on a gateway
// pod goes live in the pod's netns (exactly, as test/kstate reads it, and real traffic of every
// rule kind) and is reported in applied; an
// update (a new DNAT, the FIP removed) and then a rule removal take effect for new connections
// and are reported, one applied patch per generation. The metrics count the syncs and the
// rules. When the pod is deleted the daemon forgets it without touching its netns.
func TestDaemonAppliesDesired(t *testing.T) {
	topo.NeedRoot(t)
	forEachDataplane(t, testDaemonAppliesDesired)
}

func testDaemonAppliesDesired(t *testing.T, plane string) {
	tp := topo.SeedForTest(t)
	c := newCluster(t, tp.Prefix)
	n := newNode(t, c, tp)
	in := seedInputsOn(t, 1, plane)
	templ, d := build(t, in)
	pod := c.createGateway("ngw", templ, gatewayObjects{owned: true})
	n.sandbox(pod, topo.Gateway, "ctr-1-"+tp.Prefix)
	dm := startDaemon(t, c, n)

	v := c.setDesired(pod, d)
	if a := c.waitApplied(pod, v, ""); a.Generation != 1 {
		t.Errorf("applied generation %d, want 1", a.Generation)
	}
	if diff := n.check(topo.Gateway, d); !diff.Empty() {
		t.Errorf("the gateway netns is not the desired state: %s", diff)
	}
	n.listen(topo.Inet, "tcp", topo.InetIP+":8080")
	n.listen(topo.Pod1, "tcp", ":7000")
	n.listen(topo.Pod2, "tcp", topo.Pod2IP+":80")
	n.listen(topo.Pod3, "tcp", topo.Pod3IP+":80")
	n.expect(topo.Client, "tcp", eip112+":8888", topo.ClientIP, topo.Pod2IP+":80")   // DNAT
	n.expect(topo.Pod2, "tcp", topo.InetIP+":8080", eip112, "")                      // SNAT
	n.expect(topo.Client, "tcp", eip111+":7000", topo.ClientIP, topo.Pod1IP+":7000") // FIP in
	n.expect(topo.Pod1, "tcp", topo.InetIP+":8080", eip111, "")                      // FIP out

	// Update: a port forward to pod3 added, the FIP removed (pod1 falls back to the SNAT).
	in.Gateway.Generation = 2
	in.Gateway.Spec.DnatRules = append(in.Gateway.Spec.DnatRules, v1.DnatRule{Eip: eip112,
		ExternalPort: intstr.FromInt32(9999), Protocol: "tcp", InternalIP: topo.Pod3IP, InternalPort: intstr.FromInt32(80)})
	in.Gateway.Spec.FloatingIPRules = nil
	_, d = build(t, in)
	v = c.setDesired(pod, d)
	if a := c.waitApplied(pod, v, ""); a.Generation != 2 {
		t.Errorf("applied generation %d, want 2", a.Generation)
	}
	n.expect(topo.Client, "tcp", eip112+":9999", topo.ClientIP, topo.Pod3IP+":80")
	n.expectNoAnswer(topo.Client, "tcp", eip111+":7000")
	n.expect(topo.Pod1, "tcp", topo.InetIP+":8080", eip112, "")
	if diff := n.check(topo.Gateway, d); !diff.Empty() {
		t.Errorf("after the update (FIP removed, DNAT added): %s", diff)
	}

	// Removal of the new rule.
	in.Gateway.Generation = 3
	in.Gateway.Spec.DnatRules = in.Gateway.Spec.DnatRules[:1]
	_, d = build(t, in)
	v = c.setDesired(pod, d)
	c.waitApplied(pod, v, "")
	n.expectNoAnswer(topo.Client, "tcp", eip112+":9999")
	n.expect(topo.Client, "tcp", eip112+":8888", topo.ClientIP, topo.Pod2IP+":80")
	if diff := n.check(topo.Gateway, d); !diff.Empty() {
		t.Errorf("after the DNAT's removal: %s", diff)
	}

	if got := dm.metric("vpcnat_daemon_syncs_total", "result", "success"); got < 3 {
		t.Errorf("syncs_total{success} = %v, want >= 3", got)
	}
	if got := dm.metric("vpcnat_daemon_syncs_total", "result", "error"); got != 0 {
		t.Errorf("syncs_total{error} = %v, want 0", got)
	}
	if got := dm.metric("vpcnat_daemon_rules", "gateway", "ngw", "kind", "dnat"); got != 1 {
		t.Errorf("rules{dnat} = %v, want 1", got)
	}
	if got := dm.metric("vpcnat_daemon_rules", "gateway", "ngw", "kind", "floating_ip"); got != 0 {
		t.Errorf("rules{floating_ip} = %v, want 0", got)
	}
	if got := dm.metric("vpcnat_daemon_last_successful_sync_timestamp_seconds", "gateway", "ngw"); got <= 0 {
		t.Errorf("last successful sync = %v", got)
	}
	// The first converge of a sandbox is full, the updates take the fast path.
	if full, fast := dm.metric("vpcnat_daemon_sync_duration_seconds", "full", "true"),
		dm.metric("vpcnat_daemon_sync_duration_seconds", "full", "false"); full != 1 || fast != 2 {
		t.Errorf("sync duration observations: %v full, %v fast; want 1 and 2", full, fast)
	}
	// One patch per generation: the updates the daemon's own patches cause converge nothing
	// and patch nothing.
	if got := dm.metric("vpcnat_daemon_applied_patches_total"); got != 3 {
		t.Errorf("applied patches = %v, want 3", got)
	}
	if evs := c.events(pod); len(evs) != 0 {
		t.Errorf("events on a healthy gateway: %+v", evs)
	}

	// The pod goes away: the daemon forgets it and leaves its netns alone (the runtime tears
	// the sandbox down).
	before := n.dump(topo.Gateway)
	zero := int64(0)
	if err := c.client.CoreV1().Pods(pod.Namespace).Delete(context.Background(), pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "daemon forgets the deleted pod", 10e9, func() bool {
		return dm.metric("vpcnat_daemon_gateways") == 0 && dm.metric("vpcnat_daemon_rules", "gateway", "ngw", "kind", "dnat") == -1
	})
	if after := n.dump(topo.Gateway); after != before {
		t.Errorf("the deleted pod's netns was changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
}
