// Test address plan (this package touches no kernel; the addresses only appear in rule text):
//   - the seed's example: external 192.168.0.0/24 (EIPs .111, .112, gateway .254), VPC 10.0.1.0/24;
//   - otherwise EIPs in 198.51.100.0/24, outside clients in 203.0.113.0/24, and VPC subnets inside
//     10.0.0.0/8 (the seed's VPC space; SNAT prefix tests need /16 and /8 ranges, which the
//     documentation /24s cannot provide), plus 172.16.0.0/12 and 0.0.0.0/0 as SNAT sources.
package nat

import (
	"fmt"
	"net/netip"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

func Subnet(name, ifname, cidr, typ string) annotations.SubnetNIC {
	return annotations.SubnetNIC{Subnet: name, IfName: ifname, CIDR: cidr, Attachment: annotations.Attachment{Type: typ}}
}

// SeedDesired is the seed's VpcNatGateway example.
func SeedDesired() *annotations.Desired {
	return &annotations.Desired{
		Version: annotations.Version, Gateway: "ngw", Generation: 1,
		External: annotations.ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge"},
		Subnets:  []annotations.SubnetNIC{Subnet("sn", "eth0", "10.0.1.0/24", annotations.AttachPrimary)},
		EIPs: []annotations.EIP{
			{EipCIDR: "192.168.0.111/24", Gateway: "192.168.0.254"},
			{EipCIDR: "192.168.0.112/24", Gateway: "192.168.0.254"},
		},
		FloatingIPs: []annotations.FloatingIP{{EIP: "192.168.0.111", InternalIP: "10.0.1.5"}},
		DNATs:       []annotations.DNAT{{EIP: "192.168.0.112", Protocol: "tcp", ExternalPort: 8888, InternalIP: "10.0.1.10", InternalPort: 80}},
		SNATs:       []annotations.SNAT{{EIP: "192.168.0.112", InternalCIDR: "10.0.1.0/24"}},
	}
}

// SeedRoute routes inside the seed's gateway: its EIPs are local, the VPC subnet is on eth0
// (lanIp 10.0.1.254), everything else goes out of net1 via the EIP gateway.
func SeedRoute(dst netip.Addr) (string, netip.Addr) {
	if dst == netip.MustParseAddr("192.168.0.111") || dst == netip.MustParseAddr("192.168.0.112") {
		return "", netip.Addr{}
	}
	if netip.MustParsePrefix("10.0.1.0/24").Contains(dst) {
		return "eth0", netip.MustParseAddr("10.0.1.254")
	}
	return "net1", netip.MustParseAddr("192.168.0.111")
}

// RichDesired has three subnets, two FIPs, TCP and UDP forwards on two EIPs, and SNAT rules of
// every kind of prefix length: /32, /25, /24, /16 (grouped), /12, /8 and /0 (inline).
func RichDesired() *annotations.Desired {
	d := &annotations.Desired{
		Version: annotations.Version, Gateway: "rich", Generation: 7,
		External: annotations.ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge"},
		Subnets: []annotations.SubnetNIC{
			Subnet("sn", "eth0", "10.0.1.0/24", annotations.AttachPrimary),
			Subnet("db", "eth1", "10.0.2.0/24", annotations.AttachBridge),
			Subnet("big", "eth2", "10.1.0.0/16", annotations.AttachMacvlan),
		},
		FloatingIPs: []annotations.FloatingIP{
			{EIP: "198.51.100.10", InternalIP: "10.0.1.5"},
			{EIP: "198.51.100.11", InternalIP: "10.0.2.7"},
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
	for i := 10; i <= 16; i++ {
		d.EIPs = append(d.EIPs, annotations.EIP{EipCIDR: fmt.Sprintf("198.51.100.%d/24", i), Gateway: "198.51.100.1"})
	}
	return d
}

// RichRoute routes inside the rich gateway: its EIPs (198.51.100.10-16) are local, each subnet
// NIC's address is the subnet gateway (.1), everything else goes out of net1.
func RichRoute(dst netip.Addr) (string, netip.Addr) {
	if a := dst.As4(); netip.MustParsePrefix("198.51.100.0/24").Contains(dst) && a[3] >= 10 && a[3] <= 16 {
		return "", netip.Addr{}
	}
	for _, r := range []struct{ cidr, ifname, src string }{
		{"10.0.1.0/24", "eth0", "10.0.1.1"},
		{"10.0.2.0/24", "eth1", "10.0.2.1"},
		{"10.1.0.0/16", "eth2", "10.1.0.1"},
	} {
		if netip.MustParsePrefix(r.cidr).Contains(dst) {
			return r.ifname, netip.MustParseAddr(r.src)
		}
	}
	return "net1", netip.MustParseAddr("198.51.100.10")
}

// BigDesired has 10 000 rules over 200 EIPs: 5000 port forwards (25 per EIP, TCP and UDP) and
// 5000 SNAT rules (2500 /32, 2000 /24, 400 /20, 100 /16) spread over the same EIPs.
func BigDesired() *annotations.Desired {
	d := &annotations.Desired{
		Version: annotations.Version, Gateway: "big", Generation: 1,
		External: annotations.ExternalNIC{IfName: "net1"},
		Subnets:  []annotations.SubnetNIC{Subnet("all", "eth0", "10.0.0.0/8", annotations.AttachPrimary)},
	}
	eip := func(i int) string { return fmt.Sprintf("198.51.100.%d", i%200+1) }
	for i := range 200 {
		d.EIPs = append(d.EIPs, annotations.EIP{EipCIDR: eip(i) + "/24", Gateway: "198.51.100.254"})
	}
	protos := []string{"tcp", "udp"}
	for k := range 5000 {
		d.DNATs = append(d.DNATs, annotations.DNAT{
			EIP: eip(k), Protocol: protos[k/200%2], ExternalPort: 1000 + k/200,
			InternalIP: fmt.Sprintf("10.200.%d.%d", k/250, k%250+1), InternalPort: 80,
		})
	}
	add := func(cidr string, k int) {
		d.SNATs = append(d.SNATs, annotations.SNAT{EIP: eip(k), InternalCIDR: cidr})
	}
	for k := range 2500 {
		add(fmt.Sprintf("10.%d.%d.1/32", k/250, k%250), k)
	}
	for k := range 2000 {
		add(fmt.Sprintf("10.%d.%d.0/24", 20+k/250, k%250), k)
	}
	for k := range 400 {
		add(fmt.Sprintf("10.%d.%d.0/20", 100+k/16, k%16*16), k)
	}
	for k := range 100 {
		add(fmt.Sprintf("10.%d.0.0/16", 150+k), k)
	}
	return d
}
