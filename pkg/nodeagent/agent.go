// Package nodeagent is vpcnat-daemon's node mode: it watches the gateway pods of one node and
// keeps each one's network namespace converged to the pod's desired annotation, then reports
// the result in the pod's applied annotation (docs/design.md, "Pod annotations").
//
// One level-based sync per gateway pod, keyed namespace/name, driven by a rate-limited
// workqueue: the pod informer (its node's pods in the gateway namespace), metadata informers of
// the namespace's ReplicaSets and Deployments (the ownership check), the attachment records the
// CNI plugin writes, and a per-gateway resync timer that makes every resync period's converge a
// full one (the nat table read back: drift repair).
package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/state"
)

// Config is the node agent's configuration (the daemon's flags).
type Config struct {
	// NodeName: only pods with this spec.nodeName are watched.
	NodeName string
	// GatewayNamespace: the only namespace whose pods can be gateways.
	GatewayNamespace string
	// StateDir holds the CNI plugin's attachment records.
	StateDir string
	// Resync is the period of full converges (nat table read back, drift repaired).
	Resync time.Duration
	// Workers converge that many gateways in parallel.
	Workers int
	// SyncTimeout bounds one converge.
	SyncTimeout time.Duration
	// NodeNetns is the node side's netns; "" for the process's own (hostNetwork).
	NodeNetns string
	// Master, when set, is this node's NIC for net1, overriding the desired state's (the
	// ConfigMap's); it must match the CNI plugin's master on the node.
	Master string
	// NewConverger makes the converger of a gateway netns, which calls notify when the
	// gateway's address conflicts change between converges; nil for NewNetconfConverger.
	NewConverger func(nsPath string, notify func(converge bool)) Converger
	// Registerer takes the agent's metrics; nil for none.
	Registerer prometheus.Registerer
}

// Timings of requeues that are not failures.
const (
	// recordWait: a gateway pod without an attachment record is looked at again this soon (the
	// record watcher usually reacts first).
	recordWait = 2 * time.Second
	// Failed syncs back off exponentially between these bounds.
	retryBase, retryMax = 200 * time.Millisecond, time.Minute
)

// Agent is the node agent. Make it with New, start it with Run.
type Agent struct {
	cfg      Config
	client   kubernetes.Interface
	store    state.Store
	node     *nodeNetns
	queue    workqueue.TypedRateLimitingInterface[string]
	recorder record.EventRecorder
	events   record.EventBroadcaster
	metrics  *metrics

	podFactory  informers.SharedInformerFactory
	metaFactory metadatainformer.SharedInformerFactory
	pods        corelisters.PodNamespaceLister
	owners      map[string]cache.GenericNamespaceLister
	synced      []cache.InformerSynced
	ready       atomic.Bool

	mu       sync.Mutex
	gateways map[string]*gateway
}

// New wires an agent; nothing runs and nothing is read until Run.
func New(cfg Config, client kubernetes.Interface, meta metadata.Interface, recorder record.EventRecorder) (*Agent, error) {
	if cfg.NodeName == "" || cfg.GatewayNamespace == "" || cfg.StateDir == "" {
		return nil, errors.New("node agent: node name, gateway namespace and state directory are required")
	}
	if cfg.Resync <= 0 || cfg.Workers <= 0 || cfg.SyncTimeout <= 0 {
		return nil, fmt.Errorf("node agent: resync (%v), workers (%d) and sync timeout (%v) must be positive",
			cfg.Resync, cfg.Workers, cfg.SyncTimeout)
	}
	if cfg.NewConverger == nil {
		cfg.NewConverger = NewNetconfConverger
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	node, err := openNodeNetns(cfg.NodeNetns)
	if err != nil {
		return nil, err
	}
	a := &Agent{
		cfg: cfg, client: client, store: state.Store{Dir: cfg.StateDir}, node: node,
		recorder: recorder, metrics: newMetrics(reg), gateways: map[string]*gateway{},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](retryBase, retryMax),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "vpcnat-daemon"}),
	}
	a.setupInformers(meta)
	return a, nil
}

// Ready says whether the caches have synced (the daemon's /healthz).
func (a *Agent) Ready() bool { return a.ready.Load() }

// Run runs the agent until ctx is done. No kernel change is made before every cache has synced
// (a converge from a partial view could remove what another gateway's pod still needs). On
// return every in-flight converge has finished and the data plane is left as it is.
func (a *Agent) Run(ctx context.Context) error {
	defer a.node.close()
	defer a.queue.ShutDown()
	a.podFactory.Start(ctx.Done())
	a.metaFactory.Start(ctx.Done())
	defer a.podFactory.Shutdown()
	defer a.metaFactory.Shutdown()
	klog.InfoS("Waiting for caches", "node", a.cfg.NodeName, "namespace", a.cfg.GatewayNamespace)
	if !cache.WaitForCacheSync(ctx.Done(), a.synced...) {
		return fmt.Errorf("node agent: caches did not sync: %w", context.Cause(ctx))
	}
	a.ready.Store(true)
	klog.InfoS("Caches synced; converging gateways", "workers", a.cfg.Workers, "resync", a.cfg.Resync)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		newRecordWatcher(a.store, a.queue.Add, a.siblingRemoved).run(ctx)
	}()
	for range a.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a.processNext(ctx) {
			}
		}()
	}
	<-ctx.Done()
	klog.InfoS("Shutting down: finishing in-flight syncs, leaving every gateway as it is")
	a.queue.ShutDown()
	wg.Wait()
	a.closeAll()
	return nil
}

// processNext runs one sync; false when the queue is shut down.
func (a *Agent) processNext(ctx context.Context) bool {
	key, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(key)
	after, err := a.sync(ctx, key)
	switch {
	case err != nil:
		klog.ErrorS(err, "Gateway sync failed; retrying with backoff", "pod", key,
			"retries", a.queue.NumRequeues(key))
		a.queue.AddRateLimited(key)
	case after > 0:
		a.queue.Forget(key)
		a.queue.AddAfter(key, after)
	default:
		a.queue.Forget(key)
	}
	return true
}
