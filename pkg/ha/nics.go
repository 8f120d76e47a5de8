package ha

import (
	"errors"
	"fmt"
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
	for name, n := range a.nics {
		if !seen[name] {
			n.release()
			delete(a.nics, name)
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
	defer s.close()
	buf := make([]byte, 1600)
	for {
		select {
		case <-n.stop:
			return
		default:
		}
		c, from, err := s.recv(buf)
		if err != nil || from == nil {
			continue // timeout (EAGAIN) or our own frame
		}
		if string(from) == string(n.mac) {
			continue
		}
		f := frame{nic: n.name, at: time.Now(), from: from}
		if heartbeats {
			hb, err := ParseHeartbeat(buf[:c])
			if err != nil {
				continue
			}
			f.hb = &hb
		} else {
			ip, ok := arp.Sender(buf[:c])
			if !ok || !ip.IsValid() || ip.IsUnspecified() {
				continue
			}
			f.arp = ip
		}
		select {
		case frames <- f:
		case <-n.stop:
			return
		}
	}
}

// release tells the NIC's readers to stop without waiting for them: each closes its socket
// within the receive timeout, and the election goes on meanwhile.
func (n *nic) release() { close(n.stop) }

// close stops the NIC's readers and waits until their sockets are closed.
func (n *nic) close() {
	close(n.stop)
	n.wg.Wait()
}

func (a *Agent) closeNICs() {
	for name, n := range a.nics {
		n.close()
		delete(a.nics, name)
	}
}
