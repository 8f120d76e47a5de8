package e2e

import (
	"os"
	"strings"
	"testing"
)

// The leftover checks must see a change, or TestCluster's "nothing left behind" proves nothing.
func TestHostStateDiff(t *testing.T) {
	before := &HostState{
		IPTables: map[string]string{"iptables-save": "*filter\n:INPUT ACCEPT\nCOMMIT"},
		Sysctls:  map[string]string{"net.ipv4.ip_forward": "0"},
		HostDirs: map[string]bool{"/var/lib/cni": false},
	}
	same := &HostState{
		IPTables: map[string]string{"iptables-save": "*filter\n:INPUT ACCEPT\nCOMMIT"},
		Sysctls:  map[string]string{"net.ipv4.ip_forward": "0"},
		HostDirs: map[string]bool{"/var/lib/cni": false},
	}
	if d := before.Diff(same); len(d) != 0 {
		t.Errorf("no change reported as %v", d)
	}
	after := &HostState{
		IPTables: map[string]string{"iptables-save": "*filter\n:INPUT ACCEPT\n:KUBE-FIREWALL -\n-A INPUT -j KUBE-FIREWALL\nCOMMIT"},
		Sysctls:  map[string]string{"net.ipv4.ip_forward": "1"},
		HostDirs: map[string]bool{"/var/lib/cni": true},
	}
	d := strings.Join(before.Diff(after), "\n")
	for _, want := range []string{"+ -A INPUT -j KUBE-FIREWALL", "sysctl net.ipv4.ip_forward is 1, was 0", "/var/lib/cni: existed false before, true now"} {
		if !strings.Contains(d, want) {
			t.Errorf("diff does not say %q:\n%s", want, d)
		}
	}
}

func TestInCgroup(t *testing.T) {
	for cg, want := range map[string]bool{
		"4:memory:/vpcnat-cluster/kubepods/besteffort/pod1/abc\n": true,
		"8:pids:/vpcnat-cluster\n":                                true,
		"4:memory:/vpcnat-cluster2/kubepods\n":                    false, // a prefix, not our tree
		"4:memory:/process_api/782b\n0::/\n":                      false,
	} {
		if got := inCgroup(cg, "/vpcnat-cluster"); got != want {
			t.Errorf("inCgroup(%q) = %v, want %v", cg, got, want)
		}
	}
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Error("this test's own process reported dead")
	}
	if processAlive(1 << 30) { // above any pid_max
		t.Error("a PID that cannot exist reported alive")
	}
}
