package nat

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// TestGolden compares the first restore transaction of a fresh gateway (every chain, the hooks)
// with a reviewed file; run with -update after an intended change and review the diff.
func TestGolden(t *testing.T) {
	for name, d := range map[string]*annotations.Desired{"seed": SeedDesired(), "rich": RichDesired()} {
		t.Run(name, func(t *testing.T) {
			got := FullPlan(Render(d), NewTable()).RestoreInput()
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("restore input differs from %s (go test -update to accept):\n--- got\n%s--- want\n%s", path, got, want)
			}
		})
	}
}

// TestRenderIgnoresInputOrder: the same state in any order renders to identical rules, or an
// unchanged gateway would be rewritten on every sync.
func TestRenderIgnoresInputOrder(t *testing.T) {
	want := Render(RichDesired())
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		d := RichDesired()
		rng.Shuffle(len(d.Subnets), func(i, j int) { d.Subnets[i], d.Subnets[j] = d.Subnets[j], d.Subnets[i] })
		rng.Shuffle(len(d.FloatingIPs), func(i, j int) { d.FloatingIPs[i], d.FloatingIPs[j] = d.FloatingIPs[j], d.FloatingIPs[i] })
		rng.Shuffle(len(d.DNATs), func(i, j int) { d.DNATs[i], d.DNATs[j] = d.DNATs[j], d.DNATs[i] })
		rng.Shuffle(len(d.SNATs), func(i, j int) { d.SNATs[i], d.SNATs[j] = d.SNATs[j], d.SNATs[i] })
		if got := Render(d); !reflect.DeepEqual(got, want) {
			t.Fatalf("shuffled input rendered differently:\n%v\nwant\n%v", got, want)
		}
	}
}

// TestRenderedRulesAreCanonical: every rule is in the form iptables-save prints (the strict
// parser re-prints it identically), so a read-back compares equal and a synced gateway diffs to
// nothing. Every chain name is ours and within the kernel's limit.
func TestRenderedRulesAreCanonical(t *testing.T) {
	for _, d := range []*annotations.Desired{SeedDesired(), RichDesired(), BigDesired()} {
		for _, c := range Render(d).Chains {
			if !Owned(c.Name) || len(c.Name) > MaxChainName {
				t.Errorf("chain %q: owned=%v, length %d (max %d)", c.Name, Owned(c.Name), len(c.Name), MaxChainName)
			}
			for _, text := range c.Rules {
				r, err := ParseRule(text)
				if err != nil {
					t.Fatalf("%s: %q: %v", c.Name, text, err)
				}
				if r.String() != text {
					t.Fatalf("%s: %q is not canonical, iptables-save prints %q", c.Name, text, r.String())
				}
			}
		}
	}
}

func TestRenderEmptyKeepsFixedChains(t *testing.T) {
	d := &annotations.Desired{External: annotations.ExternalNIC{IfName: "net1"}}
	var names []string
	for _, c := range Render(d).Chains {
		names = append(names, c.Name)
	}
	want := "DNAT_FILTER EXCLUSIVE_DNAT SHARED_DNAT SNAT_FILTER HAIRPIN_SNAT EXCLUSIVE_SNAT SHARED_SNAT"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("chains of an empty gateway: %s, want %s", got, want)
	}
}

func TestSNATGroups(t *testing.T) {
	m := Render(RichDesired()).Map()
	wantShared := []string{
		"-s 10.0.0.0/16 -j SNAT_32_10.0",
		"-s 10.0.0.0/16 -j SNAT_25_10.0",
		"-s 10.0.0.0/16 -j SNAT_24_10.0",
		"-s 10.1.0.0/16 -j SNAT_24_10.1",
		"-s 10.0.0.0/16 -j SNAT_16_10.0",
		"-s 10.1.0.0/16 -j SNAT_16_10.1",
		"-s 172.16.0.0/12 -j SNAT --to-source 198.51.100.15",
		"-s 10.0.0.0/8 -j SNAT --to-source 198.51.100.12",
		"-j SNAT --to-source 198.51.100.16",
	}
	if got := m[SharedSNAT]; !reflect.DeepEqual(got, wantShared) {
		t.Errorf("SHARED_SNAT:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantShared, "\n"))
	}
	if got := m["SNAT_24_10.0"]; !reflect.DeepEqual(got, []string{"-s 10.0.1.0/24 -j SNAT --to-source 198.51.100.12"}) {
		t.Errorf("SNAT_24_10.0: %q", got)
	}
}

func TestOwned(t *testing.T) {
	for name, want := range map[string]bool{
		"DNAT_FILTER": true, "SHARED_SNAT": true, "HAIRPIN_SNAT": true,
		"DNAT_EIP_192.168.0.112": true, "SNAT_24_10.0": true, "SNAT_32_255.255": true, "SNAT_16_0.0": true,
		"PREROUTING": false, "KUBE-SERVICES": false, "FOREIGN": false, "SNAT_POOL": false,
		"DNAT_EIP_web": false, "DNAT_EIP_010.0.0.1": false, "DNAT_EIP_2001:db8::1": false,
		"SNAT_8_10.0": false, "SNAT_24_10.00": false, "SNAT_24_10.0.0": false, "SNAT_33_10.0": false, "SNAT_24_256.0": false,
	} {
		if got := Owned(name); got != want {
			t.Errorf("Owned(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestLongestNamesFit: the longest names Render can build stay within the kernel's 28 characters.
func TestLongestNamesFit(t *testing.T) {
	for _, name := range []string{dnatEIPChain(netip.MustParseAddr("255.255.255.255")), snatGroupChain(32, 255, 255)} {
		if len(name) > MaxChainName || !Owned(name) {
			t.Errorf("%q: %d characters (max %d), owned=%v", name, len(name), MaxChainName, Owned(name))
		}
	}
}
