package e2e

// The replicated gateway's failover on the multi-node cluster (docs/ha.md): the seed with
// replicas: 2 on nodes 2 and 3 of a 3-node cluster (node 1 runs the controller and is cordoned
// so that no replica lands there), UDP probes every 10 ms through the DNAT and the SNAT, and the
// failures one at a time, with established TCP flows through the DNAT, the FIP (both ways) and
// the SNAT (failover_flows_test.go). In `make test` (about 2 minutes); `make e2e-failover` runs
// it alone, `make soak-failover` many times (failover_soak_test.go).
//
// Address plan: baseline_test.go's (the client 192.168.0.10/24, which also holds the EIPs'
// gateway 192.168.0.254, on the external L2; the target 10.0.1.10/24 on the tenant L2), plus a
// UDP port forward 192.168.0.112:9000 -> 10.0.1.10:9000 added to the seed's gateway for the
// DNAT probe, a UDP server on the client at 192.168.0.10:9001 for the SNAT probe, and
// failover_flows_test.go's FIP host and TCP servers.

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/topo"
)

const (
	foProbeInterval = 10 * time.Millisecond
	foDNATProbe     = "192.168.0.112:9000"
	foSNATServer    = "192.168.0.10:9001"
	foEIP           = "192.168.0.112"
	// The agent's default detection time (100 ms x 3) plus its step and the announcements: after
	// this, one MAC answers for an EIP.
	foDetection = time.Second
)

// TestReplicatedFailover: a takeover when the active replica's pod is killed, its node powered
// off or its external NIC cut; nothing when the daemon on the active node is restarted (no probe
// lost) or the powered-off node comes back (the active replica stays where it is). Each case logs
// its loss window (the lost probes of that case x 10 ms, and the longest silence), checks that
// the established TCP flows through the DNAT, the FIP (both ways) and the SNAT go on exchanging
// data, and that after the detection window one MAC answers for each EIP.
func TestReplicatedFailover(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a 3-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute) // a hang guard
	defer cancel()
	f := startFailover(t, ctx)
	b := f.baseline
	active := f.settled("")
	t.Logf("replicated gateway: active on %s", active)

	var figures []string
	record := func(name string, r caseResult) {
		line := fmt.Sprintf("%-40s %s", name, r)
		t.Log(line)
		figures = append(figures, line)
		f.checkFlows(name, r)
		f.checkARP(name, r)
	}

	// 1. The active gateway pod killed. Its replacement may start on the same node before it is
	// gone, listen, and win the election by its name: the takeover is another pod active.
	pod := f.podOn(active)
	follow := f.followLog(pod)
	r := f.measure(func() { f.deletePod(pod) }, f.otherPodActive(pod))
	record("active pod killed", r)
	t.Logf("deleted agent %s, its last lines:\n%s", pod, follow())
	f.agentLog(f.activeNode())
	active = f.settled("")

	// 2. The daemon on the active node killed and restarted: nothing happens.
	n := f.nodeIndex(active)
	r = f.measure(func() { f.restartDaemon(n) }, nil)
	record("daemon restarted on the active node", r)
	for _, l := range r.probes {
		if l.Lost() != 0 {
			t.Errorf("daemon restart on the active node: %v, want no loss", l)
		}
	}
	if now := f.activeNode(); now != active {
		t.Errorf("daemon restart on the active node: the active replica moved from %s to %q", active, now)
	}

	// 3. The active's external NIC partitioned, then healed.
	n = f.nodeIndex(active)
	r = f.measure(func() {
		if err := b.c.Partition(b.ctx, n, "ext"); err != nil {
			t.Fatal(err)
		}
	}, func() error { return f.takenOver(active) })
	record("active's external NIC partitioned", r)
	f.agentLog(f.activeNode())
	if err := b.c.Heal(b.ctx, n); err != nil {
		t.Fatal(err)
	}
	active = f.settled(active)

	// 4. The active's node powered off.
	n = f.nodeIndex(active)
	r = f.measure(func() {
		if err := b.c.PowerOff(b.ctx, n); err != nil {
			t.Fatal(err)
		}
	}, func() error { return f.takenOver(active) })
	record("active's node powered off", r)
	f.agentLog(f.activeNode())
	off := active
	active = f.activeNode()

	// 5. The node powered on again: its replica comes back as a standby, the active one stays.
	r = f.measure(func() { f.powerOnAsStandby(n, off, active) }, nil)
	record("powered-off node back", r)
	if now := f.activeNode(); now != active {
		t.Errorf("node %s back: the active replica moved from %s to %q (flapping back)", off, active, now)
	}

	t.Log("replicas: 2, failover loss windows (10 ms UDP probes) and TCP flows:\n" + strings.Join(figures, "\n"))
}

