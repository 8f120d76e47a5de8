package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"
)

// LeaderElection configures the Lease that makes one controller of several the active one.
type LeaderElection struct {
	Namespace, Name string
	// Identity must be unique per process (pod name + a random suffix).
	Identity                                  string
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Healthz, when set, fails /healthz when this process holds an expired Lease.
	Healthz *leaderelection.HealthzAdaptor
	// Readiness, when set, is told who holds the Lease (see Readiness).
	Readiness *Readiness
}

// ErrLeadershipLost is returned by RunAsLeader when the Lease was lost before ctx ended; the
// process should exit, so that it never acts on caches another leader may already contradict.
var ErrLeadershipLost = errors.New("leader election lost")

// RunAsLeader waits for the Lease, then runs run with a context that ends when the Lease is
// lost or ctx ends, and returns after run has returned. Only the holder of the Lease starts
// informers and writes anything; the others wait.
func RunAsLeader(ctx context.Context, kube kubernetes.Interface, le LeaderElection, run func(context.Context) error) error {
	logger := klog.FromContext(ctx).WithValues("lease", le.Namespace+"/"+le.Name, "identity", le.Identity)
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     kube.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
	}
	// running and stopped settle the race between the elector's Run returning and the goroutine
	// it started for OnStartedLeading: either run started and is waited for, or it never starts.
	var (
		mu               sync.Mutex
		running, stopped bool
		done             = make(chan error, 1)
	)
	cfg := leaderelection.LeaderElectionConfig{
		Lock:          lock,
		LeaseDuration: le.LeaseDuration,
		RenewDeadline: le.RenewDeadline,
		RetryPeriod:   le.RetryPeriod,
		// Release on a clean stop so that a rolling update hands over at once, not after a
		// whole lease duration.
		ReleaseOnCancel: true,
		Name:            le.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				mu.Lock()
				if stopped {
					mu.Unlock()
					return
				}
				running = true
				mu.Unlock()
				logger.Info("Became the leader")
				done <- run(ctx)
			},
			OnStoppedLeading: func() { logger.Info("Stopped leading") },
			OnNewLeader: func(id string) {
				if id != le.Identity {
					logger.Info("Another controller leads", "leader", id)
				}
			},
		},
	}
	if le.Healthz != nil {
		cfg.WatchDog = le.Healthz
	}
	elector, err := leaderelection.NewLeaderElector(cfg)
	if err != nil {
		return fmt.Errorf("leader election: %w", err)
	}
	if le.Healthz != nil {
		le.Healthz.SetLeaderElection(elector)
	}
	if le.Readiness != nil {
		le.Readiness.setLease(elector)
	}
	logger.Info("Waiting for the Lease")
	// OnStartedLeading runs in a goroutine of its own; the elector's Run returns when the Lease
	// is lost or ctx ends, having cancelled run's context.
	elector.Run(ctx)
	mu.Lock()
	stopped = true
	wasRunning := running
	mu.Unlock()
	if wasRunning {
		if err := <-done; err != nil {
			return err
		}
	}
	if ctx.Err() == nil {
		return ErrLeadershipLost
	}
	return nil
}
