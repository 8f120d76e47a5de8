package nat_test

import (
	"reflect"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/nat"
)

func TestMappings(t *testing.T) {
	want := []nat.Mapping{
		{EIP: "192.168.0.111", InternalIP: "10.0.1.5"},
		{Protocol: "tcp", EIP: "192.168.0.112", Port: 8888, InternalIP: "10.0.1.10", InternalPort: 80},
	}
	if got := nat.Mappings(nat.Render(nat.SeedDesired()).Map()); !reflect.DeepEqual(got, want) {
		t.Errorf("from the ruleset: %+v, want %+v", got, want)
	}
	// From a kernel read-back: FOREIGN's DNAT rule is not ours and must not be reported.
	if got := nat.Mappings(edited(t, nil).Chains); !reflect.DeepEqual(got, want) {
		t.Errorf("from iptables-save: %+v, want %+v", got, want)
	}
	if got := nat.Mappings(nat.Render(nat.RichDesired()).Map()); len(got) != 7 {
		t.Errorf("rich gateway: %d mappings, want 2 FIPs + 5 forwards: %+v", len(got), got)
	}
}

func TestStaleMappings(t *testing.T) {
	before := nat.Render(nat.RichDesired()).Map()

	same := nat.RichDesired()
	if got := nat.StaleMappings(before, nat.Render(same).Map()); len(got) != 0 {
		t.Errorf("unchanged: stale %+v", got)
	}

	changed := nat.RichDesired()
	changed.DNATs[0].InternalPort = 81            // 198.51.100.12:8888/tcp -> 10.0.1.10:80 changed
	changed.FloatingIPs = changed.FloatingIPs[1:] // FIP 198.51.100.10 removed
	changed.DNATs[4].ExternalPort = 2222          // 198.51.100.13:22 moved to 2222
	changed.SNATs = changed.SNATs[:1]             // SNAT changes leave no mapping behind
	want := []nat.Mapping{
		{EIP: "198.51.100.10", InternalIP: "10.0.1.5"},
		{Protocol: "tcp", EIP: "198.51.100.12", Port: 8888, InternalIP: "10.0.1.10", InternalPort: 80},
		{Protocol: "tcp", EIP: "198.51.100.13", Port: 22, InternalIP: "10.1.3.4", InternalPort: 22},
	}
	got := nat.StaleMappings(before, nat.Render(changed).Map())
	if !reflect.DeepEqual(got, want) {
		t.Errorf("stale %+v, want %+v", got, want)
	}

	added := nat.StaleMappings(nat.Render(nat.SeedDesired()).Map(), before)
	if len(added) != 2 {
		t.Errorf("everything of the seed is stale in the rich gateway: got %+v", added)
	}
}