// startFailover starts the 3-node cluster with vpcnat, the test hosts (client, target, FIP
// host), the seed with replicas: 2 plus a UDP and a TCP port forward, and the servers the
// probes and flows talk to.
func startFailover(t *testing.T, ctx context.Context) *failover {
	if v := tcpFlowCheck(); v != "strict" && v != "pickup" && v != "report" {
		t.Fatalf("VPCNAT_HA_TCP_FLOWS=%q: want strict (the default), pickup or report", v)
	}
	b := startMultiNode(t, ctx)
	// Runs before the cluster's stop (clean-ups run last added first).
	t.Cleanup(func() {
		if t.Failed() {
			b.podLogs()
		}
	})
	b.buildNetworks()
	b.install()
	b.kubectl("cordon", b.c.NodeName(1))
	b.applySeed(func(gw *unstructured.Unstructured) error {
		if err := unstructured.SetNestedField(gw.Object, int64(2), "spec", "replicas"); err != nil {
			return err
		}
		rules, _, err := unstructured.NestedSlice(gw.Object, "spec", "dnatRules")
		if err != nil {
			return err
		}
		rules = append(rules, map[string]any{"eip": foEIP, "externalPort": "9000", "protocol": "udp",
			"internalIp": blTarget, "internalPort": "9000"},
			map[string]any{"eip": foEIP, "externalPort": foTCPPort, "protocol": "tcp",
				"internalIp": blTarget, "internalPort": foTCPPort})
		return unstructured.SetNestedSlice(gw.Object, rules, "spec", "dnatRules")
	})
	f := &failover{baseline: b, tp: &topo.Topology{Prefix: b.prefix}}
	f.buildFIPHost()
	for _, s := range []struct{ role, addr string }{{"srv", blTarget + ":9000"}, {"cli", foSNATServer}} {
		srv, err := f.tp.Listen(s.role, "udp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { srv.Close() })
	}
	for _, fs := range foFlows {
		srv, err := f.listenEcho(fs.server, fs.listen)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Close)
	}
	return f
}

// podLogs logs the end of the log of every vpcnat pod (daemons, controller, gateway agents),
// for a failed test.
func (b *baseline) podLogs() {
	pods, err := b.client.CoreV1().Pods("kube-system").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		b.t.Logf("listing pods: %v", err)
		return
	}
	for _, p := range pods.Items {
		out, err := b.c.Kubectl(context.Background(), "", "logs", "-n", "kube-system", p.Name, "--all-containers", "--tail=30")
		b.t.Logf("--- pod %s on %s (%v):\n%s", p.Name, p.Spec.NodeName, err, out)
	}
}

func (f *failover) deletePod(pod string) {
	f.kubectl("delete", "pod", "-n", "kube-system", pod, "--grace-period=0", "--force")
}

// otherPodActive is nil once the API shows a pod other than pod active.
func (f *failover) otherPodActive(pod string) func() error {
	return func() error {
		s, err := f.status()
		if err != nil {
			return err
		}
		if s.active == "" || s.pod == "" || s.pod == pod {
			return fmt.Errorf("active pod %q on %q", s.pod, s.active)
		}
		return nil
	}
}

