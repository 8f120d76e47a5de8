// Address plan: documents only, nothing touches a network namespace. The seed's 192.168.0.0/24
// external network and 10.0.1.0/24 VPC subnet, 10.0.2.0/24 a second subnet, 203.0.113.0/24
// hosts behind a VPC router at 10.0.1.100.
package annotations

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// goodDesired is a valid document that uses every feature: two subnets (bridge, macvlan), three
// EIPs, FIPs into a subnet and behind a route, DNATs on one port for both protocols, SNATs and
// both route policies, with a route via the gateway's own lanIp.
func goodDesired() *Desired {
	return &Desired{
		Version: Version, Gateway: "ngw", Generation: 3,
		External: ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge", MAC: "02:c8:ca:97:ff:41"},
		Subnets: []SubnetNIC{
			{Subnet: "sn", IfName: "vpc-2010c9e0d4e", CIDR: "10.0.1.0/24", Addresses: []string{"10.0.1.1/24", "10.0.1.254/24"},
				IP: "10.0.1.254", Attachment: Attachment{Type: AttachBridge, Bridge: "br-sn", HostIfName: "vnat994b11266d6"}},
			{Subnet: "sn2", IfName: "vpc-aaaaaaaaaaa", CIDR: "10.0.2.0/24", Addresses: []string{"10.0.2.1/24"},
				IP: "10.0.2.1", Attachment: Attachment{Type: AttachMacvlan, Master: "eth2", MTU: 1450}},
		},
		EIPs: []EIP{
			{EipCIDR: "192.168.0.111/24", Gateway: "192.168.0.254"},
			{EipCIDR: "192.168.0.112/24", Gateway: "192.168.0.254"},
			{EipCIDR: "192.168.0.113/24", Gateway: "192.168.0.254"},
		},
		FloatingIPs: []FloatingIP{{EIP: "192.168.0.111", InternalIP: "10.0.1.5"}, {EIP: "192.168.0.113", InternalIP: "203.0.113.7"}},
		DNATs: []DNAT{
			{EIP: "192.168.0.112", Protocol: "tcp", ExternalPort: 8888, InternalIP: "10.0.1.10", InternalPort: 80},
			{EIP: "192.168.0.112", Protocol: "udp", ExternalPort: 8888, InternalIP: "10.0.2.10", InternalPort: 53},
		},
		SNATs: []SNAT{{EIP: "192.168.0.112", InternalCIDR: "10.0.1.0/24"}, {EIP: "192.168.0.112", InternalCIDR: "10.0.2.0/26"}},
		Routes: []Route{
			{Policy: PolicyDst, CIDR: "0.0.0.0/0", NextHopIP: "10.0.1.254"},
			{Policy: PolicyDst, CIDR: "203.0.113.0/24", NextHopIP: "10.0.1.100"},
			{Policy: PolicySrc, CIDR: "10.0.2.0/24", NextHopIP: "10.0.2.100"},
		},
	}
}

func TestValidateDesiredAcceptsGood(t *testing.T) {
	if errs := ValidateDesired(goodDesired()); len(errs) > 0 {
		t.Fatalf("valid document refused: %v", errs)
	}
	d := goodDesired()
	d.Subnets[1] = SubnetNIC{Subnet: "sn2", IfName: "eth0", CIDR: "10.0.2.0/24", IP: "10.0.2.1", Attachment: Attachment{Type: AttachPrimary}}
	if errs := ValidateDesired(d); len(errs) > 0 {
		t.Fatalf("valid document with a primary attachment refused: %v", errs)
	}
}

// docCase is one mutation of goodDesired and the one error it must produce.
type docCase struct {
	name     string
	mutate   func(d *Desired)
	path     string
	fragment string
}

func addSubnet(d *Desired, name, ifname, cidr, addr string) {
	d.Subnets = append(d.Subnets, SubnetNIC{Subnet: name, IfName: ifname, CIDR: cidr, Addresses: []string{addr + "/" + strings.Split(cidr, "/")[1]},
		IP: addr, Attachment: Attachment{Type: AttachMacvlan, Master: "eth3"}})
}

func primary(d *Desired) { // sn2 as the primary CNI's eth0
	d.Subnets[1] = SubnetNIC{Subnet: "sn2", IfName: "eth0", CIDR: "10.0.2.0/24", IP: "10.0.2.1", Attachment: Attachment{Type: AttachPrimary}}
}

