package netconf

import (
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

// timedLink is an arpLink without a socket or goroutines: the test hands it frames and timer
// ticks at the times it chooses and records what it sends, so the defence and conflict timers
// are checked against their constants, independent of the machine's speed.
type timedLink struct {
	*arpLink
	mu       sync.Mutex
	sent     []string // "probe 10.0.1.1", "announce 10.0.1.1"
	notified []bool
}

var (
	ownMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	foreignMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x66}
	peerMAC    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
)

func newTimedLink(t *testing.T, held ...string) *timedLink {
	a := newACD("test")
	tl := &timedLink{}
	a.notify = func(converge bool) {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		tl.notified = append(tl.notified, converge)
	}
	l := &arpLink{acd: a, name: "vpc-sn", mac: ownMAC, held: map[netip.Addr]bool{}, conflicts: map[netip.Addr]*conflict{},
		probing: map[netip.Addr]net.HardwareAddr{}, claiming: map[netip.Addr]net.HardwareAddr{}, peerAnnounced: map[netip.Addr]time.Time{},
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	l.xmit = func(b []byte) error {
		f, _ := parseARP(b)
		kind := "announce " + f.spa.String()
		if f.spa == zeroIP {
			kind = "probe " + f.tpa.String()
		}
		tl.mu.Lock()
		defer tl.mu.Unlock()
		tl.sent = append(tl.sent, kind)
		return nil
	}
	for _, h := range held {
		l.held[netip.MustParseAddr(h)] = true
	}
	tl.arpLink = l
	t.Cleanup(func() { close(l.stop); l.wg.Wait() }) // announce repeats
	return tl
}

// take returns what was sent and notified since the last call.
func (tl *timedLink) take() (sent []string, notified []bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	sent, notified = tl.sent, tl.notified
	tl.sent, tl.notified = nil, nil
	return sent, notified
}

func claim(mac net.HardwareAddr, ip string) arpFrame {
	a := netip.MustParseAddr(ip)
	return arpFrame{op: 1, sha: mac, spa: a, tpa: a}
}

func probeFor(mac net.HardwareAddr, ip string) arpFrame {
	return arpFrame{op: 1, sha: mac, spa: zeroIP, tpa: netip.MustParseAddr(ip)}
}

// A held address: a foreign claim is a conflict, defended at once and then at most once per
// defendInterval however often the intruder claims; checked every checkInterval; over once the
// intruder has not answered two checks and quietWindow has passed, with an announcement.
func TestDefenceTimers(t *testing.T) {
	tl := newTimedLink(t, "10.0.1.1")
	t0 := time.Unix(1000, 0)
	tl.receive(claim(ownMAC, "10.0.1.1"), t0) // our own frame: nothing
	tl.receive(claim(foreignMAC, "10.0.1.2"), t0)
	if sent, notified := tl.take(); len(sent)+len(notified) != 0 {
		t.Fatalf("own frame or an address not ours: sent %v, notified %v", sent, notified)
	}

	tl.receive(claim(foreignMAC, "10.0.1.1"), t0)
	if sent, notified := tl.take(); !slices.Equal(sent, []string{"announce 10.0.1.1"}) || len(notified) != 1 || notified[0] {
		t.Fatalf("first claim: sent %v, notified %v; want one defence and a report", sent, notified)
	}
	cs := tl.list()
	if len(cs) != 1 || !cs[0].Claimed || cs[0].MAC.String() != foreignMAC.String() || !cs[0].Since.Equal(t0) {
		t.Fatalf("conflicts %+v", cs)
	}
	last := t0
	for at := t0.Add(time.Second); at.Before(t0.Add(defendInterval)); at = at.Add(time.Second) {
		tl.receive(claim(foreignMAC, "10.0.1.1"), at)
		last = at
	}
	tl.receive(probeFor(foreignMAC, "10.0.1.1"), last.Add(100*time.Millisecond))
	last = last.Add(100 * time.Millisecond)
	if sent, _ := tl.take(); len(sent) != 0 {
		t.Errorf("defended again within %v: %v", defendInterval, sent)
	}
	tl.receive(claim(foreignMAC, "10.0.1.1"), t0.Add(defendInterval))
	last = t0.Add(defendInterval)
	if sent, notified := tl.take(); !slices.Equal(sent, []string{"announce 10.0.1.1"}) || len(notified) != 0 {
		t.Errorf("after %v: sent %v, notified %v; want one more defence, no new report", defendInterval, sent, notified)
	}

	// The intruder goes quiet after last: checks every checkInterval, then the end.
	var checks int
	var endedAt time.Time
	for at := last.Add(tickInterval); endedAt.IsZero() && at.Before(last.Add(5*time.Second)); at = at.Add(tickInterval) {
		tl.tick(at)
		sent, notified := tl.take()
		for _, s := range sent {
			switch s {
			case "probe 10.0.1.1":
				checks++
			case "announce 10.0.1.1":
				endedAt = at
			default:
				t.Errorf("sent %q", s)
			}
		}
		if !endedAt.IsZero() && (len(notified) != 1 || notified[0]) {
			t.Errorf("end of the conflict notified %v, want one report", notified)
		}
	}
	if checks != 2 || endedAt.IsZero() || endedAt.Sub(last) < quietWindow || endedAt.Sub(last) > checkInterval+quietWindow {
		t.Errorf("%d checks, conflict over %v after the last claim; want 2 checks and the end within %v-%v",
			checks, endedAt.Sub(last), quietWindow, checkInterval+quietWindow)
	}
	if cs := tl.list(); len(cs) != 0 {
		t.Errorf("conflicts after the end: %+v", cs)
	}
}

// An answer to a check keeps the conflict: the intruder is still there.
func TestCheckAnsweredKeepsConflict(t *testing.T) {
	tl := newTimedLink(t, "10.0.1.1")
	t0 := time.Unix(1000, 0)
	tl.receive(claim(foreignMAC, "10.0.1.1"), t0)
	tl.take()
	for at := t0.Add(tickInterval); at.Before(t0.Add(3 * time.Second)); at = at.Add(tickInterval) {
		tl.tick(at)
		if sent, _ := tl.take(); len(sent) > 0 {
			tl.receive(arpFrame{op: 2, sha: foreignMAC, spa: netip.MustParseAddr("10.0.1.1"), tpa: zeroIP}, at.Add(time.Millisecond))
		}
	}
	if cs := tl.list(); len(cs) != 1 {
		t.Errorf("conflicts %+v: an intruder answering every check is still there", cs)
	}
}

// A peer's claim is answered by an announcement (at most one per peerAnnounceInterval) and is
// never a conflict.
func TestPeerIsNoIntruder(t *testing.T) {
	tl := newTimedLink(t, "10.0.1.1")
	tl.acd.policy.Peers = []net.HardwareAddr{peerMAC}
	t0 := time.Unix(1000, 0)
	tl.receive(claim(peerMAC, "10.0.1.1"), t0)
	tl.receive(claim(peerMAC, "10.0.1.1"), t0.Add(peerAnnounceInterval/2))
	tl.receive(claim(peerMAC, "10.0.1.1"), t0.Add(peerAnnounceInterval))
	sent, notified := tl.take()
	if !slices.Equal(sent, []string{"announce 10.0.1.1", "announce 10.0.1.1"}) || len(notified) != 0 || len(tl.list()) != 0 {
		t.Errorf("peer claims: sent %v, notified %v, conflicts %+v", sent, notified, tl.list())
	}
	if tl.acd.defenses.Load() != 0 {
		t.Errorf("answers to a peer counted as defences: %d", tl.acd.defenses.Load())
	}
}

// A pending address is probed every reprobeInterval; a probe nobody answers within probeWait
// asks for a converge, once; an answered one does not.
func TestPendingReprobe(t *testing.T) {
	tl := newTimedLink(t)
	a := netip.MustParseAddr("192.168.0.111")
	t0 := time.Unix(1000, 0)
	tl.conflicts[a] = &conflict{mac: foreignMAC, since: t0, lastSeen: t0, lastCheck: t0}
	step := func(at time.Time) ([]string, []bool) {
		tl.tick(at)
		return tl.take()
	}
	if sent, notified := step(t0.Add(reprobeInterval - tickInterval)); len(sent)+len(notified) != 0 {
		t.Errorf("before reprobeInterval: sent %v, notified %v", sent, notified)
	}
	probeAt := t0.Add(reprobeInterval)
	if sent, _ := step(probeAt); !slices.Equal(sent, []string{"probe 192.168.0.111"}) {
		t.Fatalf("at reprobeInterval: sent %v, want a probe", sent)
	}
	tl.receive(arpFrame{op: 2, sha: foreignMAC, spa: a}, probeAt.Add(time.Millisecond))
	if _, notified := step(probeAt.Add(probeWait)); len(notified) != 0 {
		t.Errorf("an answered probe asked for a converge: %v", notified)
	}
	probeAt = probeAt.Add(reprobeInterval)
	step(probeAt)
	if _, notified := step(probeAt.Add(probeWait)); len(notified) != 1 || !notified[0] {
		t.Errorf("an unanswered probe notified %v, want one converge request", notified)
	}
	if _, notified := step(probeAt.Add(probeWait + tickInterval)); len(notified) != 0 {
		t.Errorf("asked for a converge again: %v", notified)
	}
	if cs := tl.list(); len(cs) != 1 || cs[0].Claimed {
		t.Errorf("conflicts %+v: the converge decides, the timer only asks", cs)
	}
}

// An address a probe found free is not held until the converge has added it: a foreign answer
// in between (later than the probe's wait) is remembered, and when the address is held it is a
// conflict from the start, defended at once and reported. No answer, or a peer's, is none.
func TestAnswerWhileClaimingIsDefended(t *testing.T) {
	tl := newTimedLink(t)
	a, b, c := netip.MustParseAddr("192.168.0.111"), netip.MustParseAddr("192.168.0.112"), netip.MustParseAddr("192.168.0.113")
	tl.acd.policy.Peers = []net.HardwareAddr{peerMAC}
	for _, x := range []netip.Addr{a, b, c} {
		tl.claiming[x] = nil // what probe leaves for the addresses it found free
	}
	now := time.Now()
	tl.receive(arpFrame{op: 2, sha: foreignMAC, spa: a}, now)
	tl.receive(arpFrame{op: 2, sha: peerMAC, spa: c}, now)
	if sent, notified := tl.take(); len(sent)+len(notified) != 0 || len(tl.list()) != 0 {
		t.Fatalf("an answer for an address not held yet: sent %v, notified %v, conflicts %+v", sent, notified, tl.list())
	}
	tl.setHeld([]netip.Addr{a, b, c}, []netip.Addr{a, b, c})
	if sent, _ := tl.take(); !slices.Equal(sent, []string{"announce 192.168.0.111"}) {
		t.Errorf("sent %v once held, want one defence of 192.168.0.111", sent)
	}
	if got, want := conflictsString(tl.list()), "192.168.0.111 vpc-sn "+foreignMAC.String()+" claimed=true"; got != want {
		t.Errorf("conflicts %q, want %q", got, want)
	}
	if d := tl.acd.defenses.Load(); d != 1 {
		t.Errorf("defenses %d, want 1", d)
	}
	if len(tl.claiming) != 0 {
		t.Errorf("claiming %v after setHeld, want none", tl.claiming)
	}
}
