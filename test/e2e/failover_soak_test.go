package e2e

// The replicated gateway's failover, many times: the cases of TestReplicatedFailover that move
// the active replica (pod deleted, external NIC cut, node powered off), each repeated, on one
// cluster, with the same probes, flows and ARP capture. Not part of `make test`: `make
// soak-failover` (VPCNAT_FAILOVER_SOAK=<trials per kind>). Address plan: failover_test.go's.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestReplicatedFailoverSoak: VPCNAT_FAILOVER_SOAK trials of each kind, the kinds in turn; every
// trial must take over (the API shows another replica active), keep its TCP flows (checked as
// VPCNAT_HA_TCP_FLOWS says: tcpFlowCheck) and leave one MAC answering for each EIP after the
// detection window. It prints per kind the min / median / max of the UDP loss window and, per
// trial, the TCP flows that survived.
func TestReplicatedFailoverSoak(t *testing.T) {
	v := os.Getenv("VPCNAT_FAILOVER_SOAK")
	if v == "" {
		t.Skip("many minutes: VPCNAT_FAILOVER_SOAK=<trials per kind> (make soak-failover)")
	}
	trials, err := strconv.Atoi(v)
	if err != nil || trials < 1 || trials > 500 {
		t.Fatalf("VPCNAT_FAILOVER_SOAK=%q: want the trials per kind, 1-500", v)
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
			t.Logf("%-40s %s", name, r)
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

	var report strings.Builder
	check := tcpFlowCheck()
	fmt.Fprintf(&report, "replicas: 2, %d trials per kind, UDP probes every %v through the DNAT and the SNAT, %d TCP flows (%s; VPCNAT_HA_TCP_FLOWS: %s)\n",
		trials, foProbeInterval, len(foFlows), flowNames(), check)
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
