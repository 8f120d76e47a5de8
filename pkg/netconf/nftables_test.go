package netconf

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nft"
	"github.com/vpcnat/vpcnat/pkg/nft/nfttest"
)

// nftIn returns the nftables backend of a role's netns.
func (tp *topo) nftIn(role string) *netlinkNFT {
	k := newNetlinkNFT(tp.path(role))
	tp.t.Cleanup(k.Close)
	return k
}

// nftList is `nft list table ip vpcnat` in a role's netns, as an operator would read it.
func (tp *topo) nftList(role string) string {
	tp.t.Helper()
	return tp.exec(role, "nft", "list", "table", "ip", nft.TableName)
}

// nsOnly is a topology of one empty netns (the gateway's), removed when the test ends.
func nsOnly(t testing.TB) *topo {
	t.Helper()
	needNFT(t)
	tp := &topo{t: t, prefix: fmt.Sprintf("vnc%d-%d", os.Getpid(), topoSeq.Add(1))}
	t.Cleanup(tp.close)
	tp.addNS(roleGW)
	return tp
}

// execInput runs argv inside a role's netns with input on stdin.
func (tp *topo) execInput(role, input string, argv ...string) {
	tp.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", tp.name(role)}, argv...)...)
	cmd.Stdin = strings.NewReader(input)
	if out, err := cmd.CombinedOutput(); err != nil {
		tp.t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
}

func needNFT(t testing.TB) {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("skipped: nft is not installed (hack/install-deps.sh installs it)")
	}
}

// The table applied through netlink in one batch lists in nft exactly as the model renders it
// (golden files in pkg/nft), reads back into the same model, and a second converge is empty.
func TestNFTApplyListsAsRendered(t *testing.T) {
	tp := nsOnly(t)
	k := tp.nftIn(roleGW)
	for name, want := range map[string]*nft.Table{"seed": nft.Build(nfttest.Seed()), "rich": nft.Build(nfttest.Rich())} {
		have, err := k.Read()
		if err != nil {
			t.Fatal(err)
		}
		b := nft.Diff(want, have)
		if err := k.Apply(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := tp.nftList(roleGW); got != want.Text() {
			t.Errorf("%s: nft list table differs from the model:\n--- nft\n%s--- model\n%s", name, got, want.Text())
		}
		back, err := k.Read()
		if err != nil {
			t.Fatal(err)
		}
		if b := nft.Diff(want, back); !b.Empty() {
			t.Errorf("%s: read-back differs from what was applied: %q", name, b.Summary())
		}
	}
}

// A one-element change is one element out and one in, and leaves the table exactly as a fresh
// apply of the new state would; drift inside our table (an element deleted, a rule added by
// hand) is repaired from a read-back, and a foreign table is never touched.
func TestNFTIncrementalAndDrift(t *testing.T) {
	tp := nsOnly(t)
	k := tp.nftIn(roleGW)
	foreign := "table ip other {\n\tchain c {\n\t\ttype nat hook prerouting priority dstnat; policy accept;\n\t\tip daddr 198.51.100.99 counter packets 0 bytes 0\n\t}\n}\n"
	tp.execInput(roleGW, foreign, "nft", "-f", "-")

	d := nfttest.Rich()
	first := nft.Build(d)
	if err := k.Apply(nft.Diff(first, nil)); err != nil {
		t.Fatal(err)
	}
	d.DNATs[1].InternalPort = 9443
	d.SNATs[1].EIP = "198.51.100.15"
	next := nft.Build(d)
	b := nft.Diff(next, first)
	if b.Replace || len(b.Chains) != 0 || len(b.Summary()) != 4 {
		t.Fatalf("one forward and one SNAT changed: %q", b.Summary())
	}
	if err := k.Apply(b); err != nil {
		t.Fatal(err)
	}
	if got := tp.nftList(roleGW); got != next.Text() {
		t.Errorf("after the element change:\n--- nft\n%s--- model\n%s", got, next.Text())
	}

	tp.exec(roleGW, "nft", "delete", "element", "ip", nft.TableName, nft.MapFIPDNAT, "{ 198.51.100.10 }")
	tp.exec(roleGW, "nft", "insert", "rule", "ip", nft.TableName, "EXCLUSIVE_DNAT", "ip", "daddr", "198.51.100.77", "dnat", "to", "10.0.1.77")
	have, err := k.Read()
	if err != nil {
		t.Fatal(err)
	}
	repair := nft.Diff(next, have)
	got := strings.Join(repair.Summary(), "\n")
	for _, want := range []string{"add element fip_dnat 198.51.100.10 : 10.0.1.5", "write chain EXCLUSIVE_DNAT (2 rules)"} {
		if !strings.Contains(got, want) {
			t.Errorf("repair of drift lacks %q:\n%s", want, got)
		}
	}
	if err := k.Apply(repair); err != nil {
		t.Fatal(err)
	}
	if got := tp.nftList(roleGW); got != next.Text() {
		t.Errorf("after the repair:\n--- nft\n%s--- model\n%s", got, next.Text())
	}
	if got := tp.exec(roleGW, "nft", "list", "table", "ip", "other"); got != foreign {
		t.Errorf("foreign table changed:\n%s\nwant\n%s", got, foreign)
	}
	if deleted, err := k.Delete(); err != nil || !deleted {
		t.Fatalf("Delete: %v, deleted %v", err, deleted)
	}
	if got := tp.exec(roleGW, "nft", "list", "tables"); got != "table ip other\n" {
		t.Errorf("tables after Delete: %q, want only the foreign one", got)
	}
}

// A first batch of 240 000 elements (120 000 port forwards and their marks) is ~250 netlink
// messages, each acknowledged, and the kernel queues every acknowledgement before the first is
// read: the socket's receive buffer must hold them all, or the commit's outcome is lost (ENOBUFS).
func TestNFTBatchAcknowledgementsFit(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: commits 240 000 elements")
	}
	tp := nsOnly(t)
	k := tp.nftIn(roleGW)
	want := nft.Build(scaleDesired(250, 480))
	if err := k.Apply(nft.Diff(want, nil)); err != nil {
		t.Fatalf("committing %d port forwards: %v", len(want.Map(nft.MapPortDNAT).Elements), err)
	}
	if _, err := k.Delete(); err != nil {
		t.Fatal(err)
	}
}

