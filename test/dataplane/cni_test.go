package dataplane

import (
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

// TestThroughCNIChain: the gateway pod's sandbox is plumbed by the node's CNI chain (bridge +
// host-local, then vpcnat) from its pod template annotations, as containerd would do it; then
// `vpcnat-daemon apply` converges it and every rule kind carries traffic. Both subnets' NICs come
// from the plugin, so apply finds them in place and creates no link.
func TestThroughCNIChain(t *testing.T) { eachBackend(t, testThroughCNIChain) }

func testThroughCNIChain(t *testing.T, f *fixture) {
	nics, _, errs := plan.Build(f.in)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	annots, err := plan.TemplateAnnotations(nics, "ovn-vpc-external-network")
	if err != nil {
		t.Fatal(err)
	}
	chain := cnichain.New(f.topo, cniPaths, t.TempDir())
	list, err := chain.ConfList("1.1.0", true, "")
	if err != nil {
		t.Fatal(err)
	}
	pod := cnichain.Pod{Role: topo.Gateway, Namespace: "kube-system", Name: "vpc-nat-gw-ngw-0", UID: "uid-" + f.topo.Prefix,
		ContainerID: "ctr-" + f.topo.Prefix, Annotations: annots}
	if _, err := chain.Add(list, pod); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := chain.Del(list, pod); err != nil {
			t.Error(err)
		}
	})

	out, err := f.apply(writeSpec(t, f.in))
	if err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	if strings.Contains(out, "link ") && strings.Contains(out, "created") {
		t.Errorf("apply created links the plugin should have made:\n%s", out)
	}
	f.listen(topo.Inet, "tcp", topo.InetIP+":8080")
	f.listen(topo.Pod1, "tcp", ":7000")
	f.listen(topo.Pod2, "tcp", topo.Pod2IP+":80")
	f.expect(topo.Pod2, "tcp", topo.InetIP+":8080", eip112, "")                      // SNAT
	f.expect(topo.Pod1, "tcp", topo.InetIP+":8080", eip111, "")                      // FIP out
	f.expect(topo.Client, "tcp", eip111+":7000", topo.ClientIP, topo.Pod1IP+":7000") // FIP in
	f.expect(topo.Client, "tcp", eip112+":8888", topo.ClientIP, topo.Pod2IP+":80")   // DNAT
	f.expect(topo.Pod1, "tcp", eip112+":8888", "10.0.1.1", topo.Pod2IP+":80")        // hairpin
	f.expect(topo.Pod3, "tcp", topo.InetIP+":8080", eip112, "")                      // seed static route via lanIp

	// The pod's primary interface is untouched by vpcnat and the daemon.
	if got := f.gwExec("ip", "-o", "-4", "addr", "show", "dev", "eth0"); !strings.Contains(got, "203.0.113.") {
		t.Errorf("gateway eth0 lost its primary address:\n%s", got)
	}
}
