package plan

import (
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// badCase is one invalid spec: examples/seed.yaml's objects with one thing changed, the field
// path of the error it must give and a fragment of its message (the value, mostly). The table is
// data, so other suites can run the same corpus through their own entry points.
type badCase struct {
	name         string
	mutate       func(in *Inputs)
	wantPath     string
	wantFragment string
	// more is how many errors beyond the wanted one the change legitimately causes: 0 for almost
	// every case (one problem, one error), -1 for "do not count".
	more int
}

func spec(in *Inputs) *v1.VpcNatGatewaySpec { return &in.Gateway.Spec }
func sn(in *Inputs) *v1.Subnet              { return in.Subnets[0] }
func sn2(in *Inputs) *v1.Subnet {
	s := subnet("sn2", "10.0.2.0/24", "10.0.2.1", &v1.SubnetAttachment{Bridge: "br-sn2"})
	in.Subnets = append(in.Subnets, s)
	return s
}
func att(in *Inputs) *v1.SubnetAttachment { return sn(in).Spec.NatGatewayAttachment }
func dnat(in *Inputs) *v1.DnatRule        { return &spec(in).DnatRules[0] }
func route(in *Inputs) *v1.StaticRoute    { return &in.Vpc.Spec.StaticRoutes[0] }

const hostile = "; rm -rf /"

var badCases = []badCase{
	// The ConfigMap.
	{"config disabled", func(in *Inputs) { in.Config.Enabled = false }, "configmap.data[enable-vpc-nat-gw]", "enable-vpc-nat-gw is false", 0},
	{"config missing", func(in *Inputs) { in.Config = Config{} }, "configmap.data[enable-vpc-nat-gw]", "ConfigMap kube-system/ovn-vpc-nat-gw-config", 1},
	{"nic empty", func(in *Inputs) { in.Config.NIC = "" }, "configmap.data[nic]", "Required", 0},
	{"nic hostile", func(in *Inputs) { in.Config.NIC = "eth1" + hostile }, "configmap.data[nic]", `"eth1; rm -rf /"`, 0},
	{"nic too long", func(in *Inputs) { in.Config.NIC = "enp0s31f6u1u2u3u4" }, "configmap.data[nic]", "at most 15", 0},

	// The gateway's metadata and spec.vpc / spec.subnet / spec.lanIp.
	{"gateway name empty", func(in *Inputs) { in.Gateway.Name = "" }, "metadata.name", "Required", 0},
	{"gateway name upper case", func(in *Inputs) { in.Gateway.Name = "NGW" }, "metadata.name", `"NGW"`, 0},
	{"gateway name newline", func(in *Inputs) { in.Gateway.Name = "ngw\nrm -rf /" }, "metadata.name", `"ngw\nrm -rf /"`, 0},
	{"gateway name too long", func(in *Inputs) { in.Gateway.Name = strings.Repeat("n", 64) }, "metadata.name", "63", 0},
	{"generation negative", func(in *Inputs) { in.Gateway.Generation = -1 }, "metadata.generation", "-1", 0},
	{"vpc empty", func(in *Inputs) { spec(in).Vpc = "" }, "spec.vpc", "Required", 0},
	{"vpc unknown", func(in *Inputs) { spec(in).Vpc = "test-vpc-2" }, "spec.vpc", `"test-vpc-2"`, 0},
	{"vpc missing", func(in *Inputs) { in.Vpc = nil }, "spec.vpc", "no Vpc of this name", 0},
	{"vpc hostile", func(in *Inputs) { spec(in).Vpc = "$(reboot)" }, "spec.vpc", `"$(reboot)"`, 0},
	{"vpc object renamed", func(in *Inputs) { in.Vpc.Name = "test-vpc-9" }, "spec.vpc", `the Vpc given is "test-vpc-9"`, 0},
	{"subnet empty", func(in *Inputs) { spec(in).Subnet = "" }, "spec.subnet", "Required", 0},
	{"subnet unknown", func(in *Inputs) { spec(in).Subnet = "nosuch" }, "spec.subnet", `"nosuch"`, 0},
	{"subnet of another vpc", func(in *Inputs) { sn(in).Spec.Vpc = "other" }, "spec.subnet", `belongs to Vpc "other"`, 0},
	{"lanIp empty", func(in *Inputs) { spec(in).LanIP = "" }, "spec.lanIp", "Required", 0},
	{"lanIp outside", func(in *Inputs) { spec(in).LanIP = "10.0.9.254" }, "spec.lanIp", "must be inside 10.0.1.0/24", 0},
	{"lanIp broadcast", func(in *Inputs) { spec(in).LanIP = "10.0.1.255" }, "spec.lanIp", "broadcast address", 0},
	{"lanIp network", func(in *Inputs) { spec(in).LanIP = "10.0.1.0" }, "spec.lanIp", "network address", 0},
	{"lanIp garbage", func(in *Inputs) { spec(in).LanIP = "10.0.1" }, "spec.lanIp", `"10.0.1"`, 0},
	{"lanIp with prefix", func(in *Inputs) { spec(in).LanIP = "10.0.1.254/24" }, "spec.lanIp", "without a prefix length", 0},
	{"lanIp ipv6", func(in *Inputs) { spec(in).LanIP = "fd00::fe" }, "spec.lanIp", "IPv6 is not supported", 0},
	{"lanIp hostile", func(in *Inputs) { spec(in).LanIP = "10.0.1.254" + hostile }, "spec.lanIp", `"10.0.1.254; rm -rf /"`, 0},

	// Subnets.
	{"subnet duplicate object", func(in *Inputs) { in.Subnets = append(in.Subnets, sn(in).DeepCopy()) }, "subnet[sn]", "Duplicate", 0},
	{"subnets overlap", func(in *Inputs) { sn2(in).Spec.CIDRBlock, in.Subnets[1].Spec.Gateway = "10.0.0.0/16", "10.0.0.1" }, "subnet[sn2].spec.cidrBlock", "overlaps Subnet sn (10.0.1.0/24)", 0},
	{"subnet name hostile", func(in *Inputs) { sn(in).Name, spec(in).Subnet = "sn"+hostile, "sn"+hostile }, "subnet[sn; rm -rf /].metadata.name", `"sn; rm -rf /"`, 0},
	{"subnet name empty", func(in *Inputs) { sn(in).Name, spec(in).Subnet = "", "" }, "subnet[].metadata.name", "Required", 1},
	{"cidrBlock host bits", func(in *Inputs) { sn(in).Spec.CIDRBlock = "10.0.1.5/24" }, "subnet[sn].spec.cidrBlock", "did you mean 10.0.1.0/24", 0},
	{"cidrBlock bad length", func(in *Inputs) { sn(in).Spec.CIDRBlock = "10.0.1.0/33" }, "subnet[sn].spec.cidrBlock", `"10.0.1.0/33"`, 0},
	{"cidrBlock ipv6", func(in *Inputs) { sn(in).Spec.CIDRBlock = "fd00:10::/64" }, "subnet[sn].spec.cidrBlock", "IPv6 is not supported", 0},
	{"cidrBlock hostile", func(in *Inputs) { sn(in).Spec.CIDRBlock = "10.0.1.0/24" + hostile }, "subnet[sn].spec.cidrBlock", `"10.0.1.0/24; rm -rf /"`, 0},
	{"subnet gateway outside", func(in *Inputs) { sn(in).Spec.Gateway = "10.0.2.1" }, "subnet[sn].spec.gateway", "must be inside 10.0.1.0/24", 0},
	{"subnet gateway network", func(in *Inputs) { sn(in).Spec.Gateway = "10.0.1.0" }, "subnet[sn].spec.gateway", "network address", 0},
	{"subnet gateway empty", func(in *Inputs) { sn(in).Spec.Gateway = "" }, "subnet[sn].spec.gateway", "Required", 0},
	{"subnet gateway hostile", func(in *Inputs) { sn(in).Spec.Gateway = "10.0.1.1\n" }, "subnet[sn].spec.gateway", `"10.0.1.1\n"`, 0},
	{"attachment both", func(in *Inputs) { att(in).Master = "eth2" }, "subnet[sn].spec.natGatewayAttachment.master", "exactly one of bridge or master", 0},
	{"attachment empty", func(in *Inputs) { sn(in).Spec.NatGatewayAttachment = &v1.SubnetAttachment{} }, "subnet[sn].spec.natGatewayAttachment", "exactly one of bridge", 0},
	{"bridge hostile", func(in *Inputs) { att(in).Bridge = "br-sn" + hostile }, "subnet[sn].spec.natGatewayAttachment.bridge", `"br-sn; rm -rf /"`, 0},
	{"bridge wildcard", func(in *Inputs) { att(in).Bridge = "br+" }, "subnet[sn].spec.natGatewayAttachment.bridge", `'+'`, 0},
	{"master newline", func(in *Inputs) { att(in).Bridge, att(in).Master = "", "eth2\n" }, "subnet[sn].spec.natGatewayAttachment.master", `"eth2\n"`, 0},
	{"attachment mtu", func(in *Inputs) { att(in).MTU = 10 }, "subnet[sn].spec.natGatewayAttachment.mtu", "68-65535", 0},
	{"two primaries", func(in *Inputs) {
		att(in)
		sn(in).Spec.NatGatewayAttachment = nil
		sn2(in).Spec.NatGatewayAttachment = nil
	},
		"subnet[sn2].spec.natGatewayAttachment", "Subnet sn already is", 0},
	{"too many subnets", func(in *Inputs) {
		for i := range annotations.MaxSubnets {
			in.Subnets = append(in.Subnets, subnet(fmt.Sprintf("s%d", i), fmt.Sprintf("10.1.%d.0/24", i), fmt.Sprintf("10.1.%d.1", i), &v1.SubnetAttachment{Bridge: "br-x"}))
		}
	}, "spec.vpc", "a gateway joins at most 64", 0},

	// EIPs.
	{"eip bad address", func(in *Inputs) { spec(in).Eips[0].EipCIDR = "192.168.0.300/24" }, "spec.eips[0].eipCIDR", `"192.168.0.300/24"`, 0},
	{"eip without prefix", func(in *Inputs) { spec(in).Eips[0].EipCIDR = "192.168.0.111" }, "spec.eips[0].eipCIDR", "prefix length", 0},
	{"eip network address", func(in *Inputs) {
		spec(in).Eips = append(spec(in).Eips, v1.Eip{EipCIDR: "192.168.0.0/24", Gateway: "192.168.0.254"})
	}, "spec.eips[2].eipCIDR", "network address", 0},
	{"eip ipv6", func(in *Inputs) { spec(in).Eips[0].EipCIDR = "2001:db8::111/64" }, "spec.eips[0].eipCIDR", "IPv6 is not supported", 0},
	{"eip hostile", func(in *Inputs) { spec(in).Eips[1].EipCIDR = "192.168.0.112/24" + hostile }, "spec.eips[1].eipCIDR", `"192.168.0.112/24; rm -rf /"`, 0},
	{"eip duplicate", func(in *Inputs) {
		spec(in).Eips = append(spec(in).Eips, v1.Eip{EipCIDR: "192.168.0.111/24", Gateway: "192.168.0.254"})
	}, "spec.eips[2].eipCIDR", "eips[0] has the same address", 0},
	{"eip gateway outside", func(in *Inputs) { spec(in).Eips[0].Gateway = "192.168.1.254" }, "spec.eips[0].gateway", "must be inside 192.168.0.0/24", 0},
	{"eip gateways differ", func(in *Inputs) { spec(in).Eips[1].Gateway = "192.168.0.253" }, "spec.eips[1].gateway", "all EIPs share one gateway, which is the gateway's default route", 0},
	{"eip gateway is an eip", func(in *Inputs) { spec(in).Eips[1].Gateway = "192.168.0.111" }, "spec.eips[1].gateway", "is the address of eips[0]", 0},
	{"eip gateway hostile", func(in *Inputs) { spec(in).Eips[0].Gateway = "192.168.0.254 && reboot" }, "spec.eips[0].gateway", `"192.168.0.254 && reboot"`, 0},
	{"eip inside a subnet", func(in *Inputs) {
		sn2(in).Spec.CIDRBlock, in.Subnets[1].Spec.Gateway = "192.168.0.96/28", "192.168.0.97"
	}, "spec.eips[0].eipCIDR", "is inside subnet sn2 (192.168.0.96/28)", 0},
	{"too many eips", func(in *Inputs) {
		for i := range annotations.MaxEIPs - 1 {
			spec(in).Eips = append(spec(in).Eips, v1.Eip{EipCIDR: fmt.Sprintf("192.168.%d.%d/16", 1+i/250, 1+i%250), Gateway: "192.168.0.254"})
		}
	}, "spec.eips", "must have at most 1024 items", 0},

	// Floating IPs.
	{"fip eip not ours", func(in *Inputs) { spec(in).FloatingIPRules[0].Eip = "192.168.0.200" }, "spec.floatingIpRules[0].eip", "one of eips (192.168.0.111, 192.168.0.112)", 0},
	{"fip eip with prefix", func(in *Inputs) { spec(in).FloatingIPRules[0].Eip = "192.168.0.111/24" }, "spec.floatingIpRules[0].eip", "without a prefix length", 0},
	{"fip eip hostile", func(in *Inputs) { spec(in).FloatingIPRules[0].Eip = "192.168.0.111" + hostile }, "spec.floatingIpRules[0].eip", `"192.168.0.111; rm -rf /"`, 0},
	{"fip internal outside", func(in *Inputs) { spec(in).FloatingIPRules[0].InternalIP = "172.16.0.5" }, "spec.floatingIpRules[0].internalIp", "inside one of the gateway's subnets (sn 10.0.1.0/24)", 0},
	{"fip internal is lanIp", func(in *Inputs) { spec(in).FloatingIPRules[0].InternalIP = "10.0.1.254" }, "spec.floatingIpRules[0].internalIp", "own address", 0},
	{"fip internal broadcast", func(in *Inputs) { spec(in).FloatingIPRules[0].InternalIP = "10.0.1.255" }, "spec.floatingIpRules[0].internalIp", "broadcast", 0},
	{"fip internal ipv6", func(in *Inputs) { spec(in).FloatingIPRules[0].InternalIP = "fd00::5" }, "spec.floatingIpRules[0].internalIp", "IPv6 is not supported", 0},
	{"fip internal hostile", func(in *Inputs) { spec(in).FloatingIPRules[0].InternalIP = "10.0.1.5" + hostile }, "spec.floatingIpRules[0].internalIp", `"10.0.1.5; rm -rf /"`, 0},
	{"two fips on one eip", func(in *Inputs) {
		spec(in).FloatingIPRules = append(spec(in).FloatingIPRules, v1.FloatingIPRule{Eip: "192.168.0.111", InternalIP: "10.0.1.6"})
	}, "spec.floatingIpRules[1].eip", "an EIP has at most one floating IP", 0},
	{"one internal ip two fips", func(in *Inputs) {
		spec(in).Eips = append(spec(in).Eips, v1.Eip{EipCIDR: "192.168.0.113/24", Gateway: "192.168.0.254"})
		spec(in).FloatingIPRules = append(spec(in).FloatingIPRules, v1.FloatingIPRule{Eip: "192.168.0.113", InternalIP: "10.0.1.5"})
	}, "spec.floatingIpRules[1].internalIp", "floatingIpRules[0] already maps this internal IP", 0},
	{"fip and dnat on one eip", func(in *Inputs) { dnat(in).Eip = "192.168.0.111" }, "spec.dnatRules[0].eip", "carries floatingIpRules[0], which already takes all of its ports", 0},
	{"too many fips", func(in *Inputs) {
		for range annotations.MaxFloatingIPs {
			spec(in).FloatingIPRules = append(spec(in).FloatingIPRules, v1.FloatingIPRule{Eip: "192.168.0.111", InternalIP: "10.0.1.5"})
		}
	}, "spec.floatingIpRules", "must have at most 1024 items", -1},

	// Port forwards.
	{"dnat port 0", func(in *Inputs) { dnat(in).ExternalPort = intstr.FromInt32(0) }, "spec.dnatRules[0].externalPort", "Invalid value: 0: must be a port number 1-65535", 0},
	{"dnat port 65536", func(in *Inputs) { dnat(in).ExternalPort = intstr.FromInt32(65536) }, "spec.dnatRules[0].externalPort", "65536", 0},
	{"dnat port string 65536", func(in *Inputs) { dnat(in).InternalPort = intstr.FromString("65536") }, "spec.dnatRules[0].internalPort", "65536", 0},
	{"dnat port abc", func(in *Inputs) { dnat(in).ExternalPort = intstr.FromString("abc") }, "spec.dnatRules[0].externalPort", `"abc"`, 0},
	{"dnat port negative string", func(in *Inputs) { dnat(in).InternalPort = intstr.FromString("-1") }, "spec.dnatRules[0].internalPort", `"-1"`, 0},
	{"dnat port hostile", func(in *Inputs) { dnat(in).ExternalPort = intstr.FromString("8888" + hostile) }, "spec.dnatRules[0].externalPort", `"8888; rm -rf /"`, 0},
	{"dnat internal port 0", func(in *Inputs) { dnat(in).InternalPort = intstr.FromInt32(0) }, "spec.dnatRules[0].internalPort", "Invalid value: 0", 0},
	{"dnat protocol sctp", func(in *Inputs) { dnat(in).Protocol = "sctp" }, "spec.dnatRules[0].protocol", `Unsupported value: "sctp": supported values: "tcp", "udp"`, 0},
	{"dnat protocol empty", func(in *Inputs) { dnat(in).Protocol = "" }, "spec.dnatRules[0].protocol", "Required", 0},
	{"dnat protocol hostile", func(in *Inputs) { dnat(in).Protocol = "tcp\n-A INPUT -j ACCEPT" }, "spec.dnatRules[0].protocol", `"tcp\n-A INPUT -j ACCEPT"`, 0},
	{"dnat eip not ours", func(in *Inputs) { dnat(in).Eip = "192.168.0.200" }, "spec.dnatRules[0].eip", "one of eips", 0},
	{"dnat internal outside", func(in *Inputs) { dnat(in).InternalIP = "10.0.3.10" }, "spec.dnatRules[0].internalIp", `"10.0.3.10"`, 0},
	{"dnat internal hostile", func(in *Inputs) { dnat(in).InternalIP = "10.0.1.10`id`" }, "spec.dnatRules[0].internalIp", "10.0.1.10`id`", 0},
	{"dnat duplicate", func(in *Inputs) {
		r := *dnat(in)
		r.InternalIP, r.Protocol = "10.0.1.11", "TCP"
		spec(in).DnatRules = append(spec(in).DnatRules, r)
	}, "spec.dnatRules[1]", `Duplicate value: "192.168.0.112:8888/tcp"`, 0},
	{"too many dnats", func(in *Inputs) {
		for i := range annotations.MaxDNATs {
			spec(in).DnatRules = append(spec(in).DnatRules, v1.DnatRule{Eip: "192.168.0.112", ExternalPort: intstr.FromInt(10000 + i),
				Protocol: "udp", InternalIP: "10.0.1.10", InternalPort: intstr.FromInt(80)})
		}
	}, "spec.dnatRules", "must have at most 20000 items", 0},

	// SNAT.
	{"snat eip not ours", func(in *Inputs) { spec(in).SnatRules[0].Eip = "192.168.0.200" }, "spec.snatRules[0].eip", "one of eips", 0},
	{"snat eip hostile", func(in *Inputs) { spec(in).SnatRules[0].Eip = "|nc -e sh" }, "spec.snatRules[0].eip", `"|nc -e sh"`, 0},
	{"snat host bits", func(in *Inputs) { spec(in).SnatRules[0].InternalCIDR = "10.0.1.5/24" }, "spec.snatRules[0].internalCIDR", "did you mean 10.0.1.0/24", 0},
	{"snat hostile", func(in *Inputs) { spec(in).SnatRules[0].InternalCIDR = "10.0.1.0/24; iptables -F" }, "spec.snatRules[0].internalCIDR", `"10.0.1.0/24; iptables -F"`, 0},
	{"snat ipv6", func(in *Inputs) { spec(in).SnatRules[0].InternalCIDR = "fd00::/64" }, "spec.snatRules[0].internalCIDR", "IPv6 is not supported", 0},
	{"snat duplicate", func(in *Inputs) {
		spec(in).SnatRules = append(spec(in).SnatRules, v1.SnatRule{Eip: "192.168.0.111", InternalCIDR: "10.0.1.0/24"})
	}, "spec.snatRules[1].internalCIDR", "snatRules[0] already has this internalCIDR", 0},
	{"too many snats", func(in *Inputs) {
		for i := range annotations.MaxSNATs {
			spec(in).SnatRules = append(spec(in).SnatRules, v1.SnatRule{Eip: "192.168.0.112", InternalCIDR: fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256)})
		}
	}, "spec.snatRules", "must have at most 5000 items", 0},

	// The Vpc's static routes.
	{"route next hop off-link", func(in *Inputs) { route(in).NextHopIP = "172.16.0.1" }, "vpc[test-vpc-1].spec.staticRoutes[0].nextHopIP", "must be on-link", 0},
	{"route next hop garbage", func(in *Inputs) { route(in).NextHopIP = "10.0.1" }, "vpc[test-vpc-1].spec.staticRoutes[0].nextHopIP", `"10.0.1"`, 0},
	{"route next hop hostile", func(in *Inputs) { route(in).NextHopIP = "10.0.1.254" + hostile }, "vpc[test-vpc-1].spec.staticRoutes[0].nextHopIP", `"10.0.1.254; rm -rf /"`, 0},
	{"route next hop broadcast", func(in *Inputs) { route(in).NextHopIP = "10.0.1.255" }, "vpc[test-vpc-1].spec.staticRoutes[0].nextHopIP", "broadcast", 0},
	{"route policy unknown", func(in *Inputs) { route(in).Policy = "policyFoo" }, "vpc[test-vpc-1].spec.staticRoutes[0].policy", `"policyFoo"`, 0},
	{"route cidr host bits", func(in *Inputs) { route(in).CIDR = "10.9.0.1/16" }, "vpc[test-vpc-1].spec.staticRoutes[0].cidr", "did you mean 10.9.0.0/16", 0},
	{"route cidr hostile", func(in *Inputs) { route(in).CIDR = "0.0.0.0/0" + hostile }, "vpc[test-vpc-1].spec.staticRoutes[0].cidr", `"0.0.0.0/0; rm -rf /"`, 0},
	{"route duplicate", func(in *Inputs) {
		in.Vpc.Spec.StaticRoutes = append(in.Vpc.Spec.StaticRoutes, v1.StaticRoute{CIDR: "0.0.0.0/0", NextHopIP: "10.0.1.100"})
	}, "vpc[test-vpc-1].spec.staticRoutes[1].cidr", "staticRoutes[0] has the same policy and cidr", 0},
	{"too many routes", func(in *Inputs) {
		for i := range annotations.MaxRoutes {
			in.Vpc.Spec.StaticRoutes = append(in.Vpc.Spec.StaticRoutes, v1.StaticRoute{Policy: v1.PolicySrc, CIDR: fmt.Sprintf("10.%d.%d.0/24", 100+i/256, i%256), NextHopIP: "10.0.1.100"})
		}
	}, "vpc[test-vpc-1].spec.staticRoutes", "must have at most 1024 items", 0},
}

// TestBadInputs: every case is refused, with nothing built, with the error it names, and with no
// more errors than the one problem causes.
func TestBadInputs(t *testing.T) {
	if len(badCases) < 60 {
		t.Fatalf("the corpus has %d cases, want at least 60", len(badCases))
	}
	for _, c := range badCases {
		t.Run(c.name, func(t *testing.T) {
			in := seed(t)
			c.mutate(&in)
			p, d, errs := Build(in)
			if p != nil || d != nil {
				t.Fatal("Build returned documents along with errors")
			}
			found := false
			seen := map[string]bool{}
			for _, e := range errs {
				found = found || e.Field == c.wantPath && strings.Contains(e.Error(), c.wantFragment)
				if seen[e.Error()] {
					t.Errorf("the same error twice: %s", e)
				}
				seen[e.Error()] = true
			}
			if !found || (c.more >= 0 && len(errs) != 1+c.more) {
				var b strings.Builder
				for _, e := range errs {
					fmt.Fprintf(&b, "  %s\n", e)
				}
				t.Errorf("want an error at %s containing %q and %d more, got %d:\n%s", c.wantPath, c.wantFragment, c.more, len(errs), b.String())
			}
		})
	}
}
