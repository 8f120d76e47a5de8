package e2e

import (
	"context"
	"os/exec"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/test/topo"
)

// ipv6Watch captures every IPv6 frame the host's namespace sees, on every link (the test
// networks' bridges and their ports, the gateways' veths' node ends, the macvlan masters), for
// the whole test, and judges them at the end against the MACs of every gateway link the test
// saw: the product is IPv4 only, so its NICs send no IPv6 at all. The test hosts' own links do
// send IPv6 (router solicitations, MLD), which shows the capture sees what crosses the bridges.
type ipv6Watch struct {
	capture *topo.Capture
	mu      sync.Mutex
	gwMACs  map[string]string // MAC -> "gateway link"
}

// startIPv6Watch starts the capture; call before the test networks exist.
func (e *vpcEnv) startIPv6Watch() {
	c, err := (&topo.Topology{}).StartCapture("", "", unix.ETH_P_IPV6)
	if err != nil {
		e.t.Fatal(err)
	}
	e.ipv6 = &ipv6Watch{capture: c, gwMACs: map[string]string{}}
	e.top.Cleanup(c.Close)
}

// noteGatewayMACs adds a gateway's links: macs is "ifname=MAC ..." of its NICs in the pod,
// hostLinks the node ends of its veths.
func (e *vpcEnv) noteGatewayMACs(gw, macs string, hostLinks []string) {
	if e.ipv6 == nil {
		return
	}
	e.ipv6.mu.Lock()
	defer e.ipv6.mu.Unlock()
	for _, f := range strings.Fields(macs) {
		if ifn, mac, ok := strings.Cut(f, "="); ok && mac != "?" {
			e.ipv6.gwMACs[strings.ToLower(mac)] = gw + " " + ifn
		}
	}
	for _, l := range hostLinks {
		if mac := hostLinkMAC(e.ctx, l); mac != "" {
			e.ipv6.gwMACs[mac] = gw + " " + l + " (node)"
		}
	}
}

func hostLinkMAC(ctx context.Context, dev string) string {
	b, err := exec.CommandContext(ctx, "ip", "-o", "link", "show", "dev", dev).Output()
	if err != nil {
		return ""
	}
	fs := strings.Fields(string(b))
	if i := slices.Index(fs, "link/ether"); i >= 0 && i+1 < len(fs) {
		return strings.ToLower(fs[i+1])
	}
	return ""
}

// checkIPv6 fails the test for every IPv6 frame a gateway link sent.
func (e *vpcEnv) checkIPv6() {
	t := e.top
	w := e.ipv6
	w.capture.Close()
	w.mu.Lock()
	defer w.mu.Unlock()
	frames := w.capture.Frames()
	hostMACs := map[string]bool{}
	for _, r := range e.net.Namespaces() {
		role := strings.TrimPrefix(r, e.net.Prefix+"-")
		if mac, err := e.net.MAC(role, "eth0"); err == nil {
			hostMACs[mac] = true
		}
	}
	fromHosts, fromGateways := 0, map[string]int{}
	for _, f := range frames {
		if hostMACs[f.Src] {
			fromHosts++
		}
		if who, ok := w.gwMACs[f.Src]; ok {
			fromGateways[who+" ("+f.Src+")"]++
		}
	}
	t.Logf("IPv6 capture: %d frames, %d from test hosts, gateway links judged: %d", len(frames), fromHosts, len(w.gwMACs))
	if fromHosts == 0 {
		t.Errorf("the IPv6 capture saw no frame from the test hosts (IPv6 on): it cannot judge the gateways")
	}
	if len(w.gwMACs) == 0 {
		t.Errorf("no gateway link was recorded for the IPv6 capture to judge")
	}
	for who, n := range fromGateways {
		t.Errorf("gateway link %s sent %d IPv6 frames", who, n)
	}
}
