package netconf

// Route tables and rule priorities vpcnat owns inside a gateway netns. They are part of the
// on-disk (in-kernel) contract: a daemon upgrade must recognise what an older one installed, so
// never renumber them.
const (
	// MainTable holds the routes of forwarded traffic: the connected networks, the default route
	// via the EIP gateway and the policyDst static routes. 100 is Kube-OVN's ROUTE_TABLE, so an
	// operator reading `ip route show table 100` in a gateway sees what they are used to.
	MainTable = 100

	// SrcTableBase is the first of the per-route tables of policySrc static routes: route i (in
	// sorted order, longest prefix first) uses table SrcTableBase+i. Well above MainTable and
	// below 253 (default), 254 (main) and 255 (local) would be too few, hence 1000+.
	SrcTableBase = 1000
	// MaxSrcRoutes bounds the policySrc routes of one gateway, and with it the owned table and
	// priority ranges below. A Vpc with more is refused rather than spilling into foreign ids.
	MaxSrcRoutes = 1000

	// IifRulePriority is the priority of the "iif <our NIC> lookup MainTable" rules. It must be
	// below 32766 (the kernel's "from all lookup main") so forwarded traffic uses MainTable
	// instead of the gateway's main table, and fixed so a restart recognises its own rules.
	IifRulePriority = 31000
	// SrcRulePriorityBase is the priority of policySrc rule i ("from <cidr> lookup
	// SrcTableBase+i"). It is lower (earlier) than IifRulePriority so a source policy overrides
	// the per-interface table, and one priority per rule makes nested source prefixes resolve
	// longest-first by construction rather than by insertion order.
	SrcRulePriorityBase = 30000

	// SubnetIfPrefix marks the gateway's subnet NICs we create (bridge and macvlan attachments).
	// On hot-unplug, a NIC in the gateway netns with this prefix that is not desired any more is
	// deleted; links without it (eth0 of the primary CNI, lo, anything foreign) are never touched.
	SubnetIfPrefix = "vpc-"

	// maxIfName is IFNAMSIZ-1: the kernel refuses longer interface names.
	maxIfName = 15
)

// ownedTable reports whether a route table id is one of ours.
func ownedTable(t int) bool {
	return t == MainTable || (t >= SrcTableBase && t < SrcTableBase+MaxSrcRoutes)
}

// ownedRule reports whether an ip rule is ours: both its priority and its table must be in our
// ranges, so a foreign rule that happens to use one of our tables (or priorities) is left alone.
func ownedRule(priority, table int) bool {
	ownedPrio := priority == IifRulePriority ||
		(priority >= SrcRulePriorityBase && priority < SrcRulePriorityBase+MaxSrcRoutes)
	return ownedPrio && ownedTable(table)
}
