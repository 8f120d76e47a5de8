// Package claims holds the cluster-wide conflict rules: what no single object can tell about
// itself. A VpcNatGateway claims its EIPs, its Vpc (a Vpc has one gateway) and its lanIp in its
// subnet; a Subnet with a natGatewayAttachment claims its segment (the node bridge or parent
// NIC it names) for its Vpc.
//
// The rules are pure: they read objects through a Lookup and never change them. The controller
// (the level-based guard, which writes the verdict into status) and the admission webhook (which
// refuses a conflicting create or update at once) both call them with a Lookup over their
// informer caches, so that the two can never disagree about what conflicts.
//
// Who wins a claim: one in force beats a new one, so that a newcomer never takes anything from
// an object that already serves it; between two claims both in force or both new, the older
// object wins (creation time, then name), as with Gateway API's route conflicts.
package claims
