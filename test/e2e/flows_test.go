package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/test/topo"
)

// Addresses of the seed (examples/seed.yaml) and of the edits TestVpcNat makes.
const (
	eipFIP    = "192.168.0.111" // the seed's FIP EIP
	eipShared = "192.168.0.112" // the seed's DNAT and SNAT EIP
	eipAdded  = "192.168.0.113" // added by the SNAT edit
	subnetGW  = "10.0.1.1"      // Subnet sn's gateway, held by the NAT gateway
)

// flow is one probe and what must come of it: the server that answers (Reply.Local) and the
// source address it saw. wantAt "" means no answer may come (nothing routes or NATs it).
type flow struct {
	name     string
	from     string // test host (topo role)
	proto    string
	to       string // ip:port
	wantAt   string
	wantSeen string
	noAnswer bool
}

func (f flow) String() string {
	return fmt.Sprintf("%-22s %s -> %s/%s", f.name, f.from, f.to, f.proto)
}

// probe sends f once and says what was wrong with the outcome ("" when nothing).
func probe(n *topo.NodeTopology, f flow, timeout time.Duration) string {
	r, err := n.Request(f.from, f.proto, f.to, timeout)
	switch {
	case f.noAnswer && err == nil:
		return fmt.Sprintf("answered by %s (saw %s), want no answer", r.Local, r.SeenIP())
	case f.noAnswer:
		return ""
	case err != nil:
		return err.Error()
	case r.Local != f.wantAt || r.SeenIP() != f.wantSeen:
		return fmt.Sprintf("answered by %s, which saw source %s; want %s seeing %s", r.Local, r.SeenIP(), f.wantAt, f.wantSeen)
	}
	return ""
}

// flows is the expected behaviour of the gateway at one moment, by flow name.
type flows []flow

// with returns a copy with the flows of the same names replaced (or added).
func (fs flows) with(changed ...flow) flows {
	out := append(flows(nil), fs...)
	for _, c := range changed {
		replaced := false
		for i := range out {
			if out[i].name == c.name {
				out[i], replaced = c, true
			}
		}
		if !replaced {
			out = append(out, c)
		}
	}
	return out
}

func (fs flows) get(name string) flow {
	for _, f := range fs {
		if f.name == name {
			return f
		}
	}
	panic("no flow " + name)
}

// seedFlows is what examples/seed.yaml does to real packets (README's demo table).
var seedFlows = flows{
	{name: "snat", from: topo.Pod2, proto: "tcp", to: topo.InetIP + ":8080", wantAt: topo.InetIP + ":8080", wantSeen: eipShared},
	{name: "snat (udp)", from: topo.Pod2, proto: "udp", to: topo.InetIP + ":8081", wantAt: topo.InetIP + ":8081", wantSeen: eipShared},
	{name: "fip out", from: topo.Pod1, proto: "tcp", to: topo.InetIP + ":8080", wantAt: topo.InetIP + ":8080", wantSeen: eipFIP},
	{name: "fip in", from: topo.Client, proto: "tcp", to: eipFIP + ":7000", wantAt: topo.Pod1IP + ":7000", wantSeen: topo.ClientIP},
	{name: "dnat", from: topo.Client, proto: "tcp", to: eipShared + ":8888", wantAt: topo.Pod2IP + ":80", wantSeen: topo.ClientIP},
	{name: "dnat other port", from: topo.Client, proto: "tcp", to: eipShared + ":7000", noAnswer: true},
	{name: "hairpin", from: topo.Pod1, proto: "tcp", to: eipShared + ":8888", wantAt: topo.Pod2IP + ":80", wantSeen: subnetGW},
	{name: "static route (pod3)", from: topo.Pod3, proto: "tcp", to: topo.InetIP + ":8080", wantAt: topo.InetIP + ":8080", wantSeen: eipShared},
	{name: "vpc route (lab)", from: topo.Pod3, proto: "tcp", to: topo.LabIP + ":8080", noAnswer: true},
}

// checkFlows probes every flow once and fails the test for each one that is wrong; it logs
// the table.
func checkFlows(t *testing.T, n *topo.NodeTopology, when string, fs flows) {
	t.Helper()
	var lines []string
	for _, f := range fs {
		timeout := 2 * time.Second
		if f.noAnswer {
			timeout = 500 * time.Millisecond
		}
		res := "PASS"
		if bad := probe(n, f, timeout); bad != "" {
			res = "FAIL: " + bad
			t.Errorf("%s: %s: %s", when, f, bad)
		}
		lines = append(lines, fmt.Sprintf("  %-60s %s", f, res))
	}
	t.Logf("%s:\n%s", when, strings.Join(lines, "\n"))
}

// waitFlow probes f until it behaves as wanted and returns how long that took from start; it
// fails the test when that takes longer than limit. Each probe gives up after 300 ms, so a
// path that is still being changed costs little.
func waitFlow(t *testing.T, n *topo.NodeTopology, f flow, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	var last string
	for {
		bad := probe(n, f, 300*time.Millisecond)
		if bad == "" {
			return time.Since(start)
		}
		last = bad
		if time.Since(start) > limit {
			t.Fatalf("%s: not as wanted %v after the change: %s", f, limit, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
