package netconf

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/arp"
)

// arpLink is the ARP listener and sender of one gateway NIC: one AF_PACKET socket, created
// inside the gateway netns, bound to the NIC, that sends probes and announcements and receives
// every ARP frame the NIC receives. It holds the NIC's conflicts.
type arpLink struct {
	acd     *acd
	name    string
	ifindex int
	mac     net.HardwareAddr
	fd      int
	// wake is a pipe whose write end close writes to: the reader blocks in poll on the socket and
	// the pipe, so an idle NIC costs no wake-up (a packet socket's recv is not woken by
	// shutdown, and a receive timeout would wake every listener of the node all the time).
	wake [2]int
	// xmit sends one ARP payload (broadcast; a unit test records them instead).
	xmit func(payload []byte) error

	// rxMu is held while frames are read off the socket and handled: by the reader, and by a
	// probe that reads what is queued before it decides (drain).
	rxMu sync.Mutex

	mu        sync.Mutex
	held      map[netip.Addr]bool
	conflicts map[netip.Addr]*conflict
	// probing maps an address being probed to the foreign MAC that claimed it (nil: none yet).
	probing map[netip.Addr]net.HardwareAddr
	// claiming maps an address a probe found free, which the converge is adding but the link
	// does not hold yet, to the foreign MAC that claimed it since (nil: none): an answer that
	// arrives after the probe's wait is not lost before the address is held (setHeld).
	claiming map[netip.Addr]net.HardwareAddr
	// peerAnnounced rate-limits the announcements that answer a peer.
	peerAnnounced map[netip.Addr]time.Time

	kick chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

// arpFilter is a classic BPF program that passes only Ethernet/IPv4 ARP frames (a SOCK_DGRAM
// socket sees them from the ARP header on), so nothing else is queued on the socket.
var arpFilter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 0},                            // hardware type
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 3, K: 1},             // Ethernet
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 2},                            // protocol type
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 0, Jf: 1, K: unix.ETH_P_IP}, // IPv4
	{Code: unix.BPF_RET | unix.BPF_K, K: 0xffff},
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},
}

