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

// variant is one chain a normal pod is added to and deleted from, and what was measured of it.
type variant struct {
	name  string
	chain *cnichain.Chain
	list  *libcni.NetworkConfigList
	exec  *timedExec
	last  bool // the list ends with a plugin of type vpcnat (whose executions are timed)

	addDel []time.Duration // the chain's ADD+DEL
	paired []time.Duration // ADD+DEL minus the plain chain's in the same round
	execs  []time.Duration // the last plugin's own ADD + DEL executions
}

// cniResult is the CNI part of the table (medians).
type cniResult struct {
	rounds   int
	variants []*variant // plain chain, + vpcnat, + the floor, [+ the C exec floor], + each compared binary
	cFloor   *variant   // the static C exec floor (nil: no C compiler)
	// gateway pod (net1 + 2 subnet NICs): chain ADD without and with vpcnat, and DEL
	plainAdd, gatewayAdd, gatewayDel time.Duration
}

// measureCNI runs the chain through libcni in the seed topology's node namespace. compare are
// more binaries measured in vpcnat's place (e.g. an older vpcnat), in the same rounds.
func (b bench) measureCNI(rounds int, compare []string) (cniResult, error) {
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
	newVariant := func(name, binDir string, last bool) (*variant, error) {
		ps := append([]string{binDir}, paths[1:]...)
		run := filepath.Join(dir, "run-"+fmt.Sprint(len(r.variants)))
		v := &variant{name: name, chain: cnichain.New(t, ps, run), exec: newTimedExec(), last: last}
		v.chain.CNI = libcni.NewCNIConfigWithCacheDir(ps, filepath.Join(run, "cache"), v.exec)
		list, err := v.chain.ConfList("1.1.0", last, "")
		v.list = list
		r.variants = append(r.variants, v)
		return v, err
	}
	plain, err := newVariant("bridge + host-local", paths[0], false)
	if err != nil {
		return r, err
	}
	with, err := newVariant("bridge + host-local + vpcnat", paths[0], true)
	if err != nil {
		return r, err
	}
	// The floor: a do-nothing Go plugin in vpcnat's place.
	floorDir := filepath.Join(dir, "floor")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(floorDir, "vpcnat"), "./test/bench/passthru")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // as vpcnat is built (cnichain.BuildPlugin)
	if out, err := build.CombinedOutput(); err != nil {
		return r, fmt.Errorf("building the pass-through plugin: %w: %s", err, out)
	}
	if _, err := newVariant("bridge + host-local + a do-nothing Go plugin (the floor)", floorDir, true); err != nil {
		return r, err
	}
	// The exec floor: the same do-nothing plugin as a static C program (no language runtime),
	// when this machine has a C compiler; what one plugin execution costs here at the least.
	cFloorDir := filepath.Join(dir, "floor-c")
	if cc, err := exec.LookPath("cc"); err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-bench: no C compiler (cc): the static C exec floor is not measured")
	} else {
		if err := os.MkdirAll(cFloorDir, 0o755); err != nil {
			return r, err
		}
		build := exec.Command(cc, "-O2", "-static", "-o", filepath.Join(cFloorDir, "vpcnat"), "test/bench/passthru-c/passthru.c")
		if out, err := build.CombinedOutput(); err != nil {
			return r, fmt.Errorf("building the C pass-through plugin: %w: %s", err, out)
		}
		if r.cFloor, err = newVariant("bridge + host-local + the same do-nothing plugin in static C (the exec floor)", cFloorDir, true); err != nil {
			return r, err
		}
	}
	for i, bin := range compare {
		d := filepath.Join(dir, fmt.Sprintf("compare-%d", i))
		if err := os.MkdirAll(d, 0o755); err != nil {
			return r, err
		}
		// The binary is linked as vpcnat, next to this build's vpcnat-gateway (an older,
		// single-binary vpcnat ignores it).
		for name, src := range map[string]string{"vpcnat": bin, "vpcnat-gateway": filepath.Join(paths[0], "vpcnat-gateway")} {
			data, err := os.ReadFile(src)
			if err != nil {
				return r, fmt.Errorf("-compare: %w", err)
			}
			if err := os.WriteFile(filepath.Join(d, name), data, 0o755); err != nil {
				return r, err
			}
		}
		if _, err := newVariant("bridge + host-local + "+bin, d, true); err != nil {
			return r, err
		}
	}
	annots, err := gatewayAnnotations()
	if err != nil {
		return r, err
	}
	// Kubelet's own annotations ride along on every pod.
	normal := map[string]string{"kubernetes.io/config.seen": "2026-11-26T00:00:00Z", "kubernetes.io/config.source": "api"}

	var plainA, gwA, gwD []time.Duration
	for i := range rounds {
		role := fmt.Sprintf("p%d", i)
		addDel := func(v *variant, ns string, annots map[string]string) (add, del time.Duration, err error) {
			if err := t.AddNS(role); err != nil {
				return 0, 0, err
			}
			p := cnichain.Pod{Role: role, Namespace: ns, Name: role, UID: "uid-" + role, ContainerID: "ctr-" + role, Annotations: annots}
			start := time.Now()
			if _, err := v.chain.Add(v.list, p); err != nil {
				return 0, 0, fmt.Errorf("%s: CNI ADD: %w", v.name, err)
			}
			added := time.Now()
			if err := v.chain.Del(v.list, p); err != nil {
				return 0, 0, fmt.Errorf("%s: CNI DEL: %w", v.name, err)
			}
			del = time.Since(added)
			adds, dels := v.exec.take("vpcnat", "ADD"), v.exec.take("vpcnat", "DEL")
			if v.last && ns == "default" {
				if len(adds) != 1 || len(dels) != 1 {
					return 0, 0, fmt.Errorf("%s: vpcnat executed %d times for ADD and %d for DEL, want once each", v.name, len(adds), len(dels))
				}
				v.execs = append(v.execs, adds[0]+dels[0])
			}
			return added.Sub(start), del, t.DelNS(role)
		}
		// The normal-pod variants take turns at going first: a deleted namespace is torn down by
		// the kernel after DelNS returns, and that work slows whatever runs next.
		n := len(r.variants)
		this := make([]time.Duration, n)
		for k := range n {
			j := (i + k) % n
			add, del, err := addDel(r.variants[j], "default", normal)
			if err != nil {
				return r, err
			}
			this[j] = add + del
			r.variants[j].addDel = append(r.variants[j].addDel, add+del)
		}
		for j, v := range r.variants {
			v.paired = append(v.paired, this[j]-this[0])
		}
		add, _, err := addDel(plain, "kube-system", annots)
		if err != nil {
			return r, err
		}
		plainA = append(plainA, add)
		add, del, err := addDel(with, "kube-system", annots)
		if err != nil {
			return r, err
		}
		gwA, gwD = append(gwA, add), append(gwD, del)
	}
	r.plainAdd, r.gatewayAdd, r.gatewayDel = median(plainA), median(gwA), median(gwD)
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
	fmt.Printf("\n| CNI chain through libcni, normal pod (median of %d rounds) | ADD+DEL | minus the plain chain's: difference of medians / median of same-round differences | the last plugin's own ADD + DEL executions (ratio to the floor's) |\n| --- | --- | --- | --- |\n", r.rounds)
	floor := median(r.variants[2].execs)
	for i, v := range r.variants {
		diff, exe := "—", "—"
		if i > 0 {
			diff = fmt.Sprintf("%s / %s", ms(median(v.addDel)-median(r.variants[0].addDel)), ms(median(v.paired)))
		}
		if v.last {
			exe = fmt.Sprintf("%s (%.2f×)", ms(median(v.execs)), float64(median(v.execs))/float64(floor))
		}
		fmt.Printf("| %s | %s | %s | %s |\n", v.name, ms(median(v.addDel)), diff, exe)
	}
	fmt.Printf("\nTarget: vpcnat adds at most 2 ms to a normal pod's ADD+DEL. Two plugin executions are the least any chained plugin adds; their medians here: vpcnat %s, the do-nothing Go plugin %s",
		ms(median(r.variants[1].execs)), ms(floor))
	if r.cFloor != nil {
		fmt.Printf(", the do-nothing static C program %s", ms(median(r.cFloor.execs)))
	}
	fmt.Println(".")
	fmt.Printf("\n| CNI chain through libcni, gateway pod (median of %d) | time |\n| --- | --- |\n", r.rounds)
	fmt.Printf("| gateway pod ADD, bridge + host-local only | %s |\n", ms(r.plainAdd))
	fmt.Printf("| gateway pod ADD with vpcnat (net1 + 2 subnet NICs) | %s (vpcnat's share %s) |\n", ms(r.gatewayAdd), ms(r.gatewayAdd-r.plainAdd))
	fmt.Printf("| gateway pod DEL with vpcnat | %s |\n", ms(r.gatewayDel))
}
