// Package nat turns a gateway's desired state into the iptables nat-table rules that implement it,
// and diffs them against what the kernel holds (or what was last applied) into one
// `iptables-restore --noflush` transaction. It is pure: no exec, no netlink, no files.
//
// Rules are kept as the exact text iptables-save (1.8.9, nf_tables backend) prints after
// "-A <chain> ", so a kernel read-back compares with string ==, and a restart with nothing to do
// really writes nothing.
package nat

import (
	"net/netip"
	"strconv"
	"strings"
)

// Fixed chains. The names are the seed's (Kube-OVN's nat-gateway.sh), so `iptables -t nat -S`
// inside a gateway reads the same as in Kube-OVN and operators' habits carry over. Never rename
// them: a renamed chain would be foreign to the next daemon version and left behind forever.
const (
	// DNATFilter is hooked from PREROUTING; it fans out to the FIP and port-forward chains.
	DNATFilter = "DNAT_FILTER"
	// SNATFilter is hooked from POSTROUTING; it fans out to hairpin, FIP and SNAT chains.
	SNATFilter = "SNAT_FILTER"
	// ExclusiveDNAT holds one DNAT per floating IP (EIP -> internal IP, all ports).
	ExclusiveDNAT = "EXCLUSIVE_DNAT"
	// ExclusiveSNAT holds one SNAT per floating IP (internal IP -> EIP).
	ExclusiveSNAT = "EXCLUSIVE_SNAT"
	// SharedDNAT dispatches on the destination EIP to one DNAT_EIP_<eip> chain per EIP, so a port
	// forward change rewrites only that EIP's chain.
	SharedDNAT = "SHARED_DNAT"
	// SharedSNAT holds the SNAT rules, longest prefix first, mostly via SNAT_<len>_<a>.<b> groups.
	SharedSNAT = "SHARED_SNAT"
	// HairpinSNAT masquerades DNATed traffic that goes back into the subnet it came from: without
	// it the internal server would answer the client directly, and the client would drop a reply
	// that does not come from the EIP it talked to.
	HairpinSNAT = "HAIRPIN_SNAT"
)

// Prefixes of the per-EIP and per-group chains; the rest of their name is data (see Owned).
const (
	dnatEIPPrefix   = "DNAT_EIP_"
	snatGroupPrefix = "SNAT_"
)

// MaxChainName is the kernel's limit on a chain name (XT_EXTENSION_MAXNAMELEN 29 with the NUL);
// iptables refuses longer names, in the nft backend too. Our longest name is
// "DNAT_EIP_255.255.255.255" (24), so generated names always fit; the fake kernel (nattest.Restore) checks it.
const MaxChainName = 28

// Built-in chains of the nat table, in the order iptables-save prints them.
var builtinChains = []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}

// fixedChains are created on every sync even when empty, so the layout is always complete and a
// jump to one of them never dangles. Order: the order Render emits them in.
var fixedChains = []string{DNATFilter, ExclusiveDNAT, SharedDNAT, SNATFilter, HairpinSNAT, ExclusiveSNAT, SharedSNAT}

// Hook is one rule vpcnat owns inside a kernel (built-in) chain; Rule is the text after "-A Chain ".
type Hook struct {
	Chain string
	Rule  string
}

// Hooks returns the jumps from the kernel chains into ours. They are inserted at position 1 so
// NAT happens before anything a foreign tool appends; they are checked only on full syncs, as
// kube-proxy does, since nothing but a human removes them.
func Hooks() []Hook {
	return []Hook{
		{Chain: "PREROUTING", Rule: "-j " + DNATFilter},
		{Chain: "POSTROUTING", Rule: "-j " + SNATFilter},
	}
}

// IsBuiltin reports whether name is a built-in chain of the nat table.
func IsBuiltin(name string) bool {
	for _, b := range builtinChains {
		if name == b {
			return true
		}
	}
	return false
}

// Owned reports whether vpcnat owns the chain: one of the fixed names, DNAT_EIP_<ipv4> or
// SNAT_<len>_<a>.<b>. Anything else in the table belongs to someone else and is never written or
// deleted. The name patterns are checked strictly (canonical numbers only) so a foreign
// "SNAT_POOL" or "DNAT_EIP_web" is not mistaken for ours.
func Owned(name string) bool {
	for _, f := range fixedChains {
		if name == f {
			return true
		}
	}
	if rest, ok := strings.CutPrefix(name, dnatEIPPrefix); ok {
		a, err := netip.ParseAddr(rest)
		return err == nil && a.Is4() && a.String() == rest
	}
	if rest, ok := strings.CutPrefix(name, snatGroupPrefix); ok {
		bits, net16, ok := strings.Cut(rest, "_")
		if !ok || !canonicalUint(bits, 16, 32) {
			return false
		}
		a, b, ok := strings.Cut(net16, ".")
		return ok && canonicalUint(a, 0, 255) && canonicalUint(b, 0, 255)
	}
	return false
}

// canonicalUint reports whether s is a decimal in [lo, hi] written without leading zeros.
func canonicalUint(s string, lo, hi int) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n >= lo && n <= hi && strconv.Itoa(n) == s
}

// dnatEIPChain names the port-forward chain of one EIP.
func dnatEIPChain(eip netip.Addr) string { return dnatEIPPrefix + eip.String() }

// snatGroupChain names the SNAT group of one prefix length inside one /16.
func snatGroupChain(bits int, a, b byte) string {
	return snatGroupPrefix + strconv.Itoa(bits) + "_" + strconv.Itoa(int(a)) + "." + strconv.Itoa(int(b))
}
