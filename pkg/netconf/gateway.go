package netconf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
)

// Gateway converges one gateway network namespace. Its methods are safe for concurrent use;
// converges of one gateway are serialised.
type Gateway struct {
	mu     sync.Mutex
	nsPath string
	ipt    iptables
	// last is the nat ruleset last applied; nil when unknown (new Gateway, or after any error),
	// which forces the next converge to read the kernel back. nftLast is the same for the
	// nftables backend, and dataplane the backend of the last converge ("": none yet); see
	// dataplane.go.
	last      *nat.Ruleset
	nftLast   *nftApplied
	nft       nftTable
	dataplane string
	// initialised: a converge completed, so forwarding is on.
	initialised bool
	// roleSeen and termSeen: the replica's role and term as ReplicaRole last read them.
	roleSeen string
	termSeen uint64
	// sysctls are the link sysctls last found right (sysctl.go); nil when unknown (new
	// Gateway, new netns, after any error), which makes the next converge read them back.
	sysctls *sysctlMemo
	// nsID identifies the netns last converged (see netnsID): a sandbox recreated under the
	// same path is a new, empty netns, and nothing remembered about the old one holds for it.
	nsID uint64
	// pendingStale are mappings removed from the nat table whose conntrack entries are not
	// deleted yet (a converge failed in between); a later read-back could no longer see them.
	pendingStale []nat.Mapping
	// ctScope is the NAT step's word to the conntrack step (nftables: conntrack_mark.go).
	ctScope *markScope
	// acd probes addresses before they are claimed, announces them, and defends them while
	// held (acd.go), through one packet socket per NIC.
	acd *acd
}

// Report says what a converge changed. A failed converge returns it too, holding the changes
// made before the failure.
type Report struct {
	// Full: the nat table was read back from the kernel rather than trusted from memory.
	Full bool
	// NATTime is how long the NAT step took (render, diff, read-back if full, commit), whichever
	// backend ran it.
	NATTime time.Duration
	// Changes has one human line per kernel change; empty when the netns was already in sync.
	Changes []string
	// Announced are the addresses gratuitous ARPs were sent for (not a change of the netns):
	// EIPs on the external NIC, then the addresses of the subnet NICs, in desired order.
	Announced []string
	// Pending are the desired addresses another host answered for when probed ("address on
	// NIC"): not on the NIC, not announced, probed again until free (see Conflicts).
	Pending []string
	// Steps is how long each step of the converge took, in the order they ran: plan (netns,
	// sockets, desired addresses and routes), hold forwarding, links (links, sysctls, conflict
	// listeners; the probes start at its end), nat, probe (the wait for the probes left after
	// the NAT step), addresses, routes, conntrack, forwarding, announce. A failed converge has
	// the steps before the failure.
	Steps []Step
}

// Step is one timed step of a converge.
type Step struct {
	Name string
	Took time.Duration
}

// NewGateway returns a Gateway for the netns mounted at nsPath. Nothing is read until Converge.
func NewGateway(nsPath string) *Gateway {
	return &Gateway{nsPath: nsPath, ipt: execIptables{nsPath: nsPath}, nft: newNetlinkNFT(nsPath), acd: newACD(nsPath)}
}

// Close stops pending gratuitous ARP repeats and the address conflict listeners. The Gateway
// must not be used afterwards.
func (g *Gateway) Close() { g.acd.close(); g.nft.Close() }

// SetClaimPolicy sets how addresses not yet on their NIC are claimed (probe first, or take over
// as the legitimate new owner) and which MACs are the gateway's peers; see ClaimPolicy. It holds
// from the next converge on.
func (g *Gateway) SetClaimPolicy(p ClaimPolicy) {
	g.acd.cfgMu.Lock()
	defer g.acd.cfgMu.Unlock()
	g.acd.policy = p
}

// OnConflictChange registers fn, called from a listener goroutine when the gateway's set of
// conflicts changes outside a converge's own decisions: a held address became contested, or a
// conflict ended and the address was announced again. converge=true asks for a converge: an
// address that was not claimed looks free now. fn must not block nor converge: it may also run
// while a converge's probe reads the frames queued on a NIC (a held address contested then).
func (g *Gateway) OnConflictChange(fn func(converge bool)) {
	g.acd.cfgMu.Lock()
	defer g.acd.cfgMu.Unlock()
	g.acd.notify = fn
}

