package ha

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/arp"
)

// Config is one replica's agent configuration.
type Config struct {
	// Gateway is the VpcNatGateway's name, Replica this replica's pod name.
	Gateway, Replica string
	// Priority ranks standbys in an election (higher first; equal by default).
	Priority uint8
	Timing   Timing
	// Exclude are NICs of the netns that are not the gateway's: the primary CNI's eth0 (its
	// address is the pod's own, never a role). Every other NIC but lo is a gateway NIC.
	Exclude []string
	// ReplicaMACs: the daemon gives each replica's NICs their own MACs (plan.ReplicaMAC, first
	// byte 06). Until a NIC has one, it still carries the MAC every replica was created with:
	// the agent silences it but sends nothing from it (a switch would learn that shared MAC at
	// this replica's port), and counts the replica unhealthy (not converged yet).
	ReplicaMACs bool
	// OnRole, when set, is called (from Run's goroutine) after every role change is applied.
	OnRole func(role Role, term uint64, reason string)
	// Conntrack, when set, replicates the conntrack table from the active replica to the
	// standbys (pkg/ctsync) and commits it on takeover, before the NICs answer ARP.
	Conntrack ConntrackSync
}

// ConntrackSync is the conntrack replication the agent drives (pkg/ctsync.Replicator). Its
// methods do not block on the network; Commit writes into the kernel.
type ConntrackSync interface {
	// Addr is where this replica serves its table when active (invalid until known).
	Addr() netip.AddrPort
	// Follow streams from the active replica's address (invalid: none known) into the cache.
	Follow(active netip.AddrPort)
	// Serve serves this replica's table to the peers at these addresses.
	Serve(peers []netip.Addr)
	// Commit writes the cache into the kernel and returns how many entries it wrote.
	Commit() (int, error)
	Close()
}

// aliasPrefix marks a NIC's IFLA_IFALIAS with the role the agent gave it ("vpcnat-ha active
// 7"), so a restarted agent resumes the role its NICs hold, the daemon knows an agent manages
// the NIC, and `ip link` shows it to humans.
const aliasPrefix = annotations.ReplicaAliasPrefix

// announceAfter: gratuitous ARPs at takeover, then again after these delays, for neighbours
// that lost the first round.
var announceAfter = []time.Duration{0, 200 * time.Millisecond, time.Second}

// Agent runs the election of one replica in the netns of its process.
type Agent struct {
	cfg     Config
	nl      *netlink.Handle
	nics    map[string]*nic
	frames  chan frame
	elector *Elector
	role    Role
	// probes: each external gateway's ARP probes and answers (health).
	probes   map[netip.Addr]*probeState
	announce []time.Time
	metrics  *metrics
	healthy  bool // as last decided, for the log
	// epoch is the clock of the heartbeats' stamps (Heartbeat.Stamp: time since epoch), and
	// self this replica's EchoPeer, to find the echoes of its own stamps.
	epoch time.Time
	self  uint32
	// lastStep: when the agent last decided (any step). A longer gap than a heartbeat interval
	// and a half is time the agent did not run (starved of CPU, stopped): it is taken off every
	// wait the election and the health check measure (Elector.Skip, probeState.skip).
	lastStep time.Time
	buf      []byte // drain's read buffer
	// links and targets: the gateway NICs and the external gateways as of the last tick. A step
	// on a heartbeat decides with them (apply keeps their flags and alias current), so hearing
	// a peer costs no netlink dump: on a starved node the agent needs little CPU to keep up.
	links   []netlink.Link
	targets []target
	// lost: gateway NICs that vanished from the netns, and when. A replica that lost a NIC
	// cannot serve that segment: it counts as unhealthy for lostFor (a standby that still has
	// the NIC takes over), then the NIC set it has is the gateway's (a subnet detached from the
	// gateway leaves every replica alike).
	lost map[string]time.Time
}

// lostFor: how long a vanished NIC makes the replica unhealthy, in dead times.
const lostFor = 2

// probeState is one external gateway's side of the health check. The gateway is dead when a
// probe went unanswered for the dead time: the agent judges only probes it sent, so the time it
// did not run (and sent none) is no silence of the gateway.
type probeState struct {
	// unanswered: when the first probe since the gateway's last answer left; zero when every
	// probe sent was answered. A new gateway starts with it set to when it was first seen: one
	// dead time of grace.
	unanswered time.Time
}

