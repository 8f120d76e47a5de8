// Command vpcnat-controller-bench measures vpcnat-controller against a real etcd +
// kube-apiserver + kube-controller-manager (test/kubeenv), the controller running as its own
// process (the real binary) so that its memory is its own:
//
//   - create -> desired: from the create of a VpcNatGateway with 100 rules to its desired
//     annotation on the bound pod (Deployment, ReplicaSet and Pod made by the real
//     controller-manager; a kubeenv.PodRunner binds the pod and reports it running);
//   - edit -> desired: from the update of one rule to the new annotation on the running pod;
//   - the controller's resident memory with 1 000 such gateways, all projected.
//
// It prints a markdown table. A benchmark, not a test: it reports what it measured in this run.
//
// Every gateway has a Vpc and a Subnet (on a bridge) of its own, as tenants on a real cluster do:
// a Vpc has one gateway and a segment belongs to one Vpc.
//
// Address plan (API values only; nothing is configured on any interface): EIPs in 100.64.0.0/16
// (shared address space, the gateway 100.64.0.1: 1 000 gateways need 2 000 EIPs), every Vpc's
// subnet 10.0.0.0/16 with the gateway's lanIp 10.0.0.254.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"time"

	"github.com/vpcnat/vpcnat/test/kubeenv"
)

func main() {
	gateways := flag.Int("gateways", 1000, "gateways for the memory measurement")
	samples := flag.Int("samples", 20, "creates and edits measured (median reported)")
	rules := flag.Int("rules", 100, "rules per gateway (2 EIPs, 1 FIP, 1 SNAT, the rest DNATs)")
	heap := flag.String("heap-profile", "", "save the controller's heap profile here after the memory measurement")
	flag.Parse()
	if *gateways < *samples || *gateways > maxGateways || *samples < 1 || *rules < 4 {
		fmt.Fprintf(os.Stderr, "vpcnat-controller-bench: want 1 <= --samples (%d) <= --gateways (%d) <= %d and --rules (%d) >= 4\n",
			*samples, *gateways, maxGateways, *rules)
		os.Exit(2)
	}
	if err := run(*gateways, *samples, *rules, *heap); err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-controller-bench:", err)
		os.Exit(1)
	}
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..")
}

func run(gateways, samples, rules int, heap string) error {
	ctx := context.Background()
	root := repoRoot()
	bin, err := kubeenv.BinDir(root)
	if err != nil {
		return err
	}
	env, err := kubeenv.Start(ctx, bin)
	if err != nil {
		return err
	}
	defer env.Stop()
	if err := env.Install(ctx, root, "deploy/crds", "deploy/controller/00-serviceaccount.yaml", "deploy/controller/10-rbac.yaml"); err != nil {
		return err
	}
	if err := env.StartControllerManager(ctx); err != nil {
		return err
	}
	b, err := newBench(ctx, env, root, rules)
	if err != nil {
		return err
	}
	defer b.close()
	if err := b.setUp(ctx); err != nil {
		return err
	}

	creates, err := b.measureCreates(ctx, samples)
	if err != nil {
		return err
	}
	edits, err := b.measureEdits(ctx, "g-0000", samples)
	if err != nil {
		return err
	}
	converge, idle, err := b.fill(ctx, gateways)
	if err != nil {
		return err
	}
	busyRSS, err := b.controller.rss()
	if err != nil {
		return err
	}
	time.Sleep(5 * time.Second)
	settledRSS, err := b.controller.rss()
	if err != nil {
		return err
	}
	if heap != "" {
		if err := b.heapProfile(heap); err != nil {
			return err
		}
	}
	fmt.Printf("\nvpcnat-controller, %d rules per gateway (%d CPUs):\n\n", rules, runtime.NumCPU())
	fmt.Println("| measurement | median | min | max | target |")
	fmt.Println("| --- | --- | --- | --- | --- |")
	row := func(name string, d []time.Duration, target string) {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		fmt.Printf("| %s (%d samples) | %v | %v | %v | %s |\n", name, len(d), round(d[len(d)/2]), round(d[0]), round(d[len(d)-1]), target)
	}
	row("create -> desired annotation on the bound pod", creates, "<= 1 s")
	row("one-rule edit -> updated annotation", edits, "<= 200 ms")
	fmt.Printf("| controller RSS, %d gateways projected | %.1f MiB | | | <= 150 MiB |\n", gateways, settledRSS)
	fmt.Printf("\n%d gateways created and projected in %v; RSS %.1f MiB right after, %.1f MiB 5 s later; RSS with no gateway %.1f MiB.\n",
		gateways, round(converge), busyRSS, settledRSS, idle)
	return nil
}

func round(d time.Duration) time.Duration {
	if d > 10*time.Second {
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(100 * time.Microsecond)
}
