package ha_test

// Address plan (docs/design.md, "Test address plan"), all inside namespaces the test creates:
//
//	external L2 (ns "ext", bridge brx)  198.51.100.0/24
//	  rtr  198.51.100.1   the EIP gateway, and the outside client of the DNAT probe
//	  r1, r2 net1 198.51.100.10/24   the gateway's EIP, held by both replicas
//	tenant L2 (ns "ten", bridge brt)     203.0.113.0/24
//	  pod  203.0.113.10   a VPC host, default via 203.0.113.1
//	  r1, r2 vpc-sn 203.0.113.1/24   the subnet's gateway address, held by both replicas
//	pod network (ns "podnet", bridge brp) 2001:db8:100::/64
//	  r1, r2 eth0 2001:db8:100::1, ::2   each replica's own pod address (the primary CNI's),
//	                                     which the conntrack stream between replicas uses
//
// Each replica is converged the same (addresses, default route, DNAT and SNAT rules), as the
// daemon converges every replica; only the agent makes one of them answer ARP.

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/ha"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/topo"
)

const (
	eip       = "198.51.100.10"
	routerIP  = "198.51.100.1"
	subnetGW  = "203.0.113.1"
	podIP     = "203.0.113.10"
	dnatPort  = "5000"
	snatPort  = "6000"
	probeTick = 10 * time.Millisecond
	// hang guards only: every wait below ends as soon as what it waits for happens.
	waitLimit = 15 * time.Second
)

var (
	buildOnce sync.Once
	agentBin  string
	buildErr  error
)

// TestMain removes the agent binary agentBinary built, if any.
func TestMain(m *testing.M) {
	code := m.Run()
	if agentBin != "" {
		_ = os.RemoveAll(filepath.Dir(agentBin))
	}
	os.Exit(code)
}

// agentBinary builds cmd/vpcnat-keepalive once per test binary.
func agentBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vpcnat-keepalive-")
		if err != nil {
			buildErr = err
			return
		}
		agentBin = filepath.Join(dir, "vpcnat-keepalive")
		out, err := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", agentBin,
			"github.com/vpcnat/vpcnat/cmd/vpcnat-keepalive").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("building vpcnat-keepalive: %w: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return agentBin
}

type replicaSet struct {
	t      testing.TB
	timing ha.Timing
	// args are extra agent flags (e.g. --conntrack-sync=false).
	args   []string
	tp     *topo.Topology
	agents map[string]*exec.Cmd
	logs   map[string]*strings.Builder
	mu     sync.Mutex
}

// newReplicaSet builds the topology and starts one agent per replica.
func newReplicaSet(t testing.TB, replicas ...string) *replicaSet {
	return newReplicaSetTimed(t, ha.DefaultTiming, replicas...)
}

// newReplicaSetTimed is newReplicaSet with the agents' heartbeat timing (whole milliseconds).
func newReplicaSetTimed(t testing.TB, timing ha.Timing, replicas ...string) *replicaSet {
	t.Helper()
	return newReplicaSetWith(t, timing, nil, replicas...)
}

