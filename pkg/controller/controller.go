// Package controller is vpcnat-controller's reconcile loop: VpcNatGateway, Vpc, Subnet and the
// ConfigMap in; per gateway a Deployment, the running pod's desired annotation, and status and
// Events out, and per Subnet with a natGatewayAttachment a Ready condition saying whether its
// segment is its Vpc's (pkg/claims, which the admission webhook shares). Informers feed a typed rate-limited workqueue; sync is level-based, so a sync that
// finds everything in order writes nothing, and a restarted controller changes nothing.
package controller

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/listers"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/claims"
	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// Options configure a Controller.
type Options struct {
	// GatewayNamespace holds the gateway Deployments (plan.GatewayNamespace by default). The
	// plugin and the daemon accept gateways only there.
	GatewayNamespace string
	// ExternalNetwork is the external network's attachment name for the seed's
	// k8s.v1.cni.cncf.io/networks annotation ("name" in kube-system, or "namespace/name").
	ExternalNetwork string
	// Workers is the number of gateways synced in parallel.
	Workers int
	// Resync is the informers' periodic resync (0: none); each resync re-checks every gateway.
	Resync time.Duration
	// Registerer receives the controller's metrics; nil: not registered.
	Registerer prometheus.Registerer
}

// DefaultExternalNetwork is Kube-OVN's name for the external network attachment.
const DefaultExternalNetwork = "ovn-vpc-external-network"

// Controller reconciles VpcNatGateways.
type Controller struct {
	opts Options
	kube kubernetes.Interface
	ovn  *kubeovn.Client

	ovnInformers *kubeovn.Informers
	factories    []informers.SharedInformerFactory
	gateways     listers.ResourceIndexer[*v1.VpcNatGateway]
	vpcs         listers.ResourceIndexer[*v1.Vpc]
	subnets      listers.ResourceIndexer[*v1.Subnet]
	deployments  appslisters.DeploymentNamespaceLister
	pods         corelisters.PodNamespaceLister
	configMaps   corelisters.ConfigMapNamespaceLister
	gwIndexer    cache.Indexer
	subnetIndex  cache.Indexer
	// claims reads the caches for the cluster-wide conflict rules (pkg/claims), which the
	// admission webhook shares.
	claims claims.Caches
	synced []cache.InformerSynced
	// startCaches starts the informers once: by Run, or earlier by StartCaches (the webhook
	// answers on every replica, leader or not).
	startCaches sync.Once

	// partsCache keeps the parts encoding of recent large desired states (projection.go).
	partsCache partsCache

	// events holds the kubelet's FailedCreatePodSandBox Events of the gateway namespace, by pod
	// UID (podfailure.go).
	events cache.Indexer
	// working is set once the caches have synced and the workers started (Readiness).
	working atomic.Bool

	queue       workqueue.TypedRateLimitingInterface[key]
	broadcaster record.EventBroadcaster
	recorder    record.EventRecorder
	metrics     *metrics
}

