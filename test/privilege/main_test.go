// Package privilege proves vpcnat's least privilege against a real etcd + kube-apiserver
// (test/kubeenv): deploy/ is applied as a user would (kubectl apply of the CRDs, the controller's
// and the daemon's ServiceAccounts, Roles, bindings and admission policy, unchanged), real tokens
// of those ServiceAccounts are requested with the TokenRequest API (the daemon's bound to a daemon
// pod on a node, as the kubelet projects it), and every claim is shown with real requests made
// with those tokens: what must work works, and everything else is refused, by RBAC or, for the
// daemon's pod patches, by the ValidatingAdmissionPolicy. SelfSubjectAccessReviews made with the
// same tokens are checked against the real answers where RBAC decides.
//
// Objects only (no kubelet): values in API objects, no address is configured anywhere.
package privilege

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/vpcnat/vpcnat/test/kubeenv"
)

var (
	env      *kubeenv.Env
	repoRoot string
	admin    *kubernetes.Clientset
	// runID prefixes the namespaces this run creates.
	runID string
)

const (
	systemNS   = "kube-system"
	daemonSA   = "vpcnat-daemon"
	controlSA  = "vpcnat-controller"
	daemonUser = "system:serviceaccount:kube-system:vpcnat-daemon"
)

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Join(filepath.Dir(file), "..", "..")
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	runID = "vpcnat-priv-" + hex.EncodeToString(b)
	return kubeenv.Main(m, repoRoot, func(ctx context.Context, e *kubeenv.Env) error {
		env = e
		return setUp(ctx)
	})
}

// setUp applies deploy/ as shipped: the CRDs, then everything of the controller and the daemon
// (ServiceAccounts, RBAC, the admission policy, the ConfigMap, the Deployment and DaemonSet,
// which no kubelet runs here), and waits for the CRDs to serve.
func setUp(ctx context.Context) error {
	var err error
	if admin, err = env.Clientset(); err != nil {
		return err
	}
	if err := env.Install(ctx, repoRoot, "deploy/crds", "deploy/controller", "deploy/daemonset"); err != nil {
		return err
	}
	// No kube-controller-manager: make the "default" ServiceAccount pods without one refer to.
	for _, ns := range []string{systemNS, "default"} {
		_, err = admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s/default: %w", ns, err)
		}
	}
	return nil
}

// tokenConfig returns a client configuration authenticating with a fresh token of the
// ServiceAccount, from the TokenRequest API; bound to pod when it is not nil (then the token
// names the pod's node, as the kubelet's projected tokens do).
func tokenConfig(t *testing.T, sa string, pod *corev1.Pod) *rest.Config {
	t.Helper()
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptrTo[int64](3600)}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := admin.CoreV1().ServiceAccounts(systemNS).CreateToken(context.Background(), sa, req, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s: %v", sa, err)
	}
	return &rest.Config{Host: env.URL, BearerToken: tr.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: env.Config.TLSClientConfig.CAFile}, QPS: 200, Burst: 400}
}

func ptrTo[T any](v T) *T { return &v }

// namespace creates a namespace of this run (with a "default" ServiceAccount), deleted at the end
// of the test.
func namespace(t *testing.T, suffix string, labels map[string]string) string {
	t.Helper()
	ctx := context.Background()
	name := runID + "-" + suffix
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = admin.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{}) })
	if _, err := admin.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return name
}

// eventually polls cond every 100 ms until it is true or timeout passes.
func eventually(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