// answer records an ARP frame of the gateway that arrived at at (the kernel's stamp): it
// answers the probes sent before then.
func (p *probeState) answer(at time.Time) {
	if !p.unanswered.IsZero() && !at.Before(p.unanswered) {
		p.unanswered = time.Time{}
	}
}

// sent records a probe that left at now.
func (p *probeState) sent(now time.Time) {
	if p.unanswered.IsZero() {
		p.unanswered = now
	}
}

// dead: a probe has waited more than dead for an answer at now.
func (p *probeState) dead(now time.Time, dead time.Duration) bool {
	return !p.unanswered.IsZero() && now.Sub(p.unanswered) > dead
}

// skip takes d of time the agent did not run off the wait of the unanswered probe.
func (p *probeState) skip(d time.Duration) {
	if !p.unanswered.IsZero() {
		p.unanswered = p.unanswered.Add(d)
	}
}

type nic struct {
	name   string
	index  int
	mac    net.HardwareAddr
	hb     *packetSocket
	arp    *packetSocket
	stop   chan struct{}
	wg     sync.WaitGroup
	silent bool // IFF_NOARP as last set or read
	// heard: each peer's last stamped heartbeat on this NIC (its stamp, when it arrived), echoed
	// back to the peers in turn (next), for their round-trip times.
	heard map[string]heardStamp
	next  int
}

type heardStamp struct {
	stamp uint64
	at    time.Time
}

// echo picks the peer whose heartbeat this NIC's next one answers: the peers heard within the
// dead time in turn, by name. The zero Echo when none was.
func (n *nic) echo(now time.Time, dead time.Duration) Echo {
	var peers []string
	for p, h := range n.heard {
		if now.Sub(h.at) <= dead {
			peers = append(peers, p)
		} else {
			delete(n.heard, p)
		}
	}
	if len(peers) == 0 {
		return Echo{}
	}
	slices.Sort(peers)
	p := peers[n.next%len(peers)]
	n.next++
	h := n.heard[p]
	return Echo{Peer: EchoPeer(p), Stamp: h.stamp, Held: uint64(max(now.Sub(h.at), 0))}
}

type frame struct {
	nic  string
	hb   *Heartbeat
	arp  netip.Addr // sender of an ARP frame (a gateway's reply)
	at   time.Time
	from net.HardwareAddr
}

// NewAgent checks cfg and opens a netlink handle in the process's netns.
func NewAgent(cfg Config) (*Agent, error) {
	if _, err := (Heartbeat{Gateway: cfg.Gateway, Replica: cfg.Replica}).Marshal(); err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.Timing.Interval <= 0 || cfg.Timing.DeadAfter < 2*cfg.Timing.Interval {
		return nil, fmt.Errorf("agent: heartbeat interval %v and dead time %v: the dead time must be at least two intervals", cfg.Timing.Interval, cfg.Timing.DeadAfter)
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, fmt.Errorf("agent: netlink: %w", err)
	}
	return &Agent{cfg: cfg, nl: nl, nics: map[string]*nic{}, frames: make(chan frame, 256),
		probes: map[netip.Addr]*probeState{}, lost: map[string]time.Time{}, buf: make([]byte, 1600), metrics: newMetrics(), epoch: time.Now(), self: EchoPeer(cfg.Replica)}, nil
}

