// Package ctsync replicates the conntrack table of a replicated gateway's active replica to its
// standbys, so that established connections through the gateway's DNAT, FIP and SNAT keep their
// mappings when a standby takes over (docs/ha.md, "Established flows").
//
// The active replica's agent reads its own netns's conntrack table (a full dump, then the
// ctnetlink NEW/UPDATE/DESTROY events) and streams it to every standby over TCP on the pod
// network (eth0: the replicas share every gateway address, so they cannot talk over those). A
// standby keeps what it receives in a Cache, outside the kernel, keyed by the original tuple;
// entries leave it on DESTROY, when their timeout runs out, or when a full resync does not
// carry them. When the standby becomes active, Commit writes the cache into its kernel before
// its NICs answer ARP: the kernel then knows every mapping the old active replica made, so the
// established flows' packets are translated as before, and their reply tuples are taken, so a
// new SNAT connection gets another external port.
//
// entry.go, wire.go and cache.go are pure and tested without root; kernel.go (ctnetlink in the
// netns of the calling process, never another) and stream.go (the TCP transport) are the edge.
package ctsync
