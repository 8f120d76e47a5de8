// Package dataplane tests a converged gateway with real packets between network namespaces.
//
// Address plan: the seed topology of test/topo (192.168.0.0/24 external with the EIP gateway
// 192.168.0.254 and the client 192.168.0.50, 198.51.100.10 behind the router, VPC subnets
// 10.0.1.0/24 and 10.0.2.0/24, 203.0.113.0/25 behind the VPC router 10.0.1.100). Extra EIPs used
// here: 192.168.0.113-.116. Everything lives in namespaces the tests create and delete.
package dataplane

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

const timeout = 2 * time.Second

type fixture struct {
	t    *testing.T
	topo *topo.Topology
	gw   *netconf.Gateway
	in   plan.Inputs
}

// backends are the NAT backends every packet test runs with, each in a subtest of its name.
var backends = []string{annotations.DataplaneIPTables, annotations.DataplaneNFTables}

// eachBackend runs fn once per backend, each on a fresh fixture whose ConfigMap names it.
func eachBackend(t *testing.T, fn func(t *testing.T, f *fixture)) {
	for _, plane := range backends {
		t.Run(plane, func(t *testing.T) {
			f := newFixture(t)
			f.in.Config.Dataplane = plane
			fn(t, f)
		})
	}
}

// nft reports whether the fixture runs the nftables backend.
func (f *fixture) nft() bool { return f.in.Config.Dataplane == annotations.DataplaneNFTables }

// seedPath is examples/seed.yaml, found from this package's directory.
func seedPath(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples", "seed.yaml")
}

// newFixture builds the seed topology and loads the seed's spec, plus a second subnet sn2 on
// br-sn2, with the ConfigMap's nic pointing at the simulated node's eth1.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, macvlans and iptables rules")
	}
	tp := topo.SeedForTest(t)
	in, err := plan.LoadFile(seedPath(t))
	if err != nil {
		t.Fatal(err)
	}
	in.Config.NIC = "eth1"
	in.Subnets = append(in.Subnets, &v1.Subnet{
		ObjectMeta: objectMeta("sn2"),
		Spec: v1.SubnetSpec{Vpc: "test-vpc-1", CIDRBlock: "10.0.2.0/24", Gateway: "10.0.2.1",
			NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-sn2"}},
	})
	return &fixture{t: t, topo: tp, gw: netconf.NewGateway(tp.Path(topo.Gateway)), in: in}
}

// desired builds the desired state of the fixture's current inputs; a test bug if it is invalid.
func (f *fixture) desired() *annotations.Desired {
	f.t.Helper()
	_, d, errs := plan.Build(f.in)
	if len(errs) > 0 {
		f.t.Fatalf("spec invalid: %v", errs.ToAggregate())
	}
	return d
}

// converge applies the current inputs from the simulated node, as the daemon does there.
func (f *fixture) converge(full bool) *netconf.Report {
	f.t.Helper()
	d := f.desired()
	var rep *netconf.Report
	err := f.topo.Do(topo.Node, func() error {
		var err error
		rep, err = f.gw.Converge(context.Background(), d, full)
		return err
	})
	if err != nil {
		f.t.Fatalf("converge: %v", err)
	}
	return rep
}

// expect sends one request and checks what the receiver saw (topo.Expect).
func (f *fixture) expect(from, proto, to, wantSeen, wantLocal string) {
	f.t.Helper()
	f.topo.Expect(f.t, from, proto, to, wantSeen, wantLocal)
}

// expectNoAnswer checks a request gets no answer.
func (f *fixture) expectNoAnswer(from, proto, to string) {
	f.t.Helper()
	f.topo.ExpectNoAnswer(f.t, from, proto, to)
}

// listen starts a receiver for the test's lifetime.
func (f *fixture) listen(role, proto, addr string) *topo.Server {
	f.t.Helper()
	return f.topo.ListenFor(f.t, role, proto, addr)
}

// gwExec runs a command in the gateway namespace (to inspect it or to cause drift by hand).
func (f *fixture) gwExec(argv ...string) string {
	f.t.Helper()
	out, err := f.topo.Exec(topo.Gateway, argv...)
	if err != nil {
		f.t.Fatal(err)
	}
	return out
}

// dump is the gateway's kernel state as text (topo.Dump) and its nftables ruleset (nft list
// ruleset: the table ip vpcnat of the nftables backend, the iptables-nft tables of the other;
// packet counters left out).
func (f *fixture) dump() string {
	f.t.Helper()
	out, err := f.topo.Dump(topo.Gateway)
	if err != nil {
		f.t.Fatal(err)
	}
	return out + nftCounters.ReplaceAllString(f.gwExec("nft", "list", "ruleset"), "counter ")
}

var nftCounters = regexp.MustCompile(`counter packets [0-9]+ bytes [0-9]+ `)

// check compares the gateway netns with the fixture's desired state through test/kstate.
func (f *fixture) check() {
	f.t.Helper()
	diff, err := kstate.Check(f.topo.Path(topo.Gateway), f.desired())
	if err != nil {
		f.t.Fatal(err)
	}
	if !diff.Empty() {
		f.t.Errorf("gateway netns (%s backend) is not the spec: %s", f.in.Config.Dataplane, diff)
	}
}

func dnat(eip string, port int32, proto, ip string, iport int32) v1.DnatRule {
	return v1.DnatRule{Eip: eip, ExternalPort: intstr.FromInt32(port), Protocol: proto, InternalIP: ip, InternalPort: intstr.FromInt32(iport)}
}

func eip(addr string) v1.Eip { return v1.Eip{EipCIDR: addr + "/24", Gateway: topo.RouterIP} }
