package kubeenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ControllerManagerControllers are the kube-controller-manager controllers StartControllerManager
// runs: enough for Deployments to become ReplicaSets and Pods, for owner references to be
// garbage collected, and for the default ServiceAccount that pod admission requires. No node or
// pod-GC controller: there is no kubelet, and pods bound to a Node that does not exist must not
// be deleted under the test.
var ControllerManagerControllers = []string{
	"deployment-controller", "replicaset-controller", "garbage-collector-controller", "serviceaccount-controller",
}

// StartControllerManager runs kube-controller-manager from the same bin directory against the
// API server (the process is stopped by Stop with the others) and waits until it works: the
// default ServiceAccount of kube-system exists.
func (e *Env) StartControllerManager(ctx context.Context) error {
	port, err := freePort()
	if err != nil {
		return fmt.Errorf("finding a free port: %w", err)
	}
	controllers := ""
	for i, c := range ControllerManagerControllers {
		if i > 0 {
			controllers += ","
		}
		controllers += c
	}
	if err := e.start("kube-controller-manager",
		"--kubeconfig="+e.Kubeconfig,
		"--authentication-kubeconfig="+e.Kubeconfig, "--authorization-kubeconfig="+e.Kubeconfig,
		"--controllers="+controllers,
		"--leader-elect=false",
		"--bind-address=127.0.0.1", fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir="+filepath.Join(e.Dir, "kcm-certs"),
		// Fast enough for benchmarks with a thousand Deployments.
		"--kube-api-qps=200", "--kube-api-burst=400",
		"--concurrent-deployment-syncs=10", "--concurrent-replicaset-syncs=10",
		"--v=0"); err != nil {
		return err
	}
	client, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	for {
		if _, err := client.CoreV1().ServiceAccounts("kube-system").Get(ctx, "default", metav1.GetOptions{}); err == nil {
			return nil
		}
		p := e.procs[len(e.procs)-1]
		if p.ProcessState != nil {
			return fmt.Errorf("kube-controller-manager exited; see %s", filepath.Join(e.Dir, "kube-controller-manager.log"))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-controller-manager: no default ServiceAccount after 90s; see %s", filepath.Join(e.Dir, "kube-controller-manager.log"))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Kubectl runs the kubectl of the bin directory against the API server as admin and returns its
// combined output.
func (e *Env) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(e.bin, "kubectl"), append([]string{"--kubeconfig=" + e.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "KUBECACHEDIR="+filepath.Join(e.Dir, "kubectl-cache"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("kubectl %v: %w\n%s", args, err, out)
	}
	return out, nil
}

// LogPath is the path of one started binary's log, e.g. LogPath("kube-controller-manager").
func (e *Env) LogPath(name string) string { return filepath.Join(e.Dir, name+".log") }
