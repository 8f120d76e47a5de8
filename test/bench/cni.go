package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/containernetworking/cni/libcni"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
)

// cniResult is the CNI part of the table (medians).
type cniResult struct {
	plainAddDel, withAddDel time.Duration // normal pod: bridge+host-local, and the same + vpcnat
	floorAddDel             time.Duration // normal pod: bridge+host-local + a do-nothing Go plugin
	// Paired: the median over rounds of (chain with X) - (chain without), both in the same round.
	pairedWith, pairedFloor time.Duration
	// Inside the chain: libcni's execution of the plugin alone (fork, exec, run, exit), ADD + DEL
	// of the same pod, for vpcnat and for the do-nothing plugin.
	execWith, execFloor  time.Duration
	plainAdd, gatewayAdd time.Duration // gateway pod (net1 + 2 subnet NICs): chain ADD without and with vpcnat
	gatewayDel           time.Duration
	rounds               int
}

// measureCNI runs the chain through libcni in the seed topology's node namespace.
func (b bench) measureCNI(rounds int) (cniResult, error) {
	r := cniResult{rounds: rounds}
	t, err := newTopology()
	if err != nil {
		return r, err
	}
	defer t.Close()
	dir, err := os.MkdirTemp("", "vpcnat-bench-cni-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	paths, err := cnichain.PluginDirs(".", dir)
	if err != nil {
		return r, err
	}
	chain := cnichain.New(t, paths, dir)
	chainExec := newTimedExec()
	chain.CNI = libcni.NewCNIConfigWithCacheDir(paths, filepath.Join(dir, "cache"), chainExec)
	plain, err := chain.ConfList("1.1.0", false, "")
	if err != nil {
		return r, err
	}
	with, err := chain.ConfList("1.1.0", true, "")
	if err != nil {
		return r, err
	}
	annots, err := gatewayAnnotations()
	if err != nil {
		return r, err
	}
	// Kubelet's own annotations ride along on every pod.
	normal := map[string]string{"kubernetes.io/config.seen": "2026-11-26T00:00:00Z", "kubernetes.io/config.source": "api"}

	// The floor: the same chain with a do-nothing Go plugin in vpcnat's place, measured in the
	// same rounds so that both see the same machine.
	floorDir := filepath.Join(dir, "floor")
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(floorDir, "vpcnat"), "./test/bench/passthru")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as vpcnat is built (cnichain.BuildPlugin)
	if out, err := build.CombinedOutput(); err != nil {
		return r, fmt.Errorf("building the pass-through plugin: %w: %s", err, out)
	}
	floorPaths := append([]string{floorDir}, paths[1:]...)
	floor := cnichain.New(t, floorPaths, filepath.Join(dir, "floor-run"))
	floorExec := newTimedExec()
	floor.CNI = libcni.NewCNIConfigWithCacheDir(floorPaths, filepath.Join(dir, "floor-run", "cache"), floorExec)
	floorList, err := floor.ConfList("1.1.0", true, "")
	if err != nil {
		return r, err
	}

	var plainAD, withAD, floorAD, plainA, gwA, gwD, pairedW, pairedF, execW, execF []time.Duration
	for i := range rounds {
		var roundAD [3]time.Duration // plain, with, floor: this round's normal-pod ADD+DEL
		type benchCase struct {
			chain  *cnichain.Chain
			list   *libcni.NetworkConfigList
			ns     string
			annots map[string]string
			add    *[]time.Duration
			addDel *[]time.Duration
			del    *[]time.Duration
			texec  *timedExec
			execs  *[]time.Duration // vpcnat's (or the floor's) own ADD + DEL execution
			round  int              // index in roundAD, or -1
		}
		normalCases := []benchCase{
			{chain, plain, "default", normal, nil, &plainAD, nil, chainExec, nil, 0},
			{chain, with, "default", normal, nil, &withAD, nil, chainExec, &execW, 1},
			{floor, floorList, "default", normal, nil, &floorAD, nil, floorExec, &execF, 2},
		}
		// The three normal-pod cases take turns at going first: a deleted namespace is torn down
		// by the kernel after DelNS returns, and that work slows whatever runs next.
		cases := append(normalCases[i%3:], normalCases[:i%3]...)
		cases = append(cases,
			benchCase{chain, plain, "kube-system", annots, &plainA, nil, nil, chainExec, nil, -1},
			benchCase{chain, with, "kube-system", annots, &gwA, nil, &gwD, chainExec, nil, -1})
		for _, c := range cases {
			role := fmt.Sprintf("p%d", i)
			if err := t.AddNS(role); err != nil {
				return r, err
			}
			p := cnichain.Pod{Role: role, Namespace: c.ns, Name: role, UID: "uid-" + role, ContainerID: "ctr-" + role, Annotations: c.annots}
			start := time.Now()
			if _, err := c.chain.Add(c.list, p); err != nil {
				return r, fmt.Errorf("CNI ADD: %w", err)
			}
			added := time.Now()
			if err := c.chain.Del(c.list, p); err != nil {
				return r, fmt.Errorf("CNI DEL: %w", err)
			}
			done := time.Now()
			if c.add != nil {
				*c.add = append(*c.add, added.Sub(start))
			}
			if c.addDel != nil {
				*c.addDel = append(*c.addDel, done.Sub(start))
			}
			if c.del != nil {
				*c.del = append(*c.del, done.Sub(added))
			}
			if c.round >= 0 {
				roundAD[c.round] = done.Sub(start)
			}
			adds, dels := c.texec.take("vpcnat", "ADD"), c.texec.take("vpcnat", "DEL")
			if c.execs != nil {
				if len(adds) != 1 || len(dels) != 1 {
					return r, fmt.Errorf("round %d: vpcnat executed %d times for ADD and %d for DEL, want once each", i, len(adds), len(dels))
				}
				*c.execs = append(*c.execs, adds[0]+dels[0])
			}
			if err := t.DelNS(role); err != nil {
				return r, err
			}
		}
		pairedW = append(pairedW, roundAD[1]-roundAD[0])
		pairedF = append(pairedF, roundAD[2]-roundAD[0])
	}
	r.pairedWith, r.pairedFloor, r.execWith, r.execFloor = median(pairedW), median(pairedF), median(execW), median(execF)
	r.plainAddDel, r.withAddDel, r.plainAdd, r.gatewayAdd, r.gatewayDel = median(plainAD), median(withAD), median(plainA), median(gwA), median(gwD)

	r.floorAddDel = median(floorAD)
	return r, nil
}