// Run elects and holds the role until ctx ends; then it silences the NICs (a graceful exit,
// such as a rolling update, hands the role over at once: the last heartbeat says so).
func (a *Agent) Run(ctx context.Context) error {
	defer a.nl.Close()
	defer a.closeNICs()
	if a.cfg.Conntrack != nil {
		defer a.cfg.Conntrack.Close()
	}
	now := time.Now()
	a.elector = NewElector(Heartbeat{Gateway: a.cfg.Gateway, Replica: a.cfg.Replica, Priority: a.cfg.Priority}, a.cfg.Timing, now)
	links, err := a.refresh()
	if err != nil {
		return err
	}
	a.links, a.targets = links, a.gatewayTargets(links)
	if term, ok := resumable(links); ok {
		a.elector.Resume(term)
		a.role = Active
		klog.InfoS("Resuming the active role the NICs hold", "gateway", a.cfg.Gateway, "replica", a.cfg.Replica, "term", term)
	}
	if err := a.apply(links, false); err != nil {
		return err
	}
	a.step(time.Now(), true) // the first heartbeat at once: a restarted agent is heard again at once
	tick := time.NewTicker(a.cfg.Timing.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			a.leave()
			return nil
		case f := <-a.frames:
			a.receive(f)
			if f.hb != nil {
				a.step(time.Now(), false)
			}
		case t := <-tick.C:
			a.step(t, true)
		}
	}
}

func (a *Agent) receive(f frame) {
	if f.hb != nil {
		a.metrics.heartbeats.WithLabelValues(f.nic).Inc()
		a.roundTrip(f)
		if !a.elector.Knows(f.hb.Replica) {
			klog.V(2).InfoS("Hearing replica", "gateway", a.cfg.Gateway, "replica", a.cfg.Replica, "peer", f.hb.Replica,
				"interface", f.nic, "active", f.hb.Active, "term", f.hb.Term)
		}
		a.elector.Receive(*f.hb, f.at)
		return
	}
	if p := a.probes[f.arp]; p != nil && f.arp.IsValid() {
		p.answer(f.at)
	}
}

// catchUp counts what came while the agent did not run, then takes the time it did not run off
// the election's and the health check's waits. First the frames: those queued in the NICs'
// sockets and in the readers' channel, at the kernel's arrival times, so a peer that took over
// meanwhile is known before anything is decided (an active replica that was stopped steps down
// at once). Then the gap: a step is due every interval; a longer gap since the last step (more
// than an interval and a half) is time this agent did not run, in which it could neither send
// nor judge: a peer or gateway that was silent only then (on a starved node every process is
// late, the peers too) is not dead for it. A real failure is still noticed one dead time of this
// agent's own running after it.
func (a *Agent) catchUp(now time.Time) {
	var frames []frame
	for _, n := range a.nics {
		frames = n.drain(a.buf, frames)
	}
	for more := true; more; {
		select {
		case f := <-a.frames:
			frames = append(frames, f)
		default:
			more = false
		}
	}
	slices.SortStableFunc(frames, func(x, y frame) int { return x.at.Compare(y.at) })
	for _, f := range frames {
		a.receive(f)
	}
	if !a.lastStep.IsZero() {
		if gap := now.Sub(a.lastStep); gap > a.cfg.Timing.Interval+a.cfg.Timing.Interval/2 {
			lost := gap - a.cfg.Timing.Interval
			a.elector.Skip(lost, now)
			for _, p := range a.probes {
				p.skip(lost)
			}
			a.metrics.stalls.Inc()
			a.metrics.stalled.Add(lost.Seconds())
			klog.V(2).InfoS("The agent did not run for a while: that time is not a peer's or the gateway's silence",
				"gateway", a.cfg.Gateway, "replica", a.cfg.Replica, "gap", gap)
		}
	}
	a.lastStep = now
}

// roundTrip keeps a peer's stamp for the echo, and observes the round trip of this replica's
// own stamp when the peer's heartbeat echoes it (the peer's hold time taken off): the heartbeat
// path's latency both ways, per NIC.
func (a *Agent) roundTrip(f frame) {
	n := a.nics[f.nic]
	if n == nil {
		return
	}
	if f.hb.Stamp != 0 {
		if n.heard == nil {
			n.heard = map[string]heardStamp{}
		}
		n.heard[f.hb.Replica] = heardStamp{stamp: f.hb.Stamp, at: f.at}
	}
	e := f.hb.Echo
	if e.Peer != a.self || e.Stamp == 0 {
		return
	}
	rtt := f.at.Sub(a.epoch) - time.Duration(e.Stamp-1) - time.Duration(e.Held)
	if rtt >= 0 && rtt < 10*time.Second {
		a.metrics.rtt.WithLabelValues(f.nic).Observe(rtt.Seconds())
	}
}