// newReplicaSetWith is newReplicaSetTimed with extra agent flags.
func newReplicaSetWith(t testing.TB, timing ha.Timing, args []string, replicas ...string) *replicaSet {
	t.Helper()
	topo.NeedRoot(t)
	tp := &topo.Topology{Prefix: topo.NewPrefix()}
	rs := &replicaSet{t: t, tp: tp, timing: timing, args: args, agents: map[string]*exec.Cmd{}, logs: map[string]*strings.Builder{}}
	t.Cleanup(rs.close)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tp.AddNS("ext"))
	must(tp.Bridge("ext", "brx"))
	must(tp.AddNS("ten"))
	must(tp.Bridge("ten", "brt"))
	must(tp.Host("rtr", "ext", "brx", "p-rtr", routerIP+"/24", ""))
	must(tp.Host("pod", "ten", "brt", "p-pod", podIP+"/24", subnetGW))
	must(tp.AddNS("podnet"))
	must(tp.Bridge("podnet", "brp"))
	for i, r := range replicas {
		must(tp.AddNS(r))
		must(tp.Veth("podnet", "p-"+r, r, "eth0"))
		_, err := tp.Exec("podnet", "ip", "link", "set", "p-"+r, "master", "brp")
		must(err)
		_, err = tp.Exec(r, "ip", "addr", "add", fmt.Sprintf("2001:db8:100::%d/64", i+1), "dev", "eth0", "nodad")
		must(err)
		must(tp.Veth("ext", "x-"+r, r, "net1"))
		must(tp.Veth("ten", "t-"+r, r, "vpc-sn"))
		_, err = tp.Exec("ext", "ip", "link", "set", "x-"+r, "master", "brx")
		must(err)
		_, err = tp.Exec("ten", "ip", "link", "set", "t-"+r, "master", "brt")
		must(err)
	}
	// Every replica's NICs start with the same MACs, as the CNI plugin creates them from the
	// gateway's NIC plan.
	for _, r := range replicas {
		for dev, mac := range map[string]string{"net1": plan.ExternalMAC("gw1"), "vpc-sn": plan.SubnetMAC("gw1", "sn")} {
			_, err := tp.Exec(r, "ip", "link", "set", dev, "address", mac)
			must(err)
		}
	}
	heartbeats, err := tp.StartCapture("ext", "brx", ha.EtherType)
	must(err)
	t.Cleanup(heartbeats.Close)
	// The agents start before the daemon converges, as in a pod. Every replica's NICs are silent
	// from the agent's first step, and nothing leaves them while they carry the shared MACs.
	for _, r := range replicas {
		rs.start(r)
	}
	for _, r := range replicas {
		rs.waitFor(r, func(role string) bool { return role == "standby" })
	}
	time.Sleep(2 * timing.DeadAfter) // long enough for heartbeats, elections and probes
	for _, r := range replicas {
		if role := rs.role(r); role != "standby" {
			t.Fatalf("replica %s became %s with the shared MACs, before the daemon converged it", r, role)
		}
	}
	if n := len(heartbeats.Frames()); n != 0 {
		t.Fatalf("%d heartbeats left replicas whose NICs still carry the shared MACs", n)
	}
	// The daemon converges each replica: its own MACs, then addresses, routes, NAT.
	for _, r := range replicas {
		for dev, mac := range map[string]string{"net1": plan.ReplicaMAC(plan.ExternalMAC("gw1"), r),
			"vpc-sn": plan.ReplicaMAC(plan.SubnetMAC("gw1", "sn"), r)} {
			// Live, as the daemon sets it (netlink, the link stays up).
			_, err := tp.Exec(r, "ip", "link", "set", "dev", dev, "address", mac)
			must(err)
		}
	}
	// They now hear each other and elect: never two active replicas on the way.
	for end := time.Now().Add(3 * timing.DeadAfter); time.Now().Before(end); {
		var act []string
		for _, r := range replicas {
			if rs.role(r) == "active" {
				act = append(act, r)
			}
		}
		if len(act) > 1 {
			t.Fatalf("replicas %v are active at once after they became healthy", act)
		}
	}
	for _, r := range replicas {
		for _, argv := range [][]string{
			{"ip", "addr", "add", eip + "/24", "dev", "net1"},
			{"ip", "addr", "add", subnetGW + "/24", "dev", "vpc-sn"},
			{"ip", "route", "add", "default", "via", routerIP},
			{"sysctl", "-qw", "net.ipv4.ip_forward=1"},
			{"iptables", "-t", "nat", "-A", "PREROUTING", "-d", eip, "-p", "udp", "--dport", dnatPort, "-j", "DNAT", "--to-destination", podIP + ":" + dnatPort},
			{"iptables", "-t", "nat", "-A", "POSTROUTING", "-s", "203.0.113.0/24", "-o", "net1", "-j", "SNAT", "--to-source", eip},
		} {
			_, err := tp.Exec(r, argv...)
			must(err)
		}
	}
	return rs
}

