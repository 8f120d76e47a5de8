package ha

import (
	"fmt"
	"net/netip"
	"time"
)

// Role is what a replica does with the gateway's addresses.
type Role int

const (
	// Standby: NICs silent on ARP; converged and ready.
	Standby Role = iota
	// Active: NICs answer ARP; the gateway's traffic comes here.
	Active
)

func (r Role) String() string {
	if r == Active {
		return "active"
	}
	return "standby"
}

// Timing is the heartbeat timing: a heartbeat every Interval, a peer dead after DeadAfter
// without one.
type Timing struct {
	Interval  time.Duration
	DeadAfter time.Duration
}

// DefaultTiming: 100 ms × 3, so a dead active replica is noticed within 0.3 s and the whole
// takeover (detection, flag change, gratuitous ARP) fits well inside a second.
var DefaultTiming = Timing{Interval: 100 * time.Millisecond, DeadAfter: 300 * time.Millisecond}

// TimingFromBFD turns spec.bfd's knobs (ms; 0 = default) into a Timing.
func TimingFromBFD(minRX, minTX, multiplier int32) (Timing, error) {
	rx, tx, mult := int64(minRX), int64(minTX), int64(multiplier)
	if rx == 0 {
		rx = 100
	}
	if tx == 0 {
		tx = 100
	}
	if mult == 0 {
		mult = 3
	}
	if rx < 10 || tx < 10 || mult < 2 {
		return Timing{}, fmt.Errorf("bfd: minRX %d ms, minTX %d ms and multiplier %d: the intervals must be at least 10 ms and the multiplier at least 2", minRX, minTX, multiplier)
	}
	return Timing{Interval: time.Duration(tx) * time.Millisecond, DeadAfter: time.Duration(rx*mult) * time.Millisecond}, nil
}

// Elector decides one replica's role from the heartbeats it hears and its own health. It is
// pure (time is an argument) and not safe for concurrent use.
//
// The rules, which make at most one replica active among those that hear each other:
//   - an unhealthy replica does not become active, and an unhealthy active replica steps down
//     when a live peer says it has been healthy for a dead time since this one became unhealthy
//     (that peer takes over), or when it hears no peer at all: this is what ends a partitioned
//     active replica; with peers no healthier it keeps the role (handing it over would move it
//     to a replica no better off);
//   - a standby becomes active only when no live peer is active and it ranks best among the live
//     healthy standbys (priority, then name); it takes a term above every term it has heard;
//   - an active replica stays active (no preemption by a better rank) unless it hears a live,
//     healthy active peer that beats it: a higher term, or the same term and a better rank;
//   - a replica listens one dead interval after it becomes healthy (at start, or after it was
//     unhealthy: it could not hear or be heard) before it may take over, so it does not seize
//     the role from a live replica it has not heard yet; Resume skips that for a replica that
//     finds itself active at start (its agent restarted, its NICs still answering).
//
// An active replica that hears an active peer it beats keeps the role and is told so (Decide's
// contested result): neighbours may have followed the peer, and an announcement brings them back.
type Elector struct {
	self    Heartbeat
	timing  Timing
	peers   map[string]seen
	maxTerm uint64
	// healthySince: when the replica last became healthy; zero while unhealthy. unhealthySince:
	// when it last became unhealthy; zero while healthy.
	healthySince, unhealthySince time.Time
	// contested: the last Decide kept the role against an active peer.
	contested bool
}

type seen struct {
	hb Heartbeat
	// at: when the peer was last heard, for its liveness (moved on by Skip); arrived: when its
	// latest heartbeat arrived, to keep the latest of heartbeats that are read out of order.
	at, arrived time.Time
	// healthySince: when the peer's heartbeats began to say healthy (zero while they do not).
	// A peer listens one dead interval from then before it may take over.
	healthySince time.Time
}

// NewElector starts a standby election for replica self (Gateway, Replica, Priority are used).
func NewElector(self Heartbeat, t Timing, now time.Time) *Elector {
	self.Active, self.Term = false, 0
	return &Elector{self: self, timing: t, peers: map[string]seen{}}
}

// Resume makes the replica active at term without listening first: it was active before its
// agent restarted. A live active peer with a higher term still wins.
func (e *Elector) Resume(term uint64) {
	e.self.Active, e.self.Term = true, term
	e.maxTerm = max(e.maxTerm, term)
}

// Receive records a heartbeat heard at now. Heartbeats of other gateways and its own are
// ignored (a segment may carry several gateways' replicas; a NIC hears its own multicast on
// another NIC of the same segment).
func (e *Elector) Receive(h Heartbeat, now time.Time) {
	if h.Gateway != e.self.Gateway || h.Replica == e.self.Replica {
		return
	}
	old, known := e.peers[h.Replica]
	if known && now.Before(old.arrived) {
		return // an older heartbeat read late: the peer has said more since
	}
	s := seen{hb: h, at: now, arrived: now}
	if known && old.at.After(now) {
		s.at = old.at
	}
	if h.Healthy {
		s.healthySince = now
		if known && old.hb.Healthy {
			s.healthySince = old.healthySince
		}
	}
	e.peers[h.Replica] = s
	e.maxTerm = max(e.maxTerm, h.Term)
}

