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
	plainAdd, gatewayAdd    time.Duration // gateway pod (net1 + 2 subnet NICs): chain ADD without and with vpcnat
	gatewayDel              time.Duration
	rounds                  int
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
	if out, err := exec.Command("go", "build", "-o", filepath.Join(floorDir, "vpcnat"), "./test/bench/passthru").CombinedOutput(); err != nil {
		return r, fmt.Errorf("building the pass-through plugin: %w: %s", err, out)
	}
	floor := cnichain.New(t, append([]string{floorDir}, paths[1:]...), filepath.Join(dir, "floor-run"))
	floorList, err := floor.ConfList("1.1.0", true, "")
	if err != nil {
		return r, err
	}

	var plainAD, withAD, floorAD, plainA, gwA, gwD []time.Duration
	for i := range rounds {
		for _, c := range []struct {
			chain  *cnichain.Chain
			list   *libcni.NetworkConfigList
			ns     string
			annots map[string]string
			add    *[]time.Duration
			addDel *[]time.Duration
			del    *[]time.Duration
		}{
			{chain, plain, "default", normal, nil, &plainAD, nil},
			{chain, with, "default", normal, nil, &withAD, nil},
			{floor, floorList, "default", normal, nil, &floorAD, nil},
			{chain, plain, "kube-system", annots, &plainA, nil, nil},
			{chain, with, "kube-system", annots, &gwA, nil, &gwD},
		} {
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
			if err := t.DelNS(role); err != nil {
				return r, err
			}
		}
	}
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
	fmt.Printf("| gateway pod ADD, bridge + host-local only | %s |\n", ms(r.plainAdd))
	fmt.Printf("| gateway pod ADD with vpcnat (net1 + 2 subnet NICs) | %s (vpcnat's share %s) |\n", ms(r.gatewayAdd), ms(r.gatewayAdd-r.plainAdd))
	fmt.Printf("| gateway pod DEL with vpcnat | %s |\n", ms(r.gatewayDel))
}
