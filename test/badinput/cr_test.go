package badinput

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kubeenv"
)

// The CR layer's base objects; {n} is the case's number.
var crBases = []struct{ base, resource, tmpl string }{
	{"vpc", "vpcs", `{"apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "v{n}"},
	  "spec": {"staticRoutes": [{"cidr": "0.0.0.0/0", "nextHopIP": "10.0.1.254", "policy": "policyDst"}]}}`},
	{"subnet", "subnets", `{"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "s{n}"},
	  "spec": {"vpc": "v{n}", "cidrBlock": "10.0.1.0/24", "gateway": "10.0.1.1", "natGatewayAttachment": {"bridge": "br-sn"}}}`},
	{"subnet2", "subnets", `{"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "s2-{n}"},
	  "spec": {"vpc": "v{n}", "cidrBlock": "10.0.2.0/24", "gateway": "10.0.2.1", "natGatewayAttachment": {"bridge": "br-sn2"}}}`},
	{"gw", "vpcnatgateways", `{"apiVersion": "kubeovn.io/v1", "kind": "VpcNatGateway", "metadata": {"name": "g{n}"},
	  "spec": {"vpc": "v{n}", "subnet": "s{n}", "lanIp": "10.0.1.254",
	    "eips": [{"eipCIDR": "192.168.0.111/24", "gateway": "192.168.0.254"}, {"eipCIDR": "192.168.0.112/24", "gateway": "192.168.0.254"}],
	    "floatingIpRules": [{"eip": "192.168.0.111", "internalIp": "10.0.1.5"}],
	    "dnatRules": [{"eip": "192.168.0.112", "externalPort": 8888, "protocol": "tcp", "internalIp": "10.0.1.10", "internalPort": 80}],
	    "snatRules": [{"eip": "192.168.0.112", "internalCIDR": "10.0.1.0/24"}]}}`},
}

// crObject is one object of a case, as sent.
type crObject struct {
	resource, name string
	body           []byte
}

// crObjects are a case's objects in creation order.
func crObjects(c Case, n int) ([]crObject, error) {
	num := strconv.Itoa(n)
	var out []crObject
	found := false
	for _, b := range crBases {
		tmpl := b.tmpl
		raw := false
		switch c.Base {
		case b.base:
			found = true
		case "raw" + b.base:
			found, raw, tmpl = true, true, c.Input
		default:
			if b.base == "subnet2" {
				continue // only when a case changes it
			}
		}
		doc, err := toJSON([]byte(strings.ReplaceAll(tmpl, "{n}", num)))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", c, b.base, err)
		}
		if c.Base == b.base && !raw {
			if doc, err = applySets(doc, strings.ReplaceAll(c.Input, "{n}", num)); err != nil {
				return nil, fmt.Errorf("%s: %w", c, err)
			}
		}
		body, err := json.Marshal(doc)
		if err != nil {
			return nil, err
		}
		if raw {
			body = []byte(strings.ReplaceAll(tmpl, "{n}", num)) // verbatim: duplicate keys and all
		}
		name := ""
		if m, ok := doc.(map[string]any); ok {
			if md, ok := m["metadata"].(map[string]any); ok {
				name, _ = md["name"].(string)
			}
		}
		out = append(out, crObject{resource: b.resource, name: name, body: body})
	}
	if !found {
		return nil, fmt.Errorf("%s: unknown base %q for the cr layer", c, c.Base)
	}
	// The gateway's own subnet goes last: the controller cannot project the gateway before it
	// has that subnet, and by then its cache holds every subnet created before it (one watch
	// stream, in order). Otherwise a second subnet that makes the gateway invalid (cr-088, an
	// overlap) could reach the controller after the gateway, which it would then project from
	// a view without that subnet, Deployment and all.
	for i, b := range crBases {
		if b.base == "subnet" && i < len(out) {
			own := out[i]
			out = append(append(out[:i:i], out[i+1:]...), own)
			break
		}
	}
	return out, nil
}

// crEnv is the CR layer's API server with the CRDs of deploy/crds and the ConfigMap, and an
// in-process controller.
type crEnv struct {
	rest *rest.RESTClient
	kube *kubernetes.Clientset
	ovn  *kubeovn.Client
}

