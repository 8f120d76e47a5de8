package nodeagent

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// setupInformers: the pod informer sees only this node's pods of the gateway namespace (the API
// server filters, so a node's daemon never holds the cluster's pods); the owner chain needs
// only metadata, which keeps the namespace's other ReplicaSets and Deployments cheap to cache.
func (a *Agent) setupInformers(meta metadata.Interface) {
	ns := a.cfg.GatewayNamespace
	a.podFactory = informers.NewSharedInformerFactoryWithOptions(a.client, 0, informers.WithNamespace(ns),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
		}),
		informers.WithTransform(stripManagedFields))
	podInformer := a.podFactory.Core().V1().Pods()
	a.pods = podInformer.Lister().Pods(ns)
	_, _ = podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if isGatewayCandidate(obj) {
				a.enqueuePod(obj)
			}
		},
		// A pod that lost the annotation is queued too: the sync forgets it.
		UpdateFunc: func(old, obj any) {
			if isGatewayCandidate(old) || isGatewayCandidate(obj) {
				a.enqueuePod(obj)
			}
		},
		DeleteFunc: a.enqueuePod,
	})
	a.synced = append(a.synced, podInformer.Informer().HasSynced)

	a.metaFactory = metadatainformer.NewFilteredSharedInformerFactory(meta, 0, ns, nil)
	a.owners = map[string]cache.GenericNamespaceLister{}
	for _, res := range []string{replicaSets, deployments} {
		inf := a.metaFactory.ForResource(schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: res})
		_ = inf.Informer().SetTransform(stripManagedFields)
		a.owners[res] = inf.Lister().ByNamespace(ns)
		_, _ = inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { a.enqueueOwnedBy(res, obj) },
			UpdateFunc: func(_, obj any) { a.enqueueOwnedBy(res, obj) },
			DeleteFunc: func(obj any) { a.enqueueOwnedBy(res, obj) },
		})
		a.synced = append(a.synced, inf.Informer().HasSynced)
	}
}

// enqueuePod queues a pod of the node, or the key of a deleted one.
func (a *Agent) enqueuePod(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err != nil {
		klog.ErrorS(err, "Cannot key pod", "object", obj)
		return
	}
	a.queue.Add(key)
}

// enqueueOwnedBy queues the node's gateway pods whose owner chain passes through obj, a
// ReplicaSet or Deployment that appeared, changed or went away: their ownership may have changed.
func (a *Agent) enqueueOwnedBy(resource string, obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	owner, ok := obj.(interface{ GetName() string })
	if !ok {
		return
	}
	pods, err := a.pods.List(labels.Everything())
	if err != nil {
		return
	}
	for _, p := range pods {
		if !isGatewayCandidate(p) || !mayBeOwnedBy(p, resource, owner.GetName(), a.owners[replicaSets]) {
			continue
		}
		a.enqueuePod(p)
	}
}

// mayBeOwnedBy: p's controller is the ReplicaSet name, or (for a Deployment) a ReplicaSet whose
// controller is the Deployment name. The ReplicaSet may be gone already: then queue anyway.
func mayBeOwnedBy(p *corev1.Pod, resource, name string, rsLister cache.GenericNamespaceLister) bool {
	ref := metav1.GetControllerOfNoCopy(p)
	if ref == nil {
		return false
	}
	if resource == replicaSets {
		return ref.Name == name
	}
	rs, err := rsLister.Get(ref.Name)
	if err != nil {
		return true
	}
	acc, ok := rs.(interface {
		GetOwnerReferences() []metav1.OwnerReference
	})
	if !ok {
		return true
	}
	for _, r := range acc.GetOwnerReferences() {
		if r.Controller != nil && *r.Controller && r.Name == name {
			return true
		}
	}
	return false
}

// isGatewayCandidate: the pod carries the gateway annotation. Other pods of the node (most of
// kube-system's) never reach the queue.
func isGatewayCandidate(obj any) bool {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return false
	}
	_, ok = p.Annotations[annotations.GatewayKey]
	return ok
}

// stripManagedFields drops what the daemon never reads from cached objects: managedFields are
// often the largest part of an object.
func stripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}
