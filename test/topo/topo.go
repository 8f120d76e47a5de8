// Package topo builds throwaway network topologies out of network namespaces for vpcnat's demo,
// data-plane tests and benchmarks, and sends real traffic through them.
//
// Address plan (docs/design.md, "Test address plan"): the seed's addresses, all inside namespaces this package
// creates; the host's own namespace gets nothing (every veth is created with both ends already in
// our namespaces).
//
//	external L2 ("ext" ns, bridge br0)  192.168.0.0/24
//	  rtr   192.168.0.254  the EIP gateway; also 198.51.100.1/24 towards inet
//	  cli   192.168.0.50   an outside client on the external network
//	  node  eth1           the node NIC the gateway's net1 macvlan sits on (no address)
//	inet  198.51.100.10    a host behind the EIP gateway ("the internet")
//	VPC subnet sn  10.0.1.0/24 on node bridge br-sn (gateway 10.0.1.1, lanIp 10.0.1.254)
//	  pod1 10.0.1.5 (FIP target), pod2 10.0.1.10 (DNAT target), pod3 10.0.1.20 (default via
//	  lanIp, as the seed's Vpc static route says), vr 10.0.1.100 (a VPC router)
//	VPC subnet sn2 10.0.2.0/24 on node bridge br-sn2 (gateway 10.0.2.1): pod4 10.0.2.5
//	lab   203.0.113.10/25  behind vr (203.0.113.1/25), for static routes
//	203.0.113.128/25 is left for a primary (cluster) pod network inside the node namespace
package topo

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
)

// Roles of the namespaces in the seed topology.
const (
	Ext     = "ext"
	Router  = "rtr"
	Inet    = "inet"
	Client  = "cli"
	Node    = "node"
	Gateway = "gw"
	Pod1    = "pod1"
	Pod2    = "pod2"
	Pod3    = "pod3"
	Pod4    = "pod4"
	VR      = "vr"
	Lab     = "lab"
)

// Well-known addresses of the seed topology.
const (
	RouterIP = "192.168.0.254"
	ClientIP = "192.168.0.50"
	InetIP   = "198.51.100.10"
	Pod1IP   = "10.0.1.5"
	Pod2IP   = "10.0.1.10"
	Pod3IP   = "10.0.1.20"
	Pod4IP   = "10.0.2.5"
	VRIP     = "10.0.1.100"
	LabIP    = "203.0.113.10"
)

// Topology is a set of network namespaces named <prefix>-<role>. Creating and deleting
// namespaces is serialised, so Close may run from a signal handler while a build is under way:
// it waits for the namespace being created, deletes every one, and refuses further ones.
type Topology struct {
	Prefix string

	mu     sync.Mutex
	roles  []string
	closed bool
}

// NewPrefix returns a short per-run prefix ("vn" + 6 hex digits), so parallel runs and leftovers
// of a killed run never collide.
func NewPrefix() string {
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		return fmt.Sprintf("vn%06x", os.Getpid()&0xffffff)
	}
	return "vn" + hex.EncodeToString(b)
}

// Name is the netns name of a role.
func (t *Topology) Name(role string) string { return t.Prefix + "-" + role }

// Path is the netns path of a role, as `ip netns` bind-mounts it.
func (t *Topology) Path(role string) string { return "/run/netns/" + t.Name(role) }

// ip runs one iproute2 command, optionally inside a role's namespace ("" = none).
func (t *Topology) ip(role string, args ...string) error {
	if role != "" {
		args = append([]string{"-n", t.Name(role)}, args...)
	}
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Exec runs a command inside a role's namespace and returns its standard output. Standard error
// goes only into the error: iproute2 prints warnings there (e.g. about a veth peer in another
// namespace) that must not mix with what a test parses.
func (t *Topology) Exec(role string, argv ...string) (string, error) {
	args := append([]string{"netns", "exec", t.Name(role)}, argv...)
	cmd := exec.Command("ip", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s: %w: %s", role, strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// AddNS creates an empty namespace for a role with lo up.
func (t *Topology) AddNS(role string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return fmt.Errorf("topology %s is closed: not creating %s", t.Prefix, role)
	}
	if err := t.ip("", "netns", "add", t.Name(role)); err != nil {
		return err
	}
	t.roles = append(t.roles, role)
	return t.ip(role, "link", "set", "lo", "up")
}

// DelNS deletes one role's namespace (as a runtime does when a sandbox goes away).
func (t *Topology) DelNS(role string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.ip("", "netns", "del", t.Name(role)); err != nil {
		return err
	}
	for i, r := range t.roles {
		if r == role {
			t.roles = append(t.roles[:i], t.roles[i+1:]...)
			break
		}
	}
	return nil
}

// Veth creates a veth pair with one end in each of two namespaces (never in the host's).
func (t *Topology) Veth(roleA, ifA, roleB, ifB string) error {
	if err := t.ip(roleA, "link", "add", ifA, "type", "veth", "peer", "name", ifB, "netns", t.Name(roleB)); err != nil {
		return err
	}
	if err := t.ip(roleA, "link", "set", ifA, "up"); err != nil {
		return err
	}
	return t.ip(roleB, "link", "set", ifB, "up")
}

// Bridge creates a Linux bridge in a namespace, up, without addresses.
func (t *Topology) Bridge(role, name string) error {
	if err := t.ip(role, "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	return t.ip(role, "link", "set", name, "up")
}

// Host puts a host (its own namespace) on a bridge: eth0 with addr, default via gw.
func (t *Topology) Host(role, bridgeRole, bridge, port, addr, gw string) error {
	if err := t.AddNS(role); err != nil {
		return err
	}
	if err := t.Veth(bridgeRole, port, role, "eth0"); err != nil {
		return err
	}
	if err := t.ip(bridgeRole, "link", "set", port, "master", bridge); err != nil {
		return err
	}
	if err := t.ip(role, "addr", "add", addr, "dev", "eth0"); err != nil {
		return err
	}
	if gw == "" {
		return nil
	}
	return t.ip(role, "route", "add", "default", "via", gw)
}

// Forwarding turns IPv4 forwarding on inside a role's namespace.
func (t *Topology) Forwarding(role string) error {
	_, err := t.Exec(role, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return err
}

// Close deletes every namespace of the topology (their links go with them). It is safe to call
// twice, after a partial build, and concurrently with one.
func (t *Topology) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closed = true
	var errs []string
	for i := len(t.roles) - 1; i >= 0; i-- {
		if err := t.ip("", "netns", "del", t.Name(t.roles[i])); err != nil {
			errs = append(errs, err.Error())
		}
	}
	t.roles = nil
	if len(errs) > 0 {
		return fmt.Errorf("cleaning up topology %s: %s", t.Prefix, strings.Join(errs, "; "))
	}
	return nil
}
