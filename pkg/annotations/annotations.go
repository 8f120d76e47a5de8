// Package annotations is the contract between vpcnat's three programs: the pod annotation keys,
// and the versioned JSON documents the controller writes (NIC plan, desired state) and the daemon
// writes back (applied state). It does no I/O.
package annotations

import (
	"errors"
	"fmt"

	sigsjson "sigs.k8s.io/json"
)

// Seed keys: on the gateway Deployment's pod template, kept for Kube-OVN compatibility and humans.
const (
	// GatewayKey holds the gateway name and marks the pod as a gateway.
	GatewayKey = "ovn.kubernetes.io/vpc_nat_gw"
	// NetworksKey names the external network in Multus text form, kube-system/<name>.
	NetworksKey = "k8s.v1.cni.cncf.io/networks"
	// LogicalSwitchKey is the comma list of the gateway's subnets, spec.subnet first.
	LogicalSwitchKey = "ovn.kubernetes.io/logical_switch"
	// IPAddressKey is the comma list of the gateway's IPs on those subnets, lanIp first.
	IPAddressKey = "ovn.kubernetes.io/ip_address"
	// NetworkStatusKey is Multus's record of the pod's networks (a JSON list of
	// {name, interface, ips, mac, default, dns}); the controller writes it on the running pod.
	NetworkStatusKey = "k8s.v1.cni.cncf.io/network-status"
)

// Project keys.
const (
	// Prefix of every project annotation.
	Prefix = "vpcnat.kubeovn.io/"
	// NICsKey holds the NIC plan (controller -> plugin), on the pod template.
	NICsKey = Prefix + "nics"
	// DesiredKey holds the complete desired gateway state (controller -> daemon), on the pod.
	DesiredKey = Prefix + "desired"
	// AppliedKey holds what the daemon applied (daemon -> controller), on the pod.
	AppliedKey = Prefix + "applied"
)

// Version is the schema version of every JSON document in this package. A reader refuses any
// other version rather than guess: an old daemon must not half-apply a newer controller's state.
const Version = "v1"

// MaxTotalSize is the API server's limit on the total size of a pod's annotations; the controller
// refuses a gateway whose desired state would not fit rather than truncate it.
const MaxTotalSize = 256 * 1024

// ExternalIfName is the gateway's NIC on the external network, as in the seed.
const ExternalIfName = "net1"

// decodeStrict decodes one JSON document as the API server's strict mode does: field names are
// case-sensitive, unknown and duplicate fields are errors (encoding/json would take "eipCidr" for
// eipCIDR and ignore a typo), and so is trailing data.
func decodeStrict(key string, data []byte, into any) error {
	strict, err := sigsjson.UnmarshalStrict(data, into)
	if err != nil {
		return fmt.Errorf("annotation %s: invalid JSON: %w", key, err)
	}
	if len(strict) > 0 {
		return fmt.Errorf("annotation %s: %w", key, errors.Join(strict...))
	}
	return nil
}

func checkVersion(key, v string) error {
	if v != Version {
		return fmt.Errorf("annotation %s: version %q is not supported (want %q)", key, v, Version)
	}
	return nil
}
