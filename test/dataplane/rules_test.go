package dataplane

import (
	"strings"
	"sync"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/test/topo"
)

const (
	eip111 = "192.168.0.111" // seed: FIP -> 10.0.1.5
	eip112 = "192.168.0.112" // seed: DNAT :8888/tcp -> 10.0.1.10:80, SNAT 10.0.1.0/24
	eip113 = "192.168.0.113"
	eip114 = "192.168.0.114"
	eip115 = "192.168.0.115"
)

func objectMeta(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }

// TestSeedRules: the seed's example as is, every rule kind with real packets.
func TestSeedRules(t *testing.T) { eachBackend(t, testSeedRules) }

func testSeedRules(t *testing.T, f *fixture) {
	f.converge(true)
	f.listen(topo.Inet, "tcp", topo.InetIP+":8080")
	f.listen(topo.Pod1, "tcp", ":7000")
	f.listen(topo.Pod2, "tcp", topo.Pod2IP+":80")

	// SNAT: the outside host sees the EIP.
	f.expect(topo.Pod2, "tcp", topo.InetIP+":8080", eip112, "")
	// FIP, both directions.
	f.expect(topo.Pod1, "tcp", topo.InetIP+":8080", eip111, "")
	f.expect(topo.Client, "tcp", eip111+":7000", topo.ClientIP, topo.Pod1IP+":7000")
	// DNAT: EIP:8888 reaches the internal server, the client's address preserved.
	f.expect(topo.Client, "tcp", eip112+":8888", topo.ClientIP, topo.Pod2IP+":80")
	// Hairpin: a VPC pod reaches an EIP of its own gateway (DNAT and FIP); the server sees the
	// gateway, so its reply goes back through it.
	f.expect(topo.Pod1, "tcp", eip112+":8888", "10.0.1.1", topo.Pod2IP+":80")
	f.expect(topo.Pod2, "tcp", eip111+":7000", "10.0.1.1", topo.Pod1IP+":7000")
	// The seed's static route 0.0.0.0/0 via lanIp: pod3 uses 10.0.1.254 as its router.
	f.expect(topo.Pod3, "tcp", topo.InetIP+":8080", eip112, "")
	// A port nobody forwards is not forwarded.
	f.expectNoAnswer(topo.Client, "tcp", eip112+":8889")
}

// TestSNATLongestPrefix: /32 beats /24 beats /20 beats /16, across two subnets egressing at once.
func TestSNATLongestPrefix(t *testing.T) { eachBackend(t, testSNATLongestPrefix) }

func testSNATLongestPrefix(t *testing.T, f *fixture) {
	g := &f.in.Gateway.Spec
	g.Eips = append(g.Eips, eip(eip113), eip(eip114), eip(eip115))
	g.SnatRules = []v1.SnatRule{
		{Eip: eip113, InternalCIDR: "10.0.0.0/16"},
		{Eip: eip114, InternalCIDR: "10.0.0.0/20"},
		{Eip: eip112, InternalCIDR: "10.0.1.0/24"},
		{Eip: eip115, InternalCIDR: topo.Pod3IP}, // a bare IP counts as /32
	}
	f.converge(true)
	f.listen(topo.Inet, "tcp", topo.InetIP+":8080")

	want := map[string]string{topo.Pod2: eip112, topo.Pod3: eip115, topo.Pod4: eip114}
	var wg sync.WaitGroup
	for role, eip := range want {
		wg.Add(1)
		go func() { defer wg.Done(); f.expect(role, "tcp", topo.InetIP+":8080", eip, "") }()
	}
	wg.Wait()

	// Without the /20, pod4's subnet falls back to the /16.
	g.SnatRules = g.SnatRules[:1:1]
	g.SnatRules = append(g.SnatRules, v1.SnatRule{Eip: eip112, InternalCIDR: "10.0.1.0/24"})
	f.converge(false)
	f.expect(topo.Pod4, "tcp", topo.InetIP+":8080", eip113, "")
	f.expect(topo.Pod3, "tcp", topo.InetIP+":8080", eip112, "")
}

// TestDNATProtocols: TCP and UDP on the same EIP port are two rules with two targets.
func TestDNATProtocols(t *testing.T) { eachBackend(t, testDNATProtocols) }

func testDNATProtocols(t *testing.T, f *fixture) {
	g := &f.in.Gateway.Spec
	g.DnatRules = append(g.DnatRules, dnat(eip112, 8888, "udp", topo.Pod3IP, 5353))
	f.converge(true)
	f.listen(topo.Pod2, "tcp", topo.Pod2IP+":80")
	f.listen(topo.Pod3, "udp", topo.Pod3IP+":5353")
	f.listen(topo.Pod2, "udp", topo.Pod2IP+":80")

	f.expect(topo.Client, "tcp", eip112+":8888", topo.ClientIP, topo.Pod2IP+":80")
	f.expect(topo.Client, "udp", eip112+":8888", topo.ClientIP, topo.Pod3IP+":5353")
}

// TestStaticRoutes: a policyDst route sends traffic for 203.0.113.0/25 to the VPC router; a
// policySrc route sends everything from sn2 there.
func TestStaticRoutes(t *testing.T) { eachBackend(t, testStaticRoutes) }

func testStaticRoutes(t *testing.T, f *fixture) {
	f.in.Vpc.Spec.StaticRoutes = append(f.in.Vpc.Spec.StaticRoutes,
		v1.StaticRoute{Policy: v1.PolicyDst, CIDR: "203.0.113.0/25", NextHopIP: topo.VRIP})
	f.converge(true)
	f.listen(topo.Lab, "tcp", topo.LabIP+":9000")
	f.listen(topo.Inet, "tcp", topo.InetIP+":8080")
	f.expect(topo.Pod2, "tcp", topo.LabIP+":9000", topo.Pod2IP, "") // routed, not NATed
	f.expect(topo.Pod2, "tcp", topo.InetIP+":8080", eip112, "")     // the default still via the EIP gateway

	f.in.Vpc.Spec.StaticRoutes = []v1.StaticRoute{{Policy: v1.PolicySrc, CIDR: "10.0.2.0/24", NextHopIP: topo.VRIP}}
	f.converge(false)
	f.expect(topo.Pod4, "tcp", topo.LabIP+":9000", topo.Pod4IP, "")
	// pod2 is not in the source prefix and 203.0.113.0/25 has no dst route any more: it goes to
	// the EIP gateway, which has no route there.
	f.expectNoAnswer(topo.Pod2, "tcp", topo.LabIP+":9000")
	if out := f.gwExec("ip", "rule", "show"); !strings.Contains(out, "from 10.0.2.0/24") {
		t.Errorf("no policySrc ip rule:\n%s", out)
	}
}
