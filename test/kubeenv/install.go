package kubeenv

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// CRDs are the resource names of deploy/crds.
var CRDs = []string{"crd/vpcnatgateways.kubeovn.io", "crd/vpcs.kubeovn.io", "crd/subnets.kubeovn.io"}

// Install applies the manifests at paths (files or directories, relative to repoRoot) as a user
// would, with kubectl apply --server-side, in order, and waits until the CRDs are Established.
func (e *Env) Install(ctx context.Context, repoRoot string, paths ...string) error {
	for _, p := range paths {
		if _, err := e.Kubectl(ctx, "apply", "--server-side", "-f", filepath.Join(repoRoot, p)); err != nil {
			return fmt.Errorf("installing %s: %w", p, err)
		}
	}
	args := append([]string{"wait", "--for=condition=Established", "--timeout=60s"}, CRDs...)
	if _, err := e.Kubectl(ctx, args...); err != nil {
		return fmt.Errorf("waiting for the CRDs to be established: %w", err)
	}
	return nil
}

// Main is a test package's TestMain body for tests that share one API server of their own: it
// starts etcd and kube-apiserver (the binaries built once, cached), calls setUp with the Env,
// runs the tests and stops the server. It returns the exit code.
func Main(m *testing.M, repoRoot string, setUp func(context.Context, *Env) error) int {
	bin, err := BinDir(repoRoot)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube binaries:", err)
		return 1
	}
	ctx := context.Background()
	env, err := Start(ctx, bin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubeenv:", err)
		return 1
	}
	defer env.Stop()
	if err := setUp(ctx, env); err != nil {
		fmt.Fprintln(os.Stderr, "set-up:", err, "logs in", env.Dir)
		return 1
	}
	return m.Run()
}
