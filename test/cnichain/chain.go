// Package cnichain runs a real CNI chain through libcni, exactly as a container runtime does:
// the upstream bridge + host-local plugins (built by hack/build-cni-plugins.sh) as the primary
// network, then vpcnat. The plugins run inside a topology's "node" namespace, so the bridge they
// create and the node NICs vpcnat uses are the simulated node's, never the host's.
//
// Address plan: the primary pod network is 203.0.113.128/25 on node bridge cni0 (test/topo leaves
// it free).
package cnichain

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/vpcnat/vpcnat/test/topo"
)

// PodAnnotationsCapability is how containerd and CRI-O hand pod annotations to plugins.
const PodAnnotationsCapability = "io.kubernetes.cri.pod-annotations"

// Chain is a conflist of bridge + host-local, optionally followed by vpcnat.
type Chain struct {
	CNI      *libcni.CNIConfig
	Dir      string // scratch: IPAM data, libcni cache, vpcnat state
	StateDir string // vpcnat's attachment records
	topo     *topo.Topology
}

// PluginDirs returns the directory of the reference plugins (building them once, cached) and
// builds vpcnat into dir. repoRoot is the checkout's top directory.
func PluginDirs(repoRoot, dir string) ([]string, error) {
	out, err := exec.Command(filepath.Join(repoRoot, "hack", "build-cni-plugins.sh")).Output()
	if err != nil {
		return nil, fmt.Errorf("building the reference CNI plugins: %w", err)
	}
	ref := strings.TrimSpace(string(out))
	if err := BuildPlugin(repoRoot, dir); err != nil {
		return nil, err
	}
	return []string{dir, ref}, nil
}

// PluginBinaries are vpcnat's two binaries and their packages: the dispatcher the runtime
// executes, and the full plugin it hands every call but a normal pod's ADD and DEL to, which
// must be installed next to it.
var PluginBinaries = map[string]string{"vpcnat": "./plugins/vpcnat", "vpcnat-gateway": "./plugins/vpcnat-gateway"}

// BuildPlugin builds both of vpcnat's binaries into dir as the images ship them (hack/images.sh),
// so a test times what a node runs: static (CGO_ENABLED=0: a dynamically linked plugin starts
// about a millisecond slower here, the dynamic loader and libc), stripped (-s -w: 3 % faster
// starts of the dispatcher), -trimpath.
func BuildPlugin(repoRoot, dir string) error {
	for name, pkg := range PluginBinaries {
		build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, name), pkg)
		build.Dir = repoRoot
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building %s: %w: %s", name, err, out)
		}
	}
	return nil
}

// New returns a chain that runs plugins from paths inside t's node namespace.
func New(t *topo.Topology, paths []string, dir string) *Chain {
	return &Chain{
		CNI:      libcni.NewCNIConfigWithCacheDir(paths, filepath.Join(dir, "cache"), nil),
		Dir:      dir,
		StateDir: filepath.Join(dir, "state"),
		topo:     t,
	}
}

// ConfList is the node's conflist for a CNI version; withVpcnat appends vpcnat (extra fields
// are merged into its entry, e.g. `"gatewayNamespaces": ["kube-system"]`).
func (c *Chain) ConfList(version string, withVpcnat bool, extra string) (*libcni.NetworkConfigList, error) {
	plugins := fmt.Sprintf(`{"type": "bridge", "bridge": "cni0", "isGateway": true,
	  "ipam": {"type": "host-local", "subnet": "203.0.113.128/25", "dataDir": %q}}`, filepath.Join(c.Dir, "ipam"))
	if withVpcnat {
		if extra != "" {
			extra = ", " + extra
		}
		plugins += fmt.Sprintf(`, {"type": "vpcnat", "stateDir": %q, "capabilities": {%q: true}%s}`, c.StateDir, PodAnnotationsCapability, extra)
	}
	return libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion": %q, "name": "k8s-pod-network", "plugins": [%s]}`, version, plugins)))
}

// VpcnatOnly is the same network (same name, so libcni finds ADD's cached result) with only the
// vpcnat entry: for CHECK of vpcnat alone. The upstream bridge plugin's CHECK validates every IP
// of the result against its own interface, so it refuses the IPs vpcnat adds for its NICs.
func (c *Chain) VpcnatOnly(version string) (*libcni.NetworkConfigList, error) {
	return libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion": %q, "name": "k8s-pod-network", "plugins": [
	  {"type": "vpcnat", "stateDir": %q, "capabilities": {%q: true}}]}`, version, c.StateDir, PodAnnotationsCapability)))
}

// Pod identifies a pod sandbox to the chain.
type Pod struct {
	Role, Namespace, Name, UID, ContainerID string
	Annotations                             map[string]string
}

// Runtime is the RuntimeConf the runtime would pass for the pod.
func (c *Chain) Runtime(p Pod) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{
		ContainerID: p.ContainerID,
		NetNS:       c.topo.Path(p.Role),
		IfName:      "eth0",
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", p.Namespace},
			{"K8S_POD_NAME", p.Name},
			{"K8S_POD_UID", p.UID},
			{"K8S_POD_INFRA_CONTAINER_ID", p.ContainerID},
		},
	}
	if p.Annotations != nil {
		rt.CapabilityArgs = map[string]any{PodAnnotationsCapability: p.Annotations}
	}
	return rt
}

// onNode runs fn with the plugins' parent in the node namespace: a plugin inherits the netns
// of the thread that forks it.
func (c *Chain) onNode(fn func() error) error { return c.topo.Do(topo.Node, fn) }

// Add runs ADD for the pod.
func (c *Chain) Add(list *libcni.NetworkConfigList, p Pod) (res types.Result, err error) {
	err = c.onNode(func() error {
		res, err = c.CNI.AddNetworkList(context.Background(), list, c.Runtime(p))
		return err
	})
	return res, err
}

// Del runs DEL for the pod.
func (c *Chain) Del(list *libcni.NetworkConfigList, p Pod) error {
	return c.onNode(func() error { return c.CNI.DelNetworkList(context.Background(), list, c.Runtime(p)) })
}

// Check runs CHECK for the pod.
func (c *Chain) Check(list *libcni.NetworkConfigList, p Pod) error {
	return c.onNode(func() error { return c.CNI.CheckNetworkList(context.Background(), list, c.Runtime(p)) })
}

// GC runs GC keeping the given attachments.
func (c *Chain) GC(list *libcni.NetworkConfigList, valid []types.GCAttachment) error {
	return c.onNode(func() error {
		return c.CNI.GCNetworkList(context.Background(), list, &libcni.GCArgs{ValidAttachments: valid})
	})
}

// Status runs STATUS.
func (c *Chain) Status(list *libcni.NetworkConfigList) error {
	return c.onNode(func() error { return c.CNI.GetStatusNetworkList(context.Background(), list) })
}

// Records lists the vpcnat record files present.
func (c *Chain) Records() []string {
	entries, _ := os.ReadDir(c.StateDir)
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
