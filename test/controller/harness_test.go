package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kubeenv"
)

var listAll = metav1.ListOptions{}

const (
	ns       = plan.GatewayNamespace
	node     = "node-1"
	image1   = "kubeovn/vpc-nat-gateway:v1.7.0" // the seed's
	image2   = "registry.example/vpcnat/gateway:v2"
	waitLong = 60 * time.Second
)

// running is one in-process controller.
type running struct {
	reg  *prometheus.Registry
	stop func()
}

// startController runs a controller as the controller's ServiceAccount until the test ends (or
// stop is called).
func startController(t *testing.T) *running {
	t.Helper()
	c, err := newClients(controllerConfig)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	ctrl, err := controller.New(c.kube, c.ovn, controller.Options{Workers: 4, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return &running{reg: reg, stop: kubeenv.RunInBackground(t, "controller", ctrl.Run)}
}

// syncs is how many gateway syncs the controller has finished, whatever their result.
func (r *running) syncs() float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		return 0
	}
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "vpcnat_controller_syncs_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == "gateway" {
					n += m.GetCounter().GetValue()
				}
			}
		}
	}
	return n
}

// gauge is the value of the gauge name{gateway=gateway}, -1 when there is no such series.
func (r *running) gauge(name, gateway string) float64 {
	mfs, err := r.reg.Gather()
	if err != nil {
		return -2
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "gateway" && l.GetValue() == gateway {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	return -1
}

// wantGauge waits until name{gateway=gateway} is want (-1: no series).
func (r *running) wantGauge(t *testing.T, name, gateway string, want float64) {
	t.Helper()
	eventually(t, waitLong, name, func() error {
		if v := r.gauge(name, gateway); v != want {
			return errorf("%s{gateway=%q} = %v, want %v", name, gateway, v, want)
		}
		return nil
	})
}

// runPods plays scheduler and kubelet for gateway pods until the test ends.
func runPods(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if _, err := env.RunPods(ctx, ns, plan.LabelGateway, node); err != nil {
		t.Fatal(err)
	}
}

// eventually polls f every 50 ms until it returns nil, failing the test with f's last error
// after timeout.
func eventually(t *testing.T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v", what, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cleanUp deletes every object the tests make, and waits until the garbage collector and the
// pod runner have removed every gateway Deployment and pod, so the next test starts empty.
func cleanUp(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	gws, _ := admin.ovn.VpcNatGateways.List(ctx, listAll)
	for _, g := range gws.Items {
		_ = admin.ovn.VpcNatGateways.Delete(ctx, g.Name, metav1.DeleteOptions{})
	}
	vpcs, _ := admin.ovn.Vpcs.List(ctx, listAll)
	for _, v := range vpcs.Items {
		_ = admin.ovn.Vpcs.Delete(ctx, v.Name, metav1.DeleteOptions{})
	}
	subnets, _ := admin.ovn.Subnets.List(ctx, listAll)
	for _, s := range subnets.Items {
		_ = admin.ovn.Subnets.Delete(ctx, s.Name, metav1.DeleteOptions{})
	}
	_ = admin.kube.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Delete(ctx, plan.ConfigMapName, metav1.DeleteOptions{})
	// Deployments left by a test whose controller created them for a gateway that is gone are
	// the garbage collector's; a deployment not owned by a gateway (a conflict test) is ours.
	_ = admin.kube.AppsV1().Deployments(ns).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "vpcnat-test"})
	kill, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := env.RunPods(kill, ns, plan.LabelGateway, node); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitLong, "clean up", func() error {
		ds, err := admin.kube.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway})
		if err != nil || len(ds.Items) > 0 {
			return fmt.Errorf("deployments left: %d (%v)", len(ds.Items), err)
		}
		ps, err := admin.kube.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway})
		if err != nil || len(ps.Items) > 0 {
			return fmt.Errorf("pods left: %d (%v)", len(ps.Items), err)
		}
		return nil
	})
}

// livePod is the gateway's one pod that is not being deleted.
func livePod(name string) (*corev1.Pod, error) {
	return kubeenv.LiveGatewayPod(context.Background(), admin.kube, ns, name)
}

// waitDesired waits until the gateway's running, bound pod carries exactly the desired state
// the objects call for, and returns the pod.
func waitDesired(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	var pod *corev1.Pod
	eventually(t, waitLong, "desired annotation of "+name, func() error {
		want, _ := expectedDesired(t, name)
		p, err := livePod(name)
		if err != nil {
			return err
		}
		if p.Spec.NodeName == "" {
			return errors.New("pod not bound")
		}
		if got := p.Annotations[annotations.DesiredKey]; got != want {
			return fmt.Errorf("pod %s: desired annotation\n got %.300s\nwant %.300s", p.Name, got, want)
		}
		pod = p
		return nil
	})
	return pod
}

func getGateway(t *testing.T, name string) *v1.VpcNatGateway {
	t.Helper()
	gw, err := admin.ovn.VpcNatGateways.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return gw
}

// updateGateway applies change to the gateway, retrying on conflicts.
func updateGateway(t *testing.T, name string, change func(*v1.VpcNatGateway)) {
	t.Helper()
	eventually(t, 10*time.Second, "update gateway "+name, func() error {
		gw := getGateway(t, name)
		change(gw)
		_, err := admin.ovn.VpcNatGateways.Update(context.Background(), gw, metav1.UpdateOptions{})
		return err
	})
}

func getDeployment(t *testing.T, gw string) *appsv1.Deployment {
	t.Helper()
	var d *appsv1.Deployment
	eventually(t, waitLong, "Deployment of "+gw, func() error {
		var err error
		d, err = admin.kube.AppsV1().Deployments(ns).Get(context.Background(), plan.DeploymentName(gw), metav1.GetOptions{})
		return err
	})
	return d
}

// condition waits until the gateway's condition typ has status and reason (and, if given, a
// message containing every fragment), and returns the gateway.
func condition(t *testing.T, name, typ string, status metav1.ConditionStatus, reason string, fragments ...string) *v1.VpcNatGateway {
	t.Helper()
	var gw *v1.VpcNatGateway
	eventually(t, waitLong, fmt.Sprintf("%s: %s=%s (%s)", name, typ, status, reason), func() error {
		g, err := admin.ovn.VpcNatGateways.Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range g.Status.Conditions {
			if c.Type != typ {
				continue
			}
			if c.Status != status || c.Reason != reason {
				return fmt.Errorf("%s=%s (%s): %s", c.Type, c.Status, c.Reason, c.Message)
			}
			for _, f := range fragments {
				if !strings.Contains(c.Message, f) {
					return fmt.Errorf("message %q lacks %q", c.Message, f)
				}
			}
			if g.Status.ObservedGeneration != g.Generation {
				return fmt.Errorf("observedGeneration %d, generation %d", g.Status.ObservedGeneration, g.Generation)
			}
			gw = g
			return nil
		}
		return fmt.Errorf("no %s condition in %+v", typ, g.Status.Conditions)
	})
	return gw
}

func notFound(err error) bool { return apierrors.IsNotFound(err) }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// fresh starts a test from an empty cluster (the shared API server keeps objects between tests)
// and leaves one behind.
func fresh(t *testing.T) {
	t.Helper()
	cleanUp(t)
	t.Cleanup(func() { cleanUp(t) })
}

// runningSeed is the common start: the seed's objects, a controller, pods that run, and the
// gateway pod once it carries its desired state.
func runningSeed(t *testing.T) *corev1.Pod {
	t.Helper()
	fresh(t)
	createSeed(t)
	startController(t)
	runPods(t)
	return waitDesired(t, "ngw")
}