// openARPLink opens the socket of NIC name (ifindex, mac) inside netNS: a packet socket belongs
// to the netns of the thread that creates it, hence ns.Do; afterwards any goroutine can use it.
func openARPLink(a *acd, netNS ns.NetNS, name string, ifindex int, mac net.HardwareAddr) (*arpLink, error) {
	fd := -1
	err := netNS.Do(func(ns.NetNS) error {
		var err error
		// Protocol 0: the socket receives nothing until bind names the protocol and the NIC. A
		// socket created with a protocol is hooked on every device at once, and bind has to
		// unhook it first, which waits for a network RCU grace period (synchronize_net, ~10 ms
		// per NIC here) in the middle of a converge.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		// Our own frames (every probe and announcement) need not wake the reader (Linux 4.20+;
		// on an older kernel the reader skips them, PACKET_OUTGOING).
		_ = unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
		prog := unix.SockFprog{Len: uint16(len(arpFilter)), Filter: &arpFilter[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			return fmt.Errorf("attaching the ARP filter: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex})
	})
	var wake [2]int
	if err == nil {
		err = unix.Pipe2(wake[:], unix.O_CLOEXEC|unix.O_NONBLOCK)
	}
	if err != nil {
		if fd >= 0 {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("address conflict detection on %s: packet socket in the gateway netns: %w", name, err)
	}
	l := &arpLink{acd: a, name: name, ifindex: ifindex, mac: mac, fd: fd, wake: wake,
		held: map[netip.Addr]bool{}, conflicts: map[netip.Addr]*conflict{},
		probing: map[netip.Addr]net.HardwareAddr{}, claiming: map[netip.Addr]net.HardwareAddr{}, peerAnnounced: map[netip.Addr]time.Time{},
		kick: make(chan struct{}, 1), stop: make(chan struct{})}
	l.xmit = l.broadcast
	l.wg.Add(2)
	go l.read()
	go l.timers()
	return l, nil
}

func (l *arpLink) close() {
	select {
	case <-l.stop:
		return
	default:
	}
	close(l.stop)
	_, _ = unix.Write(l.wake[1], []byte{0}) // wakes the reader's poll
	l.wg.Wait()
	unix.Close(l.fd)
	unix.Close(l.wake[0])
	unix.Close(l.wake[1])
}

// arpFrame is the part of an ARP frame conflict detection reads.
type arpFrame struct {
	op       uint16
	sha      net.HardwareAddr
	spa, tpa netip.Addr
}

func parseARP(b []byte) (arpFrame, bool) {
	if len(b) < 28 || b[4] != 6 || b[5] != 4 {
		return arpFrame{}, false
	}
	return arpFrame{op: binary.BigEndian.Uint16(b[6:]), sha: net.HardwareAddr(bytes.Clone(b[8:14])),
		spa: netip.AddrFrom4([4]byte(b[14:18])), tpa: netip.AddrFrom4([4]byte(b[24:28]))}, true
}

// arpPayload is an ARP request from mac: sender spa (0.0.0.0 for a probe, RFC 5227 §2.1.1; the
// address itself for an announcement), target tpa, target hardware address zero.
func arpPayload(mac net.HardwareAddr, spa, tpa netip.Addr) []byte { return arp.Request(mac, spa, tpa) }

var zeroIP = netip.AddrFrom4([4]byte{})

func (l *arpLink) send(payload []byte) {
	if claimsAddress(payload) && l.silent() {
		return // a standby replica's NIC (standby.go)
	}
	if err := l.xmit(payload); err != nil {
		klog.V(2).InfoS("ARP send failed", "netns", l.acd.nsPath, "interface", l.name, "err", err)
	}
}

// broadcast sends an ARP payload to the NIC's broadcast address. MSG_DONTWAIT: never block a
// converge or the timers on a full queue; a lost frame is covered by the next one.
func (l *arpLink) broadcast(payload []byte) error {
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: l.ifindex, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	return unix.Sendto(l.fd, payload, unix.MSG_DONTWAIT, to)
}

func (l *arpLink) sendProbe(a netip.Addr)    { l.send(arpPayload(l.mac, zeroIP, a)) }
func (l *arpLink) sendAnnounce(a netip.Addr) { l.send(arpPayload(l.mac, a, a)) }

// announce sends gratuitous ARPs for addrs: at once, then garpRepeats more rounds garpInterval
// apart from a goroutine, unless the link is closed first. It never blocks: a full send queue
// drops a round for an address, and the repeats cover it.
func (l *arpLink) announce(addrs []netip.Addr) {
	if len(addrs) == 0 {
		return
	}
	frames := make([][]byte, len(addrs))
	for i, a := range addrs {
		frames[i] = garpPayload(l.mac, a)
	}
	round := func() {
		for _, f := range frames {
			l.send(f)
		}
	}
	round()
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		t := time.NewTicker(garpInterval)
		defer t.Stop()
		for range garpRepeats {
			select {
			case <-l.stop:
				return
			case <-t.C:
			}
			round()
		}
	}()
}

// probe sends probeCount probes for every address of addrs, probeInterval apart, waits
// probeWait, reads every frame the NIC received until then, and returns the addresses another
// host claimed (a reply, a request or an announcement with that sender address, or its own
// probe for it). Those become unclaimed conflicts; the others are free, and their pending
// conflicts end. When abort closes first, it stops and returns nil: nothing is decided.
func (l *arpLink) probe(addrs []netip.Addr, abort <-chan struct{}) map[netip.Addr]bool {
	l.mu.Lock()
	for _, a := range addrs {
		l.probing[a] = nil
		delete(l.claiming, a)
	}
	l.mu.Unlock()
	if !l.waitRunning(abort) {
		l.endProbe(addrs)
		return nil
	}
	// On a fixed schedule from the first probe, so sending many addresses' probes does not
	// stretch it.
	start := time.Now()
	waitUntil := func(at time.Duration) bool {
		t := time.NewTimer(time.Until(start.Add(at)))
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-abort:
			return false
		}
	}
	for i := range probeCount {
		if i > 0 && !waitUntil(time.Duration(i)*probeInterval) {
			l.endProbe(addrs)
			return nil
		}
		for _, a := range addrs {
			l.sendProbe(a)
		}
	}
	if !waitUntil((probeCount-1)*probeInterval + probeWait) {
		l.endProbe(addrs)
		return nil
	}
	// The answers the kernel queued by now decide, whether or not the reader was scheduled to
	// read them yet (a busy node's threads may wait tens of milliseconds for a CPU; the
	// answering host's kernel answered in well under one).
	l.drain()
	now := time.Now()
	taken := map[netip.Addr]bool{}
	l.mu.Lock()
	for _, a := range addrs {
		mac := l.probing[a]
		delete(l.probing, a)
		c := l.conflicts[a]
		if mac == nil {
			delete(l.conflicts, a)
			l.claiming[a] = nil
			continue
		}
		taken[a] = true
		if c == nil {
			l.conflicts[a] = &conflict{mac: mac, since: now, lastSeen: now, lastCheck: now}
			logConflict("Address in use by another host: not claimed, probing again later", l, a, mac)
			continue
		}
		c.mac, c.lastSeen, c.lastCheck, c.signalled = mac, now, now, false
	}
	l.mu.Unlock()
	if len(taken) > 0 {
		l.kickTimers()
	}
	// No notification: the converge that probed reports the conflicts it leaves.
	return taken
}

// runningGuard bounds the wait for a NIC to run before it is probed: one without a carrier (its
// node NIC down) is probed all the same, as it always was, and its frames are lost.
const runningGuard = 100 * time.Millisecond

// waitRunning waits until the NIC runs (IFF_RUNNING: up, carrier, operational), at most
// runningGuard; false when abort closed first. A NIC the converge has just created or brought
// up drops every frame it is given until the kernel's link watch has activated it (its
// queueing discipline, the carrier of a veth's peer and the state of the bridge port behind
// it), a millisecond or so later: a probe sent before that is lost, and the first probes of
// every address on it would be.
func (l *arpLink) waitRunning(abort <-chan struct{}) bool {
	deadline := time.Now().Add(runningGuard)
	for {
		ifr, err := unix.NewIfreq(l.name)
		if err != nil {
			return true
		}
		if err := unix.IoctlIfreq(l.fd, unix.SIOCGIFFLAGS, ifr); err != nil || ifr.Uint16()&unix.IFF_RUNNING != 0 {
			return true
		}
		if time.Now().After(deadline) {
			klog.V(2).InfoS("Probing a NIC that does not run", "netns", l.acd.nsPath, "interface", l.name)
			return true
		}
		select {
		case <-abort:
			return false
		case <-time.After(time.Millisecond):
		}
	}
}

// endProbe forgets a probe of addrs that was aborted.
func (l *arpLink) endProbe(addrs []netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range addrs {
		delete(l.probing, a)
	}
}

// forgetPending ends the pending conflicts of addrs: they are claimed without probing.
func (l *arpLink) forgetPending(addrs []netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range addrs {
		if c := l.conflicts[a]; c != nil && !c.claimed {
			delete(l.conflicts, a)
		}
	}
}

// setHeld records the addresses the NIC holds now and those it wants. An address a foreign host
// claimed between the end of its probe and now (a late answer) is a conflict from the start:
// defended at once and reported, as if the claim had come just after.
func (l *arpLink) setHeld(held, want []netip.Addr) {
	var defend []netip.Addr
	defer func() {
		for _, a := range defend {
			l.sendAnnounce(a)
			l.acd.defenses.Add(1)
		}
		if len(defend) > 0 {
			l.kickTimers()
		}
	}()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.held = map[netip.Addr]bool{}
	for _, a := range held {
		l.held[a] = true
	}
	now := time.Now()
	for a, mac := range l.claiming {
		if mac != nil && l.held[a] && l.conflicts[a] == nil {
			l.conflicts[a] = &conflict{mac: mac, since: now, lastSeen: now, lastCheck: now, lastDefend: now, claimed: true}
			defend = append(defend, a)
			logConflict("Address conflict: another host answered for an address after it was probed; defending it", l, a, mac)
		}
		delete(l.claiming, a)
	}
	for a, c := range l.conflicts {
		switch {
		case !containsAddr(want, a):
			delete(l.conflicts, a) // not ours any more
		case l.held[a] && !c.claimed:
			delete(l.conflicts, a) // claimed since (a converge found it free)
		case !l.held[a] && c.claimed:
			// Removed from the NIC by hand: the next converge probes it again.
			delete(l.conflicts, a)
		}
	}
}

func containsAddr(as []netip.Addr, a netip.Addr) bool {
	for _, x := range as {
		if x == a {
			return true
		}
	}
	return false
}

func (l *arpLink) list() []Conflict {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]Conflict, 0, len(l.conflicts))
	for a, c := range l.conflicts {
		out = append(out, Conflict{Address: a, Interface: l.name, MAC: c.mac, Since: c.since, Claimed: c.claimed})
	}
	return out
}

