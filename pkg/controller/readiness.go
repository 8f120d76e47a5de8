package controller

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
)

// leaseView is what readiness needs of the leader elector (leaderelection.LeaderElector).
type leaseView interface {
	// GetLeader is the holder of the Lease as last read, "" before the first read.
	GetLeader() string
	// IsLeader says whether this process holds the Lease.
	IsLeader() bool
}

// Readiness answers /readyz: is this replica doing what a replica is for?
//
//   - The leader is ready once its informer caches have synced and its workers run (Run). Before
//     that it writes nothing, and a VpcNatGateway created meanwhile waits; /readyz says so, as
//     kube-scheduler's handler-sync check does. With the CRDs applied together with the
//     controller, this is the time their informers take to list them once the API server serves
//     them.
//   - A standby (another replica holds the Lease) is ready: it is healthy and waiting to take
//     over, which is its whole job. kube-controller-manager and controller-runtime managers also
//     report standby replicas healthy and ready; a standby that reported itself unready would
//     keep a two-replica Deployment from ever being Available and stall every rolling update
//     (maxUnavailable 0). It starts no informer (only the leader does, as kube-controller-manager
//     and kube-scheduler's DelayCacheUntilActive), so its readiness says nothing about caches.
//   - A replica that has not read the Lease yet is not ready: it does not know which of the two
//     above it is, and a lone replica must not look ready before its caches have synced.
//
// Without leader election, ready is caches synced. Liveness (/healthz) is another matter: it
// never waits for caches, so a controller started before its CRDs is not restarted in a loop.
type Readiness struct {
	working  func() bool
	electing bool

	mu    sync.Mutex
	lease leaseView
}

// NewReadiness is c's readiness; with leaderElection, RunAsLeader must be given it
// (LeaderElection.Readiness) so that it can see the Lease.
func NewReadiness(c *Controller, leaderElection bool) *Readiness {
	return &Readiness{working: c.working.Load, electing: leaderElection}
}

func (r *Readiness) setLease(l leaseView) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lease = l
}

// errCachesNotSynced is the answer of a working replica (the leader, or the only one) whose
// informer caches have not synced.
var errCachesNotSynced = errors.New("informer caches not synced: workers not started")

// state is what /readyz answers: a description when ready, or why not.
func (r *Readiness) state() (string, error) {
	if !r.electing {
		if !r.working() {
			return "", errCachesNotSynced
		}
		return "ok", nil
	}
	r.mu.Lock()
	l := r.lease
	r.mu.Unlock()
	if l == nil {
		return "", errors.New("leader election: the Lease not read yet")
	}
	holder := l.GetLeader()
	if holder == "" {
		return "", errors.New("leader election: the Lease not read yet")
	}
	if l.IsLeader() {
		if !r.working() {
			return "", fmt.Errorf("leader: %w", errCachesNotSynced)
		}
		return "ok: leader", nil
	}
	return "ok: standby, the Lease is held by " + holder, nil
}

// ServeHTTP answers 200 with the state, or 503 with the reason.
func (r *Readiness) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	msg, err := r.state()
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	fmt.Fprintln(w, msg)
}
