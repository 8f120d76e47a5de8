package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/vpcnat/vpcnat/pkg/plan"
)

// nodeAdaptation is everything about the test node that deploy/ cannot know, and the one
// place where the manifests are changed for it. Each change says why; nothing else of deploy/
// is touched (the project is installed as shipped, with kubectl apply).
type nodeAdaptation struct {
	// The node's CNI directories: the cluster's own, not the host's /opt/cni/bin and
	// /etc/cni/net.d (hack/cluster/env.sh CNI_BIN_DIR, CNI_CONF_DIR).
	cniBinDir, cniConfDir string
	// apiHost, apiPort: the API server listens on loopback only and there is no kube-proxy, so
	// the in-cluster address (the kubernetes Service) does not route; host-network pods reach
	// it here.
	apiHost, apiPort string
	// controllerMetricsPort: the controller runs in the node's network namespace here (to reach
	// the API server), where its metrics port must be one no one else uses.
	controllerMetricsPort int
	// nic: the external network's bridge; gatewayImage: the gateway image the node has
	// (imported, never pulled).
	nic, gatewayImage string
	// daemonVerbosity, when not 0, is the daemon's klog -v: a failure's log then shows every
	// sync's path (no desired state yet, not a gateway, no attachment record) and every
	// converge, which the shipped verbosity does not.
	daemonVerbosity int
	// controllerVerbosity, when not 0, is the controller's klog -v (2: each projection, and why
	// a gateway is not projected).
	controllerVerbosity int
	// dataplane, when set, is the ConfigMap's NAT backend (the key absent otherwise, as
	// shipped).
	dataplane string
}

// adapt changes docs in place and returns a line per change made, for the log. A change that
// finds nothing to change is an error: the manifests moved on and the test must follow.
func (a nodeAdaptation) adapt(docs []*unstructured.Unstructured) ([]string, error) {
	var did []string
	for _, o := range docs {
		id := o.GetKind() + " " + o.GetNamespace() + "/" + o.GetName()
		switch {
		case o.GetKind() == "DaemonSet" && o.GetName() == "vpcnat-daemon":
			paths := map[string]string{"/opt/cni/bin": a.cniBinDir, "/etc/cni/net.d": a.cniConfDir}
			n, err := replaceHostPaths(o, paths)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", id, err)
			}
			did = append(did, fmt.Sprintf("%s: %d hostPaths moved to the cluster's own directories", id, n))
			added, err := a.apiServerEnv(o)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", id, err)
			}
			if added {
				did = append(did, id+": KUBERNETES_SERVICE_HOST/PORT set to the API server's loopback address")
			}
			if a.daemonVerbosity != 0 {
				if err := addArgs(o, "vpcnat-daemon", fmt.Sprintf("--v=%d", a.daemonVerbosity)); err != nil {
					return nil, fmt.Errorf("%s: %w", id, err)
				}
				did = append(did, fmt.Sprintf("%s: daemon log verbosity --v=%d", id, a.daemonVerbosity))
			}
		case o.GetKind() == "Deployment" && o.GetName() == "vpcnat-controller":
			// In the node's network namespace to reach the API server on loopback; one replica,
			// since two would claim the same host port on the one node.
			if err := unstructured.SetNestedField(o.Object, true, "spec", "template", "spec", "hostNetwork"); err != nil {
				return nil, err
			}
			if err := unstructured.SetNestedField(o.Object, int64(1), "spec", "replicas"); err != nil {
				return nil, err
			}
			if err := a.controllerMetrics(o); err != nil {
				return nil, fmt.Errorf("%s: %w", id, err)
			}
			if _, err := a.apiServerEnv(o); err != nil {
				return nil, fmt.Errorf("%s: %w", id, err)
			}
			did = append(did, fmt.Sprintf("%s: hostNetwork, 1 replica, metrics on :%d, API server on %s:%s",
				id, a.controllerMetricsPort, a.apiHost, a.apiPort))
			if a.controllerVerbosity != 0 {
				if err := addArgs(o, "controller", fmt.Sprintf("--v=%d", a.controllerVerbosity)); err != nil {
					return nil, fmt.Errorf("%s: %w", id, err)
				}
				did = append(did, fmt.Sprintf("%s: controller log verbosity --v=%d", id, a.controllerVerbosity))
			}
		case o.GetKind() == "ConfigMap" && o.GetNamespace() == plan.ConfigMapNamespace && o.GetName() == plan.ConfigMapName:
			data, _, _ := unstructured.NestedStringMap(o.Object, "data")
			if data == nil {
				return nil, fmt.Errorf("%s has no data", id)
			}
			data["nic"] = a.nic
			data["image"] = a.gatewayImage
			change := fmt.Sprintf("%s: nic %s, image %s", id, a.nic, a.gatewayImage)
			if a.dataplane != "" {
				data[plan.KeyDataplane] = a.dataplane
				change += ", dataplane " + a.dataplane
			}
			if err := unstructured.SetNestedStringMap(o.Object, data, "data"); err != nil {
				return nil, err
			}
			did = append(did, change)
		}
	}
	return did, nil
}