func (l *arpLink) kickTimers() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// read receives the NIC's ARP frames until the link is closed.
func (l *arpLink) read() {
	defer l.wg.Done()
	buf := make([]byte, 1500)
	fds := []unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLIN}, {Fd: int32(l.wake[0]), Events: unix.POLLIN}}
	for {
		if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
			klog.ErrorS(err, "ARP listener stopped", "netns", l.acd.nsPath, "interface", l.name)
			return
		}
		if fds[1].Revents != 0 {
			return // closed
		}
		l.drainInto(buf)
	}
}

// drain reads and handles every frame queued on the socket now.
func (l *arpLink) drain() { l.drainInto(make([]byte, 1500)) }

func (l *arpLink) drainInto(buf []byte) {
	l.rxMu.Lock()
	defer l.rxMu.Unlock()
	for { // everything queued
		n, from, err := unix.Recvfrom(l.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			return // EAGAIN: drained
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue
		}
		if f, ok := parseARP(buf[:n]); ok {
			l.receive(f, time.Now())
		}
	}
}

// receive handles one frame from another MAC that claims an address: its sender address, or
// for a probe (sender 0.0.0.0) the address it probes for.
func (l *arpLink) receive(f arpFrame, now time.Time) {
	silent := l.silent() // a standby replica's NIC (standby.go)
	if l.acd.noteSilence(l.name, silent) {
		l.acd.changed(false) // the replica's role changed: report it
	}
	if bytes.Equal(f.sha, l.mac) || silent {
		return
	}
	addr := f.spa
	if addr == zeroIP {
		addr = f.tpa
	}
	peer := l.acd.isPeer(f.sha)
	var defend, notify bool
	l.mu.Lock()
	if _, ok := l.probing[addr]; ok && !peer {
		l.probing[addr] = f.sha
	}
	if mac, ok := l.claiming[addr]; ok && mac == nil && !peer && !l.held[addr] {
		l.claiming[addr] = f.sha
	}
	c := l.conflicts[addr]
	switch {
	case peer:
		if l.held[addr] && now.Sub(l.peerAnnounced[addr]) >= peerAnnounceInterval {
			l.peerAnnounced[addr] = now
			defend = true
		}
	case c != nil:
		c.mac, c.lastSeen, c.checksSinceSeen = f.sha, now, 0
		if c.claimed && now.Sub(c.lastDefend) >= defendInterval {
			c.lastDefend, defend = now, true
		}
	case l.held[addr]:
		l.conflicts[addr] = &conflict{mac: f.sha, since: now, lastSeen: now, lastCheck: now, lastDefend: now, claimed: true}
		defend, notify = true, true
		logConflict("Address conflict: another host claims an address the gateway holds; defending it", l, addr, f.sha)
	}
	l.mu.Unlock()
	if defend {
		l.sendAnnounce(addr)
		if !peer {
			l.acd.defenses.Add(1)
		}
	}
	if notify {
		l.kickTimers()
		l.acd.changed(false)
	}
}