var docCases = []docCase{
	{"empty gateway", func(d *Desired) { d.Gateway = "" }, "gateway", "Required"},
	{"gateway not a label", func(d *Desired) { d.Gateway = "NGW;reboot" }, "gateway", `"NGW;reboot"`},
	{"negative generation", func(d *Desired) { d.Generation = -1 }, "generation", "-1"},
	{"external ifname", func(d *Desired) { d.External.IfName = "eth9" }, "external.ifname", `"eth9"`},
	{"external master empty", func(d *Desired) { d.External.Master = "" }, "external.master", "Required"},
	{"external master space", func(d *Desired) { d.External.Master = "eth1 x" }, "external.master", `' '`},
	{"external master wildcard", func(d *Desired) { d.External.Master = "eth+" }, "external.master", `'+'`},
	{"external master too long", func(d *Desired) { d.External.Master = "abcdefghijklmnop" }, "external.master", "at most 15"},
	{"external master dotdot", func(d *Desired) { d.External.Master = ".." }, "external.master", `".."`},
	{"external mode", func(d *Desired) { d.External.Mode = "vepa" }, "external.mode", `"vepa"`},
	{"external mtu", func(d *Desired) { d.External.MTU = 67 }, "external.mtu", "67"},
	{"mac empty", func(d *Desired) { d.External.MAC = "" }, "external.mac", "Required"},
	{"mac multicast", func(d *Desired) { d.External.MAC = "03:00:5e:00:00:01" }, "external.mac", "unicast"},
	{"mac global", func(d *Desired) { d.External.MAC = "00:11:22:33:44:55" }, "external.mac", "locally administered"},
	{"mac upper case", func(d *Desired) { d.External.MAC = "02:C8:CA:97:FF:41" }, "external.mac", "02:c8:ca:97:ff:41"},
	{"mac garbage", func(d *Desired) { d.External.MAC = "02:c8" }, "external.mac", `"02:c8"`},
	{"no subnets", func(d *Desired) { d.Subnets = nil }, "subnets", "at least one subnet"},
	{"subnet name empty", func(d *Desired) { d.Subnets[1].Subnet = "" }, "subnets[1].subnet", "Required"},
	{"subnet name hostile", func(d *Desired) { d.Subnets[1].Subnet = "sn2,sn" }, "subnets[1].subnet", `"sn2,sn"`},
	{"subnet name duplicate", func(d *Desired) { d.Subnets[1].Subnet = "sn" }, "subnets[1].subnet", "Duplicate"},
	{"ifname duplicate", func(d *Desired) { d.Subnets[1].IfName = "vpc-2010c9e0d4e" }, "subnets[1].ifname", "Duplicate"},
	{"ifname net1", func(d *Desired) { d.Subnets[1].IfName = "net1" }, "subnets[1].ifname", `must start with "vpc-"`},
	{"ifname eth0 not primary", func(d *Desired) { d.Subnets[1].IfName = "eth0" }, "subnets[1].ifname", `"eth0"`},
	{"cidr host bits", func(d *Desired) { d.Subnets[1].CIDR = "10.0.2.5/24" }, "subnets[1].cidr", "did you mean 10.0.2.0/24"},
	{"cidr ipv6", func(d *Desired) { d.Subnets[1].CIDR = "fd00::/64" }, "subnets[1].cidr", "IPv6 is not supported"},
	{"cidr overlaps", func(d *Desired) { addSubnet(d, "sn3", "vpc-bbbbbbbbbbb", "10.0.1.128/25", "10.0.1.129") }, "subnets[2].cidr", "overlaps subnet sn"},
	{"address without prefix", func(d *Desired) { d.Subnets[0].Addresses[0] = "10.0.1.1" }, "subnets[0].addresses[0]", "prefix length"},
	{"address other prefix length", func(d *Desired) { d.Subnets[0].Addresses[0] = "10.0.1.1/16" }, "subnets[0].addresses[0]", "/24"},
	{"address outside", func(d *Desired) { d.Subnets[0].Addresses[0] = "10.0.3.1/24" }, "subnets[0].addresses[0]", "inside the subnet's cidr 10.0.1.0/24"},
	{"address network", func(d *Desired) { d.Subnets[0].Addresses[0] = "10.0.1.0/24" }, "subnets[0].addresses[0]", "network address"},
	{"address broadcast", func(d *Desired) { d.Subnets[0].Addresses[0] = "10.0.1.255/24" }, "subnets[0].addresses[0]", "broadcast address"},
	{"address duplicate", func(d *Desired) { d.Subnets[0].Addresses[0] = "10.0.1.254/24" }, "subnets[0].addresses[1]", "already on the NIC"},
	{"ip not an address", func(d *Desired) { d.Subnets[0].IP = "10.0.1.7" }, "subnets[0].ip", "one of addresses"},
	{"attachment type empty", func(d *Desired) { d.Subnets[1].Attachment.Type = "" }, "subnets[1].attachment.type", "Required"},
	{"attachment type unknown", func(d *Desired) { d.Subnets[1].Attachment.Type = "vxlan" }, "subnets[1].attachment.type", `"vxlan"`},
	{"bridge without bridge", func(d *Desired) { d.Subnets[0].Attachment.Bridge = "" }, "subnets[0].attachment.bridge", "Required"},
	{"bridge hostIfname foreign", func(d *Desired) { d.Subnets[0].Attachment.HostIfName = "eth0" }, "subnets[0].attachment.hostIfname", `must start with "vnat"`},
	{"bridge with master", func(d *Desired) { d.Subnets[0].Attachment.Master = "eth1" }, "subnets[0].attachment.master", "only a macvlan"},
	{"hostIfname duplicate", func(d *Desired) {
		d.Subnets[1].Attachment = Attachment{Type: AttachBridge, Bridge: "br-sn2", HostIfName: "vnat994b11266d6"}
	}, "subnets[1].attachment.hostIfname", "Duplicate"},
	{"macvlan without master", func(d *Desired) { d.Subnets[1].Attachment.Master = "" }, "subnets[1].attachment.master", "Required"},
	{"macvlan with bridge", func(d *Desired) { d.Subnets[1].Attachment.Bridge = "br0" }, "subnets[1].attachment.bridge", "only a bridge"},
	{"attachment mtu", func(d *Desired) { d.Subnets[1].Attachment.MTU = 70000 }, "subnets[1].attachment.mtu", "70000"},
	{"two primaries", func(d *Desired) {
		primary(d)
		d.Subnets[0] = SubnetNIC{Subnet: "sn", IfName: "eth0", CIDR: "10.0.1.0/24", IP: "10.0.1.254", Attachment: Attachment{Type: AttachPrimary}}
	}, "subnets[1].attachment.type", "subnets[0] already is"},
	{"primary not eth0", func(d *Desired) { primary(d); d.Subnets[1].IfName = "vpc-aaaaaaaaaaa" }, "subnets[1].ifname", "a primary attachment is eth0"},
	{"primary with addresses", func(d *Desired) { primary(d); d.Subnets[1].Addresses = []string{"10.0.2.1/24"} }, "subnets[1].addresses", "primary CNI owns"},
	{"primary without ip", func(d *Desired) { primary(d); d.Subnets[1].IP = "" }, "subnets[1].ip", "Required"},
	{"primary ip outside", func(d *Desired) { primary(d); d.Subnets[1].IP = "10.0.9.1" }, "subnets[1].ip", "inside 10.0.2.0/24"},
	{"primary mtu", func(d *Desired) { primary(d); d.Subnets[1].Attachment.MTU = 1400 }, "subnets[1].attachment.mtu", "primary CNI sets"},
	{"eip without prefix", func(d *Desired) { d.EIPs[0].EipCIDR = "192.168.0.111" }, "eips[0].eipCIDR", "prefix length"},
	{"eip network address", func(d *Desired) { d.EIPs = append(d.EIPs, EIP{"192.168.0.0/24", "192.168.0.254"}) }, "eips[3].eipCIDR", "network address"},
	{"eip garbage", func(d *Desired) { d.EIPs[2].EipCIDR = "x" }, "eips[2].eipCIDR", `"x"`},
	{"eip duplicate", func(d *Desired) { d.EIPs = append(d.EIPs, EIP{"192.168.0.112/24", "192.168.0.254"}) }, "eips[3].eipCIDR", "eips[1] has the same address"},
	{"eip gateway outside", func(d *Desired) { d.EIPs[0].Gateway = "192.168.1.254" }, "eips[0].gateway", "inside 192.168.0.0/24"},
	{"eip gateways differ", func(d *Desired) { d.EIPs[1].Gateway = "192.168.0.253" }, "eips[1].gateway", "all EIPs share one gateway"},
	{"eip gateway is an eip", func(d *Desired) { d.EIPs[1].Gateway = "192.168.0.113" }, "eips[1].gateway", "is the address of eips[2]"},
	{"eip inside a subnet", func(d *Desired) { addSubnet(d, "sn3", "vpc-bbbbbbbbbbb", "192.168.0.96/28", "192.168.0.97") }, "eips[0].eipCIDR", "inside subnet sn3"},
	{"fip eip not ours", func(d *Desired) { d.FloatingIPs[0].EIP = "192.168.0.200" }, "floatingIpRules[0].eip", "one of eips (192.168.0.111, 192.168.0.112, 192.168.0.113)"},
	{"fip two on one eip", func(d *Desired) { d.FloatingIPs[1].EIP = "192.168.0.111" }, "floatingIpRules[1].eip", "at most one floating IP"},
	{"fip internal twice", func(d *Desired) { d.FloatingIPs[1].InternalIP = "10.0.1.5" }, "floatingIpRules[1].internalIp", "floatingIpRules[0] already maps"},
	{"fip internal outside", func(d *Desired) { d.FloatingIPs[0].InternalIP = "172.16.0.5" }, "floatingIpRules[0].internalIp", "sn 10.0.1.0/24, sn2 10.0.2.0/24"},
	{"fip internal own", func(d *Desired) { d.FloatingIPs[0].InternalIP = "10.0.2.1" }, "floatingIpRules[0].internalIp", "own address"},
	{"fip internal network", func(d *Desired) { d.FloatingIPs[0].InternalIP = "10.0.1.0" }, "floatingIpRules[0].internalIp", "network address"},
	{"dnat port 0", func(d *Desired) { d.DNATs[0].ExternalPort = 0 }, "dnatRules[0].externalPort", "Invalid value: 0"},
	{"dnat port 65536", func(d *Desired) { d.DNATs[0].InternalPort = 65536 }, "dnatRules[0].internalPort", "65536"},
	{"dnat protocol upper case", func(d *Desired) { d.DNATs[0].Protocol = "TCP" }, "dnatRules[0].protocol", `"TCP"`},
	{"dnat protocol empty", func(d *Desired) { d.DNATs[0].Protocol = "" }, "dnatRules[0].protocol", "Required"},
	{"dnat duplicate", func(d *Desired) { d.DNATs[1].Protocol = "tcp" }, "dnatRules[1]", "192.168.0.112:8888/tcp"},
	{"dnat on a fip eip", func(d *Desired) { d.DNATs[0].EIP = "192.168.0.111" }, "dnatRules[0].eip", "floatingIpRules[0]"},
	{"dnat internal outside", func(d *Desired) { d.DNATs[0].InternalIP = "10.0.3.10" }, "dnatRules[0].internalIp", "policyDst"},
	{"snat eip not ours", func(d *Desired) { d.SNATs[0].EIP = "10.0.1.1" }, "snatRules[0].eip", "one of eips"},
	{"snat bare address", func(d *Desired) { d.SNATs[0].InternalCIDR = "10.0.1.5" }, "snatRules[0].internalCIDR", "10.0.1.5/32"},
	{"snat host bits", func(d *Desired) { d.SNATs[0].InternalCIDR = "10.0.1.5/24" }, "snatRules[0].internalCIDR", "did you mean 10.0.1.0/24"},
	{"snat duplicate", func(d *Desired) { d.SNATs[1].InternalCIDR = "10.0.1.0/24" }, "snatRules[1].internalCIDR", "Duplicate"},
	{"route policy empty", func(d *Desired) { d.Routes[1].Policy = "" }, "routes[1].policy", "policyDst"},
	{"route cidr bad", func(d *Desired) { d.Routes[2].CIDR = "10.0.2.0/33" }, "routes[2].cidr", `"10.0.2.0/33"`},
	{"route duplicate", func(d *Desired) { d.Routes[2] = d.Routes[1] }, "routes[2].cidr", "routes[1] has the same"},
	{"route next hop off-link", func(d *Desired) { d.Routes[1].NextHopIP = "172.16.0.1" }, "routes[1].nextHopIP", "on-link"},
	{"route next hop broadcast", func(d *Desired) { d.Routes[1].NextHopIP = "10.0.1.255" }, "routes[1].nextHopIP", "broadcast"},
}

func TestValidateDesiredCases(t *testing.T) {
	for _, c := range docCases {
		t.Run(c.name, func(t *testing.T) {
			d := goodDesired()
			c.mutate(d)
			expectOne(t, ValidateDesired(d), c.path, c.fragment)
		})
	}
}

// expectOne asserts exactly one error, at path, whose text holds fragment.
func expectOne(t *testing.T, errs field.ErrorList, path, fragment string) {
	t.Helper()
	if len(errs) != 1 || errs[0].Field != path || !strings.Contains(errs[0].Error(), fragment) {
		t.Errorf("want one error at %s containing %q, got %d:\n%s", path, fragment, len(errs), dump(errs))
	}
}

func dump(errs field.ErrorList) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "  %s\n", e)
	}
	return b.String()
}