// replaceHostPaths rewrites the pod template's hostPath volumes named in paths; every one must
// be there.
func replaceHostPaths(o *unstructured.Unstructured, paths map[string]string) (int, error) {
	vols, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "volumes")
	if err != nil {
		return 0, err
	}
	done := map[string]bool{}
	for _, v := range vols {
		hp, ok := v.(map[string]any)["hostPath"].(map[string]any)
		if !ok {
			continue
		}
		p, _ := hp["path"].(string)
		if to, ok := paths[p]; ok {
			hp["path"] = to
			done[p] = true
		}
	}
	for p := range paths {
		if !done[p] {
			return 0, fmt.Errorf("no hostPath volume %s", p)
		}
	}
	return len(done), unstructured.SetNestedSlice(o.Object, vols, "spec", "template", "spec", "volumes")
}

// addArgs appends args to the container named name; it must exist.
func addArgs(o *unstructured.Unstructured, name string, args ...string) error {
	containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if err != nil {
		return err
	}
	for _, c := range containers {
		cm := c.(map[string]any)
		if cm["name"] != name {
			continue
		}
		have, _ := cm["args"].([]any)
		for _, a := range args {
			have = append(have, a)
		}
		cm["args"] = have
		return unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers")
	}
	return fmt.Errorf("no container %s", name)
}

// apiServerEnv sets KUBERNETES_SERVICE_HOST/PORT on every container that does not set them;
// it says whether it added any.
func (a nodeAdaptation) apiServerEnv(o *unstructured.Unstructured) (bool, error) {
	containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) == 0 {
		return false, fmt.Errorf("no containers (%v)", err)
	}
	added := false
	for _, c := range containers {
		cm := c.(map[string]any)
		env, _ := cm["env"].([]any)
		has := map[string]bool{}
		for _, e := range env {
			if n, ok := e.(map[string]any)["name"].(string); ok {
				has[n] = true
			}
		}
		for _, kv := range [][2]string{{"KUBERNETES_SERVICE_HOST", a.apiHost}, {"KUBERNETES_SERVICE_PORT", a.apiPort}} {
			if !has[kv[0]] {
				env = append(env, map[string]any{"name": kv[0], "value": kv[1]})
				added = true
			}
		}
		cm["env"] = env
	}
	return added, unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers")
}

// controllerMetrics moves the controller's --metrics-addr and its metrics port.
func (a nodeAdaptation) controllerMetrics(o *unstructured.Unstructured) error {
	containers, _, err := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) != 1 {
		return fmt.Errorf("want one container (%v)", err)
	}
	c := containers[0].(map[string]any)
	args, _ := c["args"].([]any)
	found := false
	for i, arg := range args {
		if s, _ := arg.(string); strings.HasPrefix(s, "--metrics-addr=") {
			args[i] = fmt.Sprintf("--metrics-addr=:%d", a.controllerMetricsPort)
			found = true
		}
	}
	ports, _ := c["ports"].([]any)
	moved := 0
	for _, p := range ports {
		if pm := p.(map[string]any); pm["name"] == "metrics" {
			pm["containerPort"] = int64(a.controllerMetricsPort)
			moved++
		}
	}
	if !found || moved != 1 {
		return fmt.Errorf("no --metrics-addr argument and one metrics port to move (args %v, ports %v)", args, ports)
	}
	return unstructured.SetNestedSlice(o.Object, containers, "spec", "template", "spec", "containers")
}

// loadManifests reads every object of the YAML files (or directories of them) named.
func loadManifests(paths ...string) ([]*unstructured.Unstructured, error) {
	var files []string
	for _, p := range paths {
		if st, err := os.Stat(p); err == nil && st.IsDir() {
			m, _ := filepath.Glob(filepath.Join(p, "*.yaml"))
			files = append(files, m...)
		} else {
			files = append(files, p)
		}
	}
	var docs []*unstructured.Unstructured
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var m map[string]any
			if err := dec.Decode(&m); err == io.EOF {
				break
			} else if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			if len(m) == 0 {
				continue
			}
			docs = append(docs, &unstructured.Unstructured{Object: m})
		}
	}
	if len(docs) == 0 {
		return nil, fmt.Errorf("no object in %v", paths)
	}
	return docs, nil
}

// writeManifests writes docs as one multi-document YAML file, for kubectl apply -f.
func writeManifests(path string, docs []*unstructured.Unstructured) error {
	var buf bytes.Buffer
	for _, d := range docs {
		j, err := json.Marshal(d.Object)
		if err != nil {
			return err
		}
		y, err := yaml.JSONToYAML(j)
		if err != nil {
			return err
		}
		buf.WriteString("---\n")
		buf.Write(y)
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