// restartDaemon deletes node n's daemon pod and waits until its DaemonSet runs a new one, and
// for its first converge of the gateway.
func (f *failover) restartDaemon(n int) {
	f.kubectl("delete", "pod", "-n", "kube-system", "-l", "vpcnat.test/node="+fmt.Sprint(n), "--grace-period=0", "--force")
	f.poll(3*time.Minute, "the daemon on "+f.c.NodeName(n)+" Ready again", func() error {
		ds, err := f.client.AppsV1().DaemonSets("kube-system").Get(f.ctx, fmt.Sprintf("vpcnat-daemon-%d", n), metav1.GetOptions{})
		if err != nil {
			return err
		}
		if ds.Status.NumberReady != 1 || ds.Status.UpdatedNumberScheduled != 1 {
			return fmt.Errorf("DaemonSet %s: %d ready", ds.Name, ds.Status.NumberReady)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // its first converge of the gateway
}

// powerOnAsStandby powers node n (named off) on and waits until its replica is Ready again as
// a standby beside the active one on active.
func (f *failover) powerOnAsStandby(n int, off, active string) {
	if err := f.c.PowerOn(f.ctx, n); err != nil {
		f.t.Fatal(err)
	}
	f.poll(5*time.Minute, off+"'s replica back as a standby", func() error {
		gw, err := f.status()
		if err != nil {
			return err
		}
		if gw.standbys != 1 || gw.active != active {
			return fmt.Errorf("active %q, %d standbys ready", gw.active, gw.standbys)
		}
		p := f.podOnOrNil(off)
		if p == nil || !podReady(p) {
			return fmt.Errorf("no Ready replica on %s", off)
		}
		return f.activeInDataPlane(active)
	})
	time.Sleep(3 * time.Second)
}

// probeResult is what a probe counted in one case and the longest time it went without an
// answer (sampled every millisecond: the loss window of one outage, where the lost count sums
// every outage of the case).
type probeResult struct {
	topo.LossCount
	silence time.Duration
	from    time.Time // when the longest silence began
}

// followLog follows pod's log until the returned function is called, which returns the role
// changes and exit lines it saw.
func (f *failover) followLog(pod string) func() string {
	var out strings.Builder
	cmd := exec.CommandContext(f.ctx, filepath.Join(f.c.Env["KUBE_BIN"], "kubectl"), "--kubeconfig", f.c.Env["KUBECONFIG"],
		"logs", "-f", "-n", "kube-system", pod)
	cmd.Stdout, cmd.Stderr = &syncWriter{w: &out}, &syncWriter{w: &out}
	if err := cmd.Start(); err != nil {
		return func() string { return err.Error() }
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	return func() string {
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		var lines []string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.Contains(l, "Role changed") || strings.Contains(l, "Left") || strings.Contains(l, "Resuming") || strings.Contains(l, "rror") {
				lines = append(lines, l)
			}
		}
		return strings.Join(lines, "\n")
	}
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(b)
}

// agentLog logs the role changes in the log of the failover agent on node.
func (f *failover) agentLog(node string) {
	p := f.podOnOrNil(node)
	if p == nil {
		return
	}
	out, err := f.c.Kubectl(f.ctx, "", "logs", "-n", "kube-system", p.Name, "--tail=200")
	if err != nil {
		f.t.Logf("agent log of %s: %v", p.Name, err)
		return
	}
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "Role changed") || strings.Contains(l, "Announcing") || strings.Contains(l, "Resuming") || strings.Contains(l, "Committed") {
			lines = append(lines, l)
		}
	}
	if len(lines) > 10 {
		lines = lines[len(lines)-10:]
	}
	f.t.Logf("agent %s on %s, last role changes:\n%s", p.Name, node, strings.Join(lines, "\n"))
}

type failover struct {
	*baseline
	tp *topo.Topology
}

type gwStatus struct {
	pod      string // the active replica's pod
	active   string
	standbys int
}

func (f *failover) status() (gwStatus, error) {
	out, err := f.c.Kubectl(f.ctx, "", "get", "vpc-nat-gw", blGateway, "-o", "jsonpath={.status.activeNode}|{.status.standbysReady}|{.status.pod}")
	if err != nil {
		return gwStatus{}, fmt.Errorf("%w: %s", err, out)
	}
	fields := strings.Split(strings.TrimSpace(out), "|")
	if len(fields) != 3 {
		return gwStatus{}, fmt.Errorf("status %q: want activeNode|standbysReady|pod", out)
	}
	s := gwStatus{active: fields[0]}
	if fields[1] != "" {
		if _, err := fmt.Sscan(fields[1], &s.standbys); err != nil {
			return gwStatus{}, fmt.Errorf("status.standbysReady %q: %w", fields[1], err)
		}
	}
	// status.pod is namespace/name.
	if _, name, ok := strings.Cut(fields[2], "/"); ok {
		s.pod = name
	} else {
		s.pod = fields[2]
	}
	return s, nil
}

func (f *failover) activeNode() string {
	s, err := f.status()
	if err != nil {
		f.t.Fatal(err)
	}
	return s.active
}

// settled waits until the gateway has an active replica on a node other than not (if given) and
// one ready standby, and the data plane agrees (the one replica whose agent marked its net1
// active is that node's), and returns the active node: the next failure is aimed at the replica
// that carries the traffic, not at one the status names late.
func (f *failover) settled(not string) string {
	var active string
	f.poll(5*time.Minute, "an active replica and a ready standby", func() error {
		s, err := f.status()
		if err != nil {
			return err
		}
		if s.active == "" || s.active == not || s.standbys != 1 {
			return fmt.Errorf("active %q, %d standbys ready", s.active, s.standbys)
		}
		if err := f.activeInDataPlane(s.active); err != nil {
			return err
		}
		active = s.active
		return nil
	})
	return active
}

// activeInDataPlane is nil when the replica on node is the only one whose agent marked its
// external NIC active (the NIC's alias, "vpcnat-ha active <term>", read in each replica's netns
// from its attachment record).
func (f *failover) activeInDataPlane(node string) error {
	replicas, err := f.replicas()
	if err != nil {
		return err
	}
	var actives []string
	for _, r := range replicas {
		if r.err != nil {
			return fmt.Errorf("replica %s: no attachment record yet: %w", r.pod.Name, r.err)
		}
		out, err := exec.CommandContext(f.ctx, "nsenter", "--net="+r.netns, "ip", "-o", "link", "show", "dev", "net1").CombinedOutput()
		if err != nil {
			return fmt.Errorf("replica %s: reading net1 in %s: %w: %s", r.pod.Name, r.netns, err, out)
		}
		if strings.Contains(string(out), "alias vpcnat-ha active ") {
			actives = append(actives, r.pod.Spec.NodeName)
		}
	}
	if len(actives) != 1 || actives[0] != node {
		return fmt.Errorf("the status names %s active, the replicas' NICs say %v", node, actives)
	}
	return nil
}

// takenOver is nil once the API shows another node's replica active.
func (f *failover) takenOver(was string) error {
	s, err := f.status()
	if err != nil {
		return err
	}
	if s.active == "" || s.active == was {
		return fmt.Errorf("active %q", s.active)
	}
	return nil
}

func (f *failover) nodeIndex(name string) int {
	for n := 1; n <= f.c.Nodes; n++ {
		if f.c.NodeName(n) == name {
			return n
		}
	}
	f.t.Fatalf("no node %q", name)
	return 0
}

func (f *failover) podOnOrNil(node string) *corev1.Pod {
	pods, err := f.client.CoreV1().Pods("kube-system").List(f.ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway + "=" + blGateway})
	if err != nil {
		return nil
	}
	for i, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Spec.NodeName == node {
			return &pods.Items[i]
		}
	}
	return nil
}

