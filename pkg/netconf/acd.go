package netconf

import (
	"bytes"
	"cmp"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/klog/v2"
)

// IPv4 address conflict detection (RFC 5227) for every address a gateway claims: EIPs on the
// external NIC, subnet gateway IPs and lanIp on the subnet NICs.
//
// RFC 5227's timings are made for hosts that join a network at boot, where seconds do not
// matter: 3 probes 1-2 s apart, then 2 s of ANNOUNCE_WAIT, ~7 s before an address is used. A
// gateway claims its addresses on a LAN, where a host that holds an address answers a probe in
// well under a millisecond (its kernel answers in softirq: BenchmarkProbeAnswer, 2-20 us here,
// at most 8 ms with every core four times oversubscribed), and every millisecond before the
// claim is a millisecond of a new EIP, FIP or gateway answering nothing. So the probes are 10 ms
// apart and the wait after the last one 40 ms: 60 ms per converge that adds addresses (in
// parallel for all of them, and with the NAT commit), measured in BenchmarkApplyToFirstPacket.
// The decision reads every frame the kernel queued by then (arpLink.drain), so the daemon's own
// scheduling delay does not shorten the wait. Every probe lost, or a host slower than the wait,
// is the case these timings give up; the defence below catches the late answer (and one that
// arrives while the address is being added, arpLink.claiming).
const (
	// probeCount probes probeInterval apart, then probeWait for an answer (RFC: PROBE_NUM 3,
	// PROBE_MIN/MAX 1-2 s, ANNOUNCE_WAIT 2 s).
	probeCount    = 3
	probeInterval = 10 * time.Millisecond
	probeWait     = 40 * time.Millisecond
	// defendInterval: at most one defending announcement per address per interval (RFC
	// DEFEND_INTERVAL). A router defends indefinitely (RFC §2.4 (c)): it never gives up an
	// address it was configured with.
	defendInterval = 10 * time.Second
	// While a held address is contested, a probe for it every checkInterval; once the foreign
	// MAC has not claimed it for quietWindow (two unanswered checks), the conflict is over and
	// the address is announced again, so hosts that followed the intruder come back within a
	// second instead of after their ARP entries expire (5-31 s on Linux).
	checkInterval = 250 * time.Millisecond
	quietWindow   = 500 * time.Millisecond
	// An address that was in use when the gateway probed it is probed again every
	// reprobeInterval (one probe; no answer within probeWait makes the converge claim it, with
	// full probing again).
	reprobeInterval = 2 * time.Second
	// tickInterval is the resolution of the conflict timers; the timer runs only while an
	// interface has a conflict.
	tickInterval = 50 * time.Millisecond
	// peerAnnounceInterval rate-limits the announcements that answer a legitimate peer.
	peerAnnounceInterval = time.Second
)

// ClaimMode says how an address that is not on its interface yet becomes the gateway's.
type ClaimMode int

const (
	// ClaimProbe looks before it claims: the address is probed and added only when no other
	// host answers for it (the default).
	ClaimProbe ClaimMode = iota
	// ClaimTakeover claims without probing: the gateway is the legitimate new owner of addresses
	// another host (the previous active replica, HA) still answers for. It adds and announces
	// them at once, and its announcements win every neighbour over.
	ClaimTakeover
)

// ClaimPolicy is how the gateway claims and defends its addresses.
type ClaimPolicy struct {
	Mode ClaimMode
	// Peers are MACs of the gateway's other replicas (HA). A peer claiming one of our addresses
	// is never a conflict (it neither blocks a claim nor is reported): while we hold the address
	// we answer with an announcement (at most one per second), so the newest owner wins. Every
	// other MAC is an intruder, in either mode.
	Peers []net.HardwareAddr
}

// Conflict is an address of the gateway that a foreign host claims.
type Conflict struct {
	Address   netip.Addr
	Interface string
	MAC       net.HardwareAddr
	Since     time.Time
	// Claimed: the gateway holds the address and defends it; false: the address was in use when
	// probed, so it is not on the interface and is probed again until it is free.
	Claimed bool
}

// acd runs address conflict detection for one gateway netns: one arpLink per NIC.
//
// Locks: mu guards links and is never taken by a link's goroutines (closing a link under mu
// waits for them); cfgMu guards policy and notify, which those goroutines read. A link's own mu
// is taken after mu, never before.
type acd struct {
	nsPath   string
	mu       sync.Mutex
	links    map[string]*arpLink
	cfgMu    sync.Mutex
	policy   ClaimPolicy
	notify   func(converge bool)
	defenses atomic.Uint64
	// silence: NIC name -> whether it was silent (IFF_NOARP) at its last received frame
	// (standby.go).
	silence sync.Map
}