// timers runs the conflict timers while the NIC has conflicts: the checks of contested held
// addresses, their end (announce again), and the re-probes of addresses not claimed.
func (l *arpLink) timers() {
	defer l.wg.Done()
	var t *time.Ticker // only while there are conflicts: an idle NIC costs no wake-up
	defer func() {
		if t != nil {
			t.Stop()
		}
	}()
	for {
		l.mu.Lock()
		busy := len(l.conflicts) > 0
		l.mu.Unlock()
		var tick <-chan time.Time
		switch {
		case busy && t == nil:
			t = time.NewTicker(tickInterval)
		case !busy && t != nil:
			t.Stop()
			t = nil
		}
		if t != nil {
			tick = t.C
		}
		select {
		case <-l.stop:
			return
		case <-l.kick:
		case <-tick:
		}
		l.tick(time.Now())
	}
}

func (l *arpLink) tick(now time.Time) {
	var probe, ended []netip.Addr
	var changed, converge bool
	l.mu.Lock()
	for a, c := range l.conflicts {
		if _, ok := l.probing[a]; ok {
			continue // a converge is probing it and decides
		}
		if c.claimed {
			if c.checksSinceSeen >= 2 && now.Sub(c.lastSeen) >= quietWindow {
				delete(l.conflicts, a)
				ended, changed = append(ended, a), true
				continue
			}
			if now.Sub(c.lastCheck) >= checkInterval {
				c.lastCheck = now
				c.checksSinceSeen++
				probe = append(probe, a)
			}
			continue
		}
		if c.lastCheck.After(c.lastSeen) && !c.signalled && now.Sub(c.lastCheck) >= probeWait {
			c.signalled, converge = true, true // no answer to the re-probe: claim it (after full probing)
		}
		if now.Sub(c.lastCheck) >= reprobeInterval {
			c.lastCheck, c.signalled = now, false
			probe = append(probe, a)
		}
	}
	l.mu.Unlock()
	for _, a := range probe {
		l.sendProbe(a)
	}
	for _, a := range ended {
		klog.InfoS("Address conflict over: announcing the address again", "netns", l.acd.nsPath, "interface", l.name, "address", a)
		l.announce([]netip.Addr{a})
	}
	if changed || converge {
		l.acd.changed(converge)
	}
}
