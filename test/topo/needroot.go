package topo

import (
	"os"
	"testing"
)

// NeedRoot skips tb unless it runs as root: the topologies create network namespaces, links and
// iptables rules.
func NeedRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: creates network namespaces, links and iptables rules")
	}
}
