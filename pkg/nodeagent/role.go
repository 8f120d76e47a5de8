package nodeagent

import (
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// replicaRoler is what a Converger offers when it can read a replicated gateway's role from the
// netns (*netconf.Gateway does; docs/ha.md): the failover agent in the pod decides the role, the
// daemon only reports it, so the controller can show the active replica's node.
type replicaRoler interface {
	ReplicaRole() (role string, term uint64)
}

// roleRecheck is how often the daemon reads a replicated gateway's role again between other
// events. The agent changes the role in the netns without telling the daemon; the NIC's ARP
// listener notices a change only when a frame arrives on that NIC after it, and a replica whose
// external NIC was cut receives none there (nor, on a quiet subnet, on its subnet NICs), so
// without this look it would go on reporting itself active until the next resync. A look that
// finds the role unchanged costs a netlink read in the netns and no API call.
const roleRecheck = time.Second

// roleRecheckOf is when to look at a gateway pod again after a successful sync of desired state
// d: roleRecheck for a replicated gateway, never (0: on the next event) for a single one.
func roleRecheckOf(d *annotations.Desired) time.Duration {
	if d != nil && d.Replicas >= 2 {
		return roleRecheck
	}
	return 0
}

// addRole puts the replica's role and its term into the report want ("" and 0 for a single
// gateway, or while the gateway has no converger).
func addRole(g *gateway, want *annotations.Applied) {
	want.Role, want.Term = "", 0
	if r, ok := g.conv.(replicaRoler); ok {
		want.Role, want.Term = r.ReplicaRole()
	}
}
