package nat

import (
	"strings"
	"testing"
)

func TestParseSave(t *testing.T) {
	tb, err := ParseSave([]byte(seedSave))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := tb.Chains["PREROUTING"]; !ok || tb.Policies["POSTROUTING"] != "ACCEPT" {
		t.Errorf("built-in chains missing: %v", tb.Policies)
	}
	if got := tb.Chains["KUBE-POSTROUTING"]; len(got) != 1 || got[0] != "-m mark ! --mark 0x4000/0x4000 -j RETURN" {
		t.Errorf("foreign rule read as %q", got)
	}
	if got := tb.Chains["PREROUTING"][0]; got != "-j DNAT_FILTER" {
		t.Errorf("counters not stripped: %q", got)
	}
	if _, ok := tb.Chains["MARK"]; ok || len(tb.Chains["PREROUTING"]) != 3 {
		t.Errorf("mangle table leaked into nat: %q", tb.Chains["PREROUTING"])
	}
	// Save prints what ParseSave reads back identically.
	again, err := ParseSave(tb.Save())
	if err != nil || string(again.Save()) != string(tb.Save()) {
		t.Errorf("Save does not round-trip (%v):\n%s", err, tb.Save())
	}
}

func TestParseSaveEmptyAndBroken(t *testing.T) {
	tb, err := ParseSave(nil)
	if err != nil || len(tb.Chains) != 0 {
		t.Errorf("empty dump: %v, %v", tb, err)
	}
	for name, text := range map[string]string{
		"truncated":        "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j DNAT_FILTER\n",
		"undeclared chain": "*nat\n-A NOPE -j ACCEPT\nCOMMIT\n",
		"garbage":          "*nat\n:PREROUTING ACCEPT [0:0]\nhello\nCOMMIT\n",
		"empty rule":       "*nat\n:X - [0:0]\n-A X\nCOMMIT\n",
	} {
		if _, err := ParseSave([]byte(text)); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}

// TestRestoreChecksLikeTheKernel: the fake refuses what the kernel refuses and then changes
// nothing, so plan tests that pass through it prove the transactions are valid.
func TestRestoreChecksLikeTheKernel(t *testing.T) {
	for name, c := range map[string]struct{ input, wantErr string }{
		"jump to missing chain":  {"*nat\n:A - [0:0]\n-A A -j B\nCOMMIT\n", "missing chain"},
		"delete referenced":      {"*nat\n-X DNAT_EIP_192.168.0.112\nCOMMIT\n", "not empty"},
		"delete still jumped to": {"*nat\n:DNAT_EIP_192.168.0.112 - [0:0]\n-X DNAT_EIP_192.168.0.112\nCOMMIT\n", "still referenced"},
		"name too long":          {"*nat\n:DNAT_EIP_192.168.0.112_and_more - [0:0]\nCOMMIT\n", "longer than 28"},
		"delete missing rule":    {"*nat\n-D PREROUTING -j NOPE\nCOMMIT\n", "no rule"},
		"no commit":              {"*nat\n:A - [0:0]\n", "no COMMIT"},
		"jump to built-in":       {"*nat\n:A - [0:0]\n-A A -j PREROUTING\nCOMMIT\n", "built-in"},
	} {
		t.Run(name, func(t *testing.T) {
			tb := edited(t, nil)
			before := string(tb.Save())
			err := tb.Restore([]byte(c.input))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, c.wantErr)
			}
			if string(tb.Save()) != before {
				t.Errorf("failed restore changed the table")
			}
		})
	}
}
