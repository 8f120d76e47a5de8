package main

import (
	"fmt"
	"net"
	"strings"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
)

// checkPlumbing is CHECK: every NIC ADD made exists and is up. Their addresses are the daemon's
// (claimed after a probe, and left off while another host holds one), not ADD's.
func checkPlumbing(netnsPath string, plan *annotations.NICPlan) error {
	h, err := netconf.OpenHandles(netnsPath)
	if err != nil {
		return fmt.Errorf("vpcnat: %w", err)
	}
	defer h.Close()
	var problems []string
	checkLink := func(name string) {
		l, err := h.Gateway.LinkByName(name)
		if err != nil {
			problems = append(problems, fmt.Sprintf("interface %s is missing", name))
			return
		}
		if l.Attrs().Flags&net.FlagUp == 0 {
			problems = append(problems, fmt.Sprintf("interface %s is down", name))
		}
	}
	checkLink(plan.External.IfName)
	for _, nic := range plan.Subnets {
		if nic.Attachment.Type != annotations.AttachPrimary {
			checkLink(nic.IfName)
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("vpcnat: gateway %s in %s: %s", plan.Gateway, netnsPath, strings.Join(problems, "; "))
	}
	return nil
}