// close kills the agents and deletes the topology; a second call does nothing.
func (rs *replicaSet) close() {
	rs.mu.Lock()
	names := make([]string, 0, len(rs.agents))
	for name := range rs.agents {
		names = append(names, name)
	}
	rs.mu.Unlock()
	for _, name := range names {
		rs.kill(name)
	}
	if err := rs.tp.Close(); err != nil {
		rs.t.Error(err)
	}
}

func (rs *replicaSet) start(r string) {
	rs.t.Helper()
	args := append([]string{"netns", "exec", rs.tp.Name(r), agentBinary(rs.t),
		"--gateway", "gw1", "--replica", r, "--exclude", "eth0", "--replica-macs", "-v=2",
		fmt.Sprintf("--min-tx=%d", rs.timing.Interval.Milliseconds()), "--min-rx=" + fmt.Sprint(rs.timing.Interval.Milliseconds()),
		fmt.Sprintf("--multiplier=%d", rs.timing.DeadAfter/rs.timing.Interval)}, rs.args...)
	cmd := exec.Command("ip", args...)
	log := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		rs.t.Fatal(err)
	}
	rs.mu.Lock()
	rs.agents[r], rs.logs[r] = cmd, log
	rs.mu.Unlock()
}

// kill SIGKILLs a replica's agent (by its PID; `ip netns exec` execs it, so the PID is the
// agent's) and waits for it.
func (rs *replicaSet) kill(r string) {
	rs.mu.Lock()
	cmd := rs.agents[r]
	delete(rs.agents, r)
	rs.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(unix.SIGKILL)
	_ = cmd.Wait()
	rs.t.Logf("agent %s log:\n%s", r, rs.logs[r])
}

// role reads a replica's role from its NICs: "active" when both answer ARP, "standby" when both
// are silent (NOARP), "" otherwise (never two roles at once, or not decided yet).
func (rs *replicaSet) role(r string) string {
	var silent []bool
	for _, dev := range []string{"net1", "vpc-sn"} {
		out, err := rs.tp.Exec(r, "ip", "-o", "link", "show", "dev", dev)
		if err != nil {
			return ""
		}
		if !strings.Contains(out, "vpcnat-ha") {
			return ""
		}
		silent = append(silent, strings.Contains(out, "NOARP"))
	}
	switch {
	case !silent[0] && !silent[1]:
		return "active"
	case silent[0] && silent[1]:
		return "standby"
	}
	return ""
}

