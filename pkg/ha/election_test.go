package ha

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

func replica(name string, prio uint8) *Elector {
	return NewElector(Heartbeat{Gateway: "gw1", Replica: name, Priority: prio}, DefaultTiming, t0)
}

// exchange lets every elector hear every other's current heartbeat at now, then decide.
func exchange(now time.Time, healthy map[*Elector]bool, es ...*Elector) {
	for _, a := range es {
		for _, b := range es {
			if a != b {
				b.Receive(a.Heartbeat(), now)
			}
		}
	}
	for _, e := range es {
		h, ok := healthy[e]
		e.Decide(now, h || !ok)
	}
}

func actives(es ...*Elector) []string {
	var out []string
	for _, e := range es {
		if e.Heartbeat().Active {
			out = append(out, e.Heartbeat().Replica)
		}
	}
	return out
}

func TestElectionOneActive(t *testing.T) {
	a, b, c := replica("a", 100), replica("b", 100), replica("c", 200)
	for ms := 0; ms <= 1000; ms += 100 {
		exchange(at(ms), nil, a, b, c)
		if int64(ms) < DefaultTiming.DeadAfter.Milliseconds() {
			if got := actives(a, b, c); len(got) != 0 {
				t.Fatalf("at %d ms, still listening: active %v", ms, got)
			}
		}
	}
	if got := actives(a, b, c); len(got) != 1 || got[0] != "c" {
		t.Fatalf("active %v, want [c] (highest priority)", got)
	}
}

func TestElectionTakeoverAndNoPreemption(t *testing.T) {
	a, b := replica("a", 100), replica("b", 100)
	ms := 0
	for ; ms <= 500; ms += 100 {
		exchange(at(ms), nil, a, b)
	}
	if got := actives(a, b); len(got) != 1 || got[0] != "a" {
		t.Fatalf("active %v, want [a]", got)
	}
	// a dies: b hears nothing more from it.
	var took time.Time
	for ; ms <= 1500; ms += 100 {
		if r, why := b.Decide(at(ms), true); r == Active && took.IsZero() {
			took = at(ms)
			if why == "" {
				t.Fatal("a takeover without a reason")
			}
		}
	}
	if took.IsZero() || took.Sub(at(500)) > DefaultTiming.DeadAfter+DefaultTiming.Interval {
		t.Fatalf("b took over at %v after a's last heartbeat at 500 ms, want within %v", took.Sub(t0), DefaultTiming.DeadAfter+DefaultTiming.Interval)
	}
	if b.Heartbeat().Term <= a.Heartbeat().Term {
		t.Fatalf("b's term %d is not above a's %d", b.Heartbeat().Term, a.Heartbeat().Term)
	}
	// a comes back (a new agent: a fresh elector) and outranks b by name: b keeps the role.
	a = replica("a", 100)
	for end := ms + 1000; ms <= end; ms += 100 {
		exchange(at(ms), nil, a, b)
	}
	if got := actives(a, b); len(got) != 1 || got[0] != "b" {
		t.Fatalf("after a came back: active %v, want [b] (no preemption)", got)
	}
}

// TestElectionPartition: the active replica loses its health (its external NIC is cut) and
// steps down at once, the standby takes over; when both are active after a partition heals,
// the later term wins on the first exchange.
func TestElectionPartition(t *testing.T) {
	a, b := replica("a", 100), replica("b", 100)
	ms := 0
	for ; ms <= 500; ms += 100 {
		exchange(at(ms), nil, a, b)
	}
	if r, why := a.Decide(at(ms), false); r != Standby || why != "unhealthy" {
		t.Fatalf("unhealthy active: %v (%q)", r, why)
	}
	exchange(at(ms+100), map[*Elector]bool{a: false}, a, b)
	if got := actives(a, b); len(got) != 1 || got[0] != "b" {
		t.Fatalf("after a lost its health: active %v, want [b]", got)
	}

	// Split brain by construction: both active and healthy, b with the later term.
	a.Decide(at(ms+150), true)
	a.Resume(b.Heartbeat().Term - 1)
	if got := actives(a, b); len(got) != 2 {
		t.Fatalf("setup: active %v", got)
	}
	exchange(at(ms+200), nil, a, b)
	if got := actives(a, b); len(got) != 1 || got[0] != "b" {
		t.Fatalf("after the partition healed: active %v, want [b] (later term)", got)
	}
	if !b.Contested() {
		t.Fatal("b kept the role against an active a without being told to announce again")
	}
	exchange(at(ms+300), nil, a, b)
	if b.Contested() {
		t.Fatal("b still contested after a stepped down")
	}
}

