package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

type gatewayPod struct {
	cnichain.Pod
	summary string
}

// createGatewayPod runs CNI ADD for the gateway pod (the topology's empty gateway namespace) as
// containerd would: kube-system namespace, the seed's pod template annotations. It registers its
// undos (DEL, the scratch directory) with push as soon as there is something to undo.
func createGatewayPod(t *topo.Topology, spec string, cniPath []string, push func(func())) (*gatewayPod, error) {
	in, err := plan.LoadFile(spec)
	if err != nil {
		return nil, err
	}
	nics, _, errs := plan.Build(in)
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s is invalid: %w", spec, errs.ToAggregate())
	}
	annots, err := plan.TemplateAnnotations(nics, "ovn-vpc-external-network")
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vpcnat-demo-")
	if err != nil {
		return nil, err
	}
	push(func() { os.RemoveAll(dir) })
	chain := cnichain.New(t, cniPath, dir)
	list, err := chain.ConfList("1.1.0", true, "")
	if err != nil {
		return nil, err
	}
	p := &gatewayPod{Pod: cnichain.Pod{Role: topo.Gateway, Namespace: "kube-system", Name: "vpc-nat-gw-" + in.Gateway.Name + "-0",
		UID: "demo-" + t.Prefix, ContainerID: "demo-" + t.Prefix, Annotations: annots}}
	start := time.Now()
	// DEL is idempotent: registered before ADD, it also undoes an ADD cut short.
	push(func() {
		if err := chain.Del(list, p.Pod); err != nil {
			fmt.Fprintln(os.Stderr, "vpcnat-demo: CNI DEL:", err)
		}
	})
	res, err := chain.Add(list, p.Pod)
	if err != nil {
		return nil, fmt.Errorf("CNI ADD of the gateway pod: %w", err)
	}
	took := time.Since(start)
	r, err := current.NewResultFromResult(res)
	if err != nil {
		return nil, err
	}
	var ifs []string
	for _, i := range r.Interfaces {
		if i.Sandbox != "" {
			ifs = append(ifs, i.Name)
		}
	}
	p.summary = fmt.Sprintf("interfaces %s, record %s (%v)", strings.Join(ifs, ", "), strings.Join(chain.Records(), ","), took.Round(time.Millisecond))
	return p, nil
}
