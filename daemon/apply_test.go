package main

import (
	"path/filepath"
	"testing"
)

// TestApplyRefusesUnknownDataplane: a --dataplane that is neither iptables nor nftables is a
// usage error (exit 2) before any namespace is opened (the one named here does not exist).
func TestApplyRefusesUnknownDataplane(t *testing.T) {
	spec := filepath.Join("..", "examples", "seed.yaml")
	for _, v := range []string{"nft", "IPTABLES", "ebpf"} {
		if code := runApply([]string{"--netns", "/run/netns/vpcnat-test-absent", "--spec", spec, "--master", "eth1", "--dataplane", v}); code != 2 {
			t.Errorf("--dataplane %q: exit %d, want 2", v, code)
		}
	}
}