// Conflicts are the gateway's contested addresses now, by interface then address.
func (g *Gateway) Conflicts() []Conflict { return g.acd.conflicts() }

// Defenses counts the announcements sent to defend a contested address since NewGateway.
func (g *Gateway) Defenses() uint64 { return g.acd.defenses.Load() }

// Converge makes the gateway netns match d, in this order: forwarding held off on a fresh netns,
// links and their sysctls; then address conflict detection probes the addresses to add while
// the NAT rules are committed (before any new EIP address exists or any packet is forwarded);
// addresses (those found free), routes and rules, conntrack of removed mappings (and, on a full
// converge or a nat change, of every entry whose translation d contradicts: translated by rules
// d no longer has, or never translated though d's FIPs, port forwards or SNATs translate it),
// forwarding on (after a conntrack flush, only when it was off), gratuitous ARP. Links,
// addresses, routes and rules are always read back (netlink dumps cost well under a
// millisecond); full=true also reads the nat table back (iptables-save), the link sysctls and
// ip_forward, and repairs their drift; full=false trusts the last applied nat state, the sysctls
// last found right while their links are the same (ifindex, flags), and forwarding on after a
// completed converge. After any error the next converge is full.
//
// The node side is the netns of the calling OS thread: the caller locks it (ns.Do,
// runtime.LockOSThread) when that is not the process's own netns.
func (g *Gateway) Converge(ctx context.Context, d *annotations.Desired, full bool) (rep *Report, err error) {
	if d == nil {
		return nil, errors.New("converge: no desired state")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	start := time.Now()
	rep = &Report{}
	defer func() {
		if err != nil {
			g.forgetNAT()
			g.sysctls = nil
			err = fmt.Errorf("converging gateway netns %s: %w", g.nsPath, err)
		}
		klog.V(2).InfoS("Converged gateway netns", "netns", g.nsPath, "generation", d.Generation, "full", full,
			"changes", len(rep.Changes), "duration", time.Since(start), "err", err)
	}()
	mark := time.Now()
	step := func(name string) {
		now := time.Now()
		rep.Steps = append(rep.Steps, Step{Name: name, Took: now.Sub(mark)})
		mark = now
	}
	change := func(lines []string) {
		for _, l := range lines {
			klog.V(2).InfoS("Changed gateway netns", "netns", g.nsPath, "change", l)
		}
		rep.Changes = append(rep.Changes, lines...)
	}

	netNS, err := ns.GetNS(g.nsPath)
	if err != nil {
		return rep, fmt.Errorf("opening the netns: %w", err)
	}
	defer netNS.Close()
	socks, err := enterGateway(netNS)
	if err != nil {
		return rep, err
	}
	g.checkIdentity(socks.id)
	full = full || !g.natKnown(d)
	rep.Full = full
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		socks.close()
		return rep, fmt.Errorf("netlink socket in the node netns: %w", err)
	}
	h := &Handles{Host: host, Gateway: socks.gw, GatewayNS: netns.NsHandle(netNS.Fd())}
	defer h.Close()
	socks.gw = nil // h closes it
	defer socks.close()

	st, primaries, err := g.plan(h, d)
	if err != nil {
		return rep, err
	}
	step("plan")
	first := !g.initialised
	if first {
		lines, err := holdForwarding(netNS, h)
		change(lines)
		if err != nil {
			return rep, err
		}
	}
	step("hold forwarding")

	// The links first, then conflict detection probes the addresses to add while the NAT is
	// committed: probing is waiting for answers, and nothing else needs the new addresses.
	nics, err := g.syncLinks(netNS, h, socks.addrFD, d, primaries, full, change)
	if err != nil {
		return rep, err
	}
	wantAddrs := map[string][]netip.Prefix{}
	for _, name := range nics.names {
		wantAddrs[name] = st.addrs[name]
	}
	abort := make(chan struct{})
	probed := g.acd.claim(wantAddrs, nics.have, abort)
	probing := true
	defer func() {
		if probing { // an error before the addresses: stop the probes, decide nothing
			close(abort)
			probed()
		}
	}()
	step("links")

	natStart := time.Now()
	stale, lines, commitNAT, err := g.syncDataplane(ctx, d, full)
	rep.NATTime = time.Since(natStart)
	natChanged := len(lines) > 0
	change(lines)
	if err != nil {
		return rep, err
	}
	// Mappings left pending by a failed converge may be live again; this converge's own stale
	// mappings are not in want by construction.
	g.pendingStale = append(stillStale(g.pendingStale, d), stale...)
	step("nat")

	held := probed()
	probing = false
	step("probe")
	added, err := g.syncAddrs(h, nics, held, wantAddrs, change)
	if err != nil {
		return rep, err
	}
	step("addresses")
	lines, err = syncRouting(h.Gateway, st)
	change(lines)
	if err != nil {
		return rep, err
	}
	step("routes")
	// A full converge (a restart, a resync, any converge after an error) or a nat change also
	// sweeps the table level-based: what a crash left between the nat commit and the clean-up,
	// flows of changed SNATs, and flows that began before the FIP, port forward or SNAT that now
	// covers them (untranslated), none of which the mapping diff covers.
	lines, err = cleanConntrack(netNS, h, g.pendingStale, d, full || natChanged, g.ctScope)
	change(lines)
	if err != nil {
		return rep, err
	}
	g.pendingStale = nil
	step("conntrack")
	// Forwarding is on after any completed converge: a fast one trusts that, a full one (every
	// resync) reads it back and repairs it.
	if full || !g.initialised {
		lines, err = enableForwarding(netNS, h)
		change(lines)
		if err != nil {
			return rep, err
		}
	}
	step("forwarding")
	commitNAT()
	g.initialised = true

	// Every address a NIC holds on a fresh netns or a changed NIC (upstream and VPC hosts may
	// hold a wrong or expired entry), else the addresses added; never an address not claimed.
	// Primary NICs' addresses are the primary CNI's: st.addrs has none for them.
	for _, name := range ownNICs(d) {
		announce := added[name]
		if first || nics.changed[name] {
			announce = held[name]
		}
		for _, p := range st.addrs[name] {
			if !slices.Contains(held[name], p) {
				rep.Pending = append(rep.Pending, p.Addr().String()+" on "+name)
			}
		}
		rep.Announced = append(rep.Announced, g.announce(name, addrsOf(announce))...)
	}
	step("announce")
	return rep, nil
}