func (f *failover) podOn(node string) string {
	p := f.podOnOrNil(node)
	if p == nil {
		f.t.Fatalf("no gateway replica on %s", node)
	}
	return p.Name
}

// caseResult is what one failure case measured: the UDP probes, the TCP flows, and per EIP the
// MACs that claimed it (ARP replies and announcements) after the detection window, with the
// number of replies among them.
type caseResult struct {
	probes  []probeResult
	flows   []flowResult
	claims  map[string]map[string]bool // EIP -> MACs
	replies map[string]int             // EIP -> ARP replies after the detection window
	// api is the time from the failure until the gateway's status showed the takeover (0:
	// the case expects none).
	api time.Duration
}

func (r caseResult) String() string {
	var parts []string
	for _, l := range r.probes {
		parts = append(parts, fmt.Sprintf("%s %d ms (%d of %d lost, longest silence %d ms)", l.Name,
			l.Lost()*int(foProbeInterval/time.Millisecond), l.Lost(), l.Sent, l.silence.Milliseconds()))
	}
	survived := 0
	for _, fl := range r.flows {
		if fl.survived() {
			survived++
		}
	}
	if r.api > 0 {
		parts = append(parts, fmt.Sprintf("status showed the takeover after %.1f s", r.api.Seconds()))
	}
	parts = append(parts, fmt.Sprintf("TCP flows survived %d of %d", survived, len(r.flows)))
	for _, fl := range r.flows {
		parts = append(parts, fl.String())
	}
	return strings.Join(parts, ", ")
}

