package controller

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// The controller writes Multus's k8s.v1.cni.cncf.io/network-status on each gateway pod of the
// current template, so that users see eth0, net1 and the subnet NICs with their addresses and
// MACs as they do with Kube-OVN and Multus (docs/design.md, docs/cni.md). The plugin makes no API
// call, so the controller writes it from what it planned: the NICs are the plan's, their names
// and MACs are derived from object names, and only eth0's addresses come from the pod's status.

// PrimaryNetworkName names the pod's primary network (eth0) in the network status. Multus names
// it after the cluster network's conflist, which the controller cannot see (it may differ from
// node to node); a name with no slash can never be taken for a network attachment
// (namespace/name), and consumers find the primary network by "default": true.
const PrimaryNetworkName = "primary"

// subnetNetworkName names a subnet NIC's entry: the project prefix and the Subnet's name. A
// namespace has no dots, so it cannot be taken for a network attachment either.
func subnetNetworkName(subnet string) string { return annotations.Prefix + subnet }

// networkStatus is one entry of the network status, the fields of the
// network-attachment-definition-client's v1.NetworkStatus that vpcnat knows. DNS is always
// written, empty, as Multus does (its DNS is a struct, which omitempty keeps).
type networkStatus struct {
	Name      string   `json:"name"`
	Interface string   `json:"interface,omitempty"`
	IPs       []string `json:"ips,omitempty"`
	Mac       string   `json:"mac,omitempty"`
	Mtu       int      `json:"mtu,omitempty"`
	Default   bool     `json:"default,omitempty"`
	DNS       struct{} `json:"dns"`
}

// buildNetworkStatus is the network status of pod for the desired state d: eth0 (the pod's IPs,
// the default network), net1 (the external attachment named by the pod's networks annotation,
// the EIPs, the planned MAC) and each subnet NIC vpcnat attaches (bridge or macvlan: its
// addresses and MAC), in the plan's order. A subnet the primary network attaches is eth0 itself.
// A replicated gateway's pod gets its own MACs (plan.ReplicaMAC), as the daemon gives its NICs.
// The output depends only on its inputs, so an unchanged pod compares equal and is not patched.
func buildNetworkStatus(pod *corev1.Pod, d *annotations.Desired) (string, error) {
	mac := func(planned string) string {
		if d.Replicas >= 2 && planned != "" {
			return plan.ReplicaMAC(planned, pod.Name)
		}
		return planned
	}
	primary := networkStatus{Name: PrimaryNetworkName, Interface: "eth0", Default: true}
	for _, ip := range pod.Status.PodIPs {
		primary.IPs = append(primary.IPs, ip.IP)
	}
	if len(primary.IPs) == 0 && pod.Status.PodIP != "" {
		primary.IPs = []string{pod.Status.PodIP}
	}
	out := []networkStatus{primary}

	external := networkStatus{
		Name:      externalNetworkName(pod),
		Interface: d.External.IfName,
		Mac:       mac(d.External.MAC),
		Mtu:       d.External.MTU,
	}
	for _, e := range d.EIPs {
		ip, err := addressOf(e.EipCIDR)
		if err != nil {
			return "", fmt.Errorf("network status: eip %q: %w", e.EipCIDR, err)
		}
		external.IPs = append(external.IPs, ip)
	}
	out = append(out, external)

	for _, s := range d.Subnets {
		if s.Attachment.Type == annotations.AttachPrimary {
			continue
		}
		nic := networkStatus{Name: subnetNetworkName(s.Subnet), Interface: s.IfName, Mac: mac(s.MAC), Mtu: s.Attachment.MTU}
		for _, a := range s.Addresses {
			ip, err := addressOf(a)
			if err != nil {
				return "", fmt.Errorf("network status: subnet %q address %q: %w", s.Subnet, a, err)
			}
			nic.IPs = append(nic.IPs, ip)
		}
		out = append(out, nic)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return "", fmt.Errorf("encoding network status: %w", err)
	}
	return string(b), nil
}

// externalNetworkName is net1's network as the pod's k8s.v1.cni.cncf.io/networks names it
// (the controller writes "namespace/name" on the template), so the status matches the request.
func externalNetworkName(pod *corev1.Pod) string {
	name := strings.TrimSpace(pod.Annotations[annotations.NetworksKey])
	if name != "" && !strings.Contains(name, "/") {
		name = plan.ConfigMapNamespace + "/" + name
	}
	return name
}

// addressOf is the bare address of "address/prefix" (Multus lists addresses without prefix).
func addressOf(cidr string) (string, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil {
		return "", fmt.Errorf("not an address with a prefix length: %w", err)
	}
	return p.Addr().String(), nil
}
