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

// SeedForTest builds the seed topology under a per-run prefix for tb (skipped unless root) and
// removes it when tb ends, also when it fails.
func SeedForTest(tb testing.TB) *Topology {
	tb.Helper()
	NeedRoot(tb)
	tp, err := NewSeed(NewPrefix())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := tp.Close(); err != nil {
			tb.Error(err)
		}
	})
	return tp
}