// checkIdentity forgets everything remembered when the netns at nsPath (identified by id, see
// enterGateway) is not the one last converged, so the converge becomes a full init.
func (g *Gateway) checkIdentity(id uint64) {
	if g.nsID != 0 && g.nsID != id {
		klog.V(2).InfoS("Gateway netns was recreated: converging from scratch", "netns", g.nsPath)
		g.last, g.nftLast, g.dataplane, g.initialised, g.pendingStale, g.sysctls = nil, nil, "", false, nil, nil
		g.acd.close() // listeners of the old netns's links
		g.nft.Close() // a netlink socket of the old netns
	}
	g.nsID = id
}

// gatewaySockets are what a converge opens inside the gateway netns: its identity, the route
// netlink handle, and a raw route netlink socket the address dump reads (addrsByLink).
type gatewaySockets struct {
	id     uint64
	gw     *netlink.Handle
	addrFD int
}

// enterGateway identifies the gateway netns and opens the route netlink sockets in it, in one
// switch of the calling thread into it and back (a thread switch costs more than all of them).
//
// The identity is the netns cookie (SO_NETNS_COOKIE, Linux 5.14+): 64 bits, never reused while
// the system runs. The nsfs inode number is only the fallback for older kernels: it is reused
// once a netns is freed, and a recreated sandbox may well get the number of the one it replaces.
func enterGateway(netNS ns.NetNS) (s gatewaySockets, err error) {
	s.addrFD = -1
	runtime.LockOSThread()
	defer runtime.UnlockOSThread() // the caller's own lock, if any, still holds
	orig, err := netns.Get()
	if err != nil {
		return s, fmt.Errorf("opening the calling thread's netns: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(netns.NsHandle(netNS.Fd())); err != nil {
		return s, fmt.Errorf("entering the gateway netns: %w", err)
	}
	s.id = socketNetnsCookie()
	s.gw, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	if err == nil {
		if s.addrFD, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE); err != nil {
			s.addrFD = -1
		}
	}
	if serr := netns.Set(orig); serr != nil {
		// Not back in the node's netns: this thread must never run anything else. Keep it
		// locked (one more lock than the deferred unlock undoes) so the runtime discards it
		// when the goroutine ends, and fail the converge.
		runtime.LockOSThread()
		s.close()
		return gatewaySockets{addrFD: -1}, fmt.Errorf("returning from the gateway netns to the node's: %w", serr)
	}
	if err != nil {
		s.close()
		return gatewaySockets{addrFD: -1}, fmt.Errorf("netlink socket in the gateway netns: %w", err)
	}
	if s.id == 0 {
		var st unix.Stat_t
		if err := unix.Fstat(int(netNS.Fd()), &st); err != nil {
			s.close()
			return gatewaySockets{addrFD: -1}, fmt.Errorf("identifying the netns: %w", err)
		}
		s.id = st.Ino
	}
	return s, nil
}

