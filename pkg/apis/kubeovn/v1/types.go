// Package v1 holds the kubeovn.io/v1 API types vpcnat serves: VpcNatGateway, Vpc and Subnet.
//
// The field names follow Kube-OVN's CRDs so that the seed's YAML (and existing Kube-OVN manifests
// for these three kinds) apply unchanged. Fields Kube-OVN has and vpcnat does not use are left
// out; the API server prunes them.
//
// +kubebuilder:object:generate=true
// +groupName=kubeovn.io
package v1

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// VpcNatGateway gives the subnets of one VPC a NAT gateway on the external (underlay) network.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster,shortName=vpc-nat-gw
// +kubebuilder:subresource:status
// +kubebuilder:printcolumn:name="VPC",type=string,JSONPath=`.spec.vpc`
// +kubebuilder:printcolumn:name="Subnet",type=string,JSONPath=`.spec.subnet`
// +kubebuilder:printcolumn:name="LanIP",type=string,JSONPath=`.spec.lanIp`
// +kubebuilder:printcolumn:name="EIPs",type=integer,JSONPath=`.status.eipCount`
// +kubebuilder:printcolumn:name="Ready",type=string,JSONPath=`.status.conditions[?(@.type=="Ready")].status`
// +kubebuilder:printcolumn:name="Active",type=string,JSONPath=`.status.activeNode`
// +kubebuilder:printcolumn:name="Standbys",type=integer,JSONPath=`.status.standbysReady`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`
// The name becomes the label value app=vpc-nat-gw-<name>, and label values have at most 63
// characters.
// +kubebuilder:validation:XValidation:rule="self.metadata.name.size() <= 52 && self.metadata.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')",message="metadata.name must be a DNS label of at most 52 characters (the gateway's pods are labelled app=vpc-nat-gw-<name>)",messageExpression="'metadata.name: Invalid value: \"' + self.metadata.name + '\": must be a DNS label of at most 52 characters (the gateway pods are labelled app=vpc-nat-gw-<name>)'"
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type VpcNatGateway struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   VpcNatGatewaySpec   `json:"spec"`
	Status VpcNatGatewayStatus `json:"status,omitempty"`
}

// VpcNatGatewaySpec is what the user asks of one gateway.
//
// +kubebuilder:validation:XValidation:rule="!has(self.floatingIpRules) || (has(self.eips) && sets.contains(self.eips.map(e, e.eipCIDR.split('/')[0]), self.floatingIpRules.map(r, r.eip)))",message="every floatingIpRules eip must be the address of one of eips"
// +kubebuilder:validation:XValidation:rule="!has(self.snatRules) || (has(self.eips) && sets.contains(self.eips.map(e, e.eipCIDR.split('/')[0]), self.snatRules.map(r, r.eip)))",message="every snatRules eip must be the address of one of eips"
type VpcNatGatewaySpec struct {
	// Vpc is the name of the Vpc the gateway serves.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Vpc string `json:"vpc"`
	// Subnet is the gateway's primary subnet in the Vpc; its NIC holds lanIp.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Subnet string `json:"subnet"`
	// LanIP is the gateway's address in Subnet (the next hop the VPC's static routes point at).
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address without a prefix length, like 10.0.1.5"
	LanIP string `json:"lanIp"`
	// Eips are the external addresses (with prefix length) the gateway holds on net1, each with
	// the external network's gateway.
	// +optional
	// +kubebuilder:validation:MaxItems=1024
	// +listType=map
	// +listMapKey=eipCIDR
	Eips []Eip `json:"eips,omitempty"`
	// FloatingIPRules map one EIP 1:1 to one internal IP, both directions.
	// An EIP has at most one floating IP.
	// +optional
	// +kubebuilder:validation:MaxItems=1024
	// +listType=map
	// +listMapKey=eip
	FloatingIPRules []FloatingIPRule `json:"floatingIpRules,omitempty"`
	// DnatRules forward EIP:port/protocol to internalIp:internalPort.
	// +optional
	// +kubebuilder:validation:MaxItems=20000
	DnatRules []DnatRule `json:"dnatRules,omitempty"`
	// SnatRules make traffic from internalCIDR leave with the EIP as source; the longest
	// prefix wins.
	// +optional
	// +kubebuilder:validation:MaxItems=5000
	SnatRules []SnatRule `json:"snatRules,omitempty"`
	// Selector restricts the nodes the gateway pod may run on, as "key: value" strings
	// (Kube-OVN's form).
	// +optional
	// +kubebuilder:validation:MaxItems=64
	// +kubebuilder:validation:items:MaxLength=317
	// +kubebuilder:validation:items:Pattern=`^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?: *([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$`
	Selector []string `json:"selector,omitempty"`
	// Tolerations of the gateway pod.
	// +optional
	// +kubebuilder:validation:MaxItems=64
	Tolerations []corev1.Toleration `json:"tolerations,omitempty"`
	// Affinity of the gateway pod.
	// +optional
	Affinity *corev1.Affinity `json:"affinity,omitempty"`
	// Resources of the gateway pod's container.
	// +optional
	Resources *corev1.ResourceRequirements `json:"resources,omitempty"`
	// Replicas is the number of gateway pods, each on its own node (Kube-OVN master's name).
	// 1 (the default): one pod, no failover agent. 2 or more: one active replica holds the EIPs,
	// subnet gateway addresses and lanIp; the standbys are converged and take over when the
	// active one stops sending heartbeats (docs/ha.md).
	// +optional
	// +kubebuilder:default=1
	// +kubebuilder:validation:Minimum=1
	// +kubebuilder:validation:Maximum=5
	Replicas int32 `json:"replicas,omitempty"`
	// BFD is the heartbeat timing between replicas, in Kube-OVN master's form (BFD's knobs, so
	// its users' manifests apply). vpcnat's heartbeats are its own L2 frames, not BFD packets.
	// +optional
	BFD *BFDConfig `json:"bfd,omitempty"`
}