// Skip takes d, time this replica did not run up to now (its agent starved of CPU or stopped),
// off every wait the election measures: a peer's silence counts only while this replica ran, so
// one last heard before the gap is live d longer than its last heartbeat says, and one heard
// during the gap (its heartbeat read late, at its arrival) is live as if heard now, never
// later; the same for how long a replica (a peer or this one) has been healthy. A peer that was
// silent only while this replica could not have heard it anyway is not dead for it; one that is
// really gone is dead one dead time of this replica's running later. Heartbeats that came
// meanwhile are to be received (at their arrival) before Skip.
func (e *Elector) Skip(d time.Duration, now time.Time) {
	if d <= 0 {
		return
	}
	shift := func(t time.Time) time.Time {
		if t.IsZero() || !t.Before(now) {
			return t
		}
		return minTime(t.Add(d), now)
	}
	for name, s := range e.peers {
		s.at = shift(s.at)
		s.healthySince = shift(s.healthySince)
		e.peers[name] = s
	}
	e.healthySince = shift(e.healthySince)
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// Decide returns the role to hold at now, given the replica's own health, and why it changed
// (empty when it did not).
func (e *Elector) Decide(now time.Time, healthy bool) (Role, string) {
	was := e.role()
	e.self.Healthy = healthy
	if !healthy {
		e.healthySince = time.Time{}
		if e.unhealthySince.IsZero() {
			e.unhealthySince = now
		}
	} else {
		e.unhealthySince = time.Time{}
		if e.healthySince.IsZero() {
			e.healthySince = now
		}
	}
	e.contested = false
	live := e.live(now)
	reason := ""
	switch {
	case !healthy && e.self.Active && !e.anyReady(now, live) && e.outranksActives(live):
		// Unhealthy but active, and no live peer is any healthier (none has been healthy for a
		// dead time): handing over would move the role to a replica no better off, and back.
		// Stays active; alone (no live peer at all) it gives up below, as a partitioned
		// replica must.
	case !healthy:
		e.self.Active = false
		reason = "unhealthy"
	case e.self.Active:
		for _, p := range live {
			if !p.Active || !p.Healthy {
				continue
			}
			if beats(p, e.self) {
				e.self.Active, e.contested = false, false
				reason = fmt.Sprintf("replica %s is active with term %d", p.Replica, p.Term)
				break
			}
			e.contested = true
		}
	default:
		if now.Sub(e.healthySince) < e.timing.DeadAfter {
			break // listening
		}
		best := true
		for _, p := range live {
			if p.Active && p.Healthy {
				best = false // no preemption
				break
			}
			// A better-ranked standby still listening (a replica just started, say the one
			// replacing a deleted active pod) cannot take over yet: waiting for it would leave
			// the gateway without an active replica for its listening time.
			if p.Healthy && ranksBefore(p, e.self) && now.Sub(e.peers[p.Replica].healthySince) >= e.timing.DeadAfter {
				best = false
			}
		}
		if best {
			e.maxTerm++
			e.self.Active, e.self.Term = true, e.maxTerm
			reason = "no live active peer"
			if len(live) == 0 {
				reason = "no live peer"
			}
		}
	}
	if e.role() == was {
		reason = ""
	}
	return e.role(), reason
}

// anyReady: a live peer has said, since this replica became unhealthy, that it has been healthy
// for a dead time: it can take the role over now. (A heartbeat from before may predate the
// cause: the EIP gateway that stopped answering this replica may have stopped answering the
// peer too.)
func (e *Elector) anyReady(now time.Time, live []Heartbeat) bool {
	if len(live) == 0 {
		return true // nobody heard: this replica may be the one cut off; it must not claim
	}
	for _, p := range live {
		s := e.peers[p.Replica]
		if p.Healthy && s.arrived.After(e.unhealthySince) && !s.healthySince.IsZero() && now.Sub(s.healthySince) >= e.timing.DeadAfter {
			return true
		}
	}
	return false
}

// outranksActives: no live active peer beats this replica (rule 5 still applies to an unhealthy
// active replica).
func (e *Elector) outranksActives(live []Heartbeat) bool {
	for _, p := range live {
		if p.Active && beats(p, e.self) {
			return false
		}
	}
	return true
}

// Contested says whether the last Decide kept the active role against a live active peer (which
// will step down): the neighbours that followed the peer need an announcement.
func (e *Elector) Contested() bool { return e.contested }

// SetSync sets the address this replica serves its conntrack table at (carried in heartbeats).
func (e *Elector) SetSync(a netip.AddrPort) { e.self.Sync = a }

// Heartbeat is the frame to send now (after Decide).
func (e *Elector) Heartbeat() Heartbeat { return e.self }

// Peers are the live peers' last heartbeats at now.
func (e *Elector) Peers(now time.Time) []Heartbeat { return e.live(now) }

// Knows says whether replica is among the peers heard and not yet found dead. Unlike Peers it
// changes nothing: a lookup while queued frames are replayed (at their arrival times, before
// Skip) must not drop a peer Skip would keep.
func (e *Elector) Knows(replica string) bool {
	_, ok := e.peers[replica]
	return ok
}

func (e *Elector) role() Role {
	if e.self.Active {
		return Active
	}
	return Standby
}

func (e *Elector) live(now time.Time) []Heartbeat {
	var out []Heartbeat
	for name, s := range e.peers {
		if now.Sub(s.at) > e.timing.DeadAfter {
			delete(e.peers, name)
			continue
		}
		out = append(out, s.hb)
	}
	return out
}

// ranksBefore: a is elected before b (higher priority, then the smaller name).
func ranksBefore(a, b Heartbeat) bool {
	if a.Priority != b.Priority {
		return a.Priority > b.Priority
	}
	return a.Replica < b.Replica
}

// beats: of two active replicas, a keeps the role over b (the later term, then rank).
func beats(a, b Heartbeat) bool {
	if a.Term != b.Term {
		return a.Term > b.Term
	}
	return ranksBefore(a, b)
}
