package netconf

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nft"
	"github.com/vpcnat/vpcnat/pkg/nft/nfttest"
)

// randomNAT is a random NAT state over a small space, so that successive states share, change
// and drop mappings: EIPs 198.51.100.1-.20, internal addresses in 10.0.0.0/16, TCP and UDP
// forwards on 8 ports, and SNAT prefixes of every length class nested at random in 10.0.0.0/8.
func randomNAT(rng *rand.Rand) *annotations.Desired {
	d := nfttest.Seed()
	d.FloatingIPs, d.DNATs, d.SNATs = nil, nil, nil
	eip := func() string { return fmt.Sprintf("198.51.100.%d", 1+rng.IntN(20)) }
	internal := func() string { return fmt.Sprintf("10.0.%d.%d", rng.IntN(4), 1+rng.IntN(250)) }
	for range rng.IntN(6) {
		d.FloatingIPs = append(d.FloatingIPs, annotations.FloatingIP{EIP: eip(), InternalIP: internal()})
	}
	for range rng.IntN(40) {
		d.DNATs = append(d.DNATs, annotations.DNAT{EIP: eip(), Protocol: []string{"tcp", "udp"}[rng.IntN(2)],
			ExternalPort: 1 + rng.IntN(8), InternalIP: internal(), InternalPort: 1 + rng.IntN(65535)})
	}
	for range rng.IntN(12) {
		bits := []int{0, 8, 12, 16, 20, 24, 25, 31, 32}[rng.IntN(9)]
		a := netip.AddrFrom4([4]byte{10, byte(rng.IntN(2)), byte(rng.IntN(4)), byte(rng.IntN(256))})
		d.SNATs = append(d.SNATs, annotations.SNAT{EIP: eip(), InternalCIDR: netip.PrefixFrom(a, bits).Masked().String()})
	}
	if rng.IntN(3) == 0 {
		d.Subnets = append(d.Subnets, annotations.SubnetNIC{Subnet: "db", IfName: "eth1", CIDR: "10.0.2.0/24"})
	}
	return d
}

// The backend against the real kernel over random transitions: each step applies only the
// difference from the previous state (elements and chains, never a replace), after which the
// kernel reads back as the model of the new state and `nft list` prints its text exactly.
func TestNFTRandomTransitions(t *testing.T) {
	tp := nsOnly(t)
	k := tp.nftIn(roleGW)
	rng := rand.New(rand.NewPCG(15, 2026))
	var last *nft.Table
	for step := range 40 {
		want := nft.Build(randomNAT(rng))
		b := nft.Diff(want, last)
		if last != nil && b.Replace {
			t.Fatalf("step %d: a change of mappings replaced the table", step)
		}
		if err := k.Apply(b); err != nil {
			t.Fatalf("step %d: %v\nbatch %q", step, err, b.Summary())
		}
		back, err := k.Read()
		if err != nil {
			t.Fatal(err)
		}
		if d := nft.Diff(want, back); !d.Empty() {
			t.Fatalf("step %d: kernel differs from the model after %q:\n%q", step, b.Summary(), d.Summary())
		}
		if step%8 == 7 {
			if got := tp.nftList(roleGW); got != want.Text() {
				t.Fatalf("step %d: nft list differs from the model:\n--- nft\n%s--- model\n%s", step, got, want.Text())
			}
		}
		last = want
	}
}

// A batch the kernel refuses in its last message (deleting an element that is not there)
// applies nothing of its earlier messages: one transaction, never half a change.
func TestNFTBatchAllOrNothing(t *testing.T) {
	tp := nsOnly(t)
	k := tp.nftIn(roleGW)
	seed := nft.Build(nfttest.Seed())
	if err := k.Apply(nft.Diff(seed, nil)); err != nil {
		t.Fatal(err)
	}
	before := tp.nftList(roleGW)

	d := nfttest.Seed()
	d.FloatingIPs = append(d.FloatingIPs, annotations.FloatingIP{EIP: "192.168.0.113", InternalIP: "10.0.1.6"})
	next := nft.Build(d)
	b := nft.Diff(next, seed)
	// The memory of the kernel is wrong: it believes in a port forward the kernel never had.
	b.Maps = append(b.Maps, nft.MapChange{Name: nft.MapPortDNAT, Kind: nft.PortMap, Del: []nft.Element{{
		Addr: netip.MustParseAddr("192.168.0.112"), Proto: 6, Port: 9999, To: netip.MustParseAddr("10.0.1.10"), ToPort: 80}}})
	err := k.Apply(b)
	if err == nil {
		t.Fatal("deleting a missing element was accepted")
	}
	if got := tp.nftList(roleGW); got != before {
		t.Errorf("a refused batch changed the table (%v):\n%s\nwant\n%s", err, got, before)
	}
	if strings.Contains(tp.nftList(roleGW), "192.168.0.113") {
		t.Error("the new FIP of the refused batch is in the table")
	}
	// The socket is usable again: nothing of the refused batch stays queued.
	if err := k.Apply(nft.Diff(next, seed)); err != nil {
		t.Fatal(err)
	}
	if got := tp.nftList(roleGW); got != next.Text() {
		t.Errorf("after the refused batch, the next one:\n%s\nwant\n%s", got, next.Text())
	}
}
