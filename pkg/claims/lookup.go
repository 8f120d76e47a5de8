package claims

import (
	"net/netip"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	appslisters "k8s.io/client-go/listers/apps/v1"
	"k8s.io/client-go/tools/cache"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// Lookup is what the rules read. The objects it returns are shared (cache objects): read only.
type Lookup interface {
	// GatewaysByEIP lists the gateways whose spec.eips hold the address (EIPKey).
	GatewaysByEIP(addr string) []*v1.VpcNatGateway
	// GatewaysByVpc lists the gateways whose spec.vpc is vpc.
	GatewaysByVpc(vpc string) []*v1.VpcNatGateway
	// GatewaysByLan lists the gateways whose LanKey is key.
	GatewaysByLan(key string) []*v1.VpcNatGateway
	// SubnetsBySegment lists the Subnets whose SegmentKey is key.
	SubnetsBySegment(key string) []*v1.Subnet
	// SubnetsByVpc lists the Subnets whose spec.vpc is vpc.
	SubnetsByVpc(vpc string) []*v1.Subnet
	// Subnet is the Subnet of this name, nil when there is none.
	Subnet(name string) *v1.Subnet
	// Deployment is g's Deployment when it exists and g controls it, else nil.
	Deployment(g *v1.VpcNatGateway) *appsv1.Deployment
}

// Index names of the informer caches (GatewayIndexers, SubnetIndexers).
const (
	IndexVpc     = "vpc"     // gateways and subnets by spec.vpc
	IndexEIP     = "eip"     // gateways by EIPKey
	IndexLan     = "lan"     // gateways by LanKey
	IndexSubnet  = "subnet"  // gateways by spec.subnet
	IndexSegment = "segment" // subnets by SegmentKey
)

// GatewayIndexers index a VpcNatGateway cache for the rules and for event routing.
var GatewayIndexers = cache.Indexers{
	IndexVpc: func(obj any) ([]string, error) {
		gw, ok := obj.(*v1.VpcNatGateway)
		if !ok || gw.Spec.Vpc == "" {
			return nil, nil
		}
		return []string{gw.Spec.Vpc}, nil
	},
	IndexSubnet: func(obj any) ([]string, error) {
		gw, ok := obj.(*v1.VpcNatGateway)
		if !ok || gw.Spec.Subnet == "" {
			return nil, nil
		}
		return []string{gw.Spec.Subnet}, nil
	},
	IndexEIP: func(obj any) ([]string, error) {
		gw, ok := obj.(*v1.VpcNatGateway)
		if !ok {
			return nil, nil
		}
		out := make([]string, 0, len(gw.Spec.Eips))
		for _, e := range gw.Spec.Eips {
			out = append(out, EIPKey(e.EipCIDR))
		}
		return out, nil
	},
	IndexLan: func(obj any) ([]string, error) {
		gw, ok := obj.(*v1.VpcNatGateway)
		if !ok || gw.Spec.LanIP == "" {
			return nil, nil
		}
		return []string{LanKey(gw)}, nil
	},
}

// SubnetIndexers index a Subnet cache for the rules and for event routing.
var SubnetIndexers = cache.Indexers{
	IndexVpc: func(obj any) ([]string, error) {
		s, ok := obj.(*v1.Subnet)
		if !ok || s.Spec.Vpc == "" {
			return nil, nil
		}
		return []string{s.Spec.Vpc}, nil
	},
	IndexSegment: func(obj any) ([]string, error) {
		s, ok := obj.(*v1.Subnet)
		if !ok || SegmentKey(s) == "" {
			return nil, nil
		}
		return []string{SegmentKey(s)}, nil
	},
}

// EIPKey is the address of an EIP, so that 192.168.0.111/24 and 192.168.0.111/25 collide.
func EIPKey(cidr string) string {
	if p, err := netip.ParsePrefix(cidr); err == nil {
		return p.Addr().String()
	}
	return cidr
}

// LanKey: two gateways conflict when they hold the same address in the same subnet.
func LanKey(gw *v1.VpcNatGateway) string {
	ip := gw.Spec.LanIP
	if a, err := netip.ParseAddr(ip); err == nil {
		ip = a.String()
	}
	return gw.Spec.Subnet + "/" + ip
}

// Caches is the Lookup over informer caches indexed with GatewayIndexers and SubnetIndexers, and
// a lister of the gateway namespace's Deployments.
type Caches struct {
	Gateways    cache.Indexer
	Subnets     cache.Indexer
	Deployments appslisters.DeploymentNamespaceLister
}

var _ Lookup = Caches{}

func byIndex[T any](ix cache.Indexer, index, value string) []T {
	objs, _ := ix.ByIndex(index, value)
	out := make([]T, 0, len(objs))
	for _, o := range objs {
		if t, ok := o.(T); ok {
			out = append(out, t)
		}
	}
	return out
}

// GatewaysByEIP implements Lookup.
func (c Caches) GatewaysByEIP(addr string) []*v1.VpcNatGateway {
	return byIndex[*v1.VpcNatGateway](c.Gateways, IndexEIP, addr)
}

// GatewaysByVpc implements Lookup.
func (c Caches) GatewaysByVpc(vpc string) []*v1.VpcNatGateway {
	return byIndex[*v1.VpcNatGateway](c.Gateways, IndexVpc, vpc)
}

// GatewaysByLan implements Lookup.
func (c Caches) GatewaysByLan(key string) []*v1.VpcNatGateway {
	return byIndex[*v1.VpcNatGateway](c.Gateways, IndexLan, key)
}

// SubnetsBySegment implements Lookup.
func (c Caches) SubnetsBySegment(key string) []*v1.Subnet {
	return byIndex[*v1.Subnet](c.Subnets, IndexSegment, key)
}

// SubnetsByVpc implements Lookup.
func (c Caches) SubnetsByVpc(vpc string) []*v1.Subnet {
	return byIndex[*v1.Subnet](c.Subnets, IndexVpc, vpc)
}

// Subnet implements Lookup.
func (c Caches) Subnet(name string) *v1.Subnet {
	o, ok, err := c.Subnets.GetByKey(name)
	if err != nil || !ok {
		return nil
	}
	s, _ := o.(*v1.Subnet)
	return s
}

// Deployment implements Lookup.
func (c Caches) Deployment(g *v1.VpcNatGateway) *appsv1.Deployment {
	d, err := c.Deployments.Get(plan.DeploymentName(g.Name))
	if err != nil || !metav1.IsControlledBy(d, g) {
		return nil
	}
	return d
}
