package netconf

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/nat/nattest"
)

// fakeIptables keeps a nat table in memory; nattest.Restore checks input like the kernel
// (a jump to a missing chain, a chain deleted while referenced are errors) and applies it
// all-or-nothing.
type fakeIptables struct {
	table    *nat.Table
	restores int
	fail     error
}

func (f *fakeIptables) SaveNAT(context.Context) ([]byte, error) { return nattest.Save(f.table), nil }

func (f *fakeIptables) Restore(_ context.Context, input []byte) error {
	if f.fail != nil {
		return f.fail
	}
	f.restores++
	return nattest.Restore(f.table, input)
}

func TestSyncNAT(t *testing.T) {
	ctx := context.Background()
	ipt := &fakeIptables{table: nat.NewTable()}
	want := nat.Render(seedDesired())

	stale, changes, err := syncNAT(ctx, ipt, want, nil)
	if err != nil || ipt.restores != 1 || len(changes) == 0 || stale != nil {
		t.Fatalf("first sync: err %v, %d restores, changes %q, stale %v", err, ipt.restores, changes, stale)
	}
	for _, last := range []*nat.Ruleset{nil, want} { // full, then fast
		if stale, changes, err := syncNAT(ctx, ipt, want, last); err != nil || ipt.restores != 1 || changes != nil || stale != nil {
			t.Errorf("in-sync sync (fast=%v): err %v, %d restores, changes %q, stale %v", last != nil, err, ipt.restores, changes, stale)
		}
	}

	d := seedDesired()
	d.DNATs = nil
	next := nat.Render(d)
	stale, changes, err = syncNAT(ctx, ipt, next, want)
	wantStale := []nat.Mapping{{Protocol: "tcp", EIP: "192.168.0.112", Port: 8888, InternalIP: "10.0.1.10", InternalPort: 80}}
	if err != nil || ipt.restores != 2 || !slices.Equal(stale, wantStale) {
		t.Errorf("removing the DNAT: err %v, %d restores, changes %q, stale %v", err, ipt.restores, changes, stale)
	}
	// The fast path left the table exactly as a full sync would.
	if _, changes, _ := syncNAT(ctx, ipt, next, nil); changes != nil {
		t.Errorf("full sync after the fast one: %q", changes)
	}

	ipt.fail = errors.New("boom")
	if _, _, err := syncNAT(ctx, ipt, want, next); err == nil {
		t.Error("a failed restore was not reported")
	}
}

// changedChains gives StaleMappings the same answer as all chains, for removals, changes and
// additions across many per-EIP chains.
func TestChangedChainsKeepsStaleMappings(t *testing.T) {
	before := scaleDesired(20, 10)
	before.FloatingIPs = seedDesired().FloatingIPs // removed in after (scaleDesired has none)
	after := scaleDesired(20, 10)
	after.DNATs = slices.Delete(after.DNATs, 40, 55)  // removed, across two EIPs
	after.DNATs[3].InternalPort = 8080                // changed
	after.DNATs[100].InternalIP = "10.0.1.99"         // changed target
	after.DNATs = append(after.DNATs, after.DNATs[0]) // duplicate: no change
	after.EIPs = after.EIPs[:19]                      // EIP gone with its rules
	after.DNATs = slices.DeleteFunc(after.DNATs, func(r annotations.DNAT) bool { return r.EIP == "192.168.0.20" })
	b, a := nat.Render(before).Map(), nat.Render(after).Map()
	all := nat.StaleMappings(b, a)
	if len(all) != 15+2+10+1 {
		t.Fatalf("%d stale mappings, want 28: the test lost its teeth", len(all))
	}
	if got := nat.StaleMappings(changedChains(b, a)); !slices.Equal(got, all) {
		t.Errorf("changed chains only: %v\nall chains: %v", got, all)
	}
}
