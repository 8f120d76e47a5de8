// Package kubeovn is a small typed client for the kubeovn.io/v1 resources vpcnat serves
// (VpcNatGateway, Vpc, Subnet): a REST client over the project's own Go types, and informers
// built on it. Three resources do not justify a code generator; one generic Resource type gives
// each of them the verbs the controller and the tests use.
package kubeovn

import (
	"context"
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/types"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// Scheme knows kubeovn.io/v1 and the meta types its list and watch calls need. The event recorder
// uses it too, to name the kind of an object whose TypeMeta the decoder left empty.
var Scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(v1.AddToScheme(s))
	metav1.AddToGroupVersion(s, v1.SchemeGroupVersion)
	return s
}()

var (
	codecs         = serializer.NewCodecFactory(Scheme)
	parameterCodec = runtime.NewParameterCodec(Scheme)
)

// Client reaches the three resources of kubeovn.io/v1.
type Client struct {
	VpcNatGateways *Resource[*v1.VpcNatGateway, *v1.VpcNatGatewayList]
	Vpcs           *Resource[*v1.Vpc, *v1.VpcList]
	Subnets        *Resource[*v1.Subnet, *v1.SubnetList]
}

// NewForConfig makes a Client from a rest.Config (which it copies, not changes).
func NewForConfig(c *rest.Config) (*Client, error) {
	cfg := rest.CopyConfig(c)
	cfg.GroupVersion = &v1.SchemeGroupVersion
	cfg.APIPath = "/apis"
	// JSON only: the API server serves custom resources as JSON (no protobuf).
	cfg.ContentType = runtime.ContentTypeJSON
	cfg.NegotiatedSerializer = codecs.WithoutConversion()
	if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	rc, err := rest.RESTClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubeovn.io/v1 client: %w", err)
	}
	return &Client{
		VpcNatGateways: &Resource[*v1.VpcNatGateway, *v1.VpcNatGatewayList]{rest: rc, name: "vpcnatgateways",
			newObj: func() *v1.VpcNatGateway { return &v1.VpcNatGateway{} }, newList: func() *v1.VpcNatGatewayList { return &v1.VpcNatGatewayList{} }},
		Vpcs: &Resource[*v1.Vpc, *v1.VpcList]{rest: rc, name: "vpcs",
			newObj: func() *v1.Vpc { return &v1.Vpc{} }, newList: func() *v1.VpcList { return &v1.VpcList{} }},
		Subnets: &Resource[*v1.Subnet, *v1.SubnetList]{rest: rc, name: "subnets",
			newObj: func() *v1.Subnet { return &v1.Subnet{} }, newList: func() *v1.SubnetList { return &v1.SubnetList{} }},
	}, nil
}

// Resource is one cluster-scoped resource of kubeovn.io/v1; T is its object type, L its list.
type Resource[T runtime.Object, L runtime.Object] struct {
	rest    rest.Interface
	name    string
	newObj  func() T
	newList func() L
}

// Name is the resource's plural name, e.g. vpcnatgateways.
func (r *Resource[T, L]) Name() string { return r.name }

// Get reads one object.
func (r *Resource[T, L]) Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error) {
	out := r.newObj()
	err := r.rest.Get().Resource(r.name).Name(name).VersionedParams(&opts, parameterCodec).Do(ctx).Into(out)
	return out, err
}

// List reads a list.
func (r *Resource[T, L]) List(ctx context.Context, opts metav1.ListOptions) (L, error) {
	out := r.newList()
	err := r.rest.Get().Resource(r.name).VersionedParams(&opts, parameterCodec).Do(ctx).Into(out)
	return out, err
}

// Watch watches the resource.
func (r *Resource[T, L]) Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	opts.Watch = true
	return r.rest.Get().Resource(r.name).VersionedParams(&opts, parameterCodec).Watch(ctx)
}

// Create creates obj and returns what the server stored.
func (r *Resource[T, L]) Create(ctx context.Context, obj T, opts metav1.CreateOptions) (T, error) {
	out := r.newObj()
	err := r.rest.Post().Resource(r.name).VersionedParams(&opts, parameterCodec).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Update replaces the object's spec and metadata (the status subresource ignores status here).
func (r *Resource[T, L]) Update(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	return r.put(ctx, obj, "", opts)
}

// UpdateStatus replaces the object's status through the status subresource.
func (r *Resource[T, L]) UpdateStatus(ctx context.Context, obj T, opts metav1.UpdateOptions) (T, error) {
	return r.put(ctx, obj, "status", opts)
}

func (r *Resource[T, L]) put(ctx context.Context, obj T, sub string, opts metav1.UpdateOptions) (T, error) {
	out := r.newObj()
	m, err := metaOf(obj)
	if err != nil {
		return out, err
	}
	req := r.rest.Put().Resource(r.name).Name(m.GetName())
	if sub != "" {
		req = req.SubResource(sub)
	}
	err = req.VersionedParams(&opts, parameterCodec).Body(obj).Do(ctx).Into(out)
	return out, err
}

// Patch patches the object (or a subresource of it) with data of the given patch type.
func (r *Resource[T, L]) Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (T, error) {
	out := r.newObj()
	err := r.rest.Patch(pt).Resource(r.name).Name(name).SubResource(subresources...).
		VersionedParams(&opts, parameterCodec).Body(data).Do(ctx).Into(out)
	return out, err
}

// Delete deletes one object.
func (r *Resource[T, L]) Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error {
	return r.rest.Delete().Resource(r.name).Name(name).Body(&opts).Do(ctx).Error()
}

func metaOf(obj runtime.Object) (metav1.Object, error) {
	m, ok := obj.(metav1.Object)
	if !ok {
		return nil, fmt.Errorf("%T has no object metadata", obj)
	}
	return m, nil
}
