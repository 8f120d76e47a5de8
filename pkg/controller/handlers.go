package controller

import (
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/claims"
	"github.com/vpcnat/vpcnat/pkg/plan"
)

// kind says what a queue key names.
type kind string

const (
	kindGateway kind = "gateway"
	kindVpc     kind = "vpc"
	kindSubnet  kind = "subnet"
)

// key is one item of the workqueue: a VpcNatGateway, a Vpc (whose status lists its gateways) or
// a Subnet (whose status says whether its segment is its own).
type key struct {
	kind kind
	name string
}

// Indexes of the informer caches (pkg/claims), so that an event finds the objects it affects
// without a scan.
const (
	indexVpc     = claims.IndexVpc
	indexEIP     = claims.IndexEIP
	indexLan     = claims.IndexLan
	indexSubnet  = claims.IndexSubnet
	indexSegment = claims.IndexSegment
)

func eipKey(cidr string) string { return claims.EIPKey(cidr) }

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
		c.enqueueIndexed(indexLan, claims.LanKey(gw))
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
// spec.subnet whatever its Vpc (it may now be "a subnet of another VPC"). A Subnet with an
// attachment also makes or ends a conflict on its segment: every Subnet on the segment, before
// and after, and the gateways of their Vpcs are looked at again.
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
		c.queue.Add(key{kindSubnet, s.Name})
		c.enqueueSegment(claims.SegmentKey(s))
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

// enqueueSegment queues every Subnet on the segment and the gateways of their Vpcs.
func (c *Controller) enqueueSegment(segment string) {
	if segment == "" {
		return
	}
	objs, _ := c.subnetIndex.ByIndex(indexSegment, segment)
	for _, o := range objs {
		if s, ok := o.(*v1.Subnet); ok {
			c.queue.Add(key{kindSubnet, s.Name})
			if s.Spec.Vpc != "" {
				c.enqueueIndexed(indexVpc, s.Spec.Vpc)
			}
		}
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
// and its Subnets' segment claims in force, so its changes concern the gateways claiming the
// same address and the Subnets on the same segments.
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
			if k := claims.DeploymentLanKey(a); k != "" {
				c.enqueueIndexed(indexLan, k)
			}
			for _, segment := range claims.DeploymentSegments(a) {
				c.enqueueSegment(segment)
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
