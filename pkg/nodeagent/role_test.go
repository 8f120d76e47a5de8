package nodeagent

import (
	"sync"
	"testing"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// fakeRoles is the role the failover agent set in each fake netns (by path); a netns absent here
// has no agent (a single gateway).
var fakeRoles sync.Map

// ReplicaRole reads the netns's role as *netconf.Gateway reads the external NIC's ARP flag (the
// term is always 1 here).
func (c *fakeConverger) ReplicaRole() (string, uint64) {
	r, _ := fakeRoles.Load(c.path)
	s, _ := r.(string)
	if s == "" {
		return "", 0
	}
	return s, 1
}

func replicatedValue(gw string, gen int64) string {
	d, err := annotations.ParseDesired(desiredValue(gw, gen))
	if err != nil {
		panic(err)
	}
	d.Replicas = 2
	v, err := annotations.EncodeDesired(d)
	if err != nil {
		panic(err)
	}
	return v
}

// TestRoleChangeReported: the failover agent changes a replica's role in the netns without
// telling the daemon and without any frame reaching the NIC's listener (an external NIC cut off
// from its segment receives none); the daemon reports the new role anyway, active then standby,
// without a converge. A single gateway is not looked at again.
func TestRoleChangeReported(t *testing.T) {
	c := newChain("ngw")
	h := start(t, c)
	const path = "/run/netns/gw-role"
	fakeRoles.Store(path, annotations.RoleActive)
	t.Cleanup(func() { fakeRoles.Delete(path) })
	p := h.createPod(c, replicatedValue("ngw", 1))
	h.writeRecord(p, "ngw", "ctr-1", path)
	h.applied(p, func(a *annotations.Applied) bool { return a.Generation == 1 && a.Role == annotations.RoleActive })

	fakeRoles.Store(path, annotations.RoleStandby) // no notify: the listener saw nothing
	h.applied(p, func(a *annotations.Applied) bool { return a.Role == annotations.RoleStandby })
	fakeRoles.Store(path, annotations.RoleActive)
	h.applied(p, func(a *annotations.Applied) bool { return a.Role == annotations.RoleActive })
	if calls := h.kernel.callsFor(path); len(calls) != 1 {
		t.Errorf("converges %v, want the first one only: a role change converges nothing", calls)
	}
	if got := roleRecheckOf(&annotations.Desired{}); got != 0 {
		t.Errorf("single gateway: looked at again after %v, want only on events", got)
	}
}
