package ha_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"
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
