package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// Names derived from object names. Each is a pure function of names only, so it survives a
// controller restart, a pod recreation and the addition or removal of other subnets. Changing
// any of them is an upgrade hazard: a new MAC makes upstream ARP caches stale until the
// gratuitous ARP, a new ifname makes the plugin and daemon recreate every NIC.
const (
	// SubnetIfNamePrefix starts every gateway-side subnet NIC name; netconf recognises owned
	// NICs by it.
	SubnetIfNamePrefix = annotations.SubnetIfNamePrefix
	// HostIfNamePrefix starts every node-side veth name.
	HostIfNamePrefix = annotations.HostIfNamePrefix
)

// hashHex is the hex SHA-256 of the parts, NUL-separated (so ("ab","c") and ("a","bc") differ),
// under a tag that keeps the different names independent of each other.
func hashHex(tag string, parts ...string) string {
	h := sha256.New()
	h.Write([]byte(tag))
	for _, p := range parts {
		h.Write([]byte{0})
		h.Write([]byte(p))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// ExternalMAC is net1's MAC: 02 (unicast, locally administered) and five bytes of a hash of the
// gateway's name, so a recreated gateway answers ARP with the MAC upstream routers already have.
func ExternalMAC(gateway string) string {
	h := hashHex("vpcnat/external-mac", gateway)
	return fmt.Sprintf("02:%s:%s:%s:%s:%s", h[0:2], h[2:4], h[4:6], h[6:8], h[8:10])
}

// SubnetMAC is the MAC of the gateway's NIC in a subnet, derived like ExternalMAC: a recreated
// gateway (new sandbox, new netns) keeps it, so the subnet's hosts, whose ARP caches map the
// subnet gateway IP and lanIp to it, reach the new gateway at once.
func SubnetMAC(gateway, subnet string) string {
	h := hashHex("vpcnat/subnet-mac", gateway, subnet)
	return fmt.Sprintf("02:%s:%s:%s:%s:%s", h[0:2], h[2:4], h[4:6], h[6:8], h[8:10])
}

// SubnetIfName is the gateway-side NIC name in a subnet: the prefix and 11 hex digits (44 bits) of
// a hash of the subnet's name, 15 characters, the kernel's limit. Build reports the (unlikely)
// collision of two subnets' names rather than silently share a NIC.
func SubnetIfName(subnet string) string {
	return SubnetIfNamePrefix + hashHex("vpcnat/subnet-ifname", subnet)[:annotations.MaxIfNameLen-len(SubnetIfNamePrefix)]
}

// HostIfName is the node-side veth name for a gateway in a subnet: one node may run several
// gateways on the same bridge, so it hashes both names.
func HostIfName(gateway, subnet string) string {
	return HostIfNamePrefix + hashHex("vpcnat/host-ifname", gateway, subnet)[:annotations.MaxIfNameLen-len(HostIfNamePrefix)]
}

// Kubernetes objects of a gateway. The controller creates them; the daemon recognises a gateway
// pod only in GatewayNamespace, carrying the gateway annotation, and owned (ReplicaSet ->
// Deployment) by a Deployment that a VpcNatGateway of that name controls.
const (
	// GatewayNamespace is the default namespace of gateway Deployments (Kube-OVN's).
	GatewayNamespace = "kube-system"
	// LabelGateway is on the Deployment and its pods; its value is the gateway's name.
	LabelGateway = "vpcnat.kubeovn.io/gateway"
	// LabelApp is Kube-OVN's label for gateway pods, kept for compatibility.
	LabelApp = "app"
)

// DeploymentName is the gateway's Deployment, as Kube-OVN names it.
func DeploymentName(gateway string) string { return "vpc-nat-gw-" + gateway }
