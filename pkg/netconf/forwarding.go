package netconf

import (
	"fmt"

	"github.com/containernetworking/plugins/pkg/ns"
)

// holdForwarding runs before the first converge of this Gateway. A new netns inherits
// net.ipv4.ip_forward from the node (devconf_inherit_init_net=0), so it may be on before any NAT
// rule exists; Kube-OVN lost NAT for flows that raced its setup. Forwarding that is on in a
// netns holding our ip rules was turned on by a previous daemon after a complete converge: a
// daemon restart, which must not disturb traffic, so it is left alone.
func holdForwarding(netNS ns.NetNS, h *Handles) ([]string, error) {
	v, err := getSysctl(netNS, forwardSysctl)
	if err != nil || v == "0" {
		return nil, err
	}
	rules, err := ownedRules(h.Gateway)
	if err != nil || len(rules) > 0 {
		return nil, err
	}
	if err := setSysctl(netNS, forwardSysctl, "0"); err != nil {
		return nil, err
	}
	return []string{fmt.Sprintf("sysctl %s: %s -> 0 (held off until the first converge completes)", forwardSysctl, v)}, nil
}

// enableForwarding turns forwarding on when it is off, after flushing conntrack: while it was
// off no forwarded flow could work, and entries created meanwhile (packets that arrived before
// our NAT rules) carry no NAT or a wrong one that would outlive the rules.
func enableForwarding(netNS ns.NetNS, h *Handles) ([]string, error) {
	v, err := getSysctl(netNS, forwardSysctl)
	if err != nil || v == "1" {
		return nil, err
	}
	if err := flushConntrack(h); err != nil {
		return nil, err
	}
	if err := setSysctl(netNS, forwardSysctl, "1"); err != nil {
		return nil, err
	}
	return []string{"conntrack: flushed before enabling forwarding", fmt.Sprintf("sysctl %s: %s -> 1", forwardSysctl, v)}, nil
}