// step decides the role and applies it; on a tick it also refreshes the NICs, sends the
// heartbeat and probes the external gateways.
func (a *Agent) step(now time.Time, tick bool) {
	links := a.links
	if tick {
		fresh, err := a.refresh()
		if err != nil {
			klog.ErrorS(err, "Listing the gateway NICs", "gateway", a.cfg.Gateway)
		}
		// A failed listing (nothing came back) says nothing about the NICs: the last ones are
		// kept, so it does not make this replica unhealthy.
		if fresh != nil || err == nil {
			links = fresh
			a.links, a.targets = links, a.gatewayTargets(links)
		}
		now = time.Now() // the election's clock is the wall's, not a tick that waited
	}
	a.catchUp(now)
	healthy, targets := a.health(links, a.targets, now)
	if healthy != a.healthy {
		a.healthy = healthy
		klog.V(2).InfoS("Health changed", "gateway", a.cfg.Gateway, "replica", a.cfg.Replica, "healthy", healthy)
	}
	if a.cfg.Conntrack != nil {
		a.elector.SetSync(a.cfg.Conntrack.Addr())
	}
	role, why := a.elector.Decide(now, healthy)
	changed := role != a.role
	a.role = role
	if changed && role == Active && a.cfg.Conntrack != nil {
		a.commitConntrack()
	}
	if err := a.apply(links, changed); err != nil {
		klog.ErrorS(err, "Applying the role", "gateway", a.cfg.Gateway, "role", role)
	}
	if !changed && role == Active && a.elector.Contested() && len(a.announce) == 0 {
		// Another replica was active too (a partition healed): bring back the neighbours that
		// followed it.
		klog.InfoS("Announcing again: another replica was active", "gateway", a.cfg.Gateway, "replica", a.cfg.Replica)
		a.scheduleAnnounce(now)
		a.announceDue(links, now)
	}
	if changed {
		term := a.elector.Heartbeat().Term
		klog.InfoS("Role changed", "gateway", a.cfg.Gateway, "replica", a.cfg.Replica, "role", role, "term", term, "reason", why)
		a.metrics.transition(role)
		if a.cfg.OnRole != nil {
			a.cfg.OnRole(role, term, why)
		}
	}
	a.followOrServe(now)
	if !tick {
		return
	}
	a.sendHeartbeat(a.elector.Heartbeat())
	for _, t := range targets {
		if n := a.nics[t.nic]; n != nil && n.arp != nil && a.mayTalk(n.mac) {
			// The time before the send: the answer may arrive before the send returns.
			sent := time.Now()
			if err := n.arp.send(broadcastMAC, arp.Request(n.mac, netip.IPv4Unspecified(), t.addr)); err == nil {
				if p := a.probes[t.addr]; p != nil {
					p.sent(sent)
				}
			}
		}
	}
	a.announceDue(links, now)
}

// commitConntrack writes the entries replicated from the old active replica into the kernel,
// before the NICs answer ARP and announce the addresses: the first packet of an established
// flow that reaches this replica finds its entry (both tuples: the NAT mapping) and is
// translated as before, and new connections do not take the old mappings' ports. The peers hear
// at once that this replica is active, so none waits out the commit as silence.
func (a *Agent) commitConntrack() {
	a.sendHeartbeat(a.elector.Heartbeat())
	n, err := a.cfg.Conntrack.Commit()
	if err != nil {
		klog.ErrorS(err, "Committing the replicated conntrack entries (the others are in the kernel)", "gateway", a.cfg.Gateway, "committed", n)
	}
}

// followOrServe points the conntrack replication at the role: an active replica serves the live
// peers' streams; a standby follows the active peer's.
func (a *Agent) followOrServe(now time.Time) {
	if a.cfg.Conntrack == nil {
		return
	}
	peers := a.elector.Peers(now)
	if a.role == Active {
		var addrs []netip.Addr
		for _, p := range peers {
			if p.Sync.IsValid() {
				addrs = append(addrs, p.Sync.Addr())
			}
		}
		a.cfg.Conntrack.Serve(addrs)
		return
	}
	// Of two active peers (a partition healing), the later term stays active.
	var active netip.AddrPort
	var term uint64
	for _, p := range peers {
		if p.Active && p.Sync.IsValid() && (!active.IsValid() || p.Term > term) {
			active, term = p.Sync, p.Term
		}
	}
	a.cfg.Conntrack.Follow(active)
}

