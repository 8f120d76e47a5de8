package soak

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

const (
	nodeName = "soak-node"
	// convergeWait bounds each wait for the controller and the daemon to catch up (a deadline
	// so that a stuck run ends, not a timed assertion: the run is correct however long it takes
	// below it).
	convergeWait = 3 * time.Minute
	roleCli      = "cli"
)

// gwState is one gateway's model and the lock its writers take.
type gwState struct {
	mu sync.Mutex
	m  *gwModel
}

// counts are the run's figures.
type counts struct {
	mu      sync.Mutex
	ops     map[string]int
	skipped int // generator found nothing to do for the picked kind
	// quick holds, per create+delete pair, how long after the create was sent the delete was.
	quick     []time.Duration
	datagrams int
	errs      []string
}

func (c *counts) op(kind string) {
	c.mu.Lock()
	c.ops[kind]++
	c.mu.Unlock()
}

func (c *counts) fail(err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err.Error())
	c.mu.Unlock()
}

// buildNode builds the simulated node: the external L2 (ns ext, bridge br0) with the node's eth1 and
// the client, the node's namespace with one bridge per gateway subnet.
func buildNode(t *testing.T, gateways int) *topo.Topology {
	t.Helper()
	tp := &topo.Topology{Prefix: topo.NewPrefix()}
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Error(err)
		}
	})
	steps := []func() error{
		func() error { return tp.AddNS(topo.Ext) },
		func() error { return tp.Bridge(topo.Ext, "br0") },
		func() error { return tp.AddNS(topo.Node) },
		func() error { return tp.Veth(topo.Node, "eth1", topo.Ext, "p-node") },
		func() error {
			_, err := tp.Exec(topo.Ext, "ip", "link", "set", "p-node", "master", "br0")
			return err
		},
		func() error { return tp.Host(roleCli, topo.Ext, "br0", "p-cli", clientIP+"/24", "") },
	}
	for i := range gateways {
		steps = append(steps, func() error { return tp.Bridge(topo.Node, fmt.Sprintf("br-g%d", i)) })
	}
	for i, s := range steps {
		if err := s(); err != nil {
			t.Fatalf("building the node topology %s (step %d): %v", tp.Prefix, i, err)
		}
	}
	return tp
}