// New wires a Controller: informers (not started), handlers, queue and event recorder.
func New(kube kubernetes.Interface, ovn *kubeovn.Client, opts Options) (*Controller, error) {
	if opts.GatewayNamespace == "" {
		opts.GatewayNamespace = plan.GatewayNamespace
	}
	if opts.ExternalNetwork == "" {
		opts.ExternalNetwork = DefaultExternalNetwork
	}
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	strip := informers.WithTransform(kubeovn.StripManagedFields)
	// Only the gateway namespace's objects carrying the gateway label, and only the one
	// ConfigMap: the caches hold what the controller owns, and RBAC can be that narrow too.
	gwFactory := informers.NewSharedInformerFactoryWithOptions(kube, opts.Resync,
		informers.WithNamespace(opts.GatewayNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = plan.LabelGateway }))
	cmFactory := informers.NewSharedInformerFactoryWithOptions(kube, opts.Resync, strip,
		informers.WithNamespace(plan.ConfigMapNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", plan.ConfigMapName).String()
		}))
	// No resync: the pod informer's already re-checks every gateway, and an Event matters only
	// when it arrives or changes.
	evFactory := informers.NewSharedInformerFactoryWithOptions(kube, 0,
		informers.WithNamespace(opts.GatewayNamespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.FieldSelector = sandboxEventSelector() }))
	c := &Controller{
		opts:         opts,
		kube:         kube,
		ovn:          ovn,
		ovnInformers: kubeovn.NewInformers(ovn, opts.Resync),
		factories:    []informers.SharedInformerFactory{gwFactory, cmFactory, evFactory},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[key](),
			workqueue.TypedRateLimitingQueueConfig[key]{Name: "vpcnat-controller"}),
		metrics: newMetrics(opts.Registerer),
	}
	c.gateways = c.ovnInformers.GatewayLister()
	c.vpcs = c.ovnInformers.VpcLister()
	c.subnets = c.ovnInformers.SubnetLister()
	c.gwIndexer = c.ovnInformers.VpcNatGateways.GetIndexer()
	c.subnetIndex = c.ovnInformers.Subnets.GetIndexer()
	if err := c.ovnInformers.VpcNatGateways.AddIndexers(claims.GatewayIndexers); err != nil {
		return nil, fmt.Errorf("gateway indexers: %w", err)
	}
	if err := c.ovnInformers.Subnets.AddIndexers(claims.SubnetIndexers); err != nil {
		return nil, fmt.Errorf("subnet indexers: %w", err)
	}
	deployInf := gwFactory.Apps().V1().Deployments()
	podInf := gwFactory.Core().V1().Pods()
	if err := deployInf.Informer().SetTransform(kubeovn.StripManagedFields); err != nil {
		return nil, fmt.Errorf("deployment transform: %w", err)
	}
	if err := podInf.Informer().SetTransform(compactPod); err != nil {
		return nil, fmt.Errorf("pod transform: %w", err)
	}
	cmInf := cmFactory.Core().V1().ConfigMaps()
	evInf := evFactory.Core().V1().Events().Informer()
	if err := evInf.SetTransform(compactEvent); err != nil {
		return nil, fmt.Errorf("event transform: %w", err)
	}
	if err := evInf.AddIndexers(cache.Indexers{indexInvolvedUID: eventInvolvedUID}); err != nil {
		return nil, fmt.Errorf("event indexers: %w", err)
	}
	c.events = evInf.GetIndexer()
	c.deployments = deployInf.Lister().Deployments(opts.GatewayNamespace)
	c.pods = podInf.Lister().Pods(opts.GatewayNamespace)
	c.configMaps = cmInf.Lister().ConfigMaps(plan.ConfigMapNamespace)
	c.claims = claims.Caches{Gateways: c.gwIndexer, Subnets: c.subnetIndex, Deployments: c.deployments}

	for _, h := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
		// optional: the workers do not wait for this cache. The Events only add a pod's
		// sandbox error to a status; a controller whose RBAC predates them (an image updated
		// without deploy/controller) must still work, and each Event, once listed, queues its
		// gateway anyway.
		optional bool
	}{
		{c.ovnInformers.VpcNatGateways, c.gatewayHandler(), false},
		{c.ovnInformers.Vpcs, c.vpcHandler(), false},
		{c.ovnInformers.Subnets, c.subnetHandler(), false},
		{deployInf.Informer(), c.childHandler(), false},
		{podInf.Informer(), c.childHandler(), false},
		{cmInf.Informer(), c.configMapHandler(), false},
		{evInf, c.eventHandler(), true},
	} {
		reg, err := h.inf.AddEventHandler(h.h)
		if err != nil {
			return nil, fmt.Errorf("event handler: %w", err)
		}
		if !h.optional {
			c.synced = append(c.synced, reg.HasSynced)
		}
	}

	// The default spam filter lets an object emit 25 Events and then one per 5 minutes: too few
	// for a gateway whose rules are edited often, each edit being a Pending/Applied transition.
	c.broadcaster = record.NewBroadcaster(record.WithCorrelatorOptions(record.CorrelatorOptions{BurstSize: 100, QPS: 1.0 / 10}))
	c.recorder = c.broadcaster.NewRecorder(kubeovn.Scheme, corev1.EventSource{Component: "vpcnat-controller"})
	return c, nil
}