// leave silences the NICs and tells the peers, so a standby takes over without waiting.
func (a *Agent) leave() {
	a.role = Standby
	if err := a.apply(a.current(), true); err != nil {
		klog.ErrorS(err, "Silencing the NICs on exit", "gateway", a.cfg.Gateway)
	}
	hb := a.elector.Heartbeat()
	hb.Active, hb.Healthy = false, false
	a.sendHeartbeat(hb)
	klog.InfoS("Left the election", "gateway", a.cfg.Gateway, "replica", a.cfg.Replica)
}

func (a *Agent) sendHeartbeat(hb Heartbeat) {
	for _, n := range a.nics {
		if !a.mayTalk(n.mac) {
			continue
		}
		now := time.Now()
		hb.Stamp = uint64(max(now.Sub(a.epoch), 0)) + 1 // never 0: 0 is no stamp
		hb.Echo = n.echo(now, a.cfg.Timing.DeadAfter)
		b, err := hb.Marshal()
		if err != nil {
			return
		}
		if err := n.hb.send(heartbeatGroup, b); err == nil {
			a.metrics.sent.WithLabelValues(n.name).Inc()
		}
	}
}

type target struct {
	nic  string
	addr netip.Addr
}

// health: every gateway NIC has carrier, and when the netns routes through an external gateway
// (the EIPs' gateway, on the NIC the route leaves by), no probe of that gateway has waited more
// than the dead time for an answer. A replica cut from the external network thus gives the role
// up in one dead time (and an interval: the first probe after the last answer).
func (a *Agent) health(links []netlink.Link, targets []target, now time.Time) (bool, []target) {
	if len(links) == 0 {
		return false, nil
	}
	recent := false
	for name, at := range a.lost {
		if now.Sub(at) < lostFor*a.cfg.Timing.DeadAfter {
			recent = true
		} else {
			delete(a.lost, name)
		}
	}
	if recent {
		// A NIC gone under a running agent (its node-side veth deleted: a pod being torn down,
		// or another sandbox of the gateway on the node plumbed under the same names) leaves a
		// segment this replica no longer serves: the role moves to a standby that has it now,
		// not when the kubelet gets to the agent's SIGTERM.
		return false, nil
	}
	for _, l := range links {
		at := l.Attrs()
		if at.Flags&net.FlagUp == 0 || at.RawFlags&unix.IFF_LOWER_UP == 0 || !a.mayTalk(at.HardwareAddr) {
			return false, nil
		}
	}
	healthy := true
	for _, t := range targets {
		p := a.probes[t.addr]
		if p == nil {
			p = &probeState{unanswered: now}
			a.probes[t.addr] = p
		}
		if p.dead(now, a.cfg.Timing.DeadAfter) {
			healthy = false
		}
	}
	return healthy, targets
}

