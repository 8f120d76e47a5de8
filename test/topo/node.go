package topo

import (
	"crypto/rand"
	"fmt"
	"net"
	"os/exec"
	"strings"
)

// The seed topology attached to a real node (test/e2e): there the gateway pod's net1 is a
// macvlan on a NIC of the node's own network namespace and its subnet NIC a veth into a bridge
// of that namespace, so the external network and the VPC subnet must be bridges in the host's
// namespace, not in a namespace of ours. What the host's namespace gets is only links: the two
// bridges and the host ends of the test hosts' veths, all without any address (their IPv6
// link-local address generation is turned off before they come up), no route and no rule.
// Every test address is inside the test hosts' namespaces, as in NewSeed:
//
//	external bridge (host ns)   192.168.0.0/24: rtr 192.168.0.254 (also 198.51.100.1/24 towards
//	                            inet 198.51.100.10), cli 192.168.0.50
//	VPC bridge (host ns)        10.0.1.0/24: pod1 10.0.1.5, pod2 10.0.1.10 (default via 10.0.1.1),
//	                            pod3 10.0.1.20 (default via lanIp 10.0.1.254), vr 10.0.1.100
//	lab                         203.0.113.10/25 behind vr (203.0.113.1/25)

// Owner registers a host link or a network namespace before it is created, so that whoever
// owns the node (test/e2e's cluster: its stop.sh) removes it even when the test dies before its
// own clean-up.
type Owner interface {
	OwnLink(name string) error
	OwnNetns(name string) error
}

// NodeTopology is the seed topology on a node: a Topology of test hosts plus the links it made
// in the host's namespace.
type NodeTopology struct {
	*Topology
	// ExtBridge is the external network (the ConfigMap's nic), VPCBridge the subnet's bridge
	// (the Subnet's natGatewayAttachment.bridge).
	ExtBridge, VPCBridge string
	own                  Owner
	links                []string
}

// NewSeedOnNode builds the node variant of the seed topology. prefix names the namespaces
// (<prefix>-<role>) and the host ends of their veths (also <prefix>-<role>, so at most 10
// characters). A name that already exists is an error, never reused. On error it removes what
// it built.
func NewSeedOnNode(prefix, extBridge, vpcBridge string, own Owner) (n *NodeTopology, err error) {
	if len(prefix)+len("-inet") > 15 {
		return nil, fmt.Errorf("prefix %q: %s-<role> would not fit an interface name (15 characters)", prefix, prefix)
	}
	n = &NodeTopology{Topology: &Topology{Prefix: prefix}, ExtBridge: extBridge, VPCBridge: vpcBridge, own: own}
	defer func() {
		if err != nil {
			_ = n.Close()
			n = nil
		}
	}()
	steps := []func() error{
		func() error { return n.HostBridge(extBridge) },
		func() error { return n.HostBridge(vpcBridge) },
		func() error { return n.HostPort(Router, extBridge, RouterIP+"/24", "") },
		func() error { return n.Forwarding(Router) },
		func() error { return n.addNS(Inet) },
		func() error { return n.Veth(Router, "eth1", Inet, "eth0") },
		func() error { return n.ip(Router, "addr", "add", "198.51.100.1/24", "dev", "eth1") },
		func() error { return n.ip(Inet, "addr", "add", InetIP+"/24", "dev", "eth0") },
		func() error { return n.ip(Inet, "route", "add", "default", "via", "198.51.100.1") },
		func() error { return n.HostPort(Client, extBridge, ClientIP+"/24", RouterIP) },
		func() error { return n.HostPort(Pod1, vpcBridge, Pod1IP+"/24", "10.0.1.1") },
		func() error { return n.HostPort(Pod2, vpcBridge, Pod2IP+"/24", "10.0.1.1") },
		// pod3 follows the seed's Vpc static route: 0.0.0.0/0 via the gateway's lanIp.
		func() error { return n.HostPort(Pod3, vpcBridge, Pod3IP+"/24", "10.0.1.254") },
		func() error { return n.HostPort(VR, vpcBridge, VRIP+"/24", "10.0.1.1") },
		func() error { return n.Forwarding(VR) },
		func() error { return n.addNS(Lab) },
		func() error { return n.Veth(VR, "eth1", Lab, "eth0") },
		func() error { return n.ip(VR, "addr", "add", "203.0.113.1/25", "dev", "eth1") },
		func() error { return n.ip(Lab, "addr", "add", LabIP+"/25", "dev", "eth0") },
		func() error { return n.ip(Lab, "route", "add", "default", "via", "203.0.113.1") },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			return nil, fmt.Errorf("building the node seed topology %s (step %d): %w", prefix, i, err)
		}
	}
	return n, nil
}