func TestChurn(t *testing.T) {
	topo.NeedRoot(t)
	md, err := runMode()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("mode %s: %d gateways, %v of churn, %d writers", md.name, md.gateways, md.churn, md.workers)
	start := time.Now()
	tp := buildNode(t, md.gateways)
	chain := cnichain.New(tp, cniPaths, t.TempDir())
	list, err := chain.ConfList("1.1.0", true, "")
	if err != nil {
		t.Fatal(err)
	}
	c := startCluster(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	k, err := startKubelet(ctx, c.kube, plan.GatewayNamespace, plan.LabelGateway, nodeName, tp, chain, list, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	ctrl := startProc(t, "vpcnat-controller", controllerBin, "--kubeconfig="+c.kubeconfig(t, "vpcnat-controller"),
		"--leader-elect=false")
	daemon := startProc(t, "vpcnat-daemon", daemonBin, "--kubeconfig="+c.kubeconfig(t, "vpcnat-daemon"),
		"--node-name="+nodeName, "--gateway-namespace="+plan.GatewayNamespace, "--state-dir="+chain.StateDir,
		"--node-netns="+tp.Path(topo.Node), "--resync="+md.resync.String())
	// Last registered, first run: every gateway is deleted (and the kubelet tears its sandbox
	// down) before the processes stop and the namespaces go, also when the test fails early.
	t.Cleanup(func() { deleteAll(t, c, k, md.gateways, tp.Prefix) })
	setUp := time.Since(start)

	// The gateways, each with a few rules of every kind.
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("VPCNAT_SOAK_SEED"); v != "" {
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("VPCNAT_SOAK_SEED=%q: %v", v, err)
		}
	}
	t.Logf("random choices: VPCNAT_SOAK_SEED=%d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	gws := make([]*gwState, md.gateways)
	for i := range gws {
		m := newModel(i, tp.Prefix)
		for _, kind := range []string{"eip", "eip", "eip", "fip", "dnat", "dnat", "dnat", "snat", "snat", "route", "route"} {
			for try := 0; try < 20; try++ {
				n := m.clone()
				if adders[kind](n, rng) && n.valid() == nil {
					m = n
					break
				}
			}
		}
		if err := m.valid(); err != nil {
			t.Fatalf("the generator made an invalid spec for %s: %v", m.name, err)
		}
		if err := c.create(ctx, m); err != nil {
			t.Fatal(err)
		}
		gws[i] = &gwState{m: m}
	}
	created := time.Now()
	waitConverged(t, ctx, c, k, gws, ctrl, daemon)
	firstConverge := time.Since(created)
	t.Logf("%d gateways created and converged in %v (set-up %v)", md.gateways, firstConverge.Round(time.Millisecond), setUp.Round(time.Millisecond))

	// Churn.
	cnt := &counts{ops: map[string]int{}}
	churnCtx, stopChurn := context.WithTimeout(ctx, md.churn)
	defer stopChurn()
	var wg sync.WaitGroup
	for w := range md.workers {
		wg.Add(1)
		r := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
		go func() {
			defer wg.Done()
			for churnCtx.Err() == nil {
				g := gws[r.IntN(len(gws))]
				churnOnce(c, g, r, cnt)
				time.Sleep(time.Duration(r.Int64N(int64(md.pace) + 1)))
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		sendTraffic(churnCtx, t, tp, gws, rand.New(rand.NewPCG(rng.Uint64(), 99)), cnt)
	}()
	churnStart := time.Now()
	wg.Wait()
	churned := time.Since(churnStart)
	for _, p := range []*proc{ctrl, daemon} {
		if err := p.alive(); err != nil {
			t.Fatal(err)
		}
	}
	if len(cnt.errs) > 0 {
		t.Errorf("%d writes failed during the churn; first: %s", len(cnt.errs), cnt.errs[0])
	}
	// Catch up: status and applied annotations, then the kernel.
	caughtUp := time.Now()
	pods := waitConverged(t, ctx, c, k, gws, ctrl, daemon)
	catchUp := time.Since(caughtUp)
	// Every gateway has applied its last spec (and the daemon its conntrack clean-up): compare
	// the kernel with the models, after planting a fault when asked to.
	plant(t, tp, k, pods, gws)
	totalDiffs, natted, flowProblems, unnated := 0, 0, 0, 0
	for i, g := range gws {
		sb := k.sandboxOf(pods[i])
		diffs, n, err := kernelDiff(tp, sb.role, g.m)
		if err != nil {
			t.Fatalf("reading gateway %s: %v", g.m.name, err)
		}
		natted += n
		ks, flows, err := kstateDiff(tp.Path(sb.role), g.m)
		if err != nil {
			t.Fatalf("reading gateway %s: %v", g.m.name, err)
		}
		diffs = append(diffs, ks...)
		flowProblems += len(flows)
		totalDiffs += len(diffs)
		for _, d := range diffs {
			t.Errorf("gateway %s (netns %s): %s", g.m.name, tp.Name(sb.role), d)
		}
		for _, f := range flows {
			// An un-NATed entry of a flow that began before its mapping is a failure like any
			// other: the daemon's sweep deletes it on the converge that adds the mapping.
			if unNATed(f) {
				unnated++
			}
			t.Errorf("gateway %s (netns %s): %s", g.m.name, tp.Name(sb.role), f)
		}
	}
	// The node while the gateways run: one subnet veth and one primary veth per gateway, one
	// record per gateway pod.
	nodeLeaks := checkNode(t, tp, chain, k, len(gws))
	syncs, _ := daemon.sum("vpcnat_daemon_syncs_total")
	changes, _ := daemon.sum("vpcnat_daemon_kernel_changes_total")
	csyncs, _ := ctrl.sum("vpcnat_controller_syncs_total", "kind", "gateway")
	patches, _ := ctrl.sum("vpcnat_controller_desired_patches_total")
	// Retried failures, from the logs: a status update that lost to a spec write, and converges
	// that failed (a pod or sandbox going away under the daemon).
	conflicts := ctrl.logged("the object has been modified")
	ctrlFailed := ctrl.logged("Sync failed")
	daemonFailed := daemon.logged("Gateway sync failed")

	// Delete everything; nothing may be left.
	deleteAll(t, c, k, md.gateways, tp.Prefix)
	leaks := checkGone(t, tp, chain, k, daemon)

	// Figures.
	var kinds []string
	total := 0
	for kind, n := range cnt.ops {
		kinds = append(kinds, kind)
		total += n
	}
	sort.Strings(kinds)
	var b strings.Builder
	fmt.Fprintf(&b, "churn figures (%s mode): %d gateways, %v of churn, %d operations applied (%.1f/s), %d generator misses\n",
		md.name, md.gateways, churned.Round(time.Second), total, float64(total)/churned.Seconds(), cnt.skipped)
	for _, kind := range kinds {
		fmt.Fprintf(&b, "  %-24s %6d\n", kind, cnt.ops[kind])
	}
	slices.Sort(cnt.quick)
	in10 := 0
	for _, d := range cnt.quick {
		if d <= 10*time.Millisecond {
			in10++
		}
	}
	if len(cnt.quick) > 0 {
		fmt.Fprintf(&b, "  quick create+delete pairs: %d; delete sent within 10 ms of the create: %d; create->delete median %v, max %v\n",
			len(cnt.quick), in10, cnt.quick[len(cnt.quick)/2].Round(100*time.Microsecond), cnt.quick[len(cnt.quick)-1].Round(100*time.Microsecond))
	}
	fmt.Fprintf(&b, "  UDP datagrams through FIPs/DNATs: %d; NATed conntrack entries checked at the end: %d\n", cnt.datagrams, natted)
	fmt.Fprintf(&b, "  controller gateway syncs %.0f, desired patches %.0f; daemon converges %.0f, kernel changes %.0f\n", csyncs, patches, syncs, changes)
	fmt.Fprintf(&b, "  retried failures: controller syncs %d (status update conflicts %d), daemon converges %d\n", ctrlFailed, conflicts, daemonFailed)
	fmt.Fprintf(&b, "  sandboxes created %d, torn down %d, CNI ADD failures %d, DEL failures %d\n", k.created, k.removed, len(k.addErrs), len(k.delErrs))
	fmt.Fprintf(&b, "  first converge of %d gateways %v; catch-up after the churn %v\n", md.gateways, firstConverge.Round(time.Millisecond), catchUp.Round(time.Millisecond))
	fmt.Fprintf(&b, "  final kernel diffs %d (own check + test/kstate); kstate conntrack problems %d, of which un-NATed entries of flows older than their mapping %d; leaks while running %d, after deletion %d\n",
		totalDiffs, flowProblems, unnated, nodeLeaks, leaks)
	t.Log(b.String())
	for _, e := range k.addErrs {
		t.Logf("CNI ADD failure (retried): %s", e)
	}
	for _, e := range k.delErrs {
		t.Errorf("CNI DEL failure: %s", e)
	}
}

// churnOnce applies one operation to one gateway through the API.
//
// Its writes do not use the churn's context: a write cancelled on the client side at the end of
// the churn may still have been applied by the server, and the model would no longer say what
// the cluster holds.
func churnOnce(c *cluster, g *gwState, r *rand.Rand, cnt *counts) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.m
	switch x := r.IntN(1000); {
	case x < 80: // a rule created and deleted within 10 ms (Kube-OVN 5115, 5799, 6412)
		kind := []string{"eip", "fip", "dnat", "dnat", "snat", "route"}[r.IntN(6)]
		n := m.clone()
		if !adders[kind](n, r) || n.valid() != nil {
			cnt.mu.Lock()
			cnt.skipped++
			cnt.mu.Unlock()
			return
		}
		write := c.writeGateway
		if kind == "route" {
			write = c.writeVpc
		}
		t0 := time.Now()
		if err := write(ctx, n); err != nil {
			cnt.fail(err)
			return
		}
		// The delete is sent as soon as the create is acknowledged: d is how long after the
		// create was sent (the create's own round trip through the API server).
		d := time.Since(t0)
		if err := write(ctx, m); err != nil { // m: the model without the rule
			cnt.fail(err)
			g.m = n
			return
		}
		cnt.mu.Lock()
		cnt.quick = append(cnt.quick, d)
		cnt.ops[kind+"/create+delete"]++
		cnt.mu.Unlock()
	case x < 84: // lanIp edited: a new NIC plan, so the gateway pod is replaced
		n := m.clone()
		if n.lanIP == n.inner(lanIPPrimary) {
			n.lanIP = n.inner(lanIPOther)
		} else {
			n.lanIP = n.inner(lanIPPrimary)
		}
		n.spec.LanIP = n.lanIP
		if n.valid() != nil {
			return
		}
		if err := c.writeGateway(ctx, n); err != nil {
			cnt.fail(err)
			return
		}
		g.m = n
		cnt.op("gateway/edit-lanIp")
	case x < 87: // the gateway pod deleted (its ReplicaSet makes a new one, a new sandbox)
		pods, err := c.gatewayPods(ctx, m.name)
		if err != nil || len(pods) == 0 || pods[0].DeletionTimestamp != nil {
			return
		}
		if err := c.kube.CoreV1().Pods(plan.GatewayNamespace).Delete(ctx, pods[0].Name, metav1.DeleteOptions{}); err != nil {
			return
		}
		cnt.op("gateway/delete-pod")
	default:
		total := 0
		for _, mu := range mutations {
			total += mu.weight
		}
		pick := r.IntN(total)
		for _, mu := range mutations {
			if pick -= mu.weight; pick >= 0 {
				continue
			}
			n := m.clone()
			if !mu.fn(n, r) || n.valid() != nil {
				cnt.mu.Lock()
				cnt.skipped++
				cnt.mu.Unlock()
				return
			}
			var err error
			if strings.HasPrefix(mu.kind, "route/") {
				err = c.writeVpc(ctx, n)
			} else {
				err = c.writeGateway(ctx, n)
			}
			if err != nil {
				cnt.fail(fmt.Errorf("%s: %w", mu.kind, err))
				return
			}
			g.m = n
			cnt.op(mu.kind)
			return
		}
	}
}

// sendTraffic sends UDP datagrams from the client to FIPs and UDP DNATs of the gateways'
// current models, every few milliseconds, from a few fixed source ports: each leaves a
// conntrack entry (nobody answers) in the gateway that the daemon must delete when the
// mapping is removed or changed.
func sendTraffic(ctx context.Context, t *testing.T, tp *topo.Topology, gws []*gwState, r *rand.Rand, cnt *counts) {
	var conns []net.PacketConn
	if err := tp.Do(roleCli, func() error {
		for range 4 {
			pc, err := net.ListenPacket("udp4", clientIP+":0")
			if err != nil {
				return err
			}
			conns = append(conns, pc)
		}
		return nil
	}); err != nil {
		t.Errorf("client sockets: %v", err)
		return
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		g := gws[r.IntN(len(gws))]
		g.mu.Lock()
		var dsts []*net.UDPAddr
		for _, f := range g.m.spec.FloatingIPRules {
			dsts = append(dsts, &net.UDPAddr{IP: net.ParseIP(f.Eip), Port: 2000 + r.IntN(4)})
		}
		for _, d := range g.m.spec.DnatRules {
			if strings.EqualFold(d.Protocol, "udp") {
				dsts = append(dsts, &net.UDPAddr{IP: net.ParseIP(d.Eip), Port: portOf(d.ExternalPort)})
			}
		}
		g.mu.Unlock()
		if len(dsts) == 0 {
			continue
		}
		if _, err := conns[r.IntN(len(conns))].WriteTo([]byte("soak\n"), dsts[r.IntN(len(dsts))]); err == nil {
			cnt.mu.Lock()
			cnt.datagrams++
			cnt.mu.Unlock()
		}
	}
}

// waitConverged waits until every gateway has caught up with its model and returns their pods.
func waitConverged(t *testing.T, ctx context.Context, c *cluster, k *kubelet, gws []*gwState, procs ...*proc) []*corev1.Pod {
	t.Helper()
	pods := make([]*corev1.Pod, len(gws))
	deadline := time.Now().Add(convergeWait)
	nextReport := time.Now().Add(30 * time.Second)
	for {
		var why []string
		for i, g := range gws {
			if pods[i] != nil {
				continue
			}
			p, err := c.converged(ctx, g.m, k)
			if err != nil {
				why = append(why, g.m.name+": "+err.Error())
				continue
			}
			pods[i] = p
		}
		if len(why) == 0 {
			// A gateway that converged early may have moved on since (a resync finding
			// drift, a late pod deletion): check all again, once, together.
			for i, g := range gws {
				p, err := c.converged(ctx, g.m, k)
				if err != nil || p.UID != pods[i].UID {
					why = append(why, fmt.Sprintf("%s: changed after converging: %v", g.m.name, err))
					pods[i] = nil
				} else {
					pods[i] = p
				}
			}
			if len(why) == 0 {
				return pods
			}
		}
		for _, p := range procs {
			if err := p.alive(); err != nil {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not converged after %v:\n%s", convergeWait, strings.Join(why, "\n"))
		}
		if time.Now().After(nextReport) {
			t.Logf("waiting for %d gateways: %s", len(why), strings.Join(why, "\n"))
			nextReport = time.Now().Add(30 * time.Second)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// deleteAll deletes the gateways, Vpcs and Subnets and waits until their pods are gone and the
// kubelet has torn every sandbox down. Safe to call twice.
func deleteAll(t *testing.T, c *cluster, k *kubelet, n int, prefix string) {
	t.Helper()
	ctx := context.Background()
	for i := range n {
		m := newModel(i, prefix)
		_ = c.ovn.VpcNatGateways.Delete(ctx, m.name, metav1.DeleteOptions{})
		_ = c.ovn.Vpcs.Delete(ctx, m.vpc, metav1.DeleteOptions{})
		_ = c.ovn.Subnets.Delete(ctx, m.subnet, metav1.DeleteOptions{})
	}
	deadline := time.Now().Add(convergeWait)
	for {
		ps, err := c.kube.CoreV1().Pods(plan.GatewayNamespace).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway})
		if err == nil && len(ps.Items) == 0 && k.count() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("gateways deleted, but after %v %d pods (%v) and %d sandboxes remain", convergeWait, len(ps.Items), err, k.count())
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// plant makes one fault by hand in the first gateway's netns when asked (-soak.plant): the
// final check must then report it.
func plant(t *testing.T, tp *topo.Topology, k *kubelet, pods []*corev1.Pod, gws []*gwState) {
	t.Helper()
	if *plantFault == "" {
		return
	}
	g := gws[0].m
	role := k.sandboxOf(pods[0]).role
	var argv []string
	switch *plantFault {
	case "iptables":
		save, err := tp.Exec(role, "iptables-save", "-t", "nat")
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(save, "\n") {
			if strings.Contains(l, "-j DNAT --to-destination") || strings.Contains(l, "-j SNAT --to-source") {
				argv = append([]string{"iptables", "-t", "nat", "-D"}, strings.Fields(strings.TrimPrefix(l, "-A "))...)
				break
			}
		}
	case "addr":
		if len(g.spec.Eips) > 0 {
			argv = []string{"ip", "addr", "del", g.spec.Eips[0].EipCIDR, "dev", "net1"}
		}
	case "route":
		argv = []string{"ip", "route", "add", "203.0.113.240/28", "via", g.inner(100), "table", "100"}
	case "conntrack":
		eip := g.pool(0)
		argv = []string{"conntrack", "-I", "-p", "udp", "-s", clientIP, "-d", eip, "--sport", "9", "--dport", "9",
			"--reply-src", g.inner(9), "--reply-dst", clientIP, "--reply-port-src", "9", "--reply-port-dst", "9", "--timeout", "600"}
	default:
		t.Fatalf("-soak.plant=%q: want iptables, addr, route or conntrack", *plantFault)
	}
	if argv == nil {
		t.Fatalf("-soak.plant=%s: gateway %s has nothing to break", *plantFault, g.name)
	}
	if _, err := tp.Exec(role, argv...); err != nil {
		t.Fatalf("planting %s: %v", *plantFault, err)
	}
	t.Logf("planted fault in gateway %s (netns %s): %s", g.name, tp.Name(role), strings.Join(argv, " "))
}

// recordFiles lists the attachment records in the CNI plugin's state directory.
func recordFiles(chain *cnichain.Chain) []string {
	var out []string
	_ = filepath.WalkDir(chain.StateDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, strings.TrimPrefix(p, chain.StateDir+"/"))
		}
		return nil
	})
	return out
}