func newACD(nsPath string) *acd { return &acd{nsPath: nsPath, links: map[string]*arpLink{}} }

// conflict is one contested address of an arpLink.
type conflict struct {
	mac                net.HardwareAddr
	since, lastSeen    time.Time
	lastCheck          time.Time
	lastDefend         time.Time
	checksSinceSeen    int
	claimed, signalled bool
}

func (a *acd) isPeer(mac net.HardwareAddr) bool {
	a.cfgMu.Lock()
	defer a.cfgMu.Unlock()
	return slices.ContainsFunc(a.policy.Peers, func(p net.HardwareAddr) bool { return bytes.Equal(p, mac) })
}

func (a *acd) changed(converge bool) {
	a.cfgMu.Lock()
	fn := a.notify
	a.cfgMu.Unlock()
	if fn != nil {
		fn(converge)
	}
}

// claim starts probing the IPv4 addresses of want (per NIC) that are not held yet (have), all
// NICs and addresses in parallel, and returns at once. Its result waits for the probes and
// returns per NIC the addresses that may be on it: those already held and those found free. An
// address another host answers for becomes a conflict (not claimed). IPv6 addresses pass
// unprobed (ARP is IPv4 only). Closing abort stops the probes; the result is then nil and
// nothing is decided (the next converge probes again).
func (a *acd) claim(want, have map[string][]netip.Prefix, abort <-chan struct{}) (result func() map[string][]netip.Prefix) {
	out := map[string][]netip.Prefix{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	aborted := false
	a.cfgMu.Lock()
	takeover := a.policy.Mode == ClaimTakeover
	a.cfgMu.Unlock()
	for name, ps := range want {
		var probe []netip.Addr
		for _, p := range ps {
			if p.Addr().Is4() && !slices.ContainsFunc(have[name], func(h netip.Prefix) bool { return h.Addr() == p.Addr() }) {
				probe = append(probe, p.Addr())
			}
		}
		a.mu.Lock()
		l := a.links[name]
		a.mu.Unlock()
		// A silent NIC is a standby replica's: the active one holds the same addresses (standby.go).
		if len(probe) == 0 || l == nil || takeover || l.silent() {
			if l != nil {
				l.forgetPending(probe)
			}
			mu.Lock()
			out[name] = ps
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			taken := l.probe(probe, abort)
			mu.Lock()
			defer mu.Unlock()
			if taken == nil {
				aborted = true
				return
			}
			out[name] = slices.DeleteFunc(slices.Clone(ps), func(p netip.Prefix) bool { return taken[p.Addr()] })
		}()
	}
	return func() map[string][]netip.Prefix {
		wg.Wait()
		if aborted {
			return nil
		}
		return out
	}
}

// attach makes sure every NIC of names has a listener on the link it is now (a recreated link
// gets a new one), and closes the listeners of NICs no longer wanted.
func (a *acd) attach(open func(name string) (*arpLink, error), idOf func(name string) (int, net.HardwareAddr, error), names []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, l := range a.links {
		if !slices.Contains(names, name) {
			l.close()
			delete(a.links, name)
		}
	}
	for _, name := range names {
		idx, mac, err := idOf(name)
		if err != nil {
			return err
		}
		if l := a.links[name]; l != nil {
			if l.ifindex == idx && bytes.Equal(l.mac, mac) {
				continue
			}
			l.close()
			delete(a.links, name)
		}
		l, err := open(name)
		if err != nil {
			return err
		}
		a.links[name] = l
	}
	return nil
}

// hold tells each NIC's listener which IPv4 addresses it holds now (and defends) and which it
// wants: conflicts of addresses no longer wanted are dropped.
func (a *acd) hold(held, want map[string][]netip.Prefix) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, l := range a.links {
		l.setHeld(addrsOf(held[name]), addrsOf(want[name]))
	}
}

// conflicts lists the conflicts of every NIC, by interface then address.
func (a *acd) conflicts() []Conflict {
	a.mu.Lock()
	links := make([]*arpLink, 0, len(a.links))
	for _, l := range a.links {
		links = append(links, l)
	}
	a.mu.Unlock()
	var out []Conflict
	for _, l := range links {
		out = append(out, l.list()...)
	}
	slices.SortFunc(out, func(x, y Conflict) int {
		return cmp.Or(strings.Compare(x.Interface, y.Interface), x.Address.Compare(y.Address))
	})
	return out
}

// close stops every listener.
func (a *acd) close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for name, l := range a.links {
		l.close()
		delete(a.links, name)
	}
}

func logConflict(msg string, l *arpLink, addr netip.Addr, mac net.HardwareAddr) {
	klog.InfoS(msg, "netns", l.acd.nsPath, "interface", l.name, "address", addr, "foreignMAC", mac.String())
}
