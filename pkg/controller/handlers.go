package controller

import (
	"net/netip"
	"strings"

	appsv1 "k8s.io/api/apps/v1"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// kind says what a queue key names.
type kind string

const (
	kindGateway kind = "gateway"
	kindVpc     kind = "vpc"
)

// key is one item of the workqueue: a VpcNatGateway or a Vpc (whose status lists its gateways).
type key struct {
	kind kind
	name string
}

// Indexes of the informer caches, so that an event finds the gateways it affects without a scan.
const (
	indexVpc    = "vpc"    // gateways and subnets by spec.vpc
	indexEIP    = "eip"    // gateways by EIP address
	indexLan    = "lan"    // gateways by subnet/lanIp
	indexSubnet = "subnet" // gateways by spec.subnet
)

var gatewayIndexers = cache.Indexers{
	indexVpc: func(obj any) ([]string, error) {
		gw, ok := obj.(*v1.VpcNatGateway)
		if !ok || gw.Spec.Vpc == "" {
			return nil, nil
		}
		return []string{gw.Spec.Vpc}, nil
	},
	indexSubnet: func(obj any) ([]string, error) {
		gw, ok := obj.(*v1.VpcNatGateway)
		if !ok || gw.Spec.Subnet == "" {
			return nil, nil
		}
		return []string{gw.Spec.Subnet}, nil
	},
	indexEIP: func(obj any) ([]string, error) {
		gw, ok := obj.(*v1.VpcNatGateway)
		if !ok {
			return nil, nil
		}
		out := make([]string, 0, len(gw.Spec.Eips))
		for _, e := range gw.Spec.Eips {
			out = append(out, eipKey(e.EipCIDR))
		}
		return out, nil
	},
	indexLan: func(obj any) ([]string, error) {
		gw, ok := obj.(*v1.VpcNatGateway)
		if !ok || gw.Spec.LanIP == "" {
			return nil, nil
		}
		return []string{lanKey(gw)}, nil
	},
}

func subnetVpcIndex(obj any) ([]string, error) {
	s, ok := obj.(*v1.Subnet)
	if !ok || s.Spec.Vpc == "" {
		return nil, nil
	}
	return []string{s.Spec.Vpc}, nil
}

// eipKey is the address of an EIP, so that 192.168.0.111/24 and 192.168.0.111/25 collide.
func eipKey(cidr string) string {
	if p, err := netip.ParsePrefix(cidr); err == nil {
		return p.Addr().String()
	}
	return cidr
}

// lanKey: two gateways conflict when they hold the same address in the same subnet.
func lanKey(gw *v1.VpcNatGateway) string {
	ip := gw.Spec.LanIP
	if a, err := netip.ParseAddr(ip); err == nil {
		ip = a.String()
	}
	return gw.Spec.Subnet + "/" + ip
}

// object unwraps the tombstone a delete event may carry.
func object(obj any) metav1.Object {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	m, _ := obj.(metav1.Object)
	return m
}

func (c *Controller) enqueueGateway(name string) { c.queue.Add(key{kindGateway, name}) }

// enqueueIndexed queues every gateway whose index holds value.
func (c *Controller) enqueueIndexed(index, value string) {
	objs, _ := c.gwIndexer.ByIndex(index, value)
	for _, o := range objs {
		if gw, ok := o.(*v1.VpcNatGateway); ok {
			c.enqueueGateway(gw.Name)
		}
	}
}

// enqueueAffected queues a gateway, the gateways it may conflict with (same EIP, same
// subnet/lanIp: a change of one can make or end a conflict of the other) and its Vpc.
func (c *Controller) enqueueAffected(gw *v1.VpcNatGateway) {
	c.enqueueGateway(gw.Name)
	for _, e := range gw.Spec.Eips {
		c.enqueueIndexed(indexEIP, eipKey(e.EipCIDR))
	}
	if gw.Spec.LanIP != "" {
		c.enqueueIndexed(indexLan, lanKey(gw))
	}
	if gw.Spec.Vpc != "" {
		c.queue.Add(key{kindVpc, gw.Spec.Vpc})
	}
}

// specChanged: only spec changes (and resyncs, where nothing changed at all) matter; the
// controller's own status updates must not set off another sync of every related object.
func specChanged(oldObj, newObj any) bool {
	o, n := object(oldObj), object(newObj)
	return o == nil || n == nil || o.GetGeneration() != n.GetGeneration() || o.GetResourceVersion() == n.GetResourceVersion()
}

func (c *Controller) gatewayHandler() cache.ResourceEventHandler {
	each := func(obj any) {
		if gw, ok := object(obj).(*v1.VpcNatGateway); ok {
			c.enqueueAffected(gw)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { each(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			if specChanged(oldObj, newObj) {
				each(oldObj)
				each(newObj)
				return
			}
			// A status update that changes the EIPs in force can end a conflict another gateway
			// was refused for (conflicts ranks claims in force first).
			o, okO := oldObj.(*v1.VpcNatGateway)
			n, okN := newObj.(*v1.VpcNatGateway)
			if okO && okN {
				for _, addr := range changedEIPsInForce(o, n) {
					c.enqueueIndexed(indexEIP, addr)
				}
				// The gateway itself is looked at again once its status write reaches the cache:
				// a sync that ran before (on the daemon's report, say) compared its result with
				// the stale cached status, found them equal and wrote nothing, which would leave
				// the older write in force. That sync computes the same status and writes nothing.
				c.enqueueGateway(n.Name)
			}
		},
		DeleteFunc: each,
	}
}

// changedEIPsInForce lists the addresses in force on exactly one of old and new.
func changedEIPsInForce(o, n *v1.VpcNatGateway) []string {
	count := map[string]int{}
	for _, g := range []*v1.VpcNatGateway{o, n} {
		seen := map[string]bool{}
		for _, r := range g.Status.Rules {
			if r.Kind == KindEIP && !seen[r.Key] {
				seen[r.Key] = true
				count[eipKey(r.Key)]++
			}
		}
	}
	var out []string
	for addr, k := range count {
		if k == 1 {
			out = append(out, addr)
		}
	}
	return out
}

func (c *Controller) vpcHandler() cache.ResourceEventHandler {
	each := func(obj any) {
		if m := object(obj); m != nil {
			c.enqueueIndexed(indexVpc, m.GetName())
			c.queue.Add(key{kindVpc, m.GetName()})
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { each(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			if specChanged(oldObj, newObj) {
				each(newObj)
			}
		},
		DeleteFunc: each,
	}
}

// subnetHandler: a Subnet change re-projects every gateway of its Vpc, before and after (a
// Subnet moved to another Vpc leaves one and joins the other), and any gateway naming it as
// spec.subnet whatever its Vpc (it may now be "a subnet of another VPC").
func (c *Controller) subnetHandler() cache.ResourceEventHandler {
	each := func(obj any) {
		s, ok := object(obj).(*v1.Subnet)
		if !ok {
			return
		}
		if s.Spec.Vpc != "" {
			c.enqueueIndexed(indexVpc, s.Spec.Vpc)
		}
		c.enqueueIndexed(indexSubnet, s.Name)
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { each(obj) },
		UpdateFunc: func(oldObj, newObj any) {
			if specChanged(oldObj, newObj) {
				each(oldObj)
				each(newObj)
			}
		},
		DeleteFunc: each,
	}
}

// configMapHandler: the ConfigMap (image, switch, nic) concerns every gateway.
func (c *Controller) configMapHandler() cache.ResourceEventHandler {
	all := func(any) {
		for _, name := range c.gwIndexer.ListKeys() {
			c.enqueueGateway(name)
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    all,
		UpdateFunc: func(_, n any) { all(n) },
		DeleteFunc: all,
	}
}

// childHandler maps a gateway Deployment or Pod to its gateway by the gateway label; sync
// checks ownership before touching anything. A Deployment also holds its gateway's lanIp claim
// in force, so its changes concern the gateways claiming the same address.
func (c *Controller) childHandler() cache.ResourceEventHandler {
	each := func(obj any) {
		m := object(obj)
		if m == nil {
			return
		}
		if name := m.GetLabels()[plan.LabelGateway]; name != "" {
			c.enqueueGateway(name)
		}
		if d, ok := m.(*appsv1.Deployment); ok {
			a := d.Spec.Template.Annotations
			sw, _, _ := strings.Cut(a[annotations.LogicalSwitchKey], ",")
			ip, _, _ := strings.Cut(a[annotations.IPAddressKey], ",")
			if sw != "" && ip != "" {
				c.enqueueIndexed(indexLan, sw+"/"+ip)
			}
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { each(obj) },
		UpdateFunc: func(o, n any) {
			each(o)
			each(n)
		},
		DeleteFunc: each,
	}
}
