// Package nfttest holds the desired states the nftables backend's tests share (golden files in
// pkg/nft, the kernel tests in pkg/netconf).
//
// Address plan: the seed's example (external 192.168.0.0/24, VPC 10.0.1.0/24); otherwise EIPs in
// 198.51.100.0/24 and VPC subnets inside 10.0.0.0/8, plus 172.16.0.0/12 and 0.0.0.0/0 as SNAT
// sources. Kernel tests put them only inside network namespaces they create.
package nfttest

import "github.com/vpcnat/vpcnat/pkg/annotations"

func subnet(name, ifname, cidr, typ string) annotations.SubnetNIC {
	return annotations.SubnetNIC{Subnet: name, IfName: ifname, CIDR: cidr, Attachment: annotations.Attachment{Type: typ}}
}

// Seed is the seed's VpcNatGateway example.
func Seed() *annotations.Desired {
	return &annotations.Desired{
		Version: annotations.Version, Gateway: "ngw", Generation: 1,
		External: annotations.ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge"},
		Subnets:  []annotations.SubnetNIC{subnet("sn", "eth0", "10.0.1.0/24", annotations.AttachPrimary)},
		EIPs: []annotations.EIP{
			{EipCIDR: "192.168.0.111/24", Gateway: "192.168.0.254"},
			{EipCIDR: "192.168.0.112/24", Gateway: "192.168.0.254"},
		},
		FloatingIPs: []annotations.FloatingIP{{EIP: "192.168.0.111", InternalIP: "10.0.1.5"}},
		DNATs:       []annotations.DNAT{{EIP: "192.168.0.112", Protocol: "tcp", ExternalPort: 8888, InternalIP: "10.0.1.10", InternalPort: 80}},
		SNATs:       []annotations.SNAT{{EIP: "192.168.0.112", InternalCIDR: "10.0.1.0/24"}},
	}
}

// Rich has three subnets, two FIPs (two on one internal IP), TCP and UDP forwards on two EIPs,
// and nested SNAT prefixes of every length class: /32 and /25 inside a /24 inside a /16 inside a
// /8, a /12 beside them, and /0 under everything.
func Rich() *annotations.Desired {
	return &annotations.Desired{
		Version: annotations.Version, Gateway: "rich", Generation: 7,
		External: annotations.ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge"},
		Subnets: []annotations.SubnetNIC{
			subnet("sn", "eth0", "10.0.1.0/24", annotations.AttachPrimary),
			subnet("db", "eth1", "10.0.2.0/24", annotations.AttachBridge),
			subnet("big", "eth2", "10.1.0.0/16", annotations.AttachMacvlan),
		},
		FloatingIPs: []annotations.FloatingIP{
			{EIP: "198.51.100.10", InternalIP: "10.0.1.5"},
			{EIP: "198.51.100.11", InternalIP: "10.0.2.7"},
			{EIP: "198.51.100.9", InternalIP: "10.0.2.7"},
		},
		DNATs: []annotations.DNAT{
			{EIP: "198.51.100.12", Protocol: "tcp", ExternalPort: 8888, InternalIP: "10.0.1.10", InternalPort: 80},
			{EIP: "198.51.100.12", Protocol: "tcp", ExternalPort: 443, InternalIP: "10.0.1.10", InternalPort: 8443},
			{EIP: "198.51.100.12", Protocol: "udp", ExternalPort: 53, InternalIP: "10.0.2.53", InternalPort: 53},
			{EIP: "198.51.100.12", Protocol: "udp", ExternalPort: 8888, InternalIP: "10.0.2.9", InternalPort: 9999},
			{EIP: "198.51.100.13", Protocol: "tcp", ExternalPort: 22, InternalIP: "10.1.3.4", InternalPort: 22},
		},
		SNATs: []annotations.SNAT{
			{EIP: "198.51.100.12", InternalCIDR: "10.0.1.0/24"},
			{EIP: "198.51.100.14", InternalCIDR: "10.0.1.77/32"},
			{EIP: "198.51.100.15", InternalCIDR: "10.0.1.128/25"},
			{EIP: "198.51.100.13", InternalCIDR: "10.0.0.0/16"},
			{EIP: "198.51.100.13", InternalCIDR: "10.1.0.0/16"},
			{EIP: "198.51.100.14", InternalCIDR: "10.1.2.0/24"},
			{EIP: "198.51.100.12", InternalCIDR: "10.0.0.0/8"},
			{EIP: "198.51.100.15", InternalCIDR: "172.16.0.0/12"},
			{EIP: "198.51.100.16", InternalCIDR: "0.0.0.0/0"},
		},
	}
}
