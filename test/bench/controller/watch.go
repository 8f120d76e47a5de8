package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// podWatcher follows the desired annotation of every bound gateway pod.
type podWatcher struct {
	mu      sync.Mutex
	last    map[string]string // gateway -> desired annotation on its bound, live pod
	waiters map[*waiter]bool
}

type waiter struct {
	gw, not string
	ch      chan time.Time
}

func watchPods(ctx context.Context, kube kubernetes.Interface) *podWatcher {
	w := &podWatcher{last: map[string]string{}, waiters: map[*waiter]bool{}}
	f := informers.NewSharedInformerFactoryWithOptions(kube, 0, informers.WithNamespace(plan.GatewayNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = plan.LabelGateway }))
	handle := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
			return
		}
		v, ok := p.Annotations[annotations.DesiredKey]
		if !ok {
			return
		}
		at := time.Now()
		gw := p.Labels[plan.LabelGateway]
		w.mu.Lock()
		defer w.mu.Unlock()
		w.last[gw] = v
		for x := range w.waiters {
			if x.gw == gw && x.not != v {
				x.ch <- at
				delete(w.waiters, x)
			}
		}
	}
	_, _ = f.Core().V1().Pods().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: handle, UpdateFunc: func(_, n any) { handle(n) },
	})
	f.Start(ctx.Done())
	return w
}

// expect registers, before the change it waits for, a wait for gw's annotation to be other than
// not ("" for the first one).
func (w *podWatcher) expect(gw, not string) *waiter {
	x := &waiter{gw: gw, not: not, ch: make(chan time.Time, 1)}
	w.mu.Lock()
	w.waiters[x] = true
	w.mu.Unlock()
	return x
}

func (x *waiter) wait(timeout time.Duration) (time.Time, error) {
	select {
	case at := <-x.ch:
		return at, nil
	case <-time.After(timeout):
		return time.Time{}, fmt.Errorf("no annotation after %v", timeout)
	}
}

func (w *podWatcher) value(gw string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last[gw]
}

func (w *podWatcher) snapshot() map[string]string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.last))
	for k, v := range w.last {
		out[k] = v
	}
	return out
}

// process is the controller binary, started and stopped by its PID.
type process struct {
	cmd  *exec.Cmd
	log  string
	done chan error
}

func startProcess(bin, log string, args ...string) (*process, error) {
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	p := &process{cmd: exec.Command(bin, args...), log: log, done: make(chan error, 1)}
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return nil, err
	}
	go func() { p.done <- p.cmd.Wait(); f.Close() }()
	return p, nil
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// rss is the process's resident set size in MiB (VmRSS).
func (p *process) rss() (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", p.cmd.Process.Pid)
}
