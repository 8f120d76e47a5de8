package ha_test

import (
	"strings"
	"testing"
	"time"
)

// TestLostNICHandsOver: the active replica's subnet NIC vanishes while its agent runs (its
// veth is deleted from the other side, as when a pod's node-side veth goes). The replica no
// longer serves the subnet: the standby takes over, and the old replica's remaining NIC falls
// silent, without waiting for the old agent to be stopped. Traffic through the DNAT (outside ->
// EIP -> subnet) flows again.
func TestLostNICHandsOver(t *testing.T) {
	rs := newReplicaSet(t, "r1", "r2")
	old := rs.active("r1", "r2")
	stop, counts := rs.probesWithCount()
	flowing(t, counts)

	if _, err := rs.tp.Exec("ten", "ip", "link", "del", "t-"+old); err != nil {
		t.Fatal(err)
	}
	rs.waitFor(other(old), func(r string) bool { return r == "active" })
	deadline := time.Now().Add(waitLimit)
	for {
		out, err := rs.tp.Exec(old, "ip", "-o", "link", "show", "dev", "net1")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(out, "NOARP") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %s still answers ARP on net1 %v after it lost its subnet NIC: %s", old, waitLimit, out)
		}
		time.Sleep(5 * time.Millisecond)
	}
	flowing(t, counts)
	stop()
	if got := rs.active("r1", "r2"); got != other(old) {
		t.Fatalf("after %s lost its subnet NIC, %s is active, want %s", old, got, other(old))
	}
}
