// Package controller tests vpcnat-controller against a real etcd + kube-apiserver +
// kube-controller-manager (test/kubeenv), with the CRDs and RBAC of deploy/ installed as a user
// would. There is no kubelet: a kubeenv.PodRunner binds the gateway pods and reports them running.
//
// Address plan: the seed's (192.168.0.0/24 external, 10.0.1.0/24 VPC) where a test reproduces
// the seed's example; 198.51.100.0/24 and 203.0.113.0/24 for the other gateways. No address is
// configured anywhere: these are values in API objects only.
package controller

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
	"github.com/vpcnat/vpcnat/test/kubeenv"
)

var (
	env      *kubeenv.Env
	repoRoot string
	admin    *clients
	// controllerConfig is the controller's identity: the ServiceAccount of deploy/controller,
	// impersonated, so that every test also proves its RBAC sufficient.
	controllerConfig *rest.Config
)

// clients of one identity.
type clients struct {
	kube *kubernetes.Clientset
	ovn  *kubeovn.Client
}

func newClients(cfg *rest.Config) (*clients, error) {
	k, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	o, err := kubeovn.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &clients{kube: k, ovn: o}, nil
}

const serviceAccount = "system:serviceaccount:kube-system:vpcnat-controller"

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	_, file, _, _ := runtime.Caller(0)
	repoRoot = filepath.Join(filepath.Dir(file), "..", "..")
	return kubeenv.Main(m, repoRoot, func(ctx context.Context, e *kubeenv.Env) error {
		env = e
		return setUp(ctx)
	})
}

// setUp installs deploy/crds and the controller's ServiceAccount and RBAC with kubectl, as a
// user would, and then starts kube-controller-manager: its garbage collector learns the kinds
// that can own objects from discovery, which it refreshes only every 30 s.
func setUp(ctx context.Context) error {
	if err := env.Install(ctx, repoRoot, "deploy/crds", "deploy/controller/00-serviceaccount.yaml", "deploy/controller/10-rbac.yaml"); err != nil {
		return err
	}
	if err := env.StartControllerManager(ctx); err != nil {
		return err
	}
	var err error
	if admin, err = newClients(env.Config); err != nil {
		return err
	}
	controllerConfig = rest.CopyConfig(env.Config)
	controllerConfig.Impersonate = rest.ImpersonationConfig{UserName: serviceAccount}
	// The API server's discovery of new CRDs in the controller's REST mapping is not needed (the
	// typed client names its resources), but the CRDs must serve before any test creates objects.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := admin.ovn.VpcNatGateways.List(ctx, listAll)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("VpcNatGateways not served: %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
