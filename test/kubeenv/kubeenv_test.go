package kubeenv

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestStartStop: the API server answers, stores an object, and Stop ends both processes and
// removes the data directory.
func TestStartStop(t *testing.T) {
	_, file, _, _ := runtime.Caller(0)
	bin, err := BinDir(filepath.Join(filepath.Dir(file), "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	env, err := Start(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	c, err := env.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "probe"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	pids := []int{}
	for _, p := range env.procs {
		pids = append(pids, p.Process.Pid)
	}
	if err := env.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("process %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(env.Dir); !os.IsNotExist(err) {
		t.Errorf("data directory %s left behind", env.Dir)
	}
}
