package reliability

import (
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/intstr"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

const (
	eip111 = "192.168.0.111" // the seed's FIP EIP (pod1)
	eip112 = "192.168.0.112" // the seed's SNAT and DNAT EIP
)

// seedInputs is examples/seed.yaml (nic eth1) plus a UDP port forward 192.168.0.112:5353 ->
// pod2:5353, so inbound UDP has a DNAT too.
func seedInputs(t *testing.T, plane string) plan.Inputs {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	in, err := plan.LoadFile(filepath.Join(filepath.Dir(file), "..", "..", "examples", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	in.Config.NIC, in.Config.Dataplane = "eth1", plane
	in.Gateway.Spec.DnatRules = append(in.Gateway.Spec.DnatRules, v1.DnatRule{Eip: eip112, ExternalPort: intstr.FromInt32(5353),
		Protocol: "udp", InternalIP: topo.Pod2IP, InternalPort: intstr.FromInt32(5353)})
	return in
}

// flow is one traffic generator: a fixed 5-tuple UDP flow (one socket, a datagram every
// millisecond: its conntrack entry never expires, as in Kube-OVN 4193) or new TCP connections
// one after another.
type flow struct {
	name, role, proto, local, remote string
	// want matches the flow's conntrack entries once NATed: reply source (inbound) or reply
	// destination (outbound) address.
	inbound bool
	natted  string
	sent    atomic.Int64
}

// traffic runs flows until stop is closed.
type traffic struct {
	flows []*flow
	stop  chan struct{}
	wg    sync.WaitGroup
}

func startTraffic(t *testing.T, tp *topo.Topology, flows []*flow) *traffic {
	t.Helper()
	tr := &traffic{flows: flows, stop: make(chan struct{})}
	for _, f := range flows {
		switch f.proto {
		case "udp":
			var conn *net.UDPConn
			err := tp.Do(f.role, func() error {
				la, err := net.ResolveUDPAddr("udp4", f.local)
				if err != nil {
					return err
				}
				ra, err := net.ResolveUDPAddr("udp4", f.remote)
				if err != nil {
					return err
				}
				conn, err = net.DialUDP("udp4", la, ra)
				return err
			})
			if err != nil {
				t.Fatalf("flow %s: %v", f.name, err)
			}
			tr.wg.Add(2)
			go func() { // replies are read only to keep the socket buffer empty
				defer tr.wg.Done()
				buf := make([]byte, 1500)
				for {
					_ = conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
					_, err := conn.Read(buf)
					select {
					case <-tr.stop:
						return
					default:
					}
					_ = err // refused or timed out while the gateway is not there: keep going
				}
			}()
			go func() {
				defer tr.wg.Done()
				defer conn.Close()
				for {
					select {
					case <-tr.stop:
						return
					case <-time.After(time.Millisecond):
					}
					if _, err := conn.Write([]byte("x\n")); err == nil {
						f.sent.Add(1)
					}
				}
			}()
		case "tcp":
			tr.wg.Add(1)
			go func() {
				defer tr.wg.Done()
				for {
					select {
					case <-tr.stop:
						return
					default:
					}
					_ = tp.Do(f.role, func() error {
						c, err := net.DialTimeout("tcp4", f.remote, 100*time.Millisecond)
						if err == nil {
							f.sent.Add(1)
							fmt.Fprintln(c, "x")
							_ = c.Close()
						}
						return nil
					})
					time.Sleep(2 * time.Millisecond)
				}
			}()
		}
	}
	return tr
}

func (tr *traffic) Stop() {
	select {
	case <-tr.stop:
	default:
		close(tr.stop)
	}
	tr.wg.Wait()
}

// TestFlowsRacingSetup (Kube-OVN 4193): traffic of every rule kind is sent continuously (fixed
// 5-tuple UDP flows whose conntrack entries never expire, and new TCP connections) while a
// gateway is created and initialised, in a netns that starts with forwarding on (as one inherits
// it on a node with forwarding on). Un-NATed entries for exactly those flows are planted in the
// gateway's conntrack table before the first converge, as packets that raced the setup would
// leave them. After the first converge, and once every flow has gone through the gateway NATed,
// no conntrack entry of the gateway may be un-NATed or stale (test/kstate.CheckFlows). Two ways
// to make the gateway: the CNI chain (bridge + host-local + vpcnat) then `vpcnat-daemon apply`,
// and netconf alone (in-process converge of an empty netns).
func TestFlowsRacingSetup(t *testing.T) {
	topo.NeedRoot(t)
	eachBackend(t, func(t *testing.T, plane string) {
		for _, via := range []string{"cni", "netconf"} {
			t.Run(via, func(t *testing.T) { flowsRacingSetup(t, via, plane) })
		}
	})
}

func flowsRacingSetup(t *testing.T, via, plane string) {
	tp := newSeed(t)
	in := seedInputs(t, plane)
	nics, d, errs := plan.Build(in)
	if len(errs) > 0 {
		t.Fatal(errs.ToAggregate())
	}
	gwNS := tp.Path(topo.Gateway)
	// A node with forwarding on hands it to every new netns (devconf_inherit_init_net=0).
	if _, err := tp.Exec(topo.Gateway, "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct{ role, proto, addr string }{
		{topo.Inet, "udp", topo.InetIP + ":8081"}, {topo.Inet, "tcp", topo.InetIP + ":8080"},
		{topo.Pod2, "udp", topo.Pod2IP + ":5353"}, {topo.Pod2, "tcp", topo.Pod2IP + ":80"},
		{topo.Pod1, "udp", topo.Pod1IP + ":7001"},
	} {
		tp.ListenFor(t, l.role, l.proto, l.addr)
	}
	flows := []*flow{
		{name: "snat udp", role: topo.Pod2, proto: "udp", local: topo.Pod2IP + ":40001", remote: topo.InetIP + ":8081", natted: eip112},
		{name: "fip out udp", role: topo.Pod1, proto: "udp", local: topo.Pod1IP + ":40002", remote: topo.InetIP + ":8081", natted: eip111},
		{name: "static route udp", role: topo.Pod3, proto: "udp", local: topo.Pod3IP + ":40003", remote: topo.InetIP + ":8081", natted: eip112},
		{name: "dnat udp", role: topo.Client, proto: "udp", local: topo.ClientIP + ":40004", remote: eip112 + ":5353", inbound: true, natted: topo.Pod2IP},
		{name: "fip in udp", role: topo.Client, proto: "udp", local: topo.ClientIP + ":40005", remote: eip111 + ":7001", inbound: true, natted: topo.Pod1IP},
		{name: "snat tcp", role: topo.Pod2, proto: "tcp", remote: topo.InetIP + ":8080", natted: eip112},
		{name: "dnat tcp", role: topo.Client, proto: "tcp", remote: eip112 + ":8888", inbound: true, natted: topo.Pod2IP},
	}
	tr := startTraffic(t, tp, flows)
	defer tr.Stop()

	// The sandbox: the plugin makes the NICs and the subnet addresses (so VPC hosts reach the
	// gateway before the daemon has converged anything).
	if via == "cni" {
		annots, err := plan.TemplateAnnotations(nics, "ovn-vpc-external-network")
		if err != nil {
			t.Fatal(err)
		}
		cniDir := t.TempDir()
		paths, err := cnichain.PluginDirs(filepath.Join("..", ".."), cniDir)
		if err != nil {
			t.Fatal(err)
		}
		chain := cnichain.New(tp, paths, cniDir)
		list, err := chain.ConfList("1.1.0", true, "")
		if err != nil {
			t.Fatal(err)
		}
		pod := cnichain.Pod{Role: topo.Gateway, Namespace: "kube-system", Name: "vpc-nat-gw-ngw-0", UID: "uid-" + tp.Prefix,
			ContainerID: "ctr-" + tp.Prefix, Annotations: annots}
		if _, err := chain.Add(list, pod); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := chain.Del(list, pod); err != nil {
				t.Error(err)
			}
		})
	}

	// Entries of packets that raced the setup: the same 5-tuples, not translated.
	planted := 0
	for _, f := range flows {
		if f.proto != "udp" {
			continue
		}
		src, sport, _ := net.SplitHostPort(f.local)
		dst, dport, _ := net.SplitHostPort(f.remote)
		if _, err := tp.Exec(topo.Gateway, "conntrack", "-I", "-p", "udp", "-s", src, "-d", dst, "--sport", sport, "--dport", dport,
			"--timeout", "120"); err != nil && !strings.Contains(err.Error(), "File exists") {
			t.Fatalf("planting an un-NATed entry for %s: %v", f.name, err)
		}
		planted++
	}
	flowsBefore, err := kstate.Conntrack(gwNS)
	if err != nil {
		t.Fatal(err)
	}
	if bad := kstate.CheckFlows(flowsBefore, d); len(bad) < planted {
		// The check itself must see them: otherwise it could not catch a converge that keeps them.
		t.Fatalf("kstate.CheckFlows found %d bad entries before the converge, want at least the %d planted:\n%s",
			len(bad), planted, strings.Join(bad, "\n"))
	}

	// The first converge, with the traffic still coming.
	switch via {
	case "cni":
		path := filepath.Join(t.TempDir(), "spec.yaml")
		writeSpec(t, path, in)
		if out, err := exec.Command("ip", "netns", "exec", tp.Name(topo.Node), daemonBin, "apply", "--netns", gwNS, "--spec", path,
			"--master", "eth1").CombinedOutput(); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
	case "netconf":
		gw := netconf.NewGateway(gwNS)
		defer gw.Close()
		if _, err := convergeIn(tp, gw, d, true); err != nil {
			t.Fatal(err)
		}
	}

	// Wait (10 s at most: a failure, not a timing) until every flow has a NATed entry, i.e. has
	// really gone through the converged gateway.
	deadline := time.Now().Add(10 * time.Second)
	var entries []kstate.Flow
	for {
		entries, err = kstate.Conntrack(gwNS)
		if err != nil {
			t.Fatal(err)
		}
		missing := missingFlows(flows, entries)
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("flows never NATed through the gateway: %s\nconntrack:\n%s", strings.Join(missing, ", "), rawFlows(entries))
		}
		time.Sleep(20 * time.Millisecond)
	}
	tr.Stop()
	entries, err = kstate.Conntrack(gwNS)
	if err != nil {
		t.Fatal(err)
	}
	if bad := kstate.CheckFlows(entries, d); len(bad) > 0 {
		t.Errorf("%d un-NATed or stale conntrack entries after the setup:\n%s", len(bad), strings.Join(bad, "\n"))
	}
	if diff := check(t, tp, d); !diff.Empty() {
		t.Errorf("gateway netns: %s", diff)
	}
	var sent []string
	for _, f := range flows {
		sent = append(sent, fmt.Sprintf("%s %d", f.name, f.sent.Load()))
	}
	t.Logf("%s, via %s: %d entries checked; sent: %s", plane, via, len(entries), strings.Join(sent, ", "))
}

// missingFlows names the flows without a conntrack entry NATed as they should be.
func missingFlows(flows []*flow, entries []kstate.Flow) []string {
	var missing []string
	for _, f := range flows {
		dst, dport, _ := net.SplitHostPort(f.remote)
		found := false
		for _, e := range entries {
			if e.Proto != f.proto || e.OrigDst.String() != dst || fmt.Sprint(e.OrigDport) != dport {
				continue
			}
			if f.local != "" {
				if src, _, _ := net.SplitHostPort(f.local); e.OrigSrc.String() != src {
					continue
				}
			}
			if (f.inbound && e.ReplySrc.String() == f.natted) || (!f.inbound && e.ReplyDst.String() == f.natted) {
				found = true
				break
			}
		}
		if !found {
			missing = append(missing, f.name)
		}
	}
	return missing
}

func rawFlows(entries []kstate.Flow) string {
	var b strings.Builder
	for _, e := range entries {
		b.WriteString(e.Raw + "\n")
	}
	return b.String()
}
