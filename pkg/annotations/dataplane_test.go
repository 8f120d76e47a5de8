package annotations

import (
	"strings"
	"testing"
)

// TestDataplane: the data plane is optional (iptables), names one of the two backends, and
// leaves a document without it encoded exactly as before the field existed.
func TestDataplane(t *testing.T) {
	for _, v := range []string{"", DataplaneIPTables, DataplaneNFTables} {
		d := goodDesired()
		d.Dataplane = v
		if errs := ValidateDesired(d); len(errs) > 0 {
			t.Errorf("dataplane %q refused: %v", v, errs)
		}
	}
	d := goodDesired()
	d.Dataplane = "nft"
	errs := ValidateDesired(d)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `dataplane: Unsupported value: "nft"`) {
		t.Errorf("dataplane \"nft\": %v, want one Unsupported value error on dataplane", errs)
	}
	doc, err := Marshal(goodDesired())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(doc, "dataplane") {
		t.Errorf("a document without a data plane mentions one: %s", doc)
	}
}
