package ha_test

// The same address plan as failover_test.go (the pod network too); here every replica has a node namespace (n-rX) as
// the daemon sees one: eth1 on the external bridge, a bridge br-sn linked to the tenant bridge,
// and the daemon's own converge (pkg/netconf) builds the replica's NICs, addresses, routes and
// NAT from a desired state, as the controller would write it.

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/ha"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/topo"
)

// replicaDesired is the desired state of replica pod of gateway gw1, with the replica's own MACs
// as the daemon gives them.
func replicaDesired(t testing.TB, pod string) *annotations.Desired {
	d := &annotations.Desired{
		Version: annotations.Version, Gateway: "gw1", Generation: 1, Replicas: 2,
		External: annotations.ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge", MAC: plan.ReplicaMAC(plan.ExternalMAC("gw1"), pod)},
		Subnets: []annotations.SubnetNIC{{
			Subnet: "sn", IfName: "vpc-sn", CIDR: "203.0.113.0/24", Addresses: []string{subnetGW + "/24"}, IP: subnetGW,
			Attachment: annotations.Attachment{Type: annotations.AttachBridge, Bridge: "br-sn", HostIfName: "vnat-sn"},
			MAC:        plan.ReplicaMAC(plan.SubnetMAC("gw1", "sn"), pod),
		}},
		EIPs:  []annotations.EIP{{EipCIDR: eip + "/24", Gateway: routerIP}},
		DNATs: []annotations.DNAT{{EIP: eip, Protocol: "udp", ExternalPort: 5000, InternalIP: podIP, InternalPort: 5000}},
		SNATs: []annotations.SNAT{{EIP: eip, InternalCIDR: "203.0.113.0/24"}},
	}
	if errs := annotations.ValidateDesired(d); len(errs) > 0 {
		t.Fatal(errs)
	}
	return d
}

// TestDaemonHandOff: two replicas converged by the daemon's own code, with the agents running:
// the daemon's converge leaves the role to the agents (a new replica's NICs silent, no probe or
// announcement on a standby), stopping the active replica's daemon changes nothing and loses no
// datagram, and losing the active replica's node makes the standby take over, with an
// established TCP connection through the daemon's SNAT going on (conntrack replicated).
func TestDaemonHandOff(t *testing.T) {
	topo.NeedRoot(t)
	tp := &topo.Topology{Prefix: topo.NewPrefix()}
	rs := &replicaSet{t: t, tp: tp, timing: ha.DefaultTiming, args: []string{"--metrics-address", metricsAddr},
		agents: map[string]*exec.Cmd{}, logs: map[string]*strings.Builder{}}
	t.Cleanup(rs.close)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(tp.AddNS("ext"))
	must(tp.Bridge("ext", "brx"))
	must(tp.AddNS("ten"))
	must(tp.Bridge("ten", "brt"))
	must(tp.Host("rtr", "ext", "brx", "p-rtr", routerIP+"/24", ""))
	must(tp.Host("pod", "ten", "brt", "p-pod", podIP+"/24", subnetGW))
	replicas := []string{"r1", "r2"}
	gws := map[string]*netconf.Gateway{}
	must(tp.AddNS("podnet"))
	must(tp.Bridge("podnet", "brp"))
	for i, r := range replicas {
		node := "n-" + r
		must(tp.AddNS(node))
		must(tp.AddNS(r))
		// The pod's eth0 (the primary CNI's), which the conntrack stream uses.
		must(tp.Veth("podnet", "p-"+r, r, "eth0"))
		_, err := tp.Exec("podnet", "ip", "link", "set", "p-"+r, "master", "brp")
		must(err)
		_, err = tp.Exec(r, "ip", "addr", "add", fmt.Sprintf("2001:db8:100::%d/64", i+1), "dev", "eth0", "nodad")
		must(err)
		must(tp.Veth("ext", "x-"+r, node, "eth1"))
		must(tp.Veth("ten", "t-"+r, node, "uplink"))
		must(tp.Bridge(node, "br-sn"))
		_, err = tp.Exec("ext", "ip", "link", "set", "x-"+r, "master", "brx")
		must(err)
		_, err = tp.Exec("ten", "ip", "link", "set", "t-"+r, "master", "brt")
		must(err)
		_, err = tp.Exec(node, "ip", "link", "set", "uplink", "master", "br-sn")
		must(err)
		rs.start(r) // before the daemon, as in a pod
	}
	converge := func(r string) {
		t.Helper()
		g := gws[r]
		if g == nil {
			g = netconf.NewGateway(tp.Path(r))
			gws[r] = g
			t.Cleanup(g.Close)
		}
		nodeNS, err := ns.GetNS(tp.Path("n-" + r))
		must(err)
		defer nodeNS.Close()
		d := replicaDesired(t, r)
		must(nodeNS.Do(func(ns.NetNS) error {
			_, err := g.Converge(context.Background(), d, true)
			return err
		}))
	}
	for _, r := range replicas {
		converge(r)
	}
	old := rs.active(replicas...)
	stop, counts := rs.probesWithCount()
	flowing(t, counts)

	// The active replica's daemon goes away (and a converge of the standby runs meanwhile):
	// nothing changes, nothing is lost.
	before, beforeS := counts()
	gws[old].Close()
	delete(gws, old)
	converge(other(old))
	time.Sleep(3 * rs.timing.DeadAfter)
	if got := rs.active(replicas...); got != old {
		t.Fatalf("after the active replica's daemon stopped, %s is active, want %s", got, old)
	}
	d, s := stop()
	if lost, lostS := d.Lost()-before.Lost(), s.Lost()-beforeS.Lost(); lost > 0 || lostS > 0 {
		t.Errorf("the active replica's daemon stopping lost %d DNAT and %d SNAT datagrams, want none", lost, lostS)
	}
	if cs := gws[other(old)].Conflicts(); len(cs) != 0 {
		t.Errorf("the standby's daemon reports conflicts with the active replica: %v", cs)
	}

	// The active replica's node is lost, with an established TCP connection through the
	// daemon's SNAT: the standby holds its entry and commits it, the connection goes on.
	fs := &flowSet{t: t, rs: rs, old: old}
	srv := listenEcho(t, tp, "rtr", routerIP+":8001")
	f, _ := fs.openFlow("snat", "pod", 0, routerIP+":8001", srv, 1, smallChunk)
	fs.flows = append(fs.flows, f)
	fs.allProgress(waitLimit)
	fs.waitReplicated(1)
	stop, counts = rs.probesWithCount()
	flowing(t, counts)
	rs.kill(old)
	for _, p := range []struct{ ns, dev string }{{"ext", "x-" + old}, {"ten", "t-" + old}} {
		_, err := tp.Exec(p.ns, "ip", "link", "set", p.dev, "down")
		must(err)
	}
	rs.waitFor(other(old), func(r string) bool { return r == "active" })
	flowing(t, counts)
	fs.allProgress(flowLimit)
	fs.noBrokenFlow()
	d, s = stop()
	t.Logf("replica loss with the daemon's converge: %d DNAT and %d SNAT datagrams lost at one per %v", d.Lost(), s.Lost(), probeTick)
}
