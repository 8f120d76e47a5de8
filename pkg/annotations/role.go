package annotations

import "fmt"

// MaxReplicas bounds spec.replicas (and Desired.Replicas): every replica sends a heartbeat per
// interval on every NIC, and one standby on another node already survives a node's loss.
const MaxReplicas = 5

// Roles of a replica of a replicated gateway in Applied.Role.
const (
	RoleActive  = "active"
	RoleStandby = "standby"
)

// ReplicaAliasPrefix starts the IFLA_IFALIAS the failover agent (pkg/ha) gives a replicated
// gateway's NICs: "vpcnat-ha active 3", "vpcnat-ha standby 3" (role and term). The daemon reads
// the role from the NIC itself (its IFF_NOARP flag) and the alias only to know that an agent
// manages it: a single gateway's NICs carry no such alias.
const ReplicaAliasPrefix = "vpcnat-ha "

func validateRole(r string) error {
	switch r {
	case "", RoleActive, RoleStandby:
		return nil
	}
	return fmt.Errorf("role: unsupported value %q: must be %q, %q or absent", r, RoleActive, RoleStandby)
}
