// Package ha is the failover agent of a replicated gateway (spec.replicas ≥ 2): it runs inside
// each replica's pod, in the gateway's own network namespace, and decides from data-plane facts
// alone which replica is active (docs/ha.md).
//
// Every replica is fully converged by the daemon: the same addresses, routes, rules and NAT
// chains. What makes one of them the gateway is ARP: the active replica's NICs answer ARP and
// announce its addresses; a standby's NICs carry IFF_NOARP, so the kernel neither answers nor
// sends ARP on them, and no neighbour sends it a frame for a gateway address. Taking over is
// two netlink flag changes and a round of gratuitous ARPs, no address or route is added, so a
// standby is ready the moment it is elected, and the daemon (which may be dead) is not needed.
//
// The pure parts, heartbeat frames (heartbeat.go) and the election (election.go), take time as
// an argument and are tested without root; link.go and agent.go are the kernel edge: packet
// sockets and netlink in the netns of the process (the pod's), never another one.
package ha
