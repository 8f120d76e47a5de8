package kubeovn

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/listers"
	"k8s.io/client-go/tools/cache"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// Informers are the shared informers of the three resources, with their listers.
type Informers struct {
	VpcNatGateways cache.SharedIndexInformer
	Vpcs           cache.SharedIndexInformer
	Subnets        cache.SharedIndexInformer
}

// NewInformers makes (not starts) one informer per resource. resync 0 disables periodic resyncs.
func NewInformers(c *Client, resync time.Duration) *Informers {
	return &Informers{
		VpcNatGateways: newInformer(c.VpcNatGateways, &v1.VpcNatGateway{}, resync),
		Vpcs:           newInformer(c.Vpcs, &v1.Vpc{}, resync),
		Subnets:        newInformer(c.Subnets, &v1.Subnet{}, resync),
	}
}

func newInformer[T runtime.Object, L runtime.Object](r *Resource[T, L], example runtime.Object, resync time.Duration) cache.SharedIndexInformer {
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, opts metav1.ListOptions) (runtime.Object, error) {
			return r.List(ctx, opts)
		},
		WatchFuncWithContext: func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
			return r.Watch(ctx, opts)
		},
	}
	inf := cache.NewSharedIndexInformer(lw, example, resync, cache.Indexers{})
	// Managed fields are half of a small object's size and nothing here reads them.
	_ = inf.SetTransform(StripManagedFields)
	return inf
}

// StripManagedFields is an informer transform that drops metadata.managedFields.
func StripManagedFields(obj any) (any, error) {
	if m, ok := obj.(metav1.Object); ok {
		m.SetManagedFields(nil)
	}
	return obj, nil
}

// Start runs the informers until ctx ends.
func (i *Informers) Start(ctx context.Context) {
	for _, inf := range i.all() {
		go inf.RunWithContext(ctx)
	}
}

// HasSynced says whether every informer has listed once.
func (i *Informers) HasSynced() bool {
	for _, inf := range i.all() {
		if !inf.HasSynced() {
			return false
		}
	}
	return true
}

func (i *Informers) all() []cache.SharedIndexInformer {
	return []cache.SharedIndexInformer{i.VpcNatGateways, i.Vpcs, i.Subnets}
}

// GatewayLister lists VpcNatGateways from the informer's cache. Objects are shared with the
// cache: callers must not change them.
func (i *Informers) GatewayLister() listers.ResourceIndexer[*v1.VpcNatGateway] {
	return listers.New[*v1.VpcNatGateway](i.VpcNatGateways.GetIndexer(), v1.Resource("vpcnatgateways"))
}

// VpcLister lists Vpcs from the cache (shared objects: read only).
func (i *Informers) VpcLister() listers.ResourceIndexer[*v1.Vpc] {
	return listers.New[*v1.Vpc](i.Vpcs.GetIndexer(), v1.Resource("vpcs"))
}

// SubnetLister lists Subnets from the cache (shared objects: read only).
func (i *Informers) SubnetLister() listers.ResourceIndexer[*v1.Subnet] {
	return listers.New[*v1.Subnet](i.Subnets.GetIndexer(), v1.Resource("subnets"))
}
