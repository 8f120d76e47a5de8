package nodeagent

import "github.com/vpcnat/vpcnat/pkg/annotations"

// replicaRoler is what a Converger offers when it can read a replicated gateway's role from the
// netns (*netconf.Gateway does; docs/ha.md): the failover agent in the pod decides the role, the
// daemon only reports it, so the controller can show the active replica's node.
type replicaRoler interface {
	ReplicaRole() string
}

// addRole puts the replica's role into the report want ("" for a single gateway, or while the
// gateway has no converger).
func addRole(g *gateway, want *annotations.Applied) {
	want.Role = ""
	if r, ok := g.conv.(replicaRoler); ok {
		want.Role = r.ReplicaRole()
	}
}
