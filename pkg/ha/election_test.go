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

// settledPair is two replicas of equal priority that have exchanged heartbeats for 500 ms, with
// a active (it ranks first by name), and the time reached.
func settledPair(t *testing.T) (a, b *Elector, ms int) {
	t.Helper()
	a, b = replica("a", 100), replica("b", 100)
	for ; ms <= 500; ms += 100 {
		exchange(at(ms), nil, a, b)
	}
	if got := actives(a, b); len(got) != 1 || got[0] != "a" {
		t.Fatalf("active %v, want [a]", got)
	}
	return a, b, ms
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
	a, b, ms := settledPair(t)
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
// steps down on the healthy standby's next heartbeat, the standby takes over; when both are active after a partition heals,
// the later term wins on the first exchange.
func TestElectionPartition(t *testing.T) {
	a, b, ms := settledPair(t)
	// The moment it finds itself unhealthy, a has heard nothing from b since: b may have lost the
	// EIP gateway too. It steps down on b's next (healthy) heartbeat, and b takes over on a's
	// unhealthy one.
	if r, _ := a.Decide(at(ms), false); r != Active {
		t.Fatalf("unhealthy active, no newer word from b: %v, want active", r)
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

// TestElectionSkipsOwnStall: the standby did not run for a while (its agent starved of CPU), and
// the active replica's heartbeats stopped for the same time (the node is starved, both agents
// are late). Without Skip that gap is the active replica's death; with it (the agent measured
// the time it did not run) the standby stays a standby. A peer that is really gone is still dead
// one dead time after the standby runs again.
func TestElectionSkipsOwnStall(t *testing.T) {
	run := func(skip bool) (tookAt int) {
		_, b, _ := settledPair(t)
		// Neither runs from 500 to 1100 ms; b runs first and decides before a's next heartbeat.
		ms := 1100
		if skip {
			b.Skip(600*time.Millisecond-DefaultTiming.Interval, at(ms))
		}
		if r, _ := b.Decide(at(ms), true); r == Active {
			return ms
		}
		// a is really gone from here on: b hears nothing more.
		for ms += 100; ms <= 3000; ms += 100 {
			if r, _ := b.Decide(at(ms), true); r == Active {
				return ms
			}
		}
		return -1
	}
	if got := run(false); got != 1100 {
		t.Fatalf("without Skip b took over at %d ms, want at once at 1100 ms (the setup must show the gap)", got)
	}
	got := run(true)
	if got == 1100 {
		t.Fatal("b took over on the gap it did not run for")
	}
	// a's last heartbeat counts as 1000 ms after the skip: dead after 1300 ms.
	if got < 0 || got > 1100+int(DefaultTiming.DeadAfter.Milliseconds())+int(DefaultTiming.Interval.Milliseconds()) {
		t.Fatalf("b took over at %d ms, want one dead time of its own running after 1100 ms", got)
	}
}

// TestElectionSkipHeardDuringStall: the standby did not run for 2 s while the active replica's
// heartbeats kept arriving (read late, at their arrival times, before Skip), and the active one
// died just as the standby ran again. Its last heartbeat counts as heard when the standby runs
// again, never later, so the standby takes over one dead time of its own running after that,
// not the whole stall later.
func TestElectionSkipHeardDuringStall(t *testing.T) {
	a, b, ms := settledPair(t)
	// b does not run from 500 to 2500 ms; a's heartbeats of 600-2400 ms are queued, and a dies.
	for hb := 600; hb <= 2400; hb += 100 {
		a.Decide(at(hb), true)
		b.Receive(a.Heartbeat(), at(hb))
	}
	ms = 2500
	b.Skip(2000*time.Millisecond-DefaultTiming.Interval, at(ms))
	took := -1
	for ; ms <= 6000; ms += 100 {
		if r, _ := b.Decide(at(ms), true); r == Active {
			took = ms
			break
		}
	}
	if limit := 2500 + int(DefaultTiming.DeadAfter.Milliseconds()) + int(DefaultTiming.Interval.Milliseconds()); took < 0 || took > limit {
		t.Fatalf("b took over at %d ms, want by %d ms (one dead time of its running after 2500 ms)", took, limit)
	}
}

// TestElectionUnhealthyActiveWithNoHealthierPeer: the active replica's health check fails while
// the standby's fails too (the EIP gateway does not answer either, or both are starved): the
// active one stays (handing over to a replica no better off would move the role back and forth).
// Once the standby has been healthy for a dead time, the unhealthy active one steps down and the
// standby takes over; an unhealthy active replica that hears no peer at all steps down at once.
func TestElectionUnhealthyActiveWithNoHealthierPeer(t *testing.T) {
	a, b, ms := settledPair(t)
	sick := map[*Elector]bool{a: false, b: false}
	for end := ms + 1000; ms <= end; ms += 100 {
		exchange(at(ms), sick, a, b)
		if got := actives(a, b); len(got) != 1 || got[0] != "a" {
			t.Fatalf("at %d ms, both unhealthy: active %v, want [a]", ms, got)
		}
	}
	// b recovers: a stays until b has been healthy for a dead time, then the role moves to b.
	recovered := ms
	for end := ms + 1000; ms <= end; ms += 100 {
		exchange(at(ms), map[*Elector]bool{a: false}, a, b)
		if ms-recovered < int(DefaultTiming.DeadAfter.Milliseconds()) && !a.Heartbeat().Active {
			t.Fatalf("a stepped down at %d ms, %d ms after b became healthy", ms, ms-recovered)
		}
	}
	if got := actives(a, b); len(got) != 1 || got[0] != "b" {
		t.Fatalf("b healthy for a second, a not: active %v, want [b]", got)
	}

	// Alone and unhealthy (cut off from everything): steps down at once.
	c := replica("c", 100)
	for ms = 0; ms <= 500; ms += 100 {
		c.Decide(at(ms), true)
	}
	if !c.Heartbeat().Active {
		t.Fatal("setup: c alone is not active")
	}
	if r, why := c.Decide(at(600), false); r != Standby || why != "unhealthy" {
		t.Fatalf("c unhealthy, no peer heard: %v (%q), want standby (unhealthy)", r, why)
	}
}