// close closes the raw socket, and the handle when it is not handed over to Handles.
func (s *gatewaySockets) close() {
	if s.gw != nil {
		s.gw.Close()
		s.gw = nil
	}
	if s.addrFD >= 0 {
		unix.Close(s.addrFD)
		s.addrFD = -1
	}
}

// socketNetnsCookie is the cookie of the calling thread's netns, 0 when the kernel has none.
func socketNetnsCookie() uint64 {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0
	}
	defer unix.Close(fd)
	cookie, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0
	}
	return cookie
}

// plan computes the desired addresses, routes and rules (pure, before any change), with the
// primary CNI's addresses counted as the gateway's own.
func (g *Gateway) plan(h *Handles, d *annotations.Desired) (*netState, map[string]bool, error) {
	primaries := map[string]bool{}
	var names []string
	for _, s := range d.Subnets {
		if s.Attachment.Type == annotations.AttachPrimary {
			primaries[s.IfName] = true
			names = append(names, s.IfName)
		}
	}
	extra, err := primaryAddrs(h.Gateway, names)
	if err != nil {
		return nil, nil, err
	}
	st, err := planNet(d, extra)
	if err != nil {
		return nil, nil, fmt.Errorf("desired state: %w", err)
	}
	return st, primaries, nil
}

// ownNICs are the external NIC, then the subnet NICs, in desired order.
func ownNICs(d *annotations.Desired) []string {
	names := []string{extIfName(d)}
	for _, s := range d.Subnets {
		names = append(names, s.IfName)
	}
	return names
}

// nicState is what syncLinks found: the links of the gateway netns by name, the NICs whose
// addresses the gateway owns (not a primary CNI's), the addresses they hold, and which NICs
// themselves changed (recreated, new MAC, brought up): all their addresses are announced again,
// since neighbours may hold a wrong or expired entry.
type nicState struct {
	links   map[string]netlink.Link
	names   []string
	have    map[string][]netip.Prefix
	changed map[string]bool
}