func newCREnv(t *testing.T) *crEnv {
	t.Helper()
	e := apiServer.Get(t)
	ctx := context.Background()
	if err := e.Install(ctx, repoRoot(), "deploy/crds"); err != nil {
		t.Fatal(err)
	}
	kube, err := e.Clientset()
	if err != nil {
		t.Fatal(err)
	}
	ovn, err := kubeovn.NewForConfig(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	env := &crEnv{rest: kube.Discovery().RESTClient().(*rest.RESTClient), kube: kube, ovn: ovn}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := ovn.VpcNatGateways.List(ctx, metav1.ListOptions{}); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("VpcNatGateways not served: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := kube.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: plan.ConfigMapName, Namespace: plan.ConfigMapNamespace},
		Data:       map[string]string{plan.KeyImage: "vpcnat.local/vpcnat-gateway:dev", plan.KeyEnable: "true", plan.KeyNIC: "eth1"},
	}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	ctrl, err := controller.New(kube, ovn, controller.Options{Workers: 2, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	kubeenv.RunInBackground(t, "controller", ctrl.Run)
	return env
}

func (e *crEnv) create(o crObject) error {
	return e.rest.Post().AbsPath("/apis/kubeovn.io/v1/"+o.resource).Param("fieldValidation", "Strict").
		Body(o.body).Do(context.Background()).Error()
}

func (e *crEnv) delete(o crObject) error {
	err := e.rest.Delete().AbsPath("/apis/kubeovn.io/v1/" + o.resource + "/" + o.name).Do(context.Background()).Error()
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// readyFalse waits until the gateway's Ready condition is False for its current generation with a
// message that passes the verdict, and returns the last verdict.
func (e *crEnv) readyFalse(c Case, name string) error {
	deadline := time.Now().Add(10 * time.Second)
	last := errors.New("no Ready condition")
	for time.Now().Before(deadline) {
		g, err := e.ovn.VpcNatGateways.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, cond := range g.Status.Conditions {
			if cond.Type != controller.CondReady || g.Status.ObservedGeneration != g.Generation {
				continue
			}
			if cond.Status != metav1.ConditionFalse {
				last = fmt.Errorf("%s: Ready=%s (%s): %s", c, cond.Status, cond.Reason, cond.Message)
				continue
			}
			if last = checkError(c, errors.New(cond.Reason+": "+cond.Message)); last == nil {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return last
}

// healthyCR is the CR layer's healthy gateway: its own Vpc, subnet 10.0.9.0/24, EIP .200.
func healthyCR() []crObject {
	return []crObject{
		{"vpcs", "hv", []byte(`{"apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "hv"}}`)},
		{"subnets", "hs", []byte(`{"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "hs"},
		  "spec": {"vpc": "hv", "cidrBlock": "10.0.9.0/24", "gateway": "10.0.9.1", "natGatewayAttachment": {"bridge": "br-h"}}}`)},
		{"vpcnatgateways", "healthy", []byte(`{"apiVersion": "kubeovn.io/v1", "kind": "VpcNatGateway", "metadata": {"name": "healthy"},
		  "spec": {"vpc": "hv", "subnet": "hs", "lanIp": "10.0.9.254", "eips": [{"eipCIDR": "192.168.0.200/24", "gateway": "192.168.0.254"}],
		    "dnatRules": [{"eip": "192.168.0.200", "externalPort": 22, "protocol": "tcp", "internalIp": "10.0.9.10", "internalPort": 22}],
		    "snatRules": [{"eip": "192.168.0.200", "internalCIDR": "10.0.9.0/24"}]}}`)},
	}
}

// healthyState is what must not change of the healthy gateway: its Deployment (generation and
// pod template annotations) and its status conditions.
func (e *crEnv) healthyState(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	d, err := e.kube.AppsV1().Deployments(plan.GatewayNamespace).Get(ctx, plan.DeploymentName("healthy"), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	g, err := e.ovn.VpcNatGateways.Get(ctx, "healthy", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var conds []string
	for _, c := range g.Status.Conditions {
		conds = append(conds, fmt.Sprintf("%s=%s %s %s", c.Type, c.Status, c.Reason, c.Message))
	}
	ann, _ := json.Marshal(d.Spec.Template.Annotations)
	return fmt.Sprintf("deployment generation %d uid %s\n%s\n%s", d.Generation, d.UID, ann, strings.Join(conds, "\n"))
}

// TestCR: every cr case through the real API server (the CRDs of deploy/crds, strict field
// validation) and the controller: an "api" case's create is refused with the fragment; a
// "controller" case is stored, and the gateway's Ready condition turns False with the fragment,
// and no Deployment is made for it. Between cases every object of the case is deleted. The
// healthy gateway's Deployment and conditions do not change.
func TestCR(t *testing.T) {
	cases := casesOf(t, "cr")
	e := newCREnv(t)
	ctx := context.Background()
	for _, o := range healthyCR() {
		if err := e.create(o); err != nil {
			t.Fatalf("healthy gateway: %s: %v", o.name, err)
		}
	}
	var before string
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := e.kube.AppsV1().Deployments(plan.GatewayNamespace).Get(ctx, plan.DeploymentName("healthy"), metav1.GetOptions{})
		g, gerr := e.ovn.VpcNatGateways.Get(ctx, "healthy", metav1.GetOptions{})
		if err == nil && gerr == nil && g.Status.ObservedGeneration == g.Generation && len(g.Status.Conditions) > 0 {
			time.Sleep(300 * time.Millisecond) // let the status settle
			before = e.healthyState(t)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the healthy gateway got no Deployment and status in 30s (%v, %v)", err, gerr)
		}
		time.Sleep(50 * time.Millisecond)
	}

	k := &counter{layer: "cr"}
	defer k.report(t)
	for i, c := range cases {
		t.Run(c.ID, func(t *testing.T) {
			k.ran++
			c.Expect = strings.ReplaceAll(c.Expect, "{n}", strconv.Itoa(i+1))
			objs, err := crObjects(c, i+1)
			if err != nil {
				t.Fatal(err)
			}
			var created []crObject
			defer func() {
				for j := len(created) - 1; j >= 0; j-- {
					if err := e.delete(created[j]); err != nil {
						t.Errorf("deleting %s %s: %v", created[j].resource, created[j].name, err)
					}
				}
			}()
			var refused error
			for _, o := range objs {
				if refused = e.create(o); refused != nil {
					break
				}
				created = append(created, o)
			}
			var gw crObject
			for _, o := range objs {
				if o.resource == "vpcnatgateways" {
					gw = o
				}
			}
			switch {
			case c.Stage == "api":
				if verdict := checkError(c, refused); verdict != nil {
					t.Error(verdict)
				}
			case refused != nil:
				t.Errorf("%s: the API server refused it, want the controller to: %v", c, clip(refused.Error()))
			default:
				if verdict := e.readyFalse(c, gw.name); verdict != nil {
					t.Error(verdict)
				}
				if _, err := e.kube.AppsV1().Deployments(plan.GatewayNamespace).Get(ctx, plan.DeploymentName(gw.name), metav1.GetOptions{}); !apierrors.IsNotFound(err) {
					t.Errorf("%s: the refused gateway got a Deployment (%v)", c, err)
				}
			}
			if !t.Failed() {
				k.rejected++
			}
		})
	}
	// Every case's objects are gone; the healthy gateway is as it was.
	for _, kind := range []string{"gateways", "vpcs", "subnets"} {
		n := 0
		switch kind {
		case "gateways":
			l, _ := e.ovn.VpcNatGateways.List(ctx, metav1.ListOptions{})
			n = len(l.Items)
		case "vpcs":
			l, _ := e.ovn.Vpcs.List(ctx, metav1.ListOptions{})
			n = len(l.Items)
		case "subnets":
			l, _ := e.ovn.Subnets.List(ctx, metav1.ListOptions{})
			n = len(l.Items)
		}
		if n != 1 {
			t.Errorf("%d %s left, want only the healthy one's", n, kind)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if after := e.healthyState(t); after != before {
		t.Errorf("the healthy gateway changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
}

var _ = v1.SchemeGroupVersion
