package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vpcnat/vpcnat/pkg/state"
	"github.com/vpcnat/vpcnat/test/topo"
)

// bogusMAC is what the outside client is made to believe the DNAT EIP's MAC is before the
// gateway's sandbox is recreated (a locally administered address no one has).
const bogusMAC = "02:00:5e:00:53:99"

// sandboxReboot: the gateway pod's sandbox dies (its pause process killed, as a crash of the
// sandbox or the node's runtime would leave it) and the kubelet recreates it under the same pod
// object: the plugin plumbs the new netns, the daemon converges it from scratch, and every flow
// comes back without the pod being recreated. net1 keeps its MAC (derived from the gateway's
// name), and the EIPs are announced with gratuitous ARPs: an outside host whose ARP entry for
// an EIP is wrong is corrected without sending anything itself.
func (e *vpcEnv) sandboxReboot(now flows) {
	t := e.t
	was := e.gateway()
	pid, err := e.sandboxPID(was)
	if err != nil {
		t.Fatal(err)
	}
	// The client's entry for the DNAT EIP, made wrong and STALE: only an ARP from the gateway
	// can correct it as long as the client sends nothing (the kernel updates an existing entry
	// from an ARP request whose sender is that address, unless it changed within locktime, 1 s).
	cli := e.net.Name(topo.Client)
	if out, err := exec.CommandContext(e.ctx, "ip", "-n", cli, "neigh", "replace", eipShared, "lladdr", bogusMAC,
		"dev", "eth0", "nud", "stale").CombinedOutput(); err != nil {
		t.Fatalf("setting the client's ARP entry for %s: %v: %s", eipShared, err, out)
	}
	if n := neighbourMAC(e, cli, eipShared); n != bogusMAC {
		t.Fatalf("the client's ARP entry for %s is %q after setting it to %s", eipShared, n, bogusMAC)
	}
	time.Sleep(1100 * time.Millisecond) // past locktime: a gratuitous ARP may override it

	mark := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("killing the gateway sandbox's pause process %d: %v", pid, err)
	}
	// Back when the pod runs a new sandbox whose record the daemon has converged: traffic from
	// the VPC side only (pod2 -> internet host, SNAT), so the client sends nothing yet.
	var g gatewayState
	pollWithin(e.ctx, t, waitLimit, "a new sandbox of the same gateway pod", func() (bool, error) {
		pod, err := e.gatewayPod()
		if err != nil || pod == nil || string(pod.UID) != was.uid {
			return false, err
		}
		rec, err := state.Store{Dir: state.DefaultDir}.Read(was.uid)
		if err != nil || rec.ContainerID == was.containerID {
			return false, nil
		}
		return true, nil
	})
	snat := waitFlow(t, e.net, now.get("snat"), mark, 60*time.Second)
	e.times.add("sandbox killed -> SNAT back (same pod)", snat)
	g = e.gateway()
	if g.uid != was.uid || g.name != was.name {
		t.Errorf("the gateway pod was recreated (%s, was %s): want the same pod with a new sandbox", g, was)
	}
	if g.containerID == was.containerID || g.netns == was.netns {
		t.Errorf("the gateway runs sandbox %.12s in %s, as before the kill: want a new one", g.containerID, g.netns)
	}
	if g.macs != was.macs {
		t.Errorf("the gateway's interfaces changed MAC with the new sandbox: %s, were %s", g.macs, was.macs)
	}
	net1 := macOf(g.macs, "net1")
	// The first converge of a sandbox announces every EIP (and repeats twice, a second apart).
	var got string
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got = neighbourMAC(e, cli, eipShared); got == net1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got != net1 {
		t.Errorf("the client's ARP entry for %s is %q %.1fs after the sandbox was killed, want net1's %s: no gratuitous ARP reached it",
			eipShared, got, time.Since(mark).Seconds(), net1)
	}
	dnat := waitFlow(t, e.net, now.get("dnat"), mark, 60*time.Second)
	e.times.add("sandbox killed -> DNAT back (same pod)", dnat)
	checkFlows(t, e.net, "after the sandbox was recreated", now)
	if exists(was.netns) {
		t.Errorf("the old sandbox's netns %s is still there", was.netns)
	}
	e.recordFootprint()
	t.Logf("gateway pod %s: sandbox %.12s (pause PID %d) killed, now %.12s in %s; %s",
		g.name, was.containerID, pid, g.containerID, g.netns, g.macs)
}

// sandboxPID finds the pause process of the gateway's sandbox (crictl inspectp) and checks it
// is that sandbox's before anyone kills it: a process of the cluster's cgroups, in the netns
// the attachment record names.
func (e *vpcEnv) sandboxPID(g gatewayState) (int, error) {
	crictl := e.c.Env["CRICTL"]
	conf := filepath.Join(e.c.Env["CLUSTER_DIR"], "config", "crictl.yaml")
	out, err := exec.CommandContext(e.ctx, crictl, "--config", conf, "inspectp", "-o", "json", g.containerID).Output()
	if err != nil {
		return 0, fmt.Errorf("crictl inspectp %s: %w", g.containerID, err)
	}
	var info struct {
		Info struct {
			Pid int `json:"pid"`
		} `json:"info"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Info.Pid <= 1 {
		return 0, fmt.Errorf("crictl inspectp %s: no sandbox PID (%v): %.300s", g.containerID, err, out)
	}
	pid := info.Info.Pid
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil || !strings.Contains(string(cg), e.c.Env["CGROUP_ROOT"]) {
		return 0, fmt.Errorf("PID %d is not in the cluster's cgroups (%s): %v: %s", pid, e.c.Env["CGROUP_ROOT"], err, cg)
	}
	var procNS, recNS syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &procNS); err != nil {
		return 0, fmt.Errorf("netns of PID %d: %w", pid, err)
	}
	if err := syscall.Stat(g.netns, &recNS); err != nil {
		return 0, fmt.Errorf("netns %s: %w", g.netns, err)
	}
	if procNS.Ino != recNS.Ino || procNS.Dev != recNS.Dev {
		return 0, fmt.Errorf("PID %d is not in the gateway's netns %s", pid, g.netns)
	}
	return pid, nil
}

// neighbourMAC is the MAC of ip in the ARP cache of the test host's netns ns ("" when none).
func neighbourMAC(e *vpcEnv, ns, ip string) string {
	out, err := exec.CommandContext(e.ctx, "ip", "-n", ns, "-4", "neigh", "show", ip).Output()
	if err != nil {
		return ""
	}
	fs := strings.Fields(string(out))
	for i, f := range fs {
		if f == "lladdr" && i+1 < len(fs) {
			return fs[i+1]
		}
	}
	return ""
}

// macOf picks ifname's MAC out of gatewayState.macs ("ifname=MAC ...").
func macOf(macs, ifname string) string {
	for _, f := range strings.Fields(macs) {
		if n, mac, ok := strings.Cut(f, "="); ok && n == ifname {
			return mac
		}
	}
	return ""
}
