package nft

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// randomDesired is a gateway with n port forwards over a few EIPs, some FIPs and nested SNATs.
func randomDesired(r *rand.Rand, n int) *annotations.Desired {
	d := &annotations.Desired{Subnets: []annotations.SubnetNIC{{IfName: "net2", CIDR: "10.0.1.0/24"}}}
	for range n {
		d.DNATs = append(d.DNATs, randomDNAT(r))
	}
	for i := range 5 {
		d.FloatingIPs = append(d.FloatingIPs, annotations.FloatingIP{EIP: fmt.Sprintf("198.51.100.%d", 200+i), InternalIP: fmt.Sprintf("10.0.1.%d", 100+r.IntN(5))})
	}
	d.SNATs = []annotations.SNAT{{EIP: "198.51.100.1", InternalCIDR: "10.0.0.0/16"}, {EIP: "198.51.100.2", InternalCIDR: "10.0.1.0/24"}}
	return d
}

// randomDNAT is sometimes invalid (Build leaves it out).
func randomDNAT(r *rand.Rand) annotations.DNAT {
	x := annotations.DNAT{EIP: fmt.Sprintf("198.51.100.%d", 1+r.IntN(8)), Protocol: []string{"tcp", "udp"}[r.IntN(2)],
		ExternalPort: 1 + r.IntN(20000), InternalIP: fmt.Sprintf("10.0.1.%d", 2+r.IntN(50)), InternalPort: 1 + r.IntN(3)}
	if r.IntN(50) == 0 {
		x.InternalIP = "not-an-ip"
	}
	return x
}

// The builder's table is Build's, and its Diff is Diff's, through random edits of every kind:
// port forwards changed, inserted, removed, moved, many at once, FIPs, SNATs, subnets and the
// external NIC changed, keys shared by two port forwards and entries that render nothing.
func TestBuilderMatchesBuild(t *testing.T) {
	for seed := range uint64(20) {
		r := rand.New(rand.NewPCG(seed, 7))
		d := randomDesired(r, 300)
		var b Builder
		var prev *Table
		edits := 0
		for step := range 200 {
			edit(r, d)
			got := b.Build(d)
			want := Build(d)
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d step %d: builder's table differs from Build's:\n%s\nwant\n%s", seed, step, got.Text(), want.Text())
			}
			if prev != nil {
				gotB, wantB := b.Diff(got, prev), Diff(want, prev)
				if !slices.Equal(gotB.Summary(), wantB.Summary()) || gotB.Replace != wantB.Replace ||
					!reflect.DeepEqual(gotB.Stale(prev), wantB.Stale(prev)) {
					t.Fatalf("seed %d step %d: builder's diff %q, want %q", seed, step, gotB.Summary(), wantB.Summary())
				}
				if b.delta != nil && got != prev {
					edits++
				}
			}
			prev = got
		}
		t.Logf("seed %d: %d of 200 builds were edits of the last table", seed, edits)
		if edits < 50 {
			t.Errorf("seed %d: only %d of 200 builds were edits of the last table: the test does not exercise the builder", seed, edits)
		}
	}
}

// edit changes d in place, as a caller reusing its desired state would.
func edit(r *rand.Rand, d *annotations.Desired) {
	switch k := r.IntN(20); {
	case k < 6: // one port forward changed
		i := r.IntN(len(d.DNATs))
		d.DNATs[i].InternalPort = 1 + r.IntN(3)
		d.DNATs[i].InternalIP = fmt.Sprintf("10.0.1.%d", 2+r.IntN(50))
	case k < 9: // one inserted
		i := r.IntN(len(d.DNATs) + 1)
		d.DNATs = slices.Insert(d.DNATs, i, randomDNAT(r))
	case k < 12: // one removed, often the last (where a shared key is added)
		i := r.IntN(len(d.DNATs))
		if r.IntN(2) == 0 {
			i = len(d.DNATs) - 1
		}
		d.DNATs = slices.Delete(d.DNATs, i, i+1)
	case k < 13: // one moved
		i, j := r.IntN(len(d.DNATs)), r.IntN(len(d.DNATs))
		d.DNATs[i], d.DNATs[j] = d.DNATs[j], d.DNATs[i]
	case k < 14: // many at once
		for range 300 {
			d.DNATs[r.IntN(len(d.DNATs))] = randomDNAT(r)
		}
	case k < 15:
		d.FloatingIPs[r.IntN(len(d.FloatingIPs))].InternalIP = fmt.Sprintf("10.0.1.%d", 100+r.IntN(5))
	case k < 16:
		d.SNATs[r.IntN(len(d.SNATs))].EIP = fmt.Sprintf("198.51.100.%d", 1+r.IntN(3))
	case k < 17:
		d.Subnets[0].CIDR = []string{"10.0.1.0/24", "10.0.2.0/24"}[r.IntN(2)]
	case k < 18:
		d.External.IfName = []string{"", "net1", "ext0"}[r.IntN(3)]
	case k < 19 && r.IntN(2) == 0: // several added into one gap between the keys
		x, base := randomDNAT(r), 20001+r.IntN(44000)
		for i := range 1 + r.IntN(4) {
			y := x
			y.ExternalPort = base + 256*i // above every other port, adjacent in listing order (low byte first)
			d.DNATs = slices.Insert(d.DNATs, r.IntN(len(d.DNATs)+1), y)
		}
	case k < 19: // a key shared by two port forwards (the validator refuses that; Build keeps one)
		x := d.DNATs[r.IntN(len(d.DNATs))]
		x.InternalPort++
		d.DNATs = append(d.DNATs, x)
	default: // nothing changed
	}
}
