package main

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/state"
)

// PluginConf is the plugin's entry in the conflist.
type PluginConf struct {
	types.PluginConf

	// GatewayNamespaces are the only namespaces whose pods can be gateways (default
	// kube-system): a user who puts the gateway annotation on a pod elsewhere gets nothing.
	GatewayNamespaces []string `json:"gatewayNamespaces,omitempty"`
	// StateDir holds the attachment records the daemon reads (default /run/vpcnat).
	StateDir string `json:"stateDir,omitempty"`
	// Master, when set, is this node's NIC for net1, overriding the NIC plan's (nodes whose
	// underlay NIC has another name).
	Master string `json:"master,omitempty"`

	RuntimeConfig struct {
		PodAnnotations map[string]string `json:"io.kubernetes.cri.pod-annotations,omitempty"`
	} `json:"runtimeConfig,omitempty"`
}

const defaultGatewayNamespace = "kube-system"

// parseConfig decodes and validates the plugin configuration; prevResult is parsed when present.
func parseConfig(stdin []byte) (*PluginConf, error) {
	conf := &PluginConf{}
	if err := json.Unmarshal(stdin, conf); err != nil {
		return nil, fmt.Errorf("vpcnat: invalid network configuration JSON: %w", err)
	}
	if len(conf.GatewayNamespaces) == 0 {
		conf.GatewayNamespaces = []string{defaultGatewayNamespace}
	}
	if conf.StateDir == "" {
		conf.StateDir = state.DefaultDir
	}
	for i, ns := range conf.GatewayNamespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return nil, fmt.Errorf("vpcnat: gatewayNamespaces[%d]: invalid namespace %q: %s", i, ns, strings.Join(errs, "; "))
		}
	}
	if !filepath.IsAbs(conf.StateDir) {
		return nil, fmt.Errorf("vpcnat: stateDir: %q is not an absolute path", conf.StateDir)
	}
	if conf.Master != "" {
		if err := annotations.CheckIfName(conf.Master, field.NewPath("master")); err != nil {
			return nil, fmt.Errorf("vpcnat: %w", err)
		}
	}
	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
			return nil, fmt.Errorf("vpcnat: prevResult: %w", err)
		}
	}
	return conf, nil
}

// k8sArgs are the CNI_ARGS containerd and CRI-O pass for a Kubernetes pod.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
}

func parseArgs(s string) (*k8sArgs, error) {
	a := &k8sArgs{}
	if err := types.LoadArgs(s, a); err != nil {
		return nil, fmt.Errorf("vpcnat: CNI_ARGS: %w", err)
	}
	return a, nil
}

// recordKey names the pod's attachment record: its UID, or namespace_name when the runtime does
// not pass the UID.
func (a *k8sArgs) recordKey() string {
	if a.K8S_POD_UID != "" {
		return string(a.K8S_POD_UID)
	}
	return string(a.K8S_POD_NAMESPACE) + "_" + string(a.K8S_POD_NAME)
}

// inGatewayNamespace reports whether the pod may be a gateway at all.
func (c *PluginConf) inGatewayNamespace(a *k8sArgs) bool {
	return a.K8S_POD_NAMESPACE != "" && slices.Contains(c.GatewayNamespaces, string(a.K8S_POD_NAMESPACE))
}

// gatewayPlan returns the pod's NIC plan when it is a gateway pod, nil for any other pod. Only
// pods in a gateway namespace that carry the gateway annotation are gateways; their NIC plan
// must then be valid.
func (c *PluginConf) gatewayPlan(a *k8sArgs) (*annotations.NICPlan, error) {
	if !c.inGatewayNamespace(a) {
		return nil, nil
	}
	// Annotations come only from the runtime (containerd and CRI-O pass them): no API call, so
	// CNI ADD never depends on the API server being reachable. A runtime that passes none makes
	// every pod a normal pod.
	annots := c.RuntimeConfig.PodAnnotations
	gw, ok := annots[annotations.GatewayKey]
	if !ok {
		return nil, nil
	}
	raw, ok := annots[annotations.NICsKey]
	if !ok {
		return nil, fmt.Errorf("vpcnat: pod %s/%s is gateway %q but has no %s annotation", a.K8S_POD_NAMESPACE, a.K8S_POD_NAME, gw, annotations.NICsKey)
	}
	plan, err := annotations.ParseNICPlan(raw)
	if err != nil {
		return nil, fmt.Errorf("vpcnat: pod %s/%s: %w", a.K8S_POD_NAMESPACE, a.K8S_POD_NAME, err)
	}
	if plan.Gateway != gw {
		return nil, fmt.Errorf("vpcnat: pod %s/%s: annotation %s names gateway %q but %s says %q", a.K8S_POD_NAMESPACE, a.K8S_POD_NAME, annotations.NICsKey, plan.Gateway, annotations.GatewayKey, gw)
	}
	if c.Master != "" {
		plan.External.Master = c.Master
	}
	return plan, nil
}
