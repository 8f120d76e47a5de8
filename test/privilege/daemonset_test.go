package privilege

import (
	"context"
	"fmt"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// installerMounts are the only host paths the CNI installer containers (install-cni, and the
// cni-keeper sidecar that keeps its work in place) may mount: the node's CNI bin and
// configuration directories, by volume name and hostPath.
var installerMounts = map[string]string{"cni-bin": "/opt/cni/bin", "cni-conf": "/etc/cni/net.d"}

// TestDaemonSetContainers: every container of the DaemonSet as the API server stored it (deploy/
// applied as shipped) is known here and has only the privilege its job needs. The installers
// (the install-cni init container and the cni-keeper sidecar) run as uid 0 only to write two
// root-owned host directories and to exec the installed plugin: no privilege, no escalation, a
// read-only root filesystem, every capability dropped, only those two directories mounted. The
// daemon's container is the only privileged one (it writes sysctls of gateway netns under the
// read-only /proc/sys; deploy/daemonset/30-daemonset.yaml says why). The installer checks catch
// each loosening of a compliant container, so they can fail.
func TestDaemonSetContainers(t *testing.T) {
	ds, err := admin.AppsV1().DaemonSets(systemNS).Get(context.Background(), "vpcnat-daemon", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	spec := &ds.Spec.Template.Spec
	seen := map[string]bool{}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		seen[c.Name] = true
		switch c.Name {
		case "install-cni", "cni-keeper":
			for _, p := range installerProblems(spec, &c) {
				t.Errorf("container %s: %s", c.Name, p)
			}
		case "vpcnat-daemon":
			if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("container vpcnat-daemon: root filesystem not read-only: %+v", sc)
			}
		default:
			t.Errorf("container %s: unknown here; say what privilege it needs", c.Name)
		}
		if c.Name != "vpcnat-daemon" && c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			t.Errorf("container %s is privileged; only vpcnat-daemon may be", c.Name)
		}
	}
	for _, name := range []string{"install-cni", "cni-keeper", "vpcnat-daemon"} {
		if !seen[name] {
			t.Errorf("no container %s in the DaemonSet", name)
		}
	}
	if len(spec.EphemeralContainers) != 0 || spec.HostPID || spec.HostIPC {
		t.Errorf("ephemeral containers %d, hostPID %v, hostIPC %v: want none", len(spec.EphemeralContainers), spec.HostPID, spec.HostIPC)
	}

	// The checks themselves: each loosening of the stored cni-keeper is caught.
	var keeper *corev1.Container
	for i := range spec.Containers {
		if spec.Containers[i].Name == "cni-keeper" {
			keeper = &spec.Containers[i]
		}
	}
	if keeper == nil {
		return
	}
	for name, loosen := range map[string]func(*corev1.Container){
		"privileged":               func(c *corev1.Container) { c.SecurityContext.Privileged = ptrTo(true) },
		"allowPrivilegeEscalation": func(c *corev1.Container) { c.SecurityContext.AllowPrivilegeEscalation = ptrTo(true) },
		"writable root":            func(c *corev1.Container) { c.SecurityContext.ReadOnlyRootFilesystem = ptrTo(false) },
		"capability NET_ADMIN":     func(c *corev1.Container) { c.SecurityContext.Capabilities.Add = []corev1.Capability{"NET_ADMIN"} },
		"capabilities kept":        func(c *corev1.Container) { c.SecurityContext.Capabilities.Drop = nil },
		"no securityContext":       func(c *corev1.Container) { c.SecurityContext = nil },
		"state mount": func(c *corev1.Container) {
			c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: "state", MountPath: "/run/vpcnat"})
		},
		"host port": func(c *corev1.Container) {
			c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: 1, HostPort: 1})
		},
	} {
		c := keeper.DeepCopy()
		loosen(c)
		if len(installerProblems(spec, c)) == 0 {
			t.Errorf("cni-keeper with %s passes the installer checks", name)
		}
	}
}

// installerProblems lists what an installer container has beyond writing the two CNI
// directories as root.
func installerProblems(pod *corev1.PodSpec, c *corev1.Container) []string {
	var out []string
	is := func(p *bool, want bool) bool { return p != nil && *p == want }
	show := func(p *bool) string {
		if p == nil {
			return "unset"
		}
		return fmt.Sprint(*p)
	}
	sc := c.SecurityContext
	if sc == nil {
		return []string{"no securityContext"}
	}
	if is(sc.Privileged, true) {
		out = append(out, "privileged")
	}
	if !is(sc.AllowPrivilegeEscalation, false) {
		out = append(out, fmt.Sprintf("allowPrivilegeEscalation is %s, want false", show(sc.AllowPrivilegeEscalation)))
	}
	if !is(sc.ReadOnlyRootFilesystem, true) {
		out = append(out, fmt.Sprintf("readOnlyRootFilesystem is %s, want true", show(sc.ReadOnlyRootFilesystem)))
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
		out = append(out, fmt.Sprintf("capabilities %+v, want drop [ALL] and nothing added", sc.Capabilities))
	}
	if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
		out = append(out, fmt.Sprintf("procMount %v", *sc.ProcMount))
	}
	for _, p := range c.Ports {
		if p.HostPort != 0 {
			out = append(out, fmt.Sprintf("host port %d", p.HostPort))
		}
	}
	hostPaths := map[string]string{}
	for _, v := range pod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for _, m := range c.VolumeMounts {
		want, ok := installerMounts[m.Name]
		switch {
		case ok && hostPaths[m.Name] == want:
		case ok:
			out = append(out, fmt.Sprintf("volume %s is hostPath %q, want %q", m.Name, hostPaths[m.Name], want))
		case hostPaths[m.Name] != "":
			out = append(out, fmt.Sprintf("mounts hostPath %s (volume %s)", hostPaths[m.Name], m.Name))
		}
	}
	return out
}
