package topo

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestSeedTopology checks the fixture itself: the outside client reaches the internet host
// through the EIP gateway router, VPC hosts reach each other on their bridge, and Close leaves
// no namespace behind.
func TestSeedTopology(t *testing.T) {
	topo := seedForTest(t)

	srv, err := topo.Listen(Inet, "tcp", InetIP+":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	r, err := topo.Request(Client, "tcp", InetIP+":8080", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.SeenIP() != ClientIP {
		t.Errorf("inet saw %s, want the client's %s (no NAT on the router)", r.SeenIP(), ClientIP)
	}

	vr, err := topo.Listen(VR, "udp", VRIP+":9000")
	if err != nil {
		t.Fatal(err)
	}
	defer vr.Close()
	if r, err := topo.Request(Pod1, "udp", VRIP+":9000", 2*time.Second); err != nil || r.SeenIP() != Pod1IP {
		t.Errorf("pod1 -> vr over br-sn: reply %+v, err %v", r, err)
	}

	if err := topo.Close(); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), topo.Prefix+"-") {
		t.Errorf("namespaces left after Close:\n%s", out)
	}
}

// seedForTest builds the seed topology for a test, or skips it when not root; the topology is
// removed when the test ends.
func seedForTest(t *testing.T) *Topology {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	topo, err := NewSeed(NewPrefix())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = topo.Close() })
	return topo
}