// BFDConfig is the heartbeat timing of a replicated gateway, in milliseconds. A replica sends a
// heartbeat every minTX and declares a peer dead after multiplier × minRX without one.
//
// +kubebuilder:validation:XValidation:rule="!has(self.minRX) || !has(self.multiplier) || self.minRX * self.multiplier <= 30000",message="minRX × multiplier (the detection time) must be at most 30000 ms"
type BFDConfig struct {
	// Enabled is accepted for Kube-OVN manifests; heartbeats always run when replicas ≥ 2.
	// +optional
	Enabled bool `json:"enabled,omitempty"`
	// MinRX is the expected heartbeat interval from a peer, in ms (default 100).
	// +optional
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=10000
	MinRX int32 `json:"minRX,omitempty"`
	// MinTX is this replica's heartbeat interval, in ms (default 100).
	// +optional
	// +kubebuilder:validation:Minimum=10
	// +kubebuilder:validation:Maximum=10000
	MinTX int32 `json:"minTX,omitempty"`
	// Multiplier is how many intervals without a heartbeat make a peer dead (default 3).
	// +optional
	// +kubebuilder:validation:Minimum=2
	// +kubebuilder:validation:Maximum=255
	Multiplier int32 `json:"multiplier,omitempty"`
}

// Eip is one external address of the gateway.
//
// +kubebuilder:validation:XValidation:rule="!isCIDR(self.eipCIDR) || !isIP(self.gateway) || cidr(self.eipCIDR).containsIP(self.gateway)",message="gateway must be inside the network of eipCIDR",messageExpression="'gateway must be inside the network of eipCIDR: gateway \"' + self.gateway + '\" is outside \"' + self.eipCIDR + '\"'"
type Eip struct {
	// EipCIDR is the address with the external network's prefix length, e.g. 192.168.0.111/24.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4",message="must be an IPv4 address with the external network's prefix length, like 192.168.0.111/24"
	EipCIDR string `json:"eipCIDR"`
	// Gateway is the external network's router, the gateway's default next hop.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address without a prefix length, like 10.0.1.5"
	Gateway string `json:"gateway"`
}

// FloatingIPRule is a 1:1 NAT between an EIP and an internal IP.
type FloatingIPRule struct {
	// Eip is the external address, one of spec.eips.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address without a prefix length, like 10.0.1.5"
	Eip string `json:"eip"`
	// InternalIP is the VPC address the EIP maps to.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address without a prefix length, like 10.0.1.5"
	InternalIP string `json:"internalIp"`
}

