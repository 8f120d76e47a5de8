package netconf

import "github.com/vpcnat/vpcnat/pkg/annotations"

// Test address plan (docs/design.md): every address below lives in namespaces the tests create;
// the host's own netns gets nothing.
//
//	ext  ns   ext0 192.168.0.254/24 (the EIP gateway), veth peer of the node's eth1
//	node ns   plays the node: eth1 (no address; net1's master), bridges br-sn and br-sn2,
//	          eth2 (veth to ext, master of macvlan subnet NICs)
//	gw   ns   net1 192.168.0.111/24 + .112/24 (EIPs), vpc-sn 10.0.1.1/24 + 10.0.1.254/24 (lanIp)
//	pod  ns   10.0.1.5/24 via 10.0.1.1 on br-sn (the FIP target)
//	static routes: 203.0.113.0/24 via 10.0.1.100 (policyDst), from 10.0.1.64/26 via 10.0.1.100
//	(policySrc); foreign state uses 198.51.100.0/24.

// seedMAC is net1's stable MAC in the tests (locally administered).
const seedMAC = "02:5e:ed:00:00:01"

// seedDesired is the seed's example as the daemon would receive it, plus one static route of
// each policy.
func seedDesired() *annotations.Desired {
	return &annotations.Desired{
		Version: annotations.Version, Gateway: "ngw", Generation: 1,
		External: annotations.ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge", MAC: seedMAC},
		Subnets: []annotations.SubnetNIC{{
			Subnet: "sn", IfName: "vpc-sn", CIDR: "10.0.1.0/24",
			Addresses:  []string{"10.0.1.1/24", "10.0.1.254/24"},
			Attachment: annotations.Attachment{Type: annotations.AttachBridge, Bridge: "br-sn", HostIfName: "vh-ngw-sn"},
		}},
		EIPs: []annotations.EIP{
			{EipCIDR: "192.168.0.111/24", Gateway: "192.168.0.254"},
			{EipCIDR: "192.168.0.112/24", Gateway: "192.168.0.254"},
		},
		FloatingIPs: []annotations.FloatingIP{{EIP: "192.168.0.111", InternalIP: "10.0.1.5"}},
		DNATs:       []annotations.DNAT{{EIP: "192.168.0.112", Protocol: "tcp", ExternalPort: 8888, InternalIP: "10.0.1.10", InternalPort: 80}},
		SNATs:       []annotations.SNAT{{EIP: "192.168.0.112", InternalCIDR: "10.0.1.0/24"}},
		Routes: []annotations.Route{
			{Policy: annotations.PolicyDst, CIDR: "203.0.113.0/24", NextHopIP: "10.0.1.100"},
			{Policy: annotations.PolicySrc, CIDR: "10.0.1.64/26", NextHopIP: "10.0.1.100"},
		},
	}
}