// window is the longest silence of the case's UDP probes.
func (r caseResult) window() time.Duration {
	var w time.Duration
	for _, p := range r.probes {
		w = max(w, p.silence)
	}
	return w
}

// checkFlows fails the test for every flow of the case that did not survive, or only logs it
// (see tcpFlowCheck).
func (f *failover) checkFlows(name string, r caseResult) {
	for _, fl := range r.flows {
		switch {
		case fl.survived():
		case tcpFlowCheck() != "report":
			f.t.Errorf("%s: the established %v, want it to go on exchanging data (VPCNAT_HA_TCP_FLOWS=%s)", name, fl, tcpFlowCheck())
		default:
			f.t.Logf("%s: NOT ASSERTED (VPCNAT_HA_TCP_FLOWS=report): the established %v", name, fl)
		}
	}
}

// checkARP fails the test when, after the detection window, an EIP was claimed by more than one
// MAC, or not answered at all (the client resolved both EIPs again then).
func (f *failover) checkARP(name string, r caseResult) {
	for _, eip := range []string{foEIP, foFIP} {
		if len(r.claims[eip]) > 1 {
			f.t.Errorf("%s: after the detection window %d MACs claimed %s: %v", name, len(r.claims[eip]), eip, r.claims[eip])
		}
		if r.replies[eip] == 0 {
			f.t.Errorf("%s: after the detection window nobody answered the client's ARP requests for %s", name, eip)
		}
	}
}

