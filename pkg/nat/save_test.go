package nat_test

import (
	"strings"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/nat/nattest"
)

func TestParseSave(t *testing.T) {
	tb, err := nat.ParseSave([]byte(seedSave))
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
	// Save prints what nat.ParseSave reads back identically.
	again, err := nat.ParseSave(nattest.Save(tb))
	if err != nil || string(nattest.Save(again)) != string(nattest.Save(tb)) {
		t.Errorf("Save does not round-trip (%v):\n%s", err, nattest.Save(tb))
	}
}

func TestParseSaveEmptyAndBroken(t *testing.T) {
	tb, err := nat.ParseSave(nil)
	if err != nil || len(tb.Chains) != 0 {
		t.Errorf("empty dump: %v, %v", tb, err)
	}
	for name, text := range map[string]string{
		"truncated":        "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -j DNAT_FILTER\n",
		"undeclared chain": "*nat\n-A NOPE -j ACCEPT\nCOMMIT\n",
		"garbage":          "*nat\n:PREROUTING ACCEPT [0:0]\nhello\nCOMMIT\n",
		"empty rule":       "*nat\n:X - [0:0]\n-A X\nCOMMIT\n",
	} {
		if _, err := nat.ParseSave([]byte(text)); err == nil {
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
			before := string(nattest.Save(tb))
			err := nattest.Restore(tb, []byte(c.input))
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("err = %v, want one containing %q", err, c.wantErr)
			}
			if string(nattest.Save(tb)) != before {
				t.Errorf("failed restore changed the table")
			}
		})
	}
}