// Run starts the informers (unless StartCaches did) and workers and blocks until ctx ends. Call
// it once.
func (c *Controller) Run(ctx context.Context) error {
	defer utilruntime.HandleCrash()
	defer c.queue.ShutDown()
	logger := klog.FromContext(ctx)
	sink := c.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: c.kube.CoreV1().Events("")})
	defer sink.Stop()
	defer c.broadcaster.Shutdown()

	if c.StartCaches(ctx) {
		defer func() {
			for _, f := range c.factories {
				f.Shutdown()
			}
		}()
	}
	logger.Info("Waiting for caches", "gatewayNamespace", c.opts.GatewayNamespace)
	// No write before every cache is full: a sync on a partial cache would see a missing
	// ConfigMap or a missing Subnet and report a problem that does not exist.
	if !cache.WaitForNamedCacheSync("vpcnat-controller", ctx.Done(), c.synced...) {
		// Only an ended ctx stops the wait: a stop (or a lost Lease, which RunAsLeader reports)
		// before the caches synced, e.g. while the CRDs are not served yet. Not an error of Run.
		logger.Info("Stopped before the caches synced")
		return nil
	}
	logger.Info("Caches synced; starting workers", "workers", c.opts.Workers)
	for range c.opts.Workers {
		go wait.UntilWithContext(ctx, c.worker, time.Second)
	}
	c.working.Store(true)
	<-ctx.Done()
	logger.Info("Stopping")
	return nil
}

// StartCaches starts the informers until ctx ends and says whether this call started them:
// only the first call does. Without it, Run starts them, so that a standby replica holds no
// caches; the admission webhook calls it before leader election, as it reads the same caches on
// every replica.
func (c *Controller) StartCaches(ctx context.Context) bool {
	started := false
	c.startCaches.Do(func() {
		started = true
		c.ovnInformers.Start(ctx)
		for _, f := range c.factories {
			f.Start(ctx.Done())
		}
	})
	return started
}

// Claims is the Lookup over the controller's caches for the conflict rules of pkg/claims, for
// the admission webhook.
func (c *Controller) Claims() claims.Lookup { return c.claims }

// ClaimsSynced says whether the caches Claims reads have listed once.
func (c *Controller) ClaimsSynced() bool {
	for _, f := range c.synced {
		if !f() {
			return false
		}
	}
	return true
}

func (c *Controller) worker(ctx context.Context) {
	for c.processNext(ctx) {
	}
}

func (c *Controller) processNext(ctx context.Context) bool {
	k, quit := c.queue.Get()
	if quit {
		return false
	}
	defer c.queue.Done(k)
	start := time.Now()
	result, err := c.sync(ctx, k)
	c.metrics.syncDuration.WithLabelValues(string(k.kind)).Observe(time.Since(start).Seconds())
	c.metrics.syncs.WithLabelValues(string(k.kind), result).Inc()
	switch {
	case apierrors.IsConflict(err):
		// Our cache was behind the server (an edit or our own last status write not seen yet):
		// expected under churn, not a failure; the retry reads the newer object.
		klog.FromContext(ctx).V(2).Info("Object changed since cached; retrying", "kind", k.kind, "name", k.name, "err", err)
		c.queue.AddRateLimited(k)
		return true
	case err != nil:
		klog.FromContext(ctx).Error(err, "Sync failed; retrying", "kind", k.kind, "name", k.name, "retries", c.queue.NumRequeues(k))
		c.queue.AddRateLimited(k)
		return true
	}
	c.queue.Forget(k)
	return true
}

func (c *Controller) sync(ctx context.Context, k key) (string, error) {
	switch k.kind {
	case kindGateway:
		return c.syncGateway(ctx, k.name)
	case kindVpc:
		return c.syncVpc(ctx, k.name)
	case kindSubnet:
		return c.syncSubnet(ctx, k.name)
	}
	return resultOK, nil
}