// gatewayAnnotations are the seed gateway's template annotations with a second subnet, so the
// plugin creates net1 and two subnet NICs.
func gatewayAnnotations() (map[string]string, error) {
	in, err := plan.LoadFile("examples/seed.yaml")
	if err != nil {
		return nil, err
	}
	in.Subnets = append(in.Subnets, &v1.Subnet{Spec: v1.SubnetSpec{Vpc: "test-vpc-1", CIDRBlock: "10.0.2.0/24", Gateway: "10.0.2.1",
		NatGatewayAttachment: &v1.SubnetAttachment{Bridge: "br-sn2"}}})
	in.Subnets[len(in.Subnets)-1].Name = "sn2"
	nics, _, errs := plan.Build(in)
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	return plan.TemplateAnnotations(nics, "ovn-vpc-external-network")
}

func printCNI(r cniResult) {
	fmt.Printf("\n| CNI chain through libcni (median of %d) | time |\n| --- | --- |\n", r.rounds)
	fmt.Printf("| normal pod ADD+DEL, bridge + host-local | %s |\n", ms(r.plainAddDel))
	fmt.Printf("| normal pod ADD+DEL, bridge + host-local + vpcnat | %s (vpcnat adds %s) |\n", ms(r.withAddDel), ms(r.withAddDel-r.plainAddDel))
	fmt.Printf("| normal pod ADD+DEL, bridge + host-local + a do-nothing Go plugin (the floor) | %s (adds %s) |\n", ms(r.floorAddDel), ms(r.floorAddDel-r.plainAddDel))
	fmt.Printf("| normal pod ADD+DEL, paired per round: (chain + vpcnat) - (chain) / (chain + floor) - (chain) | %s / %s |\n", ms(r.pairedWith), ms(r.pairedFloor))
	fmt.Printf("| normal pod ADD + DEL execution of the last plugin alone, inside the chain: vpcnat / the floor | %s / %s (%.2f×) |\n", ms(r.execWith), ms(r.execFloor), float64(r.execWith)/float64(r.execFloor))
	fmt.Printf("| gateway pod ADD, bridge + host-local only | %s |\n", ms(r.plainAdd))
	fmt.Printf("| gateway pod ADD with vpcnat (net1 + 2 subnet NICs) | %s (vpcnat's share %s) |\n", ms(r.gatewayAdd), ms(r.gatewayAdd-r.plainAdd))
	fmt.Printf("| gateway pod DEL with vpcnat | %s |\n", ms(r.gatewayDel))
}
