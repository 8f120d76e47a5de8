package e2e

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kstate"
)

// TestVpcNatNFTables installs the project on the one-node cluster as TestVpcNat does, with the
// ConfigMap's dataplane set to nftables, and checks the gateway with the seed's traffic of every
// rule kind, the edit of every rule kind, a daemon restart under an open connection, and a live
// switch of the running gateway to iptables and back, each step judged in the gateway's netns by
// test/kstate (the NAT exactly as modelled from the desired state, nothing left of the other
// backend). The switches run under an established TCP connection through the DNAT, exchanged on
// every 10 ms: it must carry on through both, and the gateway pod is the same pod throughout.
//
// A cluster of its own: about 30 s on this machine, start and stop included (make test runs it;
// make e2e-nftables runs it alone).
//
// Address plan: TestVpcNat's (the seed's addresses on test/topo's node networks).
func TestVpcNatNFTables(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs containerd, a kubelet, and network namespaces")
	}
	ctx, cancel := testContext(t)
	defer cancel()
	e := startVpcEnv(ctx, t)
	e.dataplane = annotations.DataplaneNFTables
	e.buildNetworks()
	e.install()
	now := e.applySeed()
	e.checkKernel("the seed", annotations.DataplaneNFTables)

	for _, p := range []struct {
		name string
		run  func()
	}{
		{"edits", func() { now = e.edits(now); e.checkKernel("the edits", annotations.DataplaneNFTables) }},
		{"daemon restart", func() { e.daemonRestart(now); e.checkKernel("the daemon restart", annotations.DataplaneNFTables) }},
		{"switch to iptables", func() { e.liveSwitch(now, annotations.DataplaneIPTables) }},
		{"switch to nftables", func() { e.liveSwitch(now, annotations.DataplaneNFTables) }},
	} {
		name := strings.ReplaceAll(p.name, " ", "_")
		t.Run(name, func(t *testing.T) {
			e.t = t
			defer func() { e.t = e.top }()
			defer func() {
				if t.Failed() {
					e.diagnoseStep(t, name)
				}
			}()
			p.run()
		})
	}
}

// desiredOf is the gateway pod's desired state, as the controller wrote it.
func (e *vpcEnv) desiredOf() (*annotations.Desired, error) {
	pod, err := e.gatewayPod()
	if err != nil {
		return nil, err
	}
	if pod == nil {
		return nil, fmt.Errorf("no gateway pod")
	}
	return annotations.ParseDesired(pod.Annotations[annotations.DesiredKey])
}

// kernelDiff compares the gateway's netns with its desired state through test/kstate.
func (e *vpcEnv) kernelDiff() (*annotations.Desired, kstate.Diff, error) {
	d, err := e.desiredOf()
	if err != nil {
		return nil, nil, err
	}
	diff, err := kstate.Check(e.gateway().netns, d)
	return d, diff, err
}

// checkKernel requires the gateway's desired state to name plane and its netns to be exactly
// that state.
func (e *vpcEnv) checkKernel(after, plane string) {
	e.t.Helper()
	d, diff, err := e.kernelDiff()
	switch {
	case err != nil:
		e.t.Errorf("after %s: %v", after, err)
	case dataplaneName(d) != plane:
		e.t.Errorf("after %s: the desired state names the %s backend, want %s", after, dataplaneName(d), plane)
	case !diff.Empty():
		e.t.Errorf("after %s, the gateway's netns is not its desired state: %s", after, diff)
	}
}

func dataplaneName(d *annotations.Desired) string {
	if d.Dataplane == "" {
		return annotations.DataplaneIPTables
	}
	return d.Dataplane
}

// liveSwitch changes the ConfigMap's dataplane to plane under an established TCP connection
// through the DNAT, and waits until the gateway's netns is its new desired state (the new
// backend's NAT, nothing of the other's). The connection, exchanged on every 10 ms meanwhile,
// must never fail or change peers; the gateway pod must not be replaced; every flow of now
// still works afterwards.
func (e *vpcEnv) liveSwitch(now flows, plane string) {
	t := e.t
	was := e.gateway()
	dnat := now.get("dnat")
	conn, err := e.net.Dial(dnat.from, dnat.to, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r0, err := conn.Exchange(2 * time.Second)
	if err != nil || r0.Local != dnat.wantAt {
		t.Fatalf("open connection through the DNAT: %+v, %v (want it answered by %s)", r0, err, dnat.wantAt)
	}
	var (
		mu        sync.Mutex
		exchanged int
		broken    string
	)
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			r, err := conn.Exchange(2 * time.Second)
			mu.Lock()
			exchanged++
			if err != nil || r != r0 {
				broken = fmt.Sprintf("exchange %d: %+v, %v (was %+v)", exchanged, r, err, r0)
			}
			mu.Unlock()
			if err != nil || r != r0 {
				return
			}
		}
	}()

	mark := time.Now()
	e.kubectl("-n", plan.ConfigMapNamespace, "patch", "configmap", plan.ConfigMapName, "--type=merge",
		"-p", fmt.Sprintf(`{"data":{%q:%q}}`, plan.KeyDataplane, plane))
	switched := pollWithin(e.ctx, t, waitLimit, "the gateway's netns on the "+plane+" backend", func() (bool, error) {
		d, diff, err := e.kernelDiff()
		if err != nil {
			return false, err
		}
		return dataplaneName(d) == plane && diff.Empty(), nil
	})
	e.times.add("ConfigMap dataplane -> "+plane+" in the kernel", switched.Sub(mark))
	// A few more exchanges on the new backend before the verdict.
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-done
	mu.Lock()
	defer mu.Unlock()
	if broken != "" {
		t.Errorf("the connection through the DNAT broke during the switch to %s: %s", plane, broken)
	}
	t.Logf("switch to %s: in the kernel after %v; the connection through the DNAT carried %d exchanges meanwhile",
		plane, switched.Sub(mark).Round(time.Millisecond), exchanged)
	if exchanged < 5 {
		t.Errorf("only %d exchanges on the connection during the switch: the check saw too little", exchanged)
	}
	e.sameGateway(was, "the switch to "+plane)
	checkFlows(t, e.net, "after the switch to "+plane, now)
	e.checkKernel("the switch to "+plane, plane)
}
