package privilege

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kubeenv"
)

// TestGatewayPodRestricted: the gateway pod template the controller generates (running as its
// ServiceAccount, with a real token, on examples/seed.yaml) asks for no privilege at all:
// non-root, privileged=false, allowPrivilegeEscalation=false, a read-only root filesystem, every
// capability dropped, RuntimeDefault seccomp, no ServiceAccount token, no host network, PID or IPC
// namespace, no hostPath or host port; and a pod made from it is admitted into a namespace that
// enforces the "restricted" Pod Security Standard, where the same pod with any one of those
// loosened is refused (so the namespace really enforces).
func TestGatewayPodRestricted(t *testing.T) {
	ctx := context.Background()
	if out, err := env.Kubectl(ctx, "apply", "--validate=strict", "-f", filepath.Join(repoRoot, "examples", "seed.yaml")); err != nil {
		t.Fatalf("kubectl apply examples/seed.yaml: %v: %s", err, out)
	}
	cfg := tokenConfig(t, controlSA, nil)
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ovn, err := kubeovn.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctrl, err := controller.New(kube, ovn, controller.Options{Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	kubeenv.RunInBackground(t, "controller", ctrl.Run)
	var dep *appsv1.Deployment
	eventually(t, "the controller creates the gateway's Deployment", 60*time.Second, func() bool {
		dep, err = admin.AppsV1().Deployments(plan.GatewayNamespace).Get(ctx, plan.DeploymentName("ngw"), metav1.GetOptions{})
		return err == nil
	})
	tmpl := dep.Spec.Template
	checkTemplate(t, &tmpl.Spec)

	ns := namespace(t, "restricted", map[string]string{
		"pod-security.kubernetes.io/enforce":         "restricted",
		"pod-security.kubernetes.io/enforce-version": "latest",
	})
	mk := func(name string, change func(*corev1.PodSpec)) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: tmpl.Labels, Annotations: tmpl.Annotations},
			Spec: *tmpl.Spec.DeepCopy()}
		if change != nil {
			change(&p.Spec)
		}
		return p
	}
	created, err := admin.CoreV1().Pods(ns).Create(ctx, mk("gateway", nil), metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a pod made from the gateway template is refused by the restricted Pod Security Standard: %v", err)
	}
	checkTemplate(t, &created.Spec) // as stored, after defaulting

	sc := func(p *corev1.PodSpec) *corev1.SecurityContext { return p.Containers[0].SecurityContext }
	loosened := map[string]func(*corev1.PodSpec){
		"privileged":               func(p *corev1.PodSpec) { sc(p).Privileged, sc(p).AllowPrivilegeEscalation = ptrTo(true), ptrTo(true) },
		"allowPrivilegeEscalation": func(p *corev1.PodSpec) { sc(p).AllowPrivilegeEscalation = ptrTo(true) },
		"runAsNonRoot false":       func(p *corev1.PodSpec) { sc(p).RunAsNonRoot = ptrTo(false); p.SecurityContext.RunAsNonRoot = nil },
		"runAsUser 0":              func(p *corev1.PodSpec) { sc(p).RunAsUser = ptrTo[int64](0) },
		"capability NET_ADMIN":     func(p *corev1.PodSpec) { sc(p).Capabilities.Add = []corev1.Capability{"NET_ADMIN"} },
		"no seccomp profile":       func(p *corev1.PodSpec) { p.SecurityContext.SeccompProfile = nil },
		"hostNetwork":              func(p *corev1.PodSpec) { p.HostNetwork = true },
		"hostPID":                  func(p *corev1.PodSpec) { p.HostPID = true },
		"hostPath volume": func(p *corev1.PodSpec) {
			p.Volumes = append(p.Volumes, corev1.Volume{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}})
		},
	}
	for name, change := range loosened {
		_, err := admin.CoreV1().Pods(ns).Create(ctx, mk("loosened", change), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "restricted`) {
			t.Errorf("the template with %s: %v, want refused by the restricted Pod Security Standard", name, err)
		}
	}
}

// checkTemplate checks a gateway pod spec for every privilege it must not have.
func checkTemplate(t *testing.T, s *corev1.PodSpec) {
	t.Helper()
	is := func(p *bool, want bool) bool { return p != nil && *p == want }
	if !is(s.AutomountServiceAccountToken, false) {
		t.Errorf("automountServiceAccountToken is %v, want false", s.AutomountServiceAccountToken)
	}
	if s.HostNetwork || s.HostPID || s.HostIPC {
		t.Errorf("hostNetwork %v, hostPID %v, hostIPC %v: want none", s.HostNetwork, s.HostPID, s.HostIPC)
	}
	for _, v := range s.Volumes {
		if v.HostPath != nil || v.Projected != nil || v.Secret != nil {
			t.Errorf("volume %s: %+v (no hostPath, token or Secret wanted)", v.Name, v.VolumeSource)
		}
	}
	psc := s.SecurityContext
	if psc == nil || !is(psc.RunAsNonRoot, true) || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot, a non-zero runAsUser and RuntimeDefault seccomp", psc)
	}
	if len(s.InitContainers) != 0 || len(s.EphemeralContainers) != 0 {
		t.Errorf("init or ephemeral containers in the template")
	}
	if len(s.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(s.Containers))
	}
	c := s.Containers[0]
	sc := c.SecurityContext
	switch {
	case sc == nil:
		t.Fatal("the container has no securityContext")
	case !is(sc.Privileged, false):
		t.Errorf("privileged is %v, want false", sc.Privileged)
	case !is(sc.AllowPrivilegeEscalation, false):
		t.Errorf("allowPrivilegeEscalation is %v, want false", sc.AllowPrivilegeEscalation)
	case !is(sc.ReadOnlyRootFilesystem, true):
		t.Errorf("readOnlyRootFilesystem is %v, want true", sc.ReadOnlyRootFilesystem)
	case !is(sc.RunAsNonRoot, true) && !is(psc.RunAsNonRoot, true):
		t.Errorf("runAsNonRoot is not set")
	case sc.RunAsUser != nil && *sc.RunAsUser == 0:
		t.Errorf("the container runs as uid 0")
	case sc.Capabilities == nil || len(sc.Capabilities.Drop) != 1 || sc.Capabilities.Drop[0] != "ALL" || len(sc.Capabilities.Add) != 0:
		t.Errorf("capabilities %+v, want drop [ALL] and nothing added", sc.Capabilities)
	case sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount:
		t.Errorf("procMount %v", *sc.ProcMount)
	}
	for _, p := range c.Ports {
		if p.HostPort != 0 {
			t.Errorf("host port %d", p.HostPort)
		}
	}
}
