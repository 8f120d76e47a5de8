package annotations

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Attachment types: how a gateway joins a subnet's L2 on its node.
const (
	// AttachBridge: a veth pair, one end in the gateway, the other a port of a node bridge.
	AttachBridge = "bridge"
	// AttachMacvlan: a macvlan (bridge mode) on a node NIC, created inside the gateway.
	AttachMacvlan = "macvlan"
	// AttachPrimary: the primary CNI already put the pod on the subnet (eth0); nothing to create.
	AttachPrimary = "primary"
)

// Route policies, as in Vpc.spec.staticRoutes[].policy.
const (
	PolicyDst = "policyDst"
	PolicySrc = "policySrc"
)

// ExternalNIC is the gateway's macvlan on the external network.
type ExternalNIC struct {
	// IfName inside the gateway; always net1 today.
	IfName string `json:"ifname"`
	// Master is the node NIC the macvlan sits on (the ConfigMap's nic).
	Master string `json:"master"`
	// Mode is the macvlan mode; bridge.
	Mode string `json:"mode"`
	// MTU, 0 for the master's.
	MTU int `json:"mtu,omitempty"`
	// MAC is derived from the gateway's name, so a recreated gateway keeps it and upstream ARP
	// caches stay valid.
	MAC string `json:"mac"`
}

// SubnetNIC is the gateway's NIC in one subnet.
type SubnetNIC struct {
	// Subnet is the Subnet's name.
	Subnet string `json:"subnet"`
	// IfName inside the gateway (eth0 for a primary attachment).
	IfName string `json:"ifname"`
	// CIDR of the subnet, canonical (10.0.1.0/24).
	CIDR string `json:"cidr"`
	// Addresses on the NIC with the subnet's prefix length: the subnet gateway first, then lanIp
	// when it differs. Empty for a primary attachment (the primary CNI owns eth0's addresses).
	Addresses []string `json:"addresses,omitempty"`
	// IP is the gateway's own address in this subnet, the one listed for it (position for
	// position with the subnets) in ovn.kubernetes.io/ip_address: lanIp on spec.subnet, the
	// subnet's gateway elsewhere. Otherwise one of Addresses; for a primary attachment it is the
	// address the primary CNI gives eth0 and the only record of it, which the daemon needs to see
	// that a static route via lanIp means "through this gateway".
	IP string `json:"ip,omitempty"`
	// Attachment says how the NIC joins the subnet's L2.
	Attachment Attachment `json:"attachment"`
	// MAC of the gateway's NIC, derived from the gateway's and the subnet's names, so a recreated
	// gateway answers with the MAC the subnet's hosts already have in their ARP caches (the
	// subnet gateway IP and lanIp move with it). Empty for a primary attachment.
	MAC string `json:"mac,omitempty"`
}

// Attachment is the L2 attachment of a SubnetNIC.
type Attachment struct {
	// Type is bridge, macvlan or primary.
	Type string `json:"type"`
	// Bridge is the node bridge (type bridge).
	Bridge string `json:"bridge,omitempty"`
	// Master is the node NIC (type macvlan).
	Master string `json:"master,omitempty"`
	// HostIfName is the node-side veth name (type bridge), unique per node.
	HostIfName string `json:"hostIfname,omitempty"`
	// MTU, 0 for the kernel's default.
	MTU int `json:"mtu,omitempty"`
}

// NICPlan is what the CNI plugin creates when the gateway's pod sandbox is created.
type NICPlan struct {
	Version  string      `json:"version"`
	Gateway  string      `json:"gateway"`
	External ExternalNIC `json:"external"`
	Subnets  []SubnetNIC `json:"subnets"`
}

// EIP is an external address of the gateway.
type EIP struct {
	// EipCIDR is the address with the external network's prefix length, canonical
	// (192.168.0.111/24).
	EipCIDR string `json:"eipCIDR"`
	// Gateway is the external router.
	Gateway string `json:"gateway"`
}

// FloatingIP is a 1:1 NAT.
type FloatingIP struct {
	EIP        string `json:"eip"`
	InternalIP string `json:"internalIp"`
}

// DNAT is one port forward.
type DNAT struct {
	EIP          string `json:"eip"`
	Protocol     string `json:"protocol"`
	ExternalPort int    `json:"externalPort"`
	InternalIP   string `json:"internalIp"`
	InternalPort int    `json:"internalPort"`
}

// SNAT sends traffic from InternalCIDR out with EIP as source.
type SNAT struct {
	EIP string `json:"eip"`
	// InternalCIDR, canonical; a bare IP is stored as /32.
	InternalCIDR string `json:"internalCIDR"`
}

// Route is one Vpc static route to install inside the gateway.
type Route struct {
	// Policy is policyDst or policySrc.
	Policy string `json:"policy"`
	// CIDR, canonical: the destination (policyDst) or source (policySrc) prefix.
	CIDR      string `json:"cidr"`
	NextHopIP string `json:"nextHopIP"`
}

