package ha_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/ha"
)

// signal sends sig to a replica's agent.
func (rs *replicaSet) signal(r string, sig unix.Signal) {
	rs.t.Helper()
	rs.mu.Lock()
	cmd := rs.agents[r]
	rs.mu.Unlock()
	if cmd == nil {
		rs.t.Fatalf("replica %s has no agent", r)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		rs.t.Fatal(err)
	}
}

// TestStalledStandbyKeepsRoles: a standby's agent that does not run for a while (SIGSTOP: a
// stopped process, a node whose CPUs are starved) finds, when it runs again, the heartbeats its
// socket queued and a clock that moved on by several dead times: the time it did not run is not
// the active replica's silence. It does not take over, and neither replica changes role.
func TestStalledStandbyKeepsRoles(t *testing.T) {
	rs := newReplicaSet(t, "r1", "r2")
	act := rs.active("r1", "r2")
	sb := other(act)
	if rs.role(sb) != "standby" {
		t.Fatalf("replica %s is %q, want standby", sb, rs.role(sb))
	}
	rs.signal(sb, unix.SIGSTOP)
	time.Sleep(time.Second)
	if a := rs.role(act); a != "active" {
		t.Fatalf("while %s was stopped, %s became %q", sb, act, a)
	}
	rs.signal(sb, unix.SIGCONT)
	for end := time.Now().Add(2*rs.timing.DeadAfter + time.Second); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		if a, s := rs.role(act), rs.role(sb); a != "active" || s != "standby" {
			t.Fatalf("after the standby ran again: %s is %q and %s is %q, want active and standby", act, a, sb, s)
		}
	}
}

// TestHeartbeatRoundTripTime: each replica measures its heartbeats' round trip to its peer on every
// NIC (the peer echoes its stamp with its hold time): both replicas observe it on net1 and on the
// subnet NIC, and the mean is positive and far below the dead time (veths on one host).
func TestHeartbeatRoundTripTime(t *testing.T) {
	rs := newReplicaSetWith(t, ha.DefaultTiming, []string{"--metrics-address", metricsAddr}, "r1", "r2")
	rs.active("r1", "r2")
	for _, r := range []string{"r1", "r2"} {
		for _, nic := range []string{"net1", "vpc-sn"} {
			labels := `interface="` + nic + `"`
			deadline := time.Now().Add(waitLimit)
			for rs.metric(r, "vpcnat_keepalive_heartbeat_rtt_seconds_count", labels) < 5 {
				if time.Now().After(deadline) {
					t.Fatalf("replica %s, %s: %v round trips measured after %v", r, nic,
						rs.metric(r, "vpcnat_keepalive_heartbeat_rtt_seconds_count", labels), waitLimit)
				}
				time.Sleep(50 * time.Millisecond)
			}
			sum := rs.metric(r, "vpcnat_keepalive_heartbeat_rtt_seconds_sum", labels)
			n := rs.metric(r, "vpcnat_keepalive_heartbeat_rtt_seconds_count", labels)
			mean := time.Duration(sum / n * float64(time.Second))
			t.Logf("replica %s, %s: %v round trips, mean %v", r, nic, n, mean)
			if mean <= 0 || mean >= ha.DefaultTiming.DeadAfter {
				t.Errorf("replica %s, %s: mean round trip %v, want above 0 and below the dead time %v", r, nic, mean, ha.DefaultTiming.DeadAfter)
			}
		}
	}
}