// A table larger than one netlink message holds (5 000 port forwards, 1 000 SNAT prefixes: the
// elements of one message are a nested attribute whose length is 16 bits) goes in as one batch
// and reads back identically; replacing it whole is one batch too.
func TestNFTLargeBatch(t *testing.T) {
	tp := nsOnly(t)
	k := tp.nftIn(roleGW)
	d := scaleDesired(200, 25)
	for i := range 1000 {
		d.SNATs = append(d.SNATs, annotations.SNAT{EIP: "192.168.0.2", InternalCIDR: fmt.Sprintf("10.%d.%d.0/24", 1+i/256, i%256)})
	}
	want := nft.Build(d)
	for _, have := range []*nft.Table{nil, nft.Build(nfttest.Seed())} { // create, then replace
		if have != nil {
			if err := k.Apply(nft.Diff(have, nil)); err != nil {
				t.Fatal(err)
			}
			have.Chains = append(have.Chains, nft.Chain{Name: "FOREIGN"}) // forces a replace
		}
		if err := k.Apply(nft.Diff(want, have)); err != nil {
			t.Fatalf("applying %d port forwards: %v", len(d.DNATs), err)
		}
		back, err := k.Read()
		if err != nil {
			t.Fatal(err)
		}
		if b := nft.Diff(want, back); !b.Empty() {
			t.Fatalf("read-back differs: %d changes, first %q", len(b.Summary()), b.Summary()[0])
		}
		if _, err := k.Delete(); err != nil {
			t.Fatal(err)
		}
	}
}