// syncLinks converges links and their sysctls, reads the addresses the NICs hold, and gives
// every NIC its conflict listener, so that address conflict detection can probe the addresses
// to add while the rest of the converge runs (syncAddrs adds them). An IPv4 address that is not
// on its NIC yet is added only when conflict detection finds it free.
//
// The links are read once after they are ensured and the addresses of the netns once (one dump
// each), and conflict detection and the address sync share them. The link sysctls are read back
// on a full converge, and on a fast one only when a link was changed (created, deleted, repaired)
// or the values wanted or a link they are on (ifindex, flags) differ from when they were last
// found right: between resyncs a fast converge trusts what it wrote.
func (g *Gateway) syncLinks(netNS ns.NetNS, h *Handles, addrFD int, d *annotations.Desired,
	primaries map[string]bool, full bool, change func([]string)) (*nicState, error) {
	want := map[string]bool{}
	var subnets []string
	for _, s := range d.Subnets {
		want[s.IfName] = true
		subnets = append(subnets, s.IfName)
	}
	want[extIfName(d)] = true // never prune the external NIC, whatever its name
	links, lines, err := pruneSubnetNICs(h, want)
	change(lines)
	if err != nil {
		return nil, err
	}
	linksChanged := len(lines) > 0
	lines, err = EnsureExternalNIC(h, d.External)
	change(lines)
	if err != nil {
		return nil, err
	}
	changed := map[string]bool{extIfName(d): len(lines) > 0}
	linksChanged = linksChanged || len(lines) > 0
	for _, s := range d.Subnets {
		lines, err := EnsureSubnetNIC(h, s)
		change(lines)
		if err != nil {
			return nil, err
		}
		changed[s.IfName] = changed[s.IfName] || len(lines) > 0
		linksChanged = linksChanged || len(lines) > 0
	}
	if linksChanged { // the list read before pruning is out of date
		if links, err = linksByName(h); err != nil {
			return nil, err
		}
	}
	ext := extIfName(d)
	// promote_secondaries before any address is removed.
	sysWant := linkSysctls(ext, subnets, primaries)
	ids := linkIDsOf(links, append([]string{ext}, subnets...))
	if full || linksChanged || !g.sysctls.holds(sysWant, ids) {
		g.sysctls = nil
		lines, err = syncSysctls(netNS, sysWant)
		change(lines)
		if err != nil {
			return nil, err
		}
		g.sysctls = &sysctlMemo{want: sysWant, links: ids}
	}
	var names []string
	for _, name := range append([]string{ext}, subnets...) {
		if !primaries[name] { // eth0's addresses belong to the primary CNI
			names = append(names, name)
		}
	}
	lines, err = silenceNewReplicaNICs(h, d, names) // standby.go
	change(lines)
	if err != nil {
		return nil, err
	}
	addrs, err := addrsByLink(addrFD)
	if err != nil {
		return nil, err
	}
	have := map[string][]netip.Prefix{}
	for _, name := range names {
		l := links[name]
		if l == nil {
			return nil, fmt.Errorf("link %s: not found in the gateway netns after it was ensured", name)
		}
		have[name] = addrs[l.Attrs().Index]
	}
	if err := g.attachACD(netNS, links, names); err != nil {
		return nil, err
	}
	return &nicState{links: links, names: names, have: have, changed: changed}, nil
}

// syncAddrs makes every NIC of nics hold exactly held (the addresses of wantAddrs conflict
// detection let it claim), tells the listeners what they hold and want, and returns the
// addresses added per NIC.
func (g *Gateway) syncAddrs(h *Handles, nics *nicState, held, wantAddrs map[string][]netip.Prefix,
	change func([]string)) (map[string][]netip.Prefix, error) {
	added := map[string][]netip.Prefix{}
	for _, name := range nics.names {
		lines, addedHere, err := syncLinkAddrs(h.Gateway, nics.links[name], nics.have[name], held[name])
		change(lines)
		if err != nil {
			return nil, err
		}
		added[name] = addedHere
	}
	g.acd.hold(held, wantAddrs)
	return added, nil
}

// attachACD gives every NIC of names a conflict listener on its current link (links: the links
// of the gateway netns by name, every NIC of names among them).
func (g *Gateway) attachACD(netNS ns.NetNS, links map[string]netlink.Link, names []string) error {
	return g.acd.attach(func(name string) (*arpLink, error) {
		a := links[name].Attrs()
		return openARPLink(g.acd, netNS, name, a.Index, a.HardwareAddr)
	}, func(name string) (int, net.HardwareAddr, error) {
		a := links[name].Attrs()
		return a.Index, a.HardwareAddr, nil
	}, names)
}

// announce sends gratuitous ARPs for the IPv4 addresses among addrs (EIPs on the external NIC,
// a subnet's gateway IP and lanIp on its subnet NIC) out of the gateway link ifName, without
// blocking (the repeats run on the NIC's listener), and returns those addresses. Failures are
// logged, never returned: the netns is converged, and a neighbour will learn the MAC on its
// next ARP.
func (g *Gateway) announce(ifName string, addrs []netip.Addr) []string {
	var v4 []netip.Addr
	for _, a := range addrs {
		if a.Is4() { // ARP is IPv4 only
			v4 = append(v4, a)
		}
	}
	if len(v4) == 0 {
		return nil
	}
	g.acd.mu.Lock()
	l := g.acd.links[ifName]
	g.acd.mu.Unlock()
	if l == nil { // every NIC that holds addresses has one (syncInterfaces)
		klog.ErrorS(nil, "Gratuitous ARP failed: no packet socket on the NIC", "netns", g.nsPath, "interface", ifName)
	} else {
		l.announce(v4)
	}
	out := make([]string, len(v4))
	for i, a := range v4 {
		out[i] = a.String()
	}
	klog.V(2).InfoS("Announced addresses", "netns", g.nsPath, "interface", ifName, "addresses", out)
	return out
}
