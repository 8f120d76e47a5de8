package daemon

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

// arpFrame is one ARP packet seen on the external network.
type arpFrame struct {
	op       uint16
	sha      net.HardwareAddr
	spa, tpa netip.Addr
}

// arpCapture records the ARP frames a role's eth0 receives, with an AF_PACKET socket opened
// inside that role's netns.
type arpCapture struct {
	fd     int
	mu     sync.Mutex
	frames []arpFrame
	done   chan struct{}
}

func captureARP(t *testing.T, tp *topo.Topology, role string) *arpCapture {
	t.Helper()
	c := &arpCapture{fd: -1, done: make(chan struct{})}
	err := tp.Do(role, func() error {
		ifi, err := net.InterfaceByName("eth0")
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ARP))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return fmt.Errorf("AF_PACKET socket: %w", err)
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return fmt.Errorf("binding the AF_PACKET socket to eth0: %w", err)
		}
		tv := unix.NsecToTimeval(int64(100 * time.Millisecond))
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			unix.Close(fd)
			return err
		}
		c.fd = fd
		return nil
	})
	if err != nil {
		t.Fatalf("capturing ARP in %s: %v", role, err)
	}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		buf := make([]byte, 1600)
		for {
			select {
			case <-c.done:
				return
			default:
			}
			n, _, err := unix.Recvfrom(c.fd, buf, 0)
			if err != nil || n < 14+28 {
				continue
			}
			p := buf[14:n]
			f := arpFrame{op: binary.BigEndian.Uint16(p[6:8]), sha: append(net.HardwareAddr(nil), p[8:14]...)}
			f.spa = netip.AddrFrom4([4]byte(p[14:18]))
			f.tpa = netip.AddrFrom4([4]byte(p[24:28]))
			c.mu.Lock()
			c.frames = append(c.frames, f)
			c.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		close(c.done)
		<-stopped
		unix.Close(c.fd)
	})
	return c
}

// gratuitous returns the gratuitous ARPs seen (sender and target address equal) for ip.
func (c *arpCapture) gratuitous(ip string) []arpFrame {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []arpFrame
	for _, f := range c.frames {
		if f.spa.String() == ip && f.tpa == f.spa {
			out = append(out, f)
		}
	}
	return out
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// linkMAC is a link's MAC in a role's netns.
func linkMAC(t *testing.T, n *node, role, link string) string {
	t.Helper()
	var links []struct {
		Address string `json:"address"`
	}
	if err := json.Unmarshal([]byte(n.exec(role, "ip", "-j", "link", "show", "dev", link)), &links); err != nil || len(links) != 1 {
		t.Fatalf("link %s in %s: %v", link, role, err)
	}
	return links[0].Address
}

// neighMAC is the lladdr of a role's neighbour entry for ip ("" when it has none).
func neighMAC(t *testing.T, n *node, role, ip string) string {
	t.Helper()
	var neigh []struct {
		LLAddr string `json:"lladdr"`
	}
	if err := json.Unmarshal([]byte(n.exec(role, "ip", "-j", "neigh", "show", ip)), &neigh); err != nil {
		t.Fatal(err)
	}
	if len(neigh) == 0 {
		return ""
	}
	return neigh[0].LLAddr
}

// TestDaemonReboot (Kube-OVN 4987, 5029, 4690): a node reboot as the gateway pod sees it: the
// runtime recreates the sandbox (CNI DEL, the netns gone, a new netns, CNI ADD with a new
// container ID) under the same pod object. The daemon converges the new netns without the pod
// being recreated (same UID), net1 keeps its MAC, test/kstate finds the new netns exactly as
// desired, traffic flows, and the external network hears gratuitous ARPs for every EIP from
// net1's MAC: the EIP gateway's neighbour entries, made stale on purpose (a wrong MAC) before
// the reboot, are updated by them. On each NAT backend.
func TestDaemonReboot(t *testing.T) {
	topo.NeedRoot(t)
	forEachDataplane(t, testDaemonReboot)
}

func testDaemonReboot(t *testing.T, plane string) {
	g := newSeedGatewayOn(t, plane)
	d := g.d
	uid := g.c.getPod(g.pod).UID
	macBefore := linkMAC(t, g.n, topo.Gateway, "net1")
	if macBefore != strings.ToLower(d.External.MAC) {
		t.Errorf("net1 MAC %s, want the desired %s", macBefore, d.External.MAC)
	}
	if diff, err := kstate.Check(g.n.topo.Path(topo.Gateway), d); err != nil || !diff.Empty() {
		t.Fatalf("before the reboot: %v %s", err, diff)
	}

	// The EIP gateway's cache holds a wrong MAC for both EIPs (locktime 0: any ARP may update
	// it at once); the outside client listens for ARP.
	g.n.exec(topo.Router, "sysctl", "-qw", "net.ipv4.neigh.eth0.locktime=0")
	const bogus = "02:00:00:00:0b:ad"
	for _, eip := range []string{eip111, eip112} {
		g.n.exec(topo.Router, "ip", "neigh", "replace", eip, "lladdr", bogus, "dev", "eth0", "nud", "stale")
	}
	capt := captureARP(t, g.n.topo, topo.Client)

	// The reboot.
	if err := g.n.chain.Del(g.n.list, g.sandbox); err != nil {
		t.Fatal(err)
	}
	if err := g.n.topo.DelNS(topo.Gateway); err != nil {
		t.Fatal(err)
	}
	const role = "gwb"
	if err := g.n.topo.AddNS(role); err != nil {
		t.Fatal(err)
	}
	g.n.sandbox(g.pod, role, "ctr-2-"+g.n.topo.Prefix)

	path := g.n.topo.Path(role)
	var diff kstate.Diff
	eventually(t, "the new sandbox converged exactly", 10*time.Second, func() bool {
		var err error
		diff, err = kstate.Check(path, d)
		return err == nil && diff.Empty()
	})
	if got := g.c.getPod(g.pod).UID; got != uid {
		t.Errorf("the pod was recreated: UID %s -> %s", uid, got)
	}
	if macAfter := linkMAC(t, g.n, role, "net1"); macAfter != macBefore {
		t.Errorf("net1 MAC changed across the reboot: %s -> %s", macBefore, macAfter)
	}
	eventually(t, "gratuitous ARPs for every EIP from net1's MAC, and the EIP gateway's cache updated", 10*time.Second, func() bool {
		for _, eip := range []string{eip111, eip112} {
			seen := false
			for _, f := range capt.gratuitous(eip) {
				seen = seen || f.sha.String() == macBefore
			}
			if !seen || neighMAC(t, g.n, topo.Router, eip) != macBefore {
				return false
			}
		}
		return true
	})
	g.works()
	// What the old sandbox had on the node is gone: one record and one node-side veth (sn's),
	// the new sandbox's.
	leaks, err := kstate.Leaks(g.n.topo.Path(topo.Node), "", g.n.chain.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	records, links := 0, 0
	for _, l := range leaks {
		switch {
		case strings.HasPrefix(l, "record "):
			records++
		case strings.HasPrefix(l, "link "):
			links++
		}
	}
	if records != 1 || links != 1 {
		t.Errorf("after the reboot the node holds %v, want one record and one vnat* link", leaks)
	}
	for _, eip := range []string{eip111, eip112} {
		t.Logf("gratuitous ARPs for %s: %d; EIP gateway's entry %s", eip, len(capt.gratuitous(eip)), neighMAC(t, g.n, topo.Router, eip))
	}
	if a := g.c.applied(g.pod); a.Hash != hashOf(g.desired) || a.Error != "" {
		t.Errorf("applied %+v after the reboot", a)
	}
}
