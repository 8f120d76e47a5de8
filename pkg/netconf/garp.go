package netconf

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"golang.org/x/sys/unix"
	"k8s.io/klog/v2"
)

// Gratuitous ARP timing: one announcement immediately, then garpRepeats more, garpInterval
// apart (as `arping -U -c 3` would, without its blocking: Kube-OVN's serial arping took 306 s
// for 100 EIPs). The repeats cover a first frame lost while a switch learns the MAC.
const (
	garpRepeats  = 2
	garpInterval = time.Second
)

// garpPayload is the ARP part (the kernel adds the Ethernet header on a SOCK_DGRAM packet
// socket) of a gratuitous ARP request: sender and target protocol address both ip, target
// hardware address zero. Requests, not replies, because every ARP implementation updates an
// existing cache entry from a request.
func garpPayload(mac net.HardwareAddr, ip netip.Addr) []byte { return arpPayload(mac, ip, ip) }

// announcer sends gratuitous ARPs without ever blocking a converge: the first round is sent
// with MSG_DONTWAIT from the caller, the repeats from a goroutine that owns the socket.
type announcer struct {
	stop chan struct{}
	once sync.Once
	wg   sync.WaitGroup
}

func newAnnouncer() *announcer { return &announcer{stop: make(chan struct{})} }

// announce sends gratuitous ARPs for ips out of the link (ifindex, mac) of the gateway netns.
// The packet socket must be created inside the gateway netns (a socket belongs to the netns of
// the thread that creates it), hence ns.Do; afterwards any goroutine can use it.
func (a *announcer) announce(netNS ns.NetNS, ifName string, ifindex int, mac net.HardwareAddr, ips []netip.Addr) error {
	if len(ips) == 0 {
		return nil
	}
	fd := -1
	err := netNS.Do(func(ns.NetNS) error {
		var err error
		// Protocol 0: a send-only socket, the kernel queues no received frames on it.
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("gratuitous ARP on %s: packet socket in the gateway netns: %w", ifName, err)
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifindex, Halen: 6}
	copy(to.Addr[:], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	frames := make([][]byte, len(ips))
	for i, ip := range ips {
		frames[i] = garpPayload(mac, ip)
	}
	send := func() error {
		for i, f := range frames {
			// MSG_DONTWAIT: a full queue drops this round for this address, the repeats cover it.
			if err := unix.Sendto(fd, f, unix.MSG_DONTWAIT, to); err != nil {
				return fmt.Errorf("gratuitous ARP for %s on %s: %w", ips[i], ifName, err)
			}
		}
		return nil
	}
	firstErr := send()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer unix.Close(fd)
		t := time.NewTicker(garpInterval)
		defer t.Stop()
		for i := 0; i < garpRepeats; i++ {
			select {
			case <-a.stop:
				return
			case <-t.C:
			}
			if err := send(); err != nil {
				klog.V(2).InfoS("Gratuitous ARP repeat failed", "interface", ifName, "err", err)
			}
		}
	}()
	return firstErr
}

// close stops pending repeats and waits for their goroutines.
func (a *announcer) close() {
	a.once.Do(func() { close(a.stop) })
	a.wg.Wait()
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }
