package controller

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/vpcnat/vpcnat/test/kubeenv"
)

// answers checks that path on the process's metrics address answers code with a body
// containing want.
func (p *process) answers(path string, code int, want string) error {
	resp, err := http.Get("http://" + p.metrics + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != code || !strings.Contains(string(b), want) {
		return fmt.Errorf("%s: %d %q, want %d with %q", path, resp.StatusCode, b, code, want)
	}
	return nil
}

// TestReadyz: two vpcnat-controller processes (the real binary, leader election on) against an
// API server of their own on which the CRDs are not installed yet, as when deploy/ is applied in
// one go and the controller starts first. The leader's caches cannot sync (its VpcNatGateway,
// Vpc and Subnet lists fail), so its /readyz answers 503 while its /healthz answers 200: a
// liveness probe must not restart it. The other replica, having found the Lease held, is a
// ready standby. A leader stopped before its caches synced exits cleanly and hands the Lease
// over; the new leader is not ready until the CRDs are installed, then it is.
func TestReadyz(t *testing.T) {
	ctx := context.Background()
	bin, err := kubeenv.BinDir(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	// Not the shared API server: that one has the CRDs.
	bare, err := kubeenv.Start(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := bare.Stop(); err != nil {
			t.Errorf("stopping the second API server: %v", err)
		}
	})
	kube, err := bare.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	holder := func() string {
		l, err := kube.CoordinationV1().Leases("kube-system").Get(ctx, "vpcnat-controller", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	leads := func(p *process) func() error {
		return func() error {
			if id, h := p.identity(), holder(); id == "" || h != id {
				return fmt.Errorf("lease holder %q, identity %q", h, id)
			}
			return nil
		}
	}
	exe := buildController(t, t.TempDir())

	first := startProcess(t, exe, bare.Kubeconfig, "first")
	eventually(t, waitLong, "the first replica holds the Lease", leads(first))
	eventually(t, waitLong, "the leader unready without the CRDs", func() error {
		return first.answers("/readyz", http.StatusServiceUnavailable, "leader: informer caches not synced")
	})
	if err := first.answers("/healthz", http.StatusOK, "ok"); err != nil {
		t.Errorf("leader without caches: %v", err)
	}

	second := startProcess(t, exe, bare.Kubeconfig, "second")
	eventually(t, waitLong, "the second replica a ready standby", func() error {
		return second.answers("/readyz", http.StatusOK, "ok: standby, the Lease is held by "+first.identity())
	})
	if err := second.answers("/healthz", http.StatusOK, "ok"); err != nil {
		t.Errorf("standby: %v", err)
	}
	// Still without the CRDs: the leader has not become ready meanwhile.
	if err := first.answers("/readyz", http.StatusServiceUnavailable, "leader: informer caches not synced"); err != nil {
		t.Errorf("leader without the CRDs: %v; log %s", err, tail(first.log))
	}

	first.stop(t) // fails the test unless it exits 0
	eventually(t, waitLong, "the standby takes the Lease over", leads(second))
	eventually(t, waitLong, "the new leader unready without the CRDs", func() error {
		return second.answers("/readyz", http.StatusServiceUnavailable, "leader: informer caches not synced")
	})

	if _, err := bare.Kubectl(ctx, "apply", "--server-side", "-f", filepath.Join(repoRoot, "deploy", "crds")); err != nil {
		t.Fatal(err)
	}
	// The reflectors retry their lists with backoff (at most 30 s between tries).
	eventually(t, waitLong, "the leader ready once the CRDs are served", func() error {
		return second.answers("/readyz", http.StatusOK, "ok: leader")
	})
	if err := second.answers("/healthz", http.StatusOK, "ok"); err != nil {
		t.Errorf("ready leader: %v", err)
	}
	if b, _ := os.ReadFile(second.log); !strings.Contains(string(b), "Caches synced; starting workers") {
		t.Errorf("ready, but its log does not say its workers started:\n%s", tail(second.log))
	}
}

// TestControllerManifestOrder: kubectl apply -f deploy/controller/ creates the ServiceAccount
// and its RBAC before the Deployment (files apply in name order; a Deployment first has its pods
// refused until the ServiceAccount exists), and the Deployment probes the health endpoints the
// binary serves, on the port of its --metrics-addr.
func TestControllerManifestOrder(t *testing.T) {
	out, err := env.Kubectl(context.Background(), "apply", "--dry-run=server", "-f", filepath.Join(repoRoot, "deploy", "controller"))
	if err != nil {
		t.Fatal(err)
	}
	deployment := strings.Index(string(out), "deployment.apps/vpcnat-controller")
	for _, before := range []string{"serviceaccount/vpcnat-controller", "clusterrolebinding.rbac.authorization.k8s.io/vpcnat-controller",
		"rolebinding.rbac.authorization.k8s.io/vpcnat-controller"} {
		if i := strings.Index(string(out), before); i < 0 || deployment < 0 || i > deployment {
			t.Errorf("%s not applied before deployment.apps/vpcnat-controller:\n%s", before, out)
		}
	}

	b, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "controller", "20-deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(b, &d); err != nil {
		t.Fatal(err)
	}
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%d containers, want 1", n)
	}
	c := d.Spec.Template.Spec.Containers[0]
	port := ""
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--metrics-addr="); ok {
			port = v[strings.LastIndex(v, ":")+1:]
		}
	}
	named := map[string]string{}
	for _, p := range c.Ports {
		named[p.Name] = fmt.Sprint(p.ContainerPort)
	}
	for _, probe := range []struct {
		kind, path string
		get        func() string
	}{
		{"readinessProbe", "/readyz", func() string {
			if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil {
				return ""
			}
			return c.ReadinessProbe.HTTPGet.Path + " " + named[c.ReadinessProbe.HTTPGet.Port.String()]
		}},
		{"livenessProbe", "/healthz", func() string {
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil {
				return ""
			}
			return c.LivenessProbe.HTTPGet.Path + " " + named[c.LivenessProbe.HTTPGet.Port.String()]
		}},
	} {
		if got, want := probe.get(), probe.path+" "+port; port == "" || got != want {
			t.Errorf("%s: GET %q, want %q (--metrics-addr port %q)", probe.kind, got, want, port)
		}
	}
}