// DnatRule forwards one external port of an EIP to an internal IP and port.
type DnatRule struct {
	// Eip is the external address, one of spec.eips.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address without a prefix length, like 10.0.1.5"
	Eip string `json:"eip"`
	// ExternalPort is the port on the EIP, 1-65535 (a number or a string of digits).
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 1 && self <= 65535) : (self.matches('^[0-9]{1,5}$') && int(self) >= 1 && int(self) <= 65535)",message="must be a port number 1-65535"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=5
	ExternalPort intstr.IntOrString `json:"externalPort"`
	// Protocol is tcp or udp (upper case is accepted, as by Kube-OVN).
	// +kubebuilder:validation:Enum=tcp;udp;TCP;UDP
	Protocol string `json:"protocol"`
	// InternalIP is the VPC address traffic is forwarded to.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address without a prefix length, like 10.0.1.5"
	InternalIP string `json:"internalIp"`
	// InternalPort is the port on InternalIP, 1-65535 (a number or a string of digits).
	// +kubebuilder:validation:XValidation:rule="type(self) == int ? (self >= 1 && self <= 65535) : (self.matches('^[0-9]{1,5}$') && int(self) >= 1 && int(self) <= 65535)",message="must be a port number 1-65535"
	// +kubebuilder:validation:XIntOrString
	// +kubebuilder:validation:MaxLength=5
	InternalPort intstr.IntOrString `json:"internalPort"`
}

// SnatRule makes traffic from InternalCIDR leave with Eip as source.
type SnatRule struct {
	// Eip is the external address, one of spec.eips.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address without a prefix length, like 10.0.1.5"
	Eip string `json:"eip"`
	// InternalCIDR is a VPC CIDR or a single IP (counted as /32).
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) ? (cidr(self).ip().family() == 4 && cidr(self) == cidr(self).masked()) : (isIP(self) && ip(self).family() == 4)",message="must be an IPv4 network like 10.0.1.0/24 (no host bits) or a single IPv4 address"
	InternalCIDR string `json:"internalCIDR"`
}

// VpcNatGatewayStatus is what the controller and the daemon report.
type VpcNatGatewayStatus struct {
	// ObservedGeneration is the spec generation the status describes.
	// +optional
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Conditions: Ready, Applied, Degraded.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// Pod is the gateway pod, namespace/name.
	// +optional
	Pod string `json:"pod,omitempty"`
	// Node is the node the gateway pod runs on.
	// +optional
	Node string `json:"node,omitempty"`
	// Rules has one entry per EIP, FIP, DNAT and SNAT rule with its state.
	// +optional
	Rules []RuleStatus `json:"rules,omitempty"`
	// EipCount is the number of EIPs of the spec in force (the last valid spec given to the
	// gateway pod).
	// +optional
	EipCount int32 `json:"eipCount"`
	// ActiveNode is the node of the replica that holds the gateway's addresses (replicas ≥ 2).
	// +optional
	ActiveNode string `json:"activeNode,omitempty"`
	// StandbysReady is the number of converged standby replicas ready to take over.
	// +optional
	StandbysReady int32 `json:"standbysReady,omitempty"`
}

// RuleStatus is the state of one rule of the spec in the data plane.
type RuleStatus struct {
	// Kind is eip, fip, dnat or snat.
	// +kubebuilder:validation:Enum=eip;fip;dnat;snat
	Kind string `json:"kind"`
	// Key identifies the rule, e.g. 192.168.0.112:8888/tcp.
	Key string `json:"key"`
	// State is Applied, Pending or Failed.
	// +kubebuilder:validation:Enum=Applied;Pending;Failed
	State string `json:"state"`
	// Error says why the rule failed.
	// +optional
	Error string `json:"error,omitempty"`
}

// VpcNatGatewayList is a list of VpcNatGateways.
//
// +kubebuilder:object:root=true
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type VpcNatGatewayList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []VpcNatGateway `json:"items"`
}

// Vpc is a tenant network; vpcnat reads its static routes.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:subresource:status
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type Vpc struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   VpcSpec   `json:"spec,omitempty"`
	Status VpcStatus `json:"status,omitempty"`
}

// VpcSpec holds the Vpc's static routes.
type VpcSpec struct {
	// StaticRoutes are installed inside the Vpc's NAT gateways.
	// +optional
	// +kubebuilder:validation:MaxItems=1024
	StaticRoutes []StaticRoute `json:"staticRoutes,omitempty"`
}

// RoutePolicy says whether a static route matches on destination or on source.
type RoutePolicy string

const (
	// PolicyDst routes by destination (the default).
	PolicyDst RoutePolicy = "policyDst"
	// PolicySrc routes by source.
	PolicySrc RoutePolicy = "policySrc"
)

