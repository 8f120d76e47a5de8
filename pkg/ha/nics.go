package ha

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/arp"
)

// refresh lists the gateway NICs (every Ethernet NIC but lo and the excluded ones), opens the
// sockets of new or recreated ones and closes those of vanished ones.
func (a *Agent) refresh() ([]netlink.Link, error) {
	all, err := a.nl.LinkList()
	for try := 0; errors.Is(err, netlink.ErrDumpInterrupted) && try < 3; try++ {
		// The links changed during the dump (a NIC being added or removed): what came back may
		// miss one, and a missing NIC is a lost one. Read again.
		all, err = a.nl.LinkList()
	}
	if err != nil {
		return nil, fmt.Errorf("listing links: %w", err)
	}
	var links []netlink.Link
	seen := map[string]bool{}
	var errs []error
	for _, l := range all {
		at := l.Attrs()
		if at.Name == "lo" || slices.Contains(a.cfg.Exclude, at.Name) || len(at.HardwareAddr) != 6 {
			continue
		}
		seen[at.Name] = true
		n := a.nics[at.Name]
		if n != nil && (n.index != at.Index || n.mac.String() != at.HardwareAddr.String()) {
			n.release()
			delete(a.nics, at.Name) // released: never released again if it cannot be reopened
			n = nil
		}
		if n == nil {
			if n, err = a.openNIC(at); err != nil {
				errs = append(errs, err)
				continue
			}
			a.nics[at.Name] = n
		}
		links = append(links, l)
	}
	now := time.Now()
	for name, n := range a.nics {
		if !seen[name] {
			n.release()
			delete(a.nics, name)
			a.lost[name] = now
			klog.InfoS("Gateway NIC gone", "gateway", a.cfg.Gateway, "replica", a.cfg.Replica, "interface", name)
		}
	}
	for name := range a.lost {
		if seen[name] {
			delete(a.lost, name)
		}
	}
	return links, errors.Join(errs...)
}

// current lists the gateway NICs already open, as netlink sees them now.
func (a *Agent) current() []netlink.Link {
	var out []netlink.Link
	for name := range a.nics {
		if l, err := a.nl.LinkByName(name); err == nil {
			out = append(out, l)
		}
	}
	return out
}

func (a *Agent) openNIC(at *netlink.LinkAttrs) (*nic, error) {
	hb, err := openPacketSocket(at.Index, EtherType, heartbeatGroup)
	if err != nil {
		return nil, fmt.Errorf("NIC %s: %w", at.Name, err)
	}
	arp, err := openPacketSocket(at.Index, unix.ETH_P_ARP, nil)
	if err != nil {
		hb.close()
		return nil, fmt.Errorf("NIC %s: %w", at.Name, err)
	}
	n := &nic{name: at.Name, index: at.Index, mac: slices.Clone(at.HardwareAddr), hb: hb, arp: arp,
		stop: make(chan struct{}), silent: at.RawFlags&unix.IFF_NOARP != 0}
	n.wg.Add(2)
	go n.read(hb, a.frames, true)
	go n.read(arp, a.frames, false)
	klog.V(2).InfoS("Watching gateway NIC", "gateway", a.cfg.Gateway, "interface", at.Name)
	return n, nil
}

// read passes heartbeats (or ARP senders) received on s to frames until the NIC is closed.
func (n *nic) read(s *packetSocket, frames chan<- frame, heartbeats bool) {
	defer n.wg.Done()
	buf := make([]byte, 1600)
	for {
		select {
		case <-n.stop:
			return
		default:
		}
		c, from, at, err := s.recv(buf, false)
		if errors.Is(err, os.ErrClosed) {
			return
		}
		if err != nil || from == nil {
			continue // our own frame
		}
		f, ok := n.parse(buf[:c], from, at, heartbeats)
		if !ok {
			continue
		}
		select {
		case frames <- f:
		case <-n.stop:
			return
		}
	}
}

// parse makes a frame of what a socket read: a peer's heartbeat, or the sender of an ARP frame.
// False for this NIC's own frames and for anything else.
func (n *nic) parse(b []byte, from net.HardwareAddr, at time.Time, heartbeats bool) (frame, bool) {
	if string(from) == string(n.mac) {
		return frame{}, false
	}
	f := frame{nic: n.name, at: at, from: from}
	if heartbeats {
		hb, err := ParseHeartbeat(b)
		if err != nil {
			return frame{}, false
		}
		f.hb = &hb
		return f, true
	}
	ip, ok := arp.Sender(b)
	if !ok || !ip.IsValid() || ip.IsUnspecified() {
		return frame{}, false
	}
	f.arp = ip
	return f, true
}

// drain reads, without blocking, the frames queued in the NIC's sockets that its readers have
// not taken yet: after the agent did not run for a while, the heartbeats and gateway answers
// that came meanwhile are counted (at the kernel's arrival time) before anything is decided.
// Only the agent's goroutine calls it, for NICs it has not released.
func (n *nic) drain(buf []byte, out []frame) []frame {
	for _, s := range []struct {
		sock       *packetSocket
		heartbeats bool
	}{{n.hb, true}, {n.arp, false}} {
		for range 1024 { // a bound: a flood cannot hold the agent here
			c, from, at, err := s.sock.recv(buf, true)
			if err != nil {
				break // EAGAIN: nothing more queued
			}
			if f, ok := n.parse(buf[:c], from, at, s.heartbeats); from != nil && ok {
				out = append(out, f)
			}
		}
	}
	return out
}

// release stops the NIC's readers and closes its sockets without waiting for the readers to
// return (a reader waiting for a frame returns at once).
func (n *nic) release() {
	close(n.stop)
	n.hb.close()
	n.arp.close()
}

// close releases the NIC and waits until its readers returned.
func (n *nic) close() {
	n.release()
	n.wg.Wait()
}

func (a *Agent) closeNICs() {
	for name, n := range a.nics {
		n.close()
		delete(a.nics, name)
	}
}