// A range added by hand to the SNAT interval map is removed by the next repair; an element that
// is not of vpcnat's encoding (here a lone end element at 0.0.0.0, which nft itself writes before
// a first range that does not start there) makes the read-back call the map foreign, and the
// repair replaces the table, so no stray element stays behind.
func TestNFTForeignIntervalElement(t *testing.T) {
	tp := nsOnly(t)
	k := tp.nftIn(roleGW)
	want := nft.Build(nfttest.Seed())
	if err := k.Apply(nft.Diff(want, nil)); err != nil {
		t.Fatal(err)
	}
	repair := func(wantReplace bool) {
		t.Helper()
		have, err := k.Read()
		if err != nil {
			t.Fatal(err)
		}
		b := nft.Diff(want, have)
		if b.Empty() || b.Replace != wantReplace {
			t.Fatalf("repair %q, want replace=%v", b.Summary(), wantReplace)
		}
		if err := k.Apply(b); err != nil {
			t.Fatal(err)
		}
		if got := tp.nftList(roleGW); got != want.Text() {
			t.Errorf("after the repair:\n%s\nwant\n%s", got, want.Text())
		}
		if out := tp.exec(roleGW, "nft", "--debug=netlink", "list", "map", "ip", nft.TableName, nft.MapSNAT); strings.Count(out, "element ") != 2 {
			t.Errorf("the SNAT map holds other elements than the range's start and end:\n%s", out)
		}
	}
	tp.exec(roleGW, "nft", "add", "element", "ip", nft.TableName, nft.MapSNAT, "{ 192.168.50.0/24 : 198.51.100.99 }")
	repair(false)

	if err := k.use(func(c *nftables.Conn) error {
		if err := c.SetAddElements(setOf(nft.MapSNAT, nft.IntervalMap), []nftables.SetElement{{Key: []byte{0, 0, 0, 0}, IntervalEnd: true}}); err != nil {
			return err
		}
		return c.Flush()
	}); err != nil {
		t.Fatal(err)
	}
	repair(true)
}

// missingIptables is a node without the iptables binaries.
type missingIptables struct{}

func (missingIptables) SaveNAT(context.Context) ([]byte, error) {
	return nil, fmt.Errorf("iptables-save: %w", exec.ErrNotFound)
}
func (missingIptables) Restore(context.Context, []byte) error {
	return fmt.Errorf("iptables-restore: %w", exec.ErrNotFound)
}

// With the nftables backend a node needs no iptables binaries: the look for the other
// backend's rules finds none to remove.
func TestRemoveIptablesNATWithoutIptables(t *testing.T) {
	lines, err := removeIptablesNAT(context.Background(), missingIptables{})
	if err != nil || lines != nil {
		t.Fatalf("without iptables: %q, %v", lines, err)
	}
}

// BenchmarkNFTIntervalMapChange is the kernel's cost of one SNAT rule's EIP change in a table of
// 10 000 SNAT rules (each interval map 10 000 ranges) and 90 000 port forwards: the batch as
// committed ("snat_prefixes": the rule's mark, its prefix's, leaves snat_mark as it is), and the
// same change with snat_mark rewritten too ("both maps": what a mark that held the EIP cost).
// The kernel re-indexes an interval map whole at each commit that changes it. The median of the
// commits is reported too (median-ms). Reproduce with
//
//	go test -run '^$' -bench NFTIntervalMapChange -benchtime 200x ./pkg/netconf/
func BenchmarkNFTIntervalMapChange(b *testing.B) {
	needNFT(b)
	d := scaleDesired(200, 450)
	for i := range 10000 {
		d.SNATs = append(d.SNATs, annotations.SNAT{EIP: fmt.Sprintf("192.168.0.%d", 1+i%150), InternalCIDR: fmt.Sprintf("10.%d.%d.0/24", 1+i/256, i%256)})
	}
	for _, both := range []bool{false, true} {
		name := "snat_prefixes"
		if both {
			name = "both maps"
		}
		b.Run(name, func(b *testing.B) {
			k := nsOnly(b).nftIn(roleGW)
			var build nft.Builder
			cur := build.Build(d)
			if err := k.Apply(build.Diff(cur, nil)); err != nil {
				b.Fatal(err)
			}
			time.Sleep(2 * time.Second) // the first batch's clean-up in the kernel (RCU) runs first
			marks := cur.Map(nft.MapSNATMark).Elements
			r, _ := slices.BinarySearchFunc(marks, netip.MustParseAddr("10.20.136.0"), func(e nft.Element, a netip.Addr) int { return e.Addr.Compare(a) })
			inKernel := marks[r] // the changed rule's range (SNATs[5000]) as the kernel holds it
			var took []time.Duration
			for i := range b.N {
				b.StopTimer()
				d.SNATs[5000].EIP = fmt.Sprintf("192.168.0.%d", 1+(i%2)*7)
				next := build.Build(d)
				batch := build.Diff(next, cur)
				if both { // the rule's range of snat_mark given another mark, as an EIP in the mark would
					next := inKernel
					next.Mark ^= 1
					batch.Maps = append(batch.Maps, nft.MapChange{Name: nft.MapSNATMark, Kind: nft.IntervalMarkMap, Del: []nft.Element{inKernel}, Add: []nft.Element{next}})
					inKernel = next
				}
				b.StartTimer()
				start := time.Now()
				if err := k.Apply(batch); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
				cur = next
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "median-ms")
		})
	}
}
