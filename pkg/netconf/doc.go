// Package netconf converges one gateway network namespace to an annotations.Desired: links,
// addresses, sysctls, policy routing, NAT rules (through pkg/nat and iptables-restore, or
// pkg/nft and one nf_tables netlink batch: dataplane.go),
// conntrack clean-up and gratuitous ARP. With the CNI plugin it is the only code that touches the
// kernel; everything that decides *what* should exist is pure and lives in plan*.go / diff.go so
// it is testable without root.
//
// Namespaces and threads. A network namespace belongs to an OS thread, not to a goroutine, so:
//   - the node ("host") side is the netns of the calling OS thread: the caller locks it
//     (runtime.LockOSThread, or ns.Do) before calling in, and links are created on masters and
//     bridges found there;
//   - every netlink operation goes through a netlink.Handle whose sockets were opened in the
//     right netns (a socket stays in the netns it was created in, whatever thread uses it later);
//   - anything that needs "current netns" semantics (/proc/sys/net, exec of iptables, AF_PACKET
//     socket creation) runs inside ns.Do, which locks a fresh OS thread, enters the gateway netns
//     and throws the thread away if it cannot switch back. exec.Command forks from that locked
//     thread, so the child starts in the gateway netns.
//
// Between converges. A Gateway is not idle between converges: each NIC that holds addresses has
// an ARP listener (acd.go, arplink.go) that defends them and reports conflicts through the
// callback set with OnConflictChange; Close stops the listeners.
//
// Ownership. We touch only what is ours by contract: the links named in the desired state plus
// subnet NICs with the "vpc-" prefix, our nat chains (pkg/nat decides) or our nftables table
// "ip vpcnat" (pkg/nft), ip rules whose priority
// AND table are both in our ranges, and routes in our tables (constants in owned.go).
package netconf
