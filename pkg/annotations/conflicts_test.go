package annotations

import (
	"strings"
	"testing"
)

// A report's conflicts are validated field by field, and the error names the field and value.
func TestParseAppliedConflicts(t *testing.T) {
	good := `{"version":"v1","generation":3,"hash":"x","time":"2026-11-26T03:00:00Z","conflicts":[` +
		`{"address":"10.0.1.1","interface":"vpc-sn","mac":"02:42:c0:a8:00:6f","since":"2026-11-26T02:59:58Z","claimed":true}]}`
	a, err := ParseApplied(good)
	if err != nil {
		t.Fatalf("valid report refused: %v", err)
	}
	want := AddressConflict{Address: "10.0.1.1", Interface: "vpc-sn", MAC: "02:42:c0:a8:00:6f", Since: "2026-11-26T02:59:58Z", Claimed: true}
	if len(a.Conflicts) != 1 || a.Conflicts[0] != want {
		t.Errorf("parsed conflicts %+v, want [%+v]", a.Conflicts, want)
	}
	if s, _ := Marshal(&Applied{Version: Version}); strings.Contains(s, "conflicts") {
		t.Errorf("a report without conflicts mentions them (an older controller would refuse it): %s", s)
	}
	for _, c := range []struct{ from, to, want string }{
		{`"10.0.1.1"`, `"10.0.1.256"`, `conflicts[0].address "10.0.1.256"`},
		{`"10.0.1.1"`, `"2001:db8::1"`, `conflicts[0].address "2001:db8::1"`},
		{`"vpc-sn"`, `""`, `conflicts[0].interface ""`},
		{`"vpc-sn"`, `"vpc-sixteen-char"`, `conflicts[0].interface "vpc-sixteen-char"`},
		{`"02:42:c0:a8:00:6f"`, `"02:42:C0:A8:00:6F"`, `conflicts[0].mac "02:42:C0:A8:00:6F"`},
		{`"02:42:c0:a8:00:6f"`, `"02:42:c0:a8:00:6f:00:01"`, `conflicts[0].mac`},
		{`"2026-11-26T02:59:58Z"`, `"yesterday"`, `conflicts[0].since "yesterday"`},
		{`"claimed":true`, `"claimed":true,"claimd":true`, `unknown field "conflicts[0].claimd"`},
	} {
		doc := strings.Replace(good, c.from, c.to, 1)
		if doc == good {
			t.Fatalf("mutation %s -> %s did not apply", c.from, c.to)
		}
		_, err := ParseApplied(doc)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), AppliedKey) {
			t.Errorf("%s -> %s: error %v, want one naming %s and %q", c.from, c.to, err, AppliedKey, c.want)
		}
	}
}