// HostBridge creates a bridge in the host's namespace, up, without any address, with a MAC of
// its own: a bridge without one takes its lowest port's, which may be a gateway's veth, and its
// own frames would then look like the gateway's.
func (n *NodeTopology) HostBridge(name string) error {
	if err := n.newHostLink(name); err != nil {
		return err
	}
	mac := make([]byte, 6)
	if _, err := rand.Read(mac); err != nil {
		return err
	}
	mac[0] = mac[0]&0xfc | 0x02 // unicast, locally administered
	if err := n.ip("", "link", "add", name, "address", net.HardwareAddr(mac).String(), "type", "bridge"); err != nil {
		return err
	}
	n.links = append(n.links, name)
	return n.upWithoutAddress(name)
}

// HostPort puts a test host (a namespace of its own, role) on a bridge of the host's namespace:
// a veth whose host end <prefix>-<role> is a port of bridge, eth0 inside with addr, default via
// gw ("" for none).
func (n *NodeTopology) HostPort(role, bridge, addr, gw string) error {
	if err := n.addNS(role); err != nil {
		return err
	}
	port := n.Name(role)
	if err := n.newHostLink(port); err != nil {
		return err
	}
	if err := n.ip("", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", n.Name(role)); err != nil {
		return err
	}
	n.links = append(n.links, port)
	if err := n.ip("", "link", "set", port, "master", bridge); err != nil {
		return err
	}
	if err := n.upWithoutAddress(port); err != nil {
		return err
	}
	if err := n.ip(role, "link", "set", "eth0", "up"); err != nil {
		return err
	}
	if err := n.ip(role, "addr", "add", addr, "dev", "eth0"); err != nil {
		return err
	}
	if gw == "" {
		return nil
	}
	return n.ip(role, "route", "add", "default", "via", gw)
}

// addNS registers a namespace with the owner, then creates it.
func (n *NodeTopology) addNS(role string) error {
	if err := n.own.OwnNetns(n.Name(role)); err != nil {
		return err
	}
	return n.AddNS(role)
}

// newHostLink refuses a name already taken in the host's namespace (someone else's link, or
// a leftover), then registers it with the owner.
func (n *NodeTopology) newHostLink(name string) error {
	if exec.Command("ip", "link", "show", "dev", name).Run() == nil {
		return fmt.Errorf("link %s already exists in the host's namespace: not touching it", name)
	}
	return n.own.OwnLink(name)
}

// upWithoutAddress sets a host link up with IPv6 address generation off: no link-local address
// either.
func (n *NodeTopology) upWithoutAddress(name string) error {
	if err := n.ip("", "link", "set", name, "addrgenmode", "none"); err != nil {
		return err
	}
	return n.ip("", "link", "set", name, "up")
}

// Namespaces are the names of the test hosts' namespaces.
func (n *NodeTopology) Namespaces() []string {
	var names []string
	for _, r := range n.roles {
		names = append(names, n.Name(r))
	}
	return names
}

// HostLinks are the links the topology made in the host's namespace.
func (n *NodeTopology) HostLinks() []string { return append([]string(nil), n.links...) }

// Close deletes the test hosts' namespaces (their veths go with them) and then the host links
// still there. Safe to call twice and after a partial build.
func (n *NodeTopology) Close() error {
	var errs []string
	if err := n.Topology.Close(); err != nil {
		errs = append(errs, err.Error())
	}
	for i := len(n.links) - 1; i >= 0; i-- {
		l := n.links[i]
		if exec.Command("ip", "link", "show", "dev", l).Run() != nil {
			continue // a veth end, gone with its peer's namespace
		}
		if err := n.ip("", "link", "del", "dev", l); err != nil && exec.Command("ip", "link", "show", "dev", l).Run() == nil {
			// Still there: a real failure. (A veth end also goes away by itself, with its peer's
			// namespace, between the look above and the delete.)
			errs = append(errs, err.Error())
		}
	}
	n.links = nil
	if len(errs) > 0 {
		return fmt.Errorf("cleaning up node topology %s: %s", n.Prefix, strings.Join(errs, "; "))
	}
	return nil
}
