package nat

import "testing"

func BenchmarkRender10k(b *testing.B) {
	d := bigDesired()
	for b.Loop() {
		Render(d)
	}
}

// BenchmarkIncrementalPlan10k is one port-forward change among 10 000 rules: the diff and its
// restore input (render excluded, see BenchmarkRender10k).
func BenchmarkIncrementalPlan10k(b *testing.B) {
	last := Render(bigDesired())
	d := bigDesired()
	d.DNATs[4321].InternalPort = 8080
	want := Render(d)
	for b.Loop() {
		p := IncrementalPlan(want, last)
		if len(p.Write) != 1 {
			b.Fatalf("plan %q", p.Summary())
		}
		p.RestoreInput()
	}
}

// BenchmarkFullPlan10k is a restart in sync: parse a 10 000-rule read-back and diff it.
func BenchmarkFullPlan10k(b *testing.B) {
	want := Render(bigDesired())
	save := RulesetTable(want).Save()
	for b.Loop() {
		have, err := ParseSave(save)
		if err != nil {
			b.Fatal(err)
		}
		if p := FullPlan(want, have); !p.Empty() {
			b.Fatalf("plan %q", p.Summary())
		}
	}
}