// StaticRoute is one route of a Vpc.
type StaticRoute struct {
	// Policy is policyDst (match the destination, the default) or policySrc (match the source).
	// +optional
	// +kubebuilder:validation:Enum=policyDst;policySrc
	Policy RoutePolicy `json:"policy,omitempty"`
	// CIDR is the destination (policyDst) or source (policySrc) prefix.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self) == cidr(self).masked()",message="must be an IPv4 network prefix without host bits, like 10.0.1.0/24"
	CIDR string `json:"cidr"`
	// NextHopIP is the next hop, inside one of the Vpc's subnets. A next hop that is the
	// gateway's own address means "through this gateway", which it already is.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address without a prefix length, like 10.0.1.5"
	NextHopIP string `json:"nextHopIP"`
}

// VpcStatus lists the Vpc's gateways.
type VpcStatus struct {
	// Conditions of the Vpc.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
	// NatGateways are the VpcNatGateways that serve this Vpc.
	// +optional
	NatGateways []string `json:"natGateways,omitempty"`
}

// VpcList is a list of Vpcs.
//
// +kubebuilder:object:root=true
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type VpcList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Vpc `json:"items"`
}

// Subnet is one L2 network of a Vpc.
//
// +genclient
// +genclient:nonNamespaced
// +kubebuilder:object:root=true
// +kubebuilder:resource:scope=Cluster
// +kubebuilder:subresource:status
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type Subnet struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SubnetSpec   `json:"spec"`
	Status SubnetStatus `json:"status,omitempty"`
}

// SubnetSpec describes the subnet and how a gateway joins its L2 on a node.
//
// +kubebuilder:validation:XValidation:rule="!isCIDR(self.cidrBlock) || !isIP(self.gateway) || cidr(self.cidrBlock).containsIP(self.gateway)",message="gateway must be inside cidrBlock",messageExpression="'gateway must be inside cidrBlock: gateway \"' + self.gateway + '\" is outside \"' + self.cidrBlock + '\"'"
type SubnetSpec struct {
	// Vpc is the Vpc the subnet belongs to.
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=253
	// +kubebuilder:validation:Pattern=`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`
	Vpc string `json:"vpc"`
	// CIDRBlock is the subnet's IPv4 prefix.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isCIDR(self) && cidr(self).ip().family() == 4 && cidr(self) == cidr(self).masked()",message="must be an IPv4 network prefix without host bits, like 10.0.1.0/24"
	CIDRBlock string `json:"cidrBlock"`
	// Gateway is the subnet's router address; the NAT gateway holds it on its NIC in the subnet.
	// +kubebuilder:validation:MaxLength=64
	// +kubebuilder:validation:XValidation:rule="isIP(self) && ip(self).family() == 4",message="must be an IPv4 address without a prefix length, like 10.0.1.5"
	Gateway string `json:"gateway"`
	// NatGatewayAttachment says how a NAT gateway pod joins this subnet's L2 on its node. Absent:
	// the primary CNI already puts the pod on it (eth0), as with Kube-OVN.
	// +optional
	NatGatewayAttachment *SubnetAttachment `json:"natGatewayAttachment,omitempty"`
}

// SubnetAttachment is one of: a Linux bridge on the node (the gateway gets a veth into it), or
// a parent NIC on the node (the gateway gets a macvlan on it). Exactly one is set.
//
// +kubebuilder:validation:XValidation:rule="has(self.bridge) != has(self.master)",message="exactly one of bridge or master must be set"
type SubnetAttachment struct {
	// Bridge is the name of a Linux bridge on the node.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="is not an interface name"
	Bridge string `json:"bridge,omitempty"`
	// Master is the name of a node NIC to put a macvlan (bridge mode) on.
	// +optional
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=15
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_.-]+$`
	// +kubebuilder:validation:XValidation:rule="self != '.' && self != '..'",message="is not an interface name"
	Master string `json:"master,omitempty"`
	// MTU of the gateway's NIC in the subnet; 0 keeps the kernel's default.
	// +optional
	// +kubebuilder:validation:XValidation:rule="self == 0 || (self >= 68 && self <= 65535)",message="must be 0 (the default) or 68-65535"
	MTU int32 `json:"mtu,omitempty"`
}

// SubnetStatus of a Subnet.
type SubnetStatus struct {
	// Conditions of the Subnet.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// SubnetList is a list of Subnets.
//
// +kubebuilder:object:root=true
// +k8s:deepcopy-gen:interfaces=k8s.io/apimachinery/pkg/runtime.Object
type SubnetList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []Subnet `json:"items"`
}
