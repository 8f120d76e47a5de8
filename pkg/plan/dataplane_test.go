package plan

import (
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// TestDataplaneCarried: the ConfigMap's data plane reaches the desired annotation, and none
// stays none (iptables, and a document as it was before the key existed).
func TestDataplaneCarried(t *testing.T) {
	for _, v := range []string{"", annotations.DataplaneIPTables, annotations.DataplaneNFTables} {
		in := seed(t)
		in.Config.Dataplane = v
		_, d, errs := Build(in)
		if len(errs) > 0 {
			t.Fatalf("dataplane %q: %v", v, errs)
		}
		if d.Dataplane != v {
			t.Errorf("ConfigMap dataplane %q: desired has %q", v, d.Dataplane)
		}
	}
}
