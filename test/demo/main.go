// Command vpcnat-demo is `make demo`: it builds a throwaway topology of network namespaces (an
// external network with the EIP gateway router and an outside client, a node, the VPC subnet with
// pods, and an empty gateway namespace), converges the gateway from the seed's YAML with
// `vpcnat-daemon apply` run on the simulated node exactly as a user would, sends real traffic for
// every rule kind, prints what was sent and seen, and removes everything, also when interrupted.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/vpcnat/vpcnat/test/topo"
)

func main() {
	daemon := flag.String("daemon", "bin/vpcnat-daemon", "path of the vpcnat-daemon binary")
	spec := flag.String("spec", "examples/seed.yaml", "the VpcNatGateway YAML to apply")
	cniPath := flag.String("cni-path", "bin", "colon-separated directories of the CNI plugins (vpcnat, bridge, host-local)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "vpcnat-demo: needs root (it creates network namespaces)")
		os.Exit(2)
	}
	os.Exit(run(*daemon, *spec, strings.Split(*cniPath, ":")))
}

func run(daemon, spec string, cniPath []string) int {
	start := time.Now()
	t := &topo.Topology{Prefix: topo.NewPrefix()}
	// Clean up on every way out: normal return, error, Ctrl-C or SIGTERM. Each step pushes its
	// undo; they run once, last first, from whichever way out comes first.
	var (
		mu    sync.Mutex
		undos []func()
	)
	push := func(f func()) { mu.Lock(); undos = append(undos, f); mu.Unlock() }
	cleanup := func() {
		mu.Lock()
		defer mu.Unlock()
		for i := len(undos) - 1; i >= 0; i-- {
			undos[i]()
		}
		undos = nil
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs
		fmt.Fprintln(os.Stderr, "\nvpcnat-demo: interrupted, cleaning up")
		cleanup()
		os.Exit(130)
	}()
	defer cleanup()
	push(func() {
		if err := t.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "vpcnat-demo:", err)
		}
	})
	if err := t.BuildSeed(); err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-demo:", err)
		return 1
	}
	fmt.Printf("topology %s-* built in %v (namespaces: ext, rtr, inet, cli, node, gw, pods)\n\n",
		t.Prefix, time.Since(start).Round(time.Millisecond))

	// The container runtime's part: create the gateway pod's sandbox through the node's CNI chain
	// (bridge + host-local, then vpcnat), with the pod template annotations the controller writes.
	pod, err := createGatewayPod(t, spec, cniPath, push)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-demo:", err)
		return 1
	}
	fmt.Printf("CNI ADD of gateway pod %s/%s (bridge + host-local, then vpcnat): %s\n\n", pod.Namespace, pod.Name, pod.summary)

	applyStart := time.Now()
	out, err := apply(t, daemon, spec)
	fmt.Printf("$ ip netns exec %s %s apply --netns %s --spec %s\n%s", t.Name(topo.Node), daemon, t.Path(topo.Gateway), spec, indent(out))
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-demo: apply failed:", err)
		return 1
	}
	fmt.Printf("converged in %v (including process start)\n\n", time.Since(applyStart).Round(time.Millisecond))

	rows, err := checks(t)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-demo:", err)
		return 1
	}
	// Applying the same spec again must change nothing.
	again, err := apply(t, daemon, spec)
	rows = append(rows, row{"idempotent", "apply the same spec again", firstLine(again), err == nil && strings.Contains(again, "in sync")})

	// The other NAT backend: the same spec with --dataplane iptables switches the running
	// gateway (the default nftables table replaced by iptables chains), and every rule kind is
	// sent again.
	other, err := apply(t, daemon, spec, "--dataplane", "iptables")
	fmt.Printf("$ ip netns exec %s %s apply --netns %s --spec %s --dataplane iptables\n%s\n", t.Name(topo.Node), daemon, t.Path(topo.Gateway), spec, indent(other))
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-demo: apply --dataplane iptables failed:", err)
		return 1
	}
	more, err := checks(t)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-demo:", err)
		return 1
	}
	for i := range rows {
		rows[i].rule += " (nftables)"
	}
	for _, r := range more {
		r.rule += " (iptables)"
		rows = append(rows, r)
	}

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "RULE\tSENT\tSEEN\tRESULT")
	failed := 0
	for _, r := range rows {
		res := "PASS"
		if !r.ok {
			res = "FAIL"
			failed++
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", r.rule, r.sent, r.seen, res)
	}
	_ = w.Flush()
	fmt.Printf("\n%d passed, %d failed (%v)\n", len(rows)-failed, failed, time.Since(start).Round(time.Millisecond))
	if failed > 0 {
		return 1
	}
	return 0
}

// apply runs the daemon's no-cluster mode on the simulated node, as a user would on a real one.
func apply(t *topo.Topology, daemon, spec string, extra ...string) (string, error) {
	args := append([]string{"netns", "exec", t.Name(topo.Node), daemon, "apply", "--netns", t.Path(topo.Gateway), "--spec", spec}, extra...)
	out, err := exec.Command("ip", args...).CombinedOutput()
	return string(out), err
}

func indent(s string) string {
	var b strings.Builder
	for _, l := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return l
}
