package annotations

import (
	"reflect"
	"strings"
	"testing"
)

func TestDesiredRoundTrip(t *testing.T) {
	s, err := Marshal(goodDesired())
	if err != nil {
		t.Fatal(err)
	}
	d, err := ParseDesired(s)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(d, goodDesired()) {
		t.Errorf("round trip changed the document:\n%+v", d)
	}
}

// TestParseRefuses: a hand-edited annotation that is not exactly a v1 document is refused with
// the key and the offending field or value named, before any validation of its content.
func TestParseRefuses(t *testing.T) {
	good, _ := Marshal(goodDesired())
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"unknown field", strings.Replace(good, `"generation":3`, `"generation":3,"genration":4`, 1), []string{DesiredKey, `unknown field "genration"`}},
		{"unknown nested field", strings.Replace(good, `"eipCIDR"`, `"eipCIDRs"`, 1), []string{DesiredKey, `unknown field "eips[0].eipCIDRs"`}},
		{"case-insensitive key", strings.Replace(good, `"eipCIDR"`, `"eipCidr"`, 1), []string{DesiredKey, `unknown field "eips[0].eipCidr"`}},
		{"duplicate key", strings.Replace(good, `"gateway":"ngw"`, `"gateway":"ngw","gateway":"x"`, 1), []string{DesiredKey, `duplicate field "gateway"`}},
		{"wrong version", strings.Replace(good, `"version":"v1"`, `"version":"v2"`, 1), []string{DesiredKey, `version "v2" is not supported`}},
		{"no version", strings.Replace(good, `"version":"v1",`, ``, 1), []string{DesiredKey, `version "" is not supported`}},
		{"trailing data", good + `{}`, []string{DesiredKey, "after top-level value"}},
		{"wrong type", strings.Replace(good, `"externalPort":8888`, `"externalPort":"8888"`, 1), []string{DesiredKey, "externalPort"}},
		{"invalid content", strings.Replace(good, `"internalPort":80`, `"internalPort":0`, 1), []string{DesiredKey, "dnatRules[0].internalPort"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.doc == good {
				t.Fatal("the mutation did not apply")
			}
			_, err := ParseDesired(c.doc)
			for _, w := range c.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not contain %q", err, w)
				}
			}
		})
	}
	plan, _ := Marshal(&NICPlan{Version: Version, Gateway: "ngw", External: goodDesired().External, Subnets: goodDesired().Subnets})
	if _, err := ParseNICPlan(plan); err != nil {
		t.Errorf("valid plan refused: %v", err)
	}
	if _, err := ParseNICPlan(strings.Replace(plan, `"mode"`, `"mdoe"`, 1)); err == nil || !strings.Contains(err.Error(), NICsKey) || !strings.Contains(err.Error(), "mdoe") {
		t.Errorf("NIC plan with an unknown field: %v", err)
	}
	if _, err := ParseApplied(`{"version":"v0","generation":1,"hash":"","time":""}`); err == nil || !strings.Contains(err.Error(), AppliedKey) {
		t.Errorf("applied with a wrong version: %v", err)
	}
}
