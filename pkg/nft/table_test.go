// Test address plan: see pkg/nft/nfttest (this package touches no kernel).
package nft

import (
	"flag"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nft/nfttest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

// TestGolden compares the listing of a fresh gateway's table with a reviewed file; the kernel
// test in pkg/netconf compares the same text with the real `nft list table`. Run with -update
// after an intended change and review the diff.
func TestGolden(t *testing.T) {
	for name, d := range map[string]*annotations.Desired{"seed": nfttest.Seed(), "rich": nfttest.Rich()} {
		t.Run(name, func(t *testing.T) {
			got := Build(d).Text()
			path := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("table differs from %s (go test -update to accept):\n--- got\n%s--- want\n%s", path, got, want)
			}
		})
	}
}

// TestBuildIgnoresInputOrder: the same state in any order builds the same table, or an
// unchanged gateway would be rewritten on every converge.
func TestBuildIgnoresInputOrder(t *testing.T) {
	want := Build(nfttest.Rich())
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		d := nfttest.Rich()
		rng.Shuffle(len(d.Subnets), func(i, j int) { d.Subnets[i], d.Subnets[j] = d.Subnets[j], d.Subnets[i] })
		rng.Shuffle(len(d.FloatingIPs), func(i, j int) { d.FloatingIPs[i], d.FloatingIPs[j] = d.FloatingIPs[j], d.FloatingIPs[i] })
		rng.Shuffle(len(d.DNATs), func(i, j int) { d.DNATs[i], d.DNATs[j] = d.DNATs[j], d.DNATs[i] })
		rng.Shuffle(len(d.SNATs), func(i, j int) { d.SNATs[i], d.SNATs[j] = d.SNATs[j], d.SNATs[i] })
		if got := Build(d); !reflect.DeepEqual(got, want) {
			t.Fatalf("shuffled input built a different table:\n%s\nwant\n%s", got.Text(), want.Text())
		}
	}
}

// TestSNATLongestPrefix: every address maps to the EIP of the longest prefix holding it, as the
// iptables backend's rule order decides, checked against a brute-force longest-prefix match on
// addresses at and around every prefix boundary.
func TestSNATLongestPrefix(t *testing.T) {
	d := nfttest.Rich()
	els := snatElements(d.SNATs)
	for i := 1; i < len(els); i++ {
		if u32(els[i].Addr) <= u32(els[i-1].End) {
			t.Fatalf("ranges overlap or are unsorted: %v then %v", els[i-1], els[i])
		}
		if u32(els[i].Addr) == u32(els[i-1].End)+1 && els[i].To == els[i-1].To {
			t.Fatalf("adjacent ranges with one EIP not merged: %v then %v", els[i-1], els[i])
		}
	}
	var probes []netip.Addr
	for _, s := range d.SNATs {
		p := netip.MustParsePrefix(s.InternalCIDR)
		first := u32(p.Addr())
		last := first + uint32(uint64(1)<<(32-p.Bits())-1)
		for _, v := range []uint32{first - 1, first, first + 1, last - 1, last, last + 1} {
			probes = append(probes, addr(v))
		}
	}
	for _, a := range probes {
		want, bits := netip.Addr{}, -1
		for _, s := range d.SNATs {
			p := netip.MustParsePrefix(s.InternalCIDR)
			if p.Contains(a) && p.Bits() > bits {
				want, bits = netip.MustParseAddr(s.EIP), p.Bits()
			}
		}
		i := slices.IndexFunc(els, func(e Element) bool { return u32(e.Addr) <= u32(a) && u32(a) <= u32(e.End) })
		if i < 0 {
			t.Errorf("%s: in no range, want %s", a, want)
			continue
		}
		if els[i].To != want {
			t.Errorf("%s: maps to %s, longest prefix says %s", a, els[i].To, want)
		}
	}
}

// TestSNATNestedWithoutCover: addresses outside every prefix stay out of the map.
func TestSNATNestedWithoutCover(t *testing.T) {
	els := snatElements([]annotations.SNAT{
		{EIP: "198.51.100.1", InternalCIDR: "10.0.1.0/24"},
		{EIP: "198.51.100.2", InternalCIDR: "10.0.1.5"},
		{EIP: "198.51.100.3", InternalCIDR: "10.0.3.0/24"},
	})
	var got []string
	for _, e := range els {
		got = append(got, e.Text(IntervalMap))
	}
	want := []string{"10.0.1.0-10.0.1.4 : 198.51.100.1", "10.0.1.5 : 198.51.100.2", "10.0.1.6-10.0.1.255 : 198.51.100.1", "10.0.3.0/24 : 198.51.100.3"}
	if !slices.Equal(got, want) {
		t.Fatalf("elements\n%q\nwant\n%q", got, want)
	}
}

// TestDiff: an unchanged table is an empty batch; one changed port forward is one element out
// and one in, and its old side is stale; a foreign chain in our table replaces the table.
func TestDiff(t *testing.T) {
	have := Build(nfttest.Rich())
	if b := Diff(Build(nfttest.Rich()), have); !b.Empty() {
		t.Fatalf("unchanged table: %v", b.Summary())
	}
	d := nfttest.Rich()
	d.DNATs[0].InternalPort = 81
	b := Diff(Build(d), have)
	want := []string{
		"delete element port_dnat 198.51.100.12 . tcp . 8888 : 10.0.1.10 . 80",
		"add element port_dnat 198.51.100.12 . tcp . 8888 : 10.0.1.10 . 81",
	}
	if got := b.Summary(); !slices.Equal(got, want) {
		t.Fatalf("summary %q, want %q", got, want)
	}
	stale := b.Stale(have)
	if len(stale) != 1 || stale[0].Port != 8888 || stale[0].InternalPort != 80 {
		t.Fatalf("stale %+v, want the old 8888 -> 80 forward", stale)
	}
	d = nfttest.Rich()
	d.Subnets = d.Subnets[1:]
	if b := Diff(Build(d), have); b.Replace || len(b.Chains) != 1 || b.Chains[0].Name != "HAIRPIN_SNAT" {
		t.Fatalf("a removed subnet: want HAIRPIN_SNAT rewritten, got %v", b.Summary())
	}
	foreign := Build(nfttest.Rich())
	foreign.Chains = append(foreign.Chains, Chain{Name: "MINE"})
	if b := Diff(Build(nfttest.Rich()), foreign); !b.Replace || !b.Existed {
		t.Fatalf("a foreign chain in our table: want a replace, got %v", b.Summary())
	}
}
