package main

import (
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
)

// checkPlumbing is CHECK: every NIC ADD made exists, is up and holds its addresses.
func checkPlumbing(netnsPath string, plan *annotations.NICPlan) error {
	h, err := netconf.OpenHandles(netnsPath)
	if err != nil {
		return fmt.Errorf("vpcnat: %w", err)
	}
	defer h.Close()
	var problems []string
	checkLink := func(name string, addrs []string) {
		l, err := h.Gateway.LinkByName(name)
		if err != nil {
			problems = append(problems, fmt.Sprintf("interface %s is missing", name))
			return
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			problems = append(problems, fmt.Sprintf("interface %s is down", name))
		}
		have, err := h.Gateway.AddrList(l, unix.AF_INET)
		if err != nil {
			problems = append(problems, fmt.Sprintf("interface %s: listing addresses: %v", name, err))
			return
		}
		for _, want := range addrs {
			if !hasAddr(have, want) {
				problems = append(problems, fmt.Sprintf("interface %s lacks address %s", name, want))
			}
		}
	}
	checkLink(plan.External.IfName, nil)
	for _, nic := range plan.Subnets {
		if nic.Attachment.Type != annotations.AttachPrimary {
			checkLink(nic.IfName, nic.Addresses)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("vpcnat: gateway %s in %s: %s", plan.Gateway, netnsPath, strings.Join(problems, "; "))
	}
	return nil
}

func hasAddr(have []netlink.Addr, want string) bool {
	for _, a := range have {
		if a.IPNet.String() == want {
			return true
		}
	}
	return false
}
