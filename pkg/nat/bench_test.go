package nat_test

import (
	"testing"

	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/nat/nattest"
)

func BenchmarkRender10k(b *testing.B) {
	d := nat.BigDesired()
	for b.Loop() {
		nat.Render(d)
	}
}

// BenchmarkIncrementalPlan10k is one port-forward change among 10 000 rules: the diff and its
// restore input (render excluded, see BenchmarkRender10k).
func BenchmarkIncrementalPlan10k(b *testing.B) {
	last := nat.Render(nat.BigDesired())
	d := nat.BigDesired()
	d.DNATs[4321].InternalPort = 8080
	want := nat.Render(d)
	for b.Loop() {
		p := nat.IncrementalPlan(want, last)
		if len(p.Write) != 1 {
			b.Fatalf("plan %q", p.Summary())
		}
		p.RestoreInput()
	}
}

// BenchmarkFullPlan10k is a restart in sync: parse a 10 000-rule read-back and diff it.
func BenchmarkFullPlan10k(b *testing.B) {
	want := nat.Render(nat.BigDesired())
	save := nattest.Save(nattest.Applied(want))
	for b.Loop() {
		have, err := nat.ParseSave(save)
		if err != nil {
			b.Fatal(err)
		}
		if p := nat.FullPlan(want, have); !p.Empty() {
			b.Fatalf("plan %q", p.Summary())
		}
	}
}
