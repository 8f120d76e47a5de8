package e2e

// The replicated gateway's failover, many times: the cases of TestReplicatedFailover that move
// the active replica (pod deleted, external NIC cut, node powered off), each repeated, on one
// cluster, with the same probes, flows and ARP capture. Not part of `make test`: `make
// soak-failover` (VPCNAT_FAILOVER_SOAK=<trials per kind>; VPCNAT_FAILOVER_HOG=<busy processes>
// runs the trials with the CPUs starved). Address plan: failover_test.go's.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReplicatedFailoverSoak: VPCNAT_FAILOVER_SOAK trials of each kind, the kinds in turn; every
// trial must take over (the API shows another replica active), keep its TCP flows (checked as
// VPCNAT_HA_TCP_FLOWS says: tcpFlowCheck) and leave one MAC answering for each EIP after the
// detection window. It prints per kind the min / median / max of the UDP loss window and, per
// trial, the TCP flows that survived. VPCNAT_FAILOVER_HOG=N (default 0) runs N busy processes
// on the host for every trial (started once the cluster is up, killed by PID at the end), so the
// replicas' agents compete for the CPUs as on a busy node; the report gives the load average.
func TestReplicatedFailoverSoak(t *testing.T) {
	v := os.Getenv("VPCNAT_FAILOVER_SOAK")
	if v == "" {
		t.Skip("many minutes: VPCNAT_FAILOVER_SOAK=<trials per kind> (make soak-failover)")
	}
	trials, err := strconv.Atoi(v)
	if err != nil || trials < 1 || trials > 500 {
		t.Fatalf("VPCNAT_FAILOVER_SOAK=%q: want the trials per kind, 1-500", v)
	}
	hogs := 0
	if v := os.Getenv("VPCNAT_FAILOVER_HOG"); v != "" {
		if hogs, err = strconv.Atoi(v); err != nil || hogs < 0 || hogs > 64 {
			t.Fatalf("VPCNAT_FAILOVER_HOG=%q: want the number of busy processes, 0-64", v)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs a 3-node cluster")
	}
	// A hang guard: a trial takes well under a minute.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute+time.Duration(trials)*3*2*time.Minute)
	defer cancel()
	f := startFailover(t, ctx)
	b := f.baseline
	active := f.settled("")
	stopHog := startBusyLoops(t, hogs)
	defer stopHog()
	var loads []float64

	type kind struct {
		name string
		run  func(active string) (caseResult, string) // the result and the new active node
	}
	kinds := []kind{
		{"active pod deleted", func(active string) (caseResult, string) {
			pod := f.podOn(active)
			r := f.measure(func() { f.deletePod(pod) }, f.otherPodActive(pod))
			return r, f.settled("")
		}},
		{"active's external NIC cut", func(active string) (caseResult, string) {
			n := f.nodeIndex(active)
			r := f.measure(func() {
				if err := b.c.Partition(b.ctx, n, "ext"); err != nil {
					t.Fatal(err)
				}
			}, func() error { return f.takenOver(active) })
			if err := b.c.Heal(b.ctx, n); err != nil {
				t.Fatal(err)
			}
			return r, f.settled(active)
		}},
		{"active's node powered off", func(active string) (caseResult, string) {
			n := f.nodeIndex(active)
			r := f.measure(func() {
				if err := b.c.PowerOff(b.ctx, n); err != nil {
					t.Fatal(err)
				}
			}, func() error { return f.takenOver(active) })
			now := f.activeNode()
			f.powerOnAsStandby(n, active, now)
			return r, now
		}},
	}
	results := map[string][]caseResult{}
	for i := 1; i <= trials; i++ {
		for _, k := range kinds {
			var r caseResult
			name := fmt.Sprintf("%s, trial %d", k.name, i)
			r, active = k.run(active)
			load := loadAverage(t)
			loads = append(loads, load)
			t.Logf("%-40s %s; load average %.2f", name, r, load)
			f.checkFlows(name, r)
			f.checkARP(name, r)
			if r.window() > time.Second || duplicateClaims(r) {
				// An outlier: the agents' role changes say whether the role moved more than once.
				for n := 2; n <= f.c.Nodes; n++ {
					f.agentLog(f.c.NodeName(n))
				}
			}
			results[k.name] = append(results[k.name], r)
		}
	}

	stopHog()
	var report strings.Builder
	check := tcpFlowCheck()
	fmt.Fprintf(&report, "replicas: 2, %d trials per kind, UDP probes every %v through the DNAT and the SNAT, %d TCP flows (%s; VPCNAT_HA_TCP_FLOWS: %s)\n",
		trials, foProbeInterval, len(foFlows), flowNames(), check)
	slices.Sort(loads)
	fmt.Fprintf(&report, "busy processes (VPCNAT_FAILOVER_HOG): %d on %d CPUs; 1-minute load average at the trials' ends min/median/max %.2f / %.2f / %.2f\n",
		hogs, cpuCount(), loads[0], loads[len(loads)/2], loads[len(loads)-1])
	for _, k := range kinds {
		rs := results[k.name]
		var windows, lost, api []time.Duration
		var survived []string
		dup := 0
		for _, r := range rs {
			windows = append(windows, r.window())
			api = append(api, r.api)
			worst := 0
			for _, p := range r.probes {
				worst = max(worst, p.Lost())
			}
			lost = append(lost, time.Duration(worst)*foProbeInterval)
			n := 0
			for _, fl := range r.flows {
				if fl.survived() {
					n++
				}
			}
			survived = append(survived, fmt.Sprintf("%d/%d", n, len(r.flows)))
			if duplicateClaims(r) {
				dup++
			}
		}
		fmt.Fprintf(&report, "%-26s loss window (longest silence) min/median/max %s; lost probes x 10 ms %s; status showed the takeover after %s; TCP flows survived per trial %s; trials with an EIP claimed by two MACs after the detection window: %d\n",
			k.name, spread(windows), spread(lost), spread(api), strings.Join(survived, " "), dup)
	}
	t.Log("\n" + report.String())
}

// startBusyLoops starts n busy-loop processes (plain priority, the host's namespaces: they only
// burn CPU) and returns what kills them by PID and waits for them; it runs once, and as a
// cleanup if the test ends first.
func startBusyLoops(t *testing.T, n int) func() {
	t.Helper()
	var procs []*exec.Cmd
	stop := func() {
		for _, p := range procs {
			_ = p.Process.Signal(unix.SIGKILL)
			_ = p.Wait()
		}
		procs = nil
	}
	t.Cleanup(stop)
	for range n {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting a busy loop: %v", err)
		}
		procs = append(procs, cmd)
	}
	if n > 0 {
		t.Logf("%d busy processes started on %d CPUs", n, cpuCount())
	}
	return stop
}

// loadAverage is the host's 1-minute load average.
func loadAverage(t *testing.T) float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		t.Fatalf("/proc/loadavg: %q", b)
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		t.Fatalf("/proc/loadavg: %v", err)
	}
	return v
}

func cpuCount() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0
	}
	return set.Count()
}

func flowNames() string {
	var names []string
	for _, fs := range foFlows {
		names = append(names, fs.name)
	}
	return strings.Join(names, ", ")
}

// spread is "min / median / max ms" of ds.
func spread(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	med := s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return fmt.Sprintf("%d / %d / %d ms", s[0].Milliseconds(), med.Milliseconds(), s[len(s)-1].Milliseconds())
}

// duplicateClaims: an EIP was claimed by more than one MAC after the detection window.
func duplicateClaims(r caseResult) bool {
	for _, macs := range r.claims {
		if len(macs) > 1 {
			return true
		}
	}
	return false
}
