package nft

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
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
	for range 40 {
		d.SNATs = append(d.SNATs, randomSNAT(r))
	}
	return d
}

// randomSNAT is a prefix of 10.0.0.0/22 (so prefixes nest, touch and repeat), sometimes
// invalid (Build leaves it out).
func randomSNAT(r *rand.Rand) annotations.SNAT {
	bits := 22 + r.IntN(11)
	a := netip.AddrFrom4([4]byte{10, 0, byte(r.IntN(4)), byte(r.IntN(256))})
	x := annotations.SNAT{EIP: fmt.Sprintf("198.51.100.%d", 1+r.IntN(3)), InternalCIDR: netip.PrefixFrom(a, bits).Masked().String()}
	if r.IntN(50) == 0 {
		x.EIP = "not-an-ip"
	}
	return x
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
		edits, snatEdits := 0, 0
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
					!sameChange(gotB, wantB, MapPortMark) ||
					!reflect.DeepEqual(gotB.Stale(prev), wantB.Stale(prev)) {
					t.Fatalf("seed %d step %d: builder's diff %q, want %q", seed, step, gotB.Summary(), wantB.Summary())
				}
				if b.delta != nil && got != prev {
					edits++
				}
				if b.snatDelta != nil {
					snatEdits++
				}
			}
			if step%10 == 0 {
				b.MarkHeld(MarkFlush{}) // count the marks, which the following edits keep
			}
			if b.marks != nil {
				want := map[uint32]int32{}
				for _, e := range got.Map(MapPortDNAT).Elements {
					want[PortMark(e)]++
				}
				if !reflect.DeepEqual(b.marks, want) {
					t.Fatalf("seed %d step %d: the builder counts %d marks, the table holds %d", seed, step, len(b.marks), len(want))
				}
			}
			prev = got
		}
		t.Logf("seed %d: %d of 200 builds were edits of the last table, %d of its SNAT map", seed, edits, snatEdits)
		if edits < 50 || snatEdits < 10 {
			t.Errorf("seed %d: only %d of 200 builds were edits of the last table, %d of its SNAT map: the test does not exercise the builder", seed, edits, snatEdits)
		}
	}
}

// sameChange: the two batches change map name alike.
func sameChange(a, b *Batch, name string) bool {
	change := func(x *Batch) (del, add []Element) {
		for _, m := range x.Maps {
			if m.Name == name {
				return m.Del, m.Add
			}
		}
		return nil, nil
	}
	ad, aa := change(a)
	bd, ba := change(b)
	return slices.Equal(ad, bd) && slices.Equal(aa, ba)
}

// edit changes d in place, as a caller reusing its desired state would.
func edit(r *rand.Rand, d *annotations.Desired) {
	switch k := r.IntN(24); {
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
	case k < 17: // one SNAT's prefix changed
		d.SNATs[r.IntN(len(d.SNATs))].InternalCIDR = randomSNAT(r).InternalCIDR
	case k < 18: // one SNAT inserted
		d.SNATs = slices.Insert(d.SNATs, r.IntN(len(d.SNATs)+1), randomSNAT(r))
	case k < 19 && len(d.SNATs) > 1: // one SNAT removed
		i := r.IntN(len(d.SNATs))
		d.SNATs = slices.Delete(d.SNATs, i, i+1)
	case k < 20: // several SNATs at once, sometimes more than an edit takes
		for range 1 + r.IntN(12) {
			d.SNATs[r.IntN(len(d.SNATs))] = randomSNAT(r)
		}
	case k < 21:
		d.Subnets[0].CIDR = []string{"10.0.1.0/24", "10.0.2.0/24"}[r.IntN(2)]
	case k < 22:
		d.External.IfName = []string{"", "net1", "ext0"}[r.IntN(3)]
	case k < 23 && r.IntN(3) != 0: // several added into one gap between the keys
		x, base := randomDNAT(r), 20001+r.IntN(44000)
		for i := range 1 + r.IntN(4) {
			y := x
			y.ExternalPort = base + 256*i // above every other port, adjacent in listing order (low byte first)
			d.DNATs = slices.Insert(d.DNATs, r.IntN(len(d.DNATs)+1), y)
		}
	case k < 23: // a key shared by two port forwards (the validator refuses that; Build keeps one)
		x := d.DNATs[r.IntN(len(d.DNATs))]
		x.InternalPort++
		d.DNATs = append(d.DNATs, x)
	default: // nothing changed
	}
}

// benchDesired is the bench's gateway (test/bench/dataplane) of n rules: 10 % SNAT /24s, the
// rest port forwards over 200 EIPs.
func benchDesired(n int) *annotations.Desired {
	d := &annotations.Desired{Subnets: []annotations.SubnetNIC{{IfName: "net2", CIDR: "10.0.1.0/24"}}}
	eip := func(i int) string { return fmt.Sprintf("192.168.%d.%d", 1+i/250, 1+i%250) }
	for k := range n - n/10 {
		d.DNATs = append(d.DNATs, annotations.DNAT{EIP: eip(k % 200), Protocol: "tcp", ExternalPort: 10000 + k/200,
			InternalIP: fmt.Sprintf("10.0.1.%d", 2+k%100), InternalPort: 80})
	}
	for i := range n / 10 {
		d.SNATs = append(d.SNATs, annotations.SNAT{EIP: eip(i % 200), InternalCIDR: fmt.Sprintf("10.%d.%d.0/24", 1+i/256, i%256)})
	}
	return d
}

// BenchmarkBuilderChange: the table and batch of a one-rule change at 100 000 rules, as the
// fast converge builds them.
func BenchmarkBuilderChange(b *testing.B) {
	for _, kind := range []string{"dnat", "snat"} {
		b.Run(kind, func(b *testing.B) {
			d := benchDesired(100000)
			var bl Builder
			prev := bl.Build(d)
			m, k := len(d.SNATs)/2, len(d.DNATs)/2
			b.ResetTimer()
			for i := range b.N {
				if kind == "snat" {
					d.SNATs[m].EIP = d.SNATs[m+1+i%2].EIP
				} else {
					d.DNATs[k].InternalPort = 1000 + i%2
				}
				t := bl.Build(d)
				if bt := bl.Diff(t, prev); bt.Empty() {
					b.Fatal("empty batch")
				}
				prev = t
			}
		})
	}
}