// measure runs the probes through the DNAT and the SNAT and the TCP flows from before act until
// done (if given) holds, both probes are answered again and every flow echoed a line after
// that, plus a few seconds in which the client resolves the EIPs again; it returns what the
// probes and flows counted and which MACs claimed the EIPs after the detection window.
func (f *failover) measure(act func(), done func() error) caseResult {
	t := f.t
	capture, err := f.tp.StartCapture("cli", "eth0", unix.ETH_P_ARP)
	if err != nil {
		t.Fatal(err)
	}
	defer capture.Close()
	dnat, err := f.tp.StartLossProbe("DNAT", "cli", foDNATProbe, foProbeInterval)
	if err != nil {
		t.Fatal(err)
	}
	defer dnat.Stop(0)
	snat, err := f.tp.StartLossProbe("SNAT", "srv", foSNATServer, foProbeInterval)
	if err != nil {
		t.Fatal(err)
	}
	defer snat.Stop(0)
	probes := []*topo.LossProbe{dnat, snat}
	var flows []*tcpFlow
	defer func() {
		for _, fl := range flows {
			fl.finish(0)
		}
	}()
	for _, spec := range foFlows {
		fl, err := f.startFlow(spec)
		if err != nil {
			t.Fatal(err)
		}
		flows = append(flows, fl)
	}
	f.poll(time.Minute, "both probes answered before the case", func() error {
		for _, p := range probes {
			if p.Count().Received == 0 {
				return fmt.Errorf("%v", p.Count())
			}
		}
		return nil
	})
	if err := flowsMoving(flows, time.Now(), time.Minute); err != nil {
		t.Fatalf("TCP flows before the case: %v", err)
	}
	if tcpFlowCheck() == "strict" {
		f.noPickup()
	}
	silences := make([]time.Duration, len(probes))
	froms := make([]time.Time, len(probes))
	stop, sampled := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(sampled)
		last := make([]int, len(probes))
		since := make([]time.Time, len(probes))
		for {
			now := time.Now()
			for i, p := range probes {
				if r := p.Count().Received; r != last[i] || since[i].IsZero() {
					last[i], since[i] = r, now
				} else if d := now.Sub(since[i]); d > silences[i] {
					silences[i], froms[i] = d, since[i]
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	}()
	failed := time.Now()
	act()
	var api time.Duration
	if done != nil {
		f.poll(2*time.Minute, "a takeover shown in the API", done)
		api = time.Since(failed)
	}
	mark := time.Now()
	flowing := func() error {
		for _, p := range probes {
			before := p.Count().Received
			time.Sleep(100 * time.Millisecond)
			if p.Count().Received == before {
				return fmt.Errorf("%s: no answer in 100 ms", p.Name)
			}
		}
		return nil
	}
	f.poll(2*time.Minute, "both probes answered again", flowing)
	// TCP retransmits with a backoff: a flow stalled for a second may wait a few more.
	if err := flowsMoving(flows, mark, 30*time.Second); err != nil {
		t.Logf("TCP flows after the takeover: %v", err)
	}
	// Make the client resolve the EIPs again, now that the detection window is over.
	time.Sleep(foDetection)
	if out, err := exec.Command("ip", "-n", f.tp.Name("cli"), "neigh", "flush", "dev", "eth0").CombinedOutput(); err != nil {
		t.Logf("ip neigh flush: %v: %s", err, out)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	<-sampled
	res := caseResult{claims: map[string]map[string]bool{}, replies: map[string]int{}, api: api}
	for i, p := range probes {
		res.probes = append(res.probes, probeResult{LossCount: p.Stop(500 * time.Millisecond), silence: silences[i], from: froms[i]})
	}
	for _, fl := range flows {
		res.flows = append(res.flows, fl.finish(5*time.Second))
	}
	if silences[0] > 100*time.Millisecond {
		var lines []string
		for _, a := range capture.ARPs() {
			if a.At.After(froms[0].Add(-time.Second)) && a.At.Before(froms[0].Add(silences[0]+time.Second)) && !a.Probe() {
				lines = append(lines, a.String())
			}
		}
		t.Logf("DNAT probe silent from %s for %v; ARP on the client's segment around it (probes left out):\n%s",
			froms[0].Format("15:04:05.000"), silences[0], strings.Join(lines, "\n"))
	}
	for _, a := range capture.ARPs() {
		eip := a.SenderIP.String()
		if (eip != foEIP && eip != foFIP) || !a.At.After(mark.Add(foDetection)) || (a.Op != 2 && !a.Gratuitous()) {
			continue
		}
		if res.claims[eip] == nil {
			res.claims[eip] = map[string]bool{}
		}
		res.claims[eip][a.SenderMAC] = true
		if a.Op == 2 {
			res.replies[eip]++
		}
	}
	return res
}
