package netconf

import (
	"fmt"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// scaleDesired is a gateway with eips EIPs (192.168.0.1 and up) and perEIP port forwards on
// each, all to pods of 10.0.1.0/24.
func scaleDesired(eips, perEIP int) *annotations.Desired {
	d := seedDesired()
	d.EIPs, d.FloatingIPs, d.DNATs = nil, nil, nil
	for i := 1; i <= eips; i++ {
		eip := fmt.Sprintf("192.168.0.%d", i)
		d.EIPs = append(d.EIPs, annotations.EIP{EipCIDR: eip + "/24", Gateway: "192.168.0.254"})
		for p := 0; p < perEIP; p++ {
			d.DNATs = append(d.DNATs, annotations.DNAT{EIP: eip, Protocol: "tcp", ExternalPort: 10000 + p,
				InternalIP: fmt.Sprintf("10.0.1.%d", 2+(i*perEIP+p)%250), InternalPort: 80})
		}
	}
	d.SNATs = []annotations.SNAT{{EIP: "192.168.0.1", InternalCIDR: "10.0.1.0/24"}}
	return d
}

// 10 000 port forwards over 200 EIPs: the first converge, a resync with nothing to do, and a
// one-rule change on the fast path (one small restore, no read-back) and on the full path.
func TestScale10kDNAT(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: measures converge times with 10 000 rules")
	}
	tp := newTopo(t)
	g := tp.gateway()
	d := scaleDesired(200, 50)

	start := time.Now()
	rep := tp.mustConverge(g, d, true)
	t.Logf("first converge, 200 EIPs / %d DNAT rules: %v (%d report lines)", len(d.DNATs), time.Since(start), len(rep.Changes))

	start = time.Now()
	rep = tp.mustConverge(g, d, true)
	t.Logf("full resync, nothing to do: %v", time.Since(start))
	if len(rep.Changes) != 0 {
		t.Errorf("full resync changed %q", rep.Changes)
	}

	d.DNATs[4321].InternalPort = 8080
	start = time.Now()
	rep = tp.mustConverge(g, d, false)
	t.Logf("one-rule change, fast path: %v: %q", time.Since(start), rep.Changes)
	if len(rep.Changes) != 1 {
		t.Errorf("one-rule change reported %q", rep.Changes)
	}

	d.DNATs[4321].InternalPort = 8081
	start = time.Now()
	rep = tp.mustConverge(g, d, true)
	t.Logf("one-rule change, full path: %v: %q", time.Since(start), rep.Changes)

	if rep := tp.mustConverge(g, d, true); len(rep.Changes) != 0 {
		t.Errorf("after the changes the kernel differs from memory: %q", rep.Changes)
	}
}
