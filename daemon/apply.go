package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// runApply is the no-cluster mode: validate a VpcNatGateway YAML (with its Vpc, Subnets and
// optionally the ConfigMap) and converge one network namespace to it, from the node's network
// namespace (the one this process runs in). A bad spec applies nothing.
func runApply(args []string) int {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	nsPath := fs.String("netns", "", "path of the gateway's network namespace (e.g. /run/netns/gw)")
	spec := fs.String("spec", "", "YAML file with the VpcNatGateway, its Vpc and Subnets, and optionally the ConfigMap")
	master := fs.String("master", "", "node NIC for net1; overrides the ConfigMap's nic (required without a ConfigMap)")
	dataplane := fs.String("dataplane", "", "NAT backend: iptables or nftables; overrides the ConfigMap's dataplane (default iptables)")
	timeout := fs.Duration("timeout", time.Minute, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *nsPath == "" || *spec == "" {
		fmt.Fprintln(os.Stderr, "vpcnat-daemon apply: --netns and --spec are required")
		fs.Usage()
		return 2
	}

	in, err := plan.LoadFile(*spec)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcnat-daemon apply: %v\n", err)
		return 1
	}
	if *master != "" {
		in.Config.NIC = *master
	}
	switch *dataplane {
	case "":
	case annotations.DataplaneIPTables, annotations.DataplaneNFTables:
		in.Config.Dataplane = *dataplane
	default:
		fmt.Fprintf(os.Stderr, "vpcnat-daemon apply: --dataplane %q: want %s or %s\n", *dataplane,
			annotations.DataplaneIPTables, annotations.DataplaneNFTables)
		return 2
	}
	_, desired, errs := plan.Build(in)
	if len(errs) > 0 {
		fmt.Fprintf(os.Stderr, "vpcnat-daemon apply: %s is invalid, nothing applied:\n", *spec)
		for _, e := range errs {
			fmt.Fprintf(os.Stderr, "  %s\n", e.Error())
		}
		return 1
	}

	// The node side (masters, bridges) is this thread's network namespace: keep the goroutine on
	// one OS thread so it cannot change under the converge.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	gw := netconf.NewGateway(*nsPath)
	defer gw.Close()
	report, err := gw.Converge(ctx, desired, true)
	if report != nil {
		for _, c := range report.Changes {
			fmt.Println(c)
		}
	}
	// One shot: nothing probes a pending address again after this process exits.
	for _, c := range gw.Conflicts() {
		if !c.Claimed {
			fmt.Fprintf(os.Stderr, "vpcnat-daemon apply: %s not added to %s: MAC %s answers for it (run apply again once it is free)\n",
				c.Address, c.Interface, c.MAC)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcnat-daemon apply: converging %s: %v\n", *nsPath, err)
		return 1
	}
	if report == nil || len(report.Changes) == 0 {
		fmt.Printf("gateway %s in sync: no changes (%v)\n", desired.Gateway, time.Since(start).Round(time.Microsecond))
		return 0
	}
	fmt.Printf("gateway %s converged: %d changes (%v)\n", desired.Gateway, len(report.Changes), time.Since(start).Round(time.Microsecond))
	return 0
}
