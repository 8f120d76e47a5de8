package nat_test

import (
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"

	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/nat/nattest"
)

// kernelTable applies d to a fresh table through the whole text path the daemon uses (plan,
// restore input, the fake kernel, iptables-save text, nat.ParseSave), so traces run on what the
// kernel would print back, not on nat.Render's structs.
func kernelTable(t testing.TB, d *annotations.Desired) *nat.Table {
	t.Helper()
	k := nat.NewTable()
	if err := nattest.Restore(k, nat.FullPlan(nat.Render(d), k).RestoreInput()); err != nil {
		t.Fatalf("applying %s: %v", d.Gateway, err)
	}
	parsed, err := nat.ParseSave(nattest.Save(k))
	if err != nil {
		t.Fatalf("reading back %s: %v", d.Gateway, err)
	}
	return parsed
}