func (rs *replicaSet) waitFor(r string, ok func(role string) bool) {
	rs.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !ok(rs.role(r)) {
		if time.Now().After(deadline) {
			rs.t.Fatalf("replica %s: role %q after %v", r, rs.role(r), waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// active waits until exactly one replica is active and returns it.
func (rs *replicaSet) active(replicas ...string) string {
	rs.t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		var act []string
		for _, r := range replicas {
			if rs.role(r) == "active" {
				act = append(act, r)
			}
		}
		if len(act) == 1 {
			return act[0]
		}
		if time.Now().After(deadline) {
			rs.t.Fatalf("active replicas %v after %v", act, waitLimit)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// flowing waits until both probes got answers for the last 20 datagrams.
func flowing(t testing.TB, count func() (topo.LossCount, topo.LossCount)) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	var lastD, lastS topo.LossCount
	for {
		time.Sleep(200 * time.Millisecond)
		d, s := count()
		if d.Received-lastD.Received >= 15 && s.Received-lastS.Received >= 15 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("traffic does not flow: %v; %v", d, s)
		}
		lastD, lastS = d, s
	}
}

func other(r string) string {
	if r == "r1" {
		return "r2"
	}
	return "r1"
}

// TestFailoverOnReplicaLoss: the active replica's node goes away (its agent SIGKILLed and its
// NICs cut from both segments); the standby takes over and traffic through the DNAT and the
// SNAT flows again.
func TestFailoverOnReplicaLoss(t *testing.T) {
	lostD, lostS := replicaLoss(t)
	t.Logf("replica loss: %d DNAT and %d SNAT datagrams lost at one per %v: loss window ≈ %v / %v",
		lostD, lostS, probeTick, time.Duration(lostD)*probeTick, time.Duration(lostS)*probeTick)
	if lostD == 0 {
		t.Errorf("no DNAT datagram lost while the active replica went away: the probe did not go through it")
	}
}

// replicaLoss builds two replicas, takes the active one away (agent SIGKILLed, NICs cut from
// both segments), waits for the standby to take over and traffic to flow again, and returns the
// datagrams lost through the DNAT and the SNAT. The topology is gone when it returns.
func replicaLoss(t testing.TB) (lostD, lostS int) {
	rs := newReplicaSet(t, "r1", "r2")
	defer rs.close()
	old := rs.active("r1", "r2")
	if rs.role(other(old)) != "standby" {
		t.Fatalf("replica %s is %q, want standby", other(old), rs.role(other(old)))
	}
	stop, counts := rs.probesWithCount()
	flowing(t, counts)
	before, beforeS := counts()

	rs.kill(old)
	for _, p := range []struct{ ns, dev string }{{"ext", "x-" + old}, {"ten", "t-" + old}} {
		if _, err := rs.tp.Exec(p.ns, "ip", "link", "set", p.dev, "down"); err != nil {
			t.Fatal(err)
		}
	}
	rs.waitFor(other(old), func(r string) bool { return r == "active" })
	flowing(t, counts)
	d, s := stop()
	return d.Lost() - before.Lost(), s.Lost() - beforeS.Lost()
}

// BenchmarkFailoverLossWindow repeats replicaLoss and reports the DNAT loss window (ms, at one
// probe per 10 ms): min, median and max over the runs.
//
//	sudo go test -run '^$' -bench FailoverLossWindow -benchtime 20x ./pkg/ha/
func BenchmarkFailoverLossWindow(b *testing.B) {
	var windows []float64
	for range b.N {
		lostD, _ := replicaLoss(b)
		windows = append(windows, float64(time.Duration(lostD)*probeTick)/float64(time.Millisecond))
	}
	slices.Sort(windows)
	b.ReportMetric(windows[0], "min-loss-ms")
	b.ReportMetric(windows[len(windows)/2], "median-loss-ms")
	b.ReportMetric(windows[len(windows)-1], "max-loss-ms")
	b.ReportMetric(0, "ns/op")
}

// TestPartitionedActiveGivesUp: the active replica's external NIC is cut while its agent runs;
// it loses its health (carrier, the EIP gateway's answers), silences its NICs, and the standby
// takes over. When the partition heals, the new active replica keeps the role (no preemption)
// and, after the detection window, only it answers ARP for the EIP.
func TestPartitionedActiveGivesUp(t *testing.T) {
	rs := newReplicaSet(t, "r1", "r2")
	old := rs.active("r1", "r2")
	stop, counts := rs.probesWithCount()
	flowing(t, counts)
	before, _ := counts()

	if _, err := rs.tp.Exec("ext", "ip", "link", "set", "x-"+old, "down"); err != nil {
		t.Fatal(err)
	}
	rs.waitFor(old, func(r string) bool { return r == "standby" })
	rs.waitFor(other(old), func(r string) bool { return r == "active" })
	flowing(t, counts)
	mid, _ := counts()
	t.Logf("partition: %d DNAT datagrams lost: loss window ≈ %v", mid.Lost()-before.Lost(), time.Duration(mid.Lost()-before.Lost())*probeTick)

	// Heal, wait past the detection window, and make the router resolve the EIP again.
	capt, err := rs.tp.StartCapture("rtr", "eth0", unix.ETH_P_ARP)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()
	if _, err := rs.tp.Exec("ext", "ip", "link", "set", "x-"+old, "up"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond) // two detection windows of the default timing
	healed := time.Now()
	for range 5 {
		if _, err := rs.tp.Exec("rtr", "ip", "neigh", "flush", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	flowing(t, counts)
	stop()
	if got := rs.active("r1", "r2"); got != other(old) {
		t.Fatalf("after the partition healed %s is active, want %s (no preemption)", got, other(old))
	}
	wantMAC, err := rs.tp.MAC(other(old), "net1")
	if err != nil {
		t.Fatal(err)
	}
	answers := 0
	for _, a := range capt.ARPs() {
		if a.At.Before(healed) || a.SenderIP != netip.MustParseAddr(eip) {
			continue
		}
		answers++
		if a.SenderMAC != wantMAC {
			t.Errorf("after the detection window: %v, want only %s (%s)", a, wantMAC, other(old))
		}
	}
	if answers == 0 {
		t.Fatal("no ARP answer for the EIP after the partition healed: the capture saw nothing to compare")
	}
}

// probesWithCount is probes plus a reader of the running counts.
func (rs *replicaSet) probesWithCount() (stop func() (topo.LossCount, topo.LossCount), counts func() (topo.LossCount, topo.LossCount)) {
	rs.t.Helper()
	srvDNAT, err := rs.tp.Listen("pod", "udp", podIP+":"+dnatPort)
	if err != nil {
		rs.t.Fatal(err)
	}
	srvSNAT, err := rs.tp.Listen("rtr", "udp", routerIP+":"+snatPort)
	if err != nil {
		rs.t.Fatal(err)
	}
	pd, err := rs.tp.StartLossProbe("dnat", "rtr", eip+":"+dnatPort, probeTick)
	if err != nil {
		rs.t.Fatal(err)
	}
	ps, err := rs.tp.StartLossProbe("snat", "pod", routerIP+":"+snatPort, probeTick)
	if err != nil {
		rs.t.Fatal(err)
	}
	var once sync.Once
	var d, s topo.LossCount
	stop = func() (topo.LossCount, topo.LossCount) {
		once.Do(func() {
			d, s = pd.Stop(200*time.Millisecond), ps.Stop(200*time.Millisecond)
			srvDNAT.Close()
			srvSNAT.Close()
		})
		return d, s
	}
	rs.t.Cleanup(func() { stop() })
	return stop, func() (topo.LossCount, topo.LossCount) { return pd.Count(), ps.Count() }
}

// TestAgentRestart: an agent restarted at once (its container restarted by the kubelet)
// resumes the role its NICs hold, so the active replica stays active and no datagram is lost;
// an agent that stays away long enough loses the role to the standby, and when it comes back
// it hears the later term and silences its NICs: one active replica again.
func TestAgentRestart(t *testing.T) {
	// A detection time (1 s) that a restart of the agent's process fits in with room to spare
	// on a loaded machine: what is tested is that a restart within it changes nothing.
	rs := newReplicaSetTimed(t, ha.Timing{Interval: 100 * time.Millisecond, DeadAfter: time.Second}, "r1", "r2")
	old := rs.active("r1", "r2")
	stop, counts := rs.probesWithCount()
	flowing(t, counts)
	before, beforeS := counts()

	rs.kill(old)
	rs.start(old)
	flowing(t, counts)
	if got := rs.active("r1", "r2"); got != old {
		t.Fatalf("after a quick agent restart %s is active, want %s", got, old)
	}
	// Counted once every answer is in (stop waits): a datagram in flight when before was read
	// counted as lost then and may only lower the difference.
	after, afterS := stop()
	if lost, lostS := after.Lost()-before.Lost(), afterS.Lost()-beforeS.Lost(); lost > 0 || lostS > 0 {
		t.Errorf("a quick agent restart lost %d DNAT and %d SNAT datagrams, want none", lost, lostS)
	}

	stop, counts = rs.probesWithCount()
	rs.kill(old)
	rs.waitFor(other(old), func(r string) bool { return r == "active" })
	rs.start(old)
	rs.waitFor(old, func(r string) bool { return r == "standby" })
	flowing(t, counts)
	stop()
	if got := rs.active("r1", "r2"); got != other(old) {
		t.Fatalf("after the agent came back %s is active, want %s", got, other(old))
	}
}