// Desired is the complete state of one gateway's data plane. The daemon converges the gateway's
// network namespace to exactly this. Its rule lists keep the order and the JSON field names of
// VpcNatGateway.spec, so one validator (ValidateDesired) serves both the CR and the annotation and
// its field paths read the same in either.
type Desired struct {
	Version    string `json:"version"`
	Gateway    string `json:"gateway"`
	Generation int64  `json:"generation"`

	External    ExternalNIC  `json:"external"`
	Subnets     []SubnetNIC  `json:"subnets"`
	EIPs        []EIP        `json:"eips,omitempty"`
	FloatingIPs []FloatingIP `json:"floatingIpRules,omitempty"`
	DNATs       []DNAT       `json:"dnatRules,omitempty"`
	SNATs       []SNAT       `json:"snatRules,omitempty"`
	Routes      []Route      `json:"routes,omitempty"`
	// Replicas is spec.replicas of a replicated gateway (2-5; absent for one replica). Each
	// replica's NICs then get their own MACs, derived from the planned ones and the pod's name
	// (plan.ReplicaMAC), as replicas share the NICs' segments from different nodes (docs/ha.md).
	// Added after v1's first release without a version change, like Dataplane.
	Replicas int `json:"replicas,omitempty"`
	// Dataplane is the backend that programs the NAT: DataplaneIPTables (also when empty) or
	// DataplaneNFTables. Added after v1's first release without a version change: absent for
	// the default, so a document without it reads and hashes as before.
	Dataplane string `json:"dataplane,omitempty"`
}

// Data planes a gateway's NAT can be programmed with (Desired.Dataplane).
const (
	// DataplaneIPTables: the nat table's chains, one iptables-restore transaction per change.
	DataplaneIPTables = "iptables"
	// DataplaneNFTables: one nftables table of maps, one netlink batch per change.
	DataplaneNFTables = "nftables"
)

// Applied is the daemon's report of its last sync of a gateway.
type Applied struct {
	Version    string `json:"version"`
	Generation int64  `json:"generation"`
	// Hash of the desired document applied (hex sha256 of its canonical JSON).
	Hash string `json:"hash"`
	// Time of the sync, RFC 3339.
	Time string `json:"time"`
	// Error of the sync as a whole, if it failed.
	Error string `json:"error,omitempty"`
	// RuleErrors maps a rule key (as in VpcNatGateway.status.rules[].key) to its error.
	RuleErrors map[string]string `json:"ruleErrors,omitempty"`
	// Conflicts are the gateway's addresses another host claims, in the daemon's order
	// (interface, then address). Added after v1's first release without a version change: absent
	// when there is none, so a report without conflicts reads the same to an older controller.
	Conflicts []AddressConflict `json:"conflicts,omitempty"`
	// Role is the replica's role in a replicated gateway (RoleActive or RoleStandby), as the
	// failover agent set it on the NICs (docs/ha.md); absent for a single gateway. Added like
	// Conflicts: absent, a report reads the same to an older controller.
	Role string `json:"role,omitempty"`
	// Term is the election term the failover agent marked with the role (the NIC's alias,
	// "vpcnat-ha active 3"); absent for a single gateway. Of two replicas reported active (the
	// old one's report not yet replaced: its node died with it), the later term is the active
	// one. Added like Role.
	Term uint64 `json:"term,omitempty"`
	// Encodings are the compressed forms of the desired annotation the daemon reads besides
	// gzip (EncodingParts), so the controller writes one only to a pod whose daemon reads it
	// and an upgrade works in either order. Added like Role: absent, the controller writes gzip.
	Encodings []string `json:"encodings,omitempty"`
}

// Marshal encodes a document canonically (Go's encoding/json is deterministic for structs).
func Marshal(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encoding annotation: %w", err)
	}
	return string(b), nil
}

// ParseNICPlan decodes and validates the NICsKey annotation.
func ParseNICPlan(s string) (*NICPlan, error) {
	var p NICPlan
	if err := decodeStrict(NICsKey, []byte(s), &p); err != nil {
		return nil, err
	}
	if err := checkVersion(NICsKey, p.Version); err != nil {
		return nil, err
	}
	if errs := ValidateNICPlan(&p); len(errs) > 0 {
		return nil, fmt.Errorf("annotation %s: %w", NICsKey, errs.ToAggregate())
	}
	return &p, nil
}

// ParseDesired decodes (plain or compressed, see EncodeDesired and EncodeDesiredParts) and
// validates the DesiredKey annotation.
func ParseDesired(s string) (*Desired, error) {
	env, err := readEnvelope(s)
	if err != nil {
		return nil, err
	}
	if env != nil && env.Encoding == encodingParts {
		var dd DesiredDecoder
		d, _, err := dd.Parse(s)
		return d, err
	}
	return parseDesired(s, env)
}

// parseDesired is ParseDesired of a plain document (env nil) or a gzip envelope.
func parseDesired(s string, env *envelope) (*Desired, error) {
	raw, err := inflate(s, env)
	if err != nil {
		return nil, err
	}
	var d Desired
	if err := decodeStrict(DesiredKey, raw, &d); err != nil {
		return nil, err
	}
	if err := checkEnvelopeGeneration(env, d.Generation); err != nil {
		return nil, err
	}
	if err := checkVersion(DesiredKey, d.Version); err != nil {
		return nil, err
	}
	if errs := ValidateDesired(&d); len(errs) > 0 {
		return nil, fmt.Errorf("annotation %s: %w", DesiredKey, errs.ToAggregate())
	}
	return &d, nil
}

// ParseApplied decodes the AppliedKey annotation.
func ParseApplied(s string) (*Applied, error) {
	var a Applied
	if err := decodeStrict(AppliedKey, []byte(s), &a); err != nil {
		return nil, err
	}
	if err := checkVersion(AppliedKey, a.Version); err != nil {
		return nil, err
	}
	if err := validateConflicts(a.Conflicts); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AppliedKey, err)
	}
	if err := validateRole(a.Role); err != nil {
		return nil, fmt.Errorf("annotation %s: %w", AppliedKey, err)
	}
	return &a, nil
}

// DesiredHash is what Applied.Hash carries for d: the hex SHA-256 of its canonical JSON (the same
// bytes whether the annotation was written plain or in the compressed envelope). The controller
// computes it of what it wrote and the daemon of what it applied, so a report is matched to the
// write it is about.
func DesiredHash(d *Desired) (string, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("hashing desired state: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}