// TestElectionListensAfterHealth: a replica that becomes healthy (its NICs converged, its link
// back) listens one dead time before it may take over, whatever happened before: a replica it
// could not hear while unhealthy may be active.
func TestElectionListensAfterHealth(t *testing.T) {
	a := replica("a", 100)
	for ms := 0; ms <= 1000; ms += 100 {
		if r, _ := a.Decide(at(ms), false); r != Standby {
			t.Fatalf("unhealthy a is %v at %d ms", r, ms)
		}
	}
	for ms := 1100; ms <= 1600; ms += 100 {
		r, _ := a.Decide(at(ms), true)
		if listening := ms-1100 < int(DefaultTiming.DeadAfter.Milliseconds()); listening && r != Standby {
			t.Fatalf("a took over at %d ms, %d ms after it became healthy", ms, ms-1100)
		}
	}
	if !a.Heartbeat().Active {
		t.Fatal("a, alone and healthy for longer than the dead time, is not active")
	}
}

func TestElectionIgnoresOtherGateways(t *testing.T) {
	a := replica("a", 100)
	a.Decide(at(0), true)
	for ms := 0; ms <= 500; ms += 100 {
		a.Receive(Heartbeat{Gateway: "other", Replica: "x", Term: 9, Active: true, Healthy: true}, at(ms))
		a.Receive(Heartbeat{Gateway: "gw1", Replica: "a", Term: 9, Active: true, Healthy: true}, at(ms))
		a.Decide(at(ms), true)
	}
	if h := a.Heartbeat(); !h.Active || h.Term != 1 {
		t.Fatalf("a = %+v, want active at term 1 (other gateways and its own frames ignored)", h)
	}
}

func TestTimingFromBFD(t *testing.T) {
	if tm, err := TimingFromBFD(0, 0, 0); err != nil || tm != DefaultTiming {
		t.Fatalf("defaults: %+v, %v", tm, err)
	}
	if tm, err := TimingFromBFD(1000, 500, 3); err != nil || tm.Interval != 500*time.Millisecond || tm.DeadAfter != 3*time.Second {
		t.Fatalf("Kube-OVN's 1000 ms × 3: %+v, %v", tm, err)
	}
	if _, err := TimingFromBFD(5, 100, 3); err == nil {
		t.Fatal("minRX 5 ms accepted")
	}
}

// TestElectionDoesNotWaitForAListeningReplica: the active replica's pod is deleted and its
// replacement starts at once (its name ranks before the standby's); the standby takes over when
// the old active leaves, without waiting for the new replica's listening time, and the new
// replica, once it has listened, stays a standby.
func TestElectionDoesNotWaitForAListeningReplica(t *testing.T) {
	old, b := replica("a", 100), replica("b", 100)
	ms := 0
	for ; ms <= 500; ms += 100 {
		exchange(at(ms), nil, old, b)
	}
	if got := actives(old, b); len(got) != 1 || got[0] != "a" {
		t.Fatalf("active %v, want [a]", got)
	}
	// The old active leaves (its last heartbeat: neither active nor healthy); its replacement
	// "a0" is healthy and heard from the same moment.
	left := old.Heartbeat()
	left.Active, left.Healthy = false, false
	b.Receive(left, at(ms))
	fresh := replica("a0", 100)
	fresh.Decide(at(ms), true)
	b.Receive(fresh.Heartbeat(), at(ms))
	if r, _ := b.Decide(at(ms), true); r != Active {
		t.Fatalf("b is %v once the active replica left and only a listening replica remains", r)
	}
	for end := ms + 1000; ms <= end; ms += 100 {
		exchange(at(ms), nil, fresh, b)
	}
	if got := actives(fresh, b); len(got) != 1 || got[0] != "b" {
		t.Fatalf("after a0 listened: active %v, want [b] (no preemption)", got)
	}
}
