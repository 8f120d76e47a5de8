package main

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/plugins/internal/conf"
)

// PluginConf is the plugin's entry in the conflist: vpcnat's own fields, parsed and validated by
// plugins/internal/conf (the same code the vpcnat dispatcher runs), and the CNI library's view
// of the rest (prevResult as a typed result, the valid attachments of GC).
type PluginConf struct {
	*conf.Conf
	CNI types.PluginConf
}

// parseConfig decodes and validates the plugin configuration; prevResult is parsed when present.
func parseConfig(stdin []byte) (*PluginConf, error) {
	// The CNI library's view is filled from the same strictly decoded members (not by
	// encoding/json from stdin, which would read "CNIVersion" or "IPAM" case-insensitively).
	c, cni, err := conf.ParsePluginConf(stdin)
	if err != nil {
		return nil, err
	}
	pc := &PluginConf{Conf: c, CNI: *cni}
	if pc.CNI.RawPrevResult != nil {
		if err := version.ParsePrevResult(&pc.CNI); err != nil {
			return nil, fmt.Errorf("vpcnat: prevResult: %w", err)
		}
	}
	return pc, nil
}

func parseArgs(s string) (*conf.Args, error) { return conf.ParseArgs(s) }

// gatewayPlan returns the pod's NIC plan when it is a gateway pod, nil for any other pod. Only
// pods in a gateway namespace that carry the gateway annotation are gateways; their NIC plan
// must then be valid.
func (c *PluginConf) gatewayPlan(a *conf.Args) (*annotations.NICPlan, error) {
	if !c.IsGateway(a) {
		return nil, nil
	}
	annots := c.RuntimeConfig.PodAnnotations
	gw := annots[annotations.GatewayKey]
	raw, ok := annots[annotations.NICsKey]
	if !ok {
		return nil, fmt.Errorf("vpcnat: pod %s/%s is gateway %q but has no %s annotation", a.PodNamespace, a.PodName, gw, annotations.NICsKey)
	}
	plan, err := annotations.ParseNICPlan(raw)
	if err != nil {
		return nil, fmt.Errorf("vpcnat: pod %s/%s: %w", a.PodNamespace, a.PodName, err)
	}
	if plan.Gateway != gw {
		return nil, fmt.Errorf("vpcnat: pod %s/%s: annotation %s names gateway %q but %s says %q", a.PodNamespace, a.PodName, annotations.NICsKey, plan.Gateway, annotations.GatewayKey, gw)
	}
	if c.Master != "" {
		plan.External.Master = c.Master
	}
	return plan, nil
}
