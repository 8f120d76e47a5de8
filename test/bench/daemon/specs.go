package main

import (
	"fmt"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/topo"
)

// probeEIP carries the probe DNAT (first rule of every generated spec): probeEIP:<port>/tcp ->
// pod2:80. Each measured change moves it to a new port.
const probeEIP = "192.168.0.112"

// seed is examples/seed.yaml with the simulated node's NIC.
func seed(repo string) (plan.Inputs, error) {
	in, err := plan.LoadFile(filepath.Join(repo, "examples", "seed.yaml"))
	if err != nil {
		return in, err
	}
	in.Config.NIC = "eth1"
	return in, nil
}

// withRules is the seed gateway holding n rules: for n = 1 the probe DNAT alone; otherwise
// spread over 200 EIPs as test/bench spreads them (10 % SNAT, up to 40 FIPs, the rest DNAT).
func withRules(repo string, n int) (plan.Inputs, error) {
	in, err := seed(repo)
	if err != nil {
		return in, err
	}
	g := &in.Gateway.Spec
	g.Eips, g.FloatingIPRules, g.DnatRules, g.SnatRules = nil, nil, nil, nil
	g.Eips = append(g.Eips, eip(probeEIP))
	g.DnatRules = append(g.DnatRules, dnat(probeEIP, 20000, topo.Pod2IP, 80))
	if n == 1 {
		return in, nil
	}
	fips, snats := min(n/10, 40), n/10
	dnats := n - fips - snats
	var free []string
	for i := 1; len(g.Eips) < 200; i++ {
		if i == 50 || i == 112 { // the client's address; the probe's, already there
			continue
		}
		e := fmt.Sprintf("192.168.0.%d", i)
		g.Eips = append(g.Eips, eip(e))
		if len(g.FloatingIPRules) < fips {
			g.FloatingIPRules = append(g.FloatingIPRules, v1.FloatingIPRule{Eip: e, InternalIP: fmt.Sprintf("10.0.1.%d", 150+len(g.FloatingIPRules))})
			continue
		}
		free = append(free, e)
	}
	free = append(free, probeEIP)
	for k := 1; k < dnats; k++ {
		g.DnatRules = append(g.DnatRules, dnat(free[k%len(free)], int32(10000+k/len(free)), fmt.Sprintf("10.0.1.%d", 2+k%100), 80))
	}
	for i := range snats {
		cidr := "10.0.1.0/24"
		if i > 0 {
			cidr = fmt.Sprintf("10.%d.%d.0/24", 1+i/256, i%256)
		}
		g.SnatRules = append(g.SnatRules, v1.SnatRule{Eip: free[i%len(free)], InternalCIDR: cidr})
	}
	return in, nil
}

// small is one of the many small gateways of the memory measurement: its own EIP
// 192.168.0.<150+i>, a SNAT of its subnet and two port forwards, in its own Vpc vpcb-<i> whose
// subnet snb-<i> (10.3.<i>.0/24, gateway 10.3.<i>.1, lanIp 10.3.<i>.254) is on the node bridge
// br-snb. Every gateway has addresses of its own on that shared link, as gateways of different
// VPCs have: gateways claiming one address would make each converge wait out address conflict
// detection and report a conflict, which is not the case measured.
func small(repo string, i int) (plan.Inputs, error) {
	in, err := seed(repo)
	if err != nil {
		return in, err
	}
	e := fmt.Sprintf("192.168.0.%d", 150+i)
	vpc, subnet := fmt.Sprintf("vpcb-%02d", i), fmt.Sprintf("snb-%02d", i)
	net := func(host int) string { return fmt.Sprintf("10.3.%d.%d", i, host) }
	in.Gateway = &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-%02d", i), Generation: 1},
		Spec: v1.VpcNatGatewaySpec{Vpc: vpc, Subnet: subnet, LanIP: net(254),
			Eips:      []v1.Eip{eip(e)},
			SnatRules: []v1.SnatRule{{Eip: e, InternalCIDR: net(0) + "/24"}},
			DnatRules: []v1.DnatRule{dnat(e, 80, net(10), 80), dnat(e, 443, net(10), 443)}}}
	in.Vpc = &v1.Vpc{ObjectMeta: metav1.ObjectMeta{Name: vpc}}
	in.Subnets = []*v1.Subnet{{ObjectMeta: metav1.ObjectMeta{Name: subnet},
		Spec: v1.SubnetSpec{Vpc: vpc, CIDRBlock: net(0) + "/24", Gateway: net(1),
			NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-snb"}}}}
	return in, nil
}

func eip(addr string) v1.Eip { return v1.Eip{EipCIDR: addr + "/24", Gateway: topo.RouterIP} }

func dnat(eip string, port int32, ip string, iport int32) v1.DnatRule {
	return v1.DnatRule{Eip: eip, ExternalPort: intstr.FromInt32(port), Protocol: "tcp", InternalIP: ip, InternalPort: intstr.FromInt32(iport)}
}