// gatewayTargets are the IPv4 next hops of routes (any table) that leave by a gateway NIC.
func (a *Agent) gatewayTargets(links []netlink.Link) []target {
	byIndex := map[int]string{}
	for _, l := range links {
		byIndex[l.Attrs().Index] = l.Attrs().Name
	}
	routes, err := a.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil
	}
	var out []target
	for _, r := range routes {
		name, ok := byIndex[r.LinkIndex]
		gw, okGw := netip.AddrFromSlice(r.Gw)
		if !ok || !okGw || !gw.Unmap().Is4() {
			continue
		}
		t := target{nic: name, addr: gw.Unmap()}
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// apply sets every gateway NIC's ARP flag for the role: on (answering) when active, off
// (IFF_NOARP, silent) when standby. Becoming active also forgets the neighbour entries made
// while silent and schedules gratuitous ARPs for every IPv4 address of the NICs.
func (a *Agent) apply(links []netlink.Link, changed bool) error {
	var errs []error
	alias := aliasPrefix + a.role.String() + " " + strconv.FormatUint(a.elector.Heartbeat().Term, 10)
	for _, l := range links {
		n := a.nics[l.Attrs().Name]
		silent := a.role != Active
		if n == nil || (n.silent == silent && !changed && l.Attrs().Alias == alias) {
			continue
		}
		var err error
		if silent {
			err = a.nl.LinkSetARPOff(l)
		} else {
			err = a.nl.LinkSetARPOn(l)
			if err == nil {
				a.forgetSilentNeighbours(l)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("setting ARP %s on %s: %w (the agent needs CAP_NET_ADMIN in its netns)", map[bool]string{true: "off", false: "on"}[silent], l.Attrs().Name, err))
			continue
		}
		if n.silent && !silent && !changed {
			// A NIC the active replica takes on now (added to the gateway, or silenced by the
			// daemon before this agent knew it): its addresses are announced like a takeover's.
			a.scheduleAnnounce(time.Now())
		}
		n.silent = silent
		if silent {
			l.Attrs().RawFlags |= unix.IFF_NOARP
		} else {
			l.Attrs().RawFlags &^= unix.IFF_NOARP
		}
		if err := a.nl.LinkSetAlias(l, alias); err != nil {
			errs = append(errs, fmt.Errorf("marking %s: %w", l.Attrs().Name, err))
		} else {
			l.Attrs().Alias = alias
		}
	}
	if changed && a.role == Active {
		now := time.Now()
		a.scheduleAnnounce(now)
		a.announceDue(links, now)
	}
	if a.role != Active {
		a.announce = nil
	}
	return errors.Join(errs...)
}

// scheduleAnnounce plans the rounds of gratuitous ARPs from now (announceAfter).
func (a *Agent) scheduleAnnounce(now time.Time) {
	a.announce = a.announce[:0]
	for _, d := range announceAfter {
		a.announce = append(a.announce, now.Add(d))
	}
}

// forgetSilentNeighbours deletes the NOARP neighbour entries a silent NIC made (they point at
// the NIC's own MAC), so the first packets after a takeover resolve their next hops.
func (a *Agent) forgetSilentNeighbours(l netlink.Link) {
	neighs, err := a.nl.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	if err != nil {
		return
	}
	for _, n := range neighs {
		if n.State&netlink.NUD_NOARP != 0 && n.State&netlink.NUD_PERMANENT == 0 {
			_ = a.nl.NeighDel(&n)
		}
	}
}

// announceDue sends the gratuitous ARPs whose time has come, for every IPv4 address of every
// gateway NIC (all of them are the gateway's: EIPs, subnet gateways, lanIp).
func (a *Agent) announceDue(links []netlink.Link, now time.Time) {
	due := 0
	for _, t := range a.announce {
		if !t.After(now) {
			due++
		}
	}
	if due == 0 {
		return
	}
	a.announce = a.announce[due:]
	for _, l := range links {
		n := a.nics[l.Attrs().Name]
		if n == nil || n.arp == nil || !a.mayTalk(n.mac) {
			continue
		}
		addrs, err := a.nl.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			continue
		}
		for _, ad := range addrs {
			ip, ok := netip.AddrFromSlice(ad.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			if err := n.arp.send(broadcastMAC, arp.Request(n.mac, ip, ip)); err == nil {
				a.metrics.announcements.Inc()
			}
		}
	}
}

// mayTalk: frames may leave a NIC with this MAC (see Config.ReplicaMACs).
func (a *Agent) mayTalk(mac net.HardwareAddr) bool {
	return !a.cfg.ReplicaMACs || (len(mac) == 6 && mac[0] == replicaMACByte)
}

// replicaMACByte is the first byte of plan.ReplicaMAC's MACs.
const replicaMACByte = 0x06

// resumable: the NICs are marked active by an agent of this netns and answer ARP: the agent
// restarted while its replica was active.
func resumable(links []netlink.Link) (uint64, bool) {
	var term uint64
	for _, l := range links {
		at := l.Attrs()
		rest, ok := strings.CutPrefix(at.Alias, aliasPrefix+Active.String()+" ")
		if !ok || at.RawFlags&unix.IFF_NOARP != 0 {
			return 0, false
		}
		t, err := strconv.ParseUint(rest, 10, 64)
		if err != nil {
			return 0, false
		}
		term = max(term, t)
	}
	return term, len(links) > 0
}
