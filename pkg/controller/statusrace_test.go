package controller

// TestResyncWhenOwnStatusReachesCache runs against a real etcd + kube-apiserver +
// kube-controller-manager (test/kubeenv, started on first use). The test plays the workers: it
// takes the keys the real informers' handlers queue and calls sync itself, so that it decides
// which sync runs when; and it holds the VpcNatGateway watch events the controller's informer
// receives, so that the cache lags the controller's own status write for as long as it must.
//
// Address plan: the seed's (192.168.0.0/24 external, 10.0.1.0/24 VPC), 198.51.100.0/24 for the
// added static route and 203.0.113.0/24 for the marker gateway; values in API objects only.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kubeenv"
)

// apiServer is the package's API server, started only by the tests that need one.
var apiServer = &kubeenv.Shared{RepoRoot: filepath.Join("..", "..")}

func TestMain(m *testing.M) {
	code := m.Run()
	if err := apiServer.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}

var clusterSetUp struct {
	once sync.Once
	err  error
}

// cluster is the shared API server with deploy/crds installed and kube-controller-manager
// running (Deployments become ReplicaSets and pods; owner references are collected).
func cluster(t *testing.T) *kubeenv.Env {
	t.Helper()
	env := apiServer.Get(t)
	clusterSetUp.once.Do(func() {
		ctx := context.Background()
		if _, err := env.Kubectl(ctx, "apply", "--server-side", "-f", filepath.Join("..", "..", "deploy", "crds")); err != nil {
			clusterSetUp.err = err
			return
		}
		if _, err := env.Kubectl(ctx, "wait", "--for=condition=Established", "--timeout=60s",
			"crd/vpcnatgateways.kubeovn.io", "crd/vpcs.kubeovn.io", "crd/subnets.kubeovn.io"); err != nil {
			clusterSetUp.err = err
			return
		}
		clusterSetUp.err = env.StartControllerManager(ctx)
	})
	if clusterSetUp.err != nil {
		t.Fatalf("setting up the cluster: %v", clusterSetUp.err)
	}
	return env
}

// watchGate holds, while closed, the events of the watch streams it wraps: a Read of the
// response body gets the server's bytes as they come but returns them only once the gate is
// open. The API server is real; only the delivery to the informer is late.
type watchGate struct {
	mu   sync.Mutex
	open chan struct{} // closed while the gate is open
}

func newWatchGate() *watchGate {
	g := &watchGate{open: make(chan struct{})}
	close(g.open)
	return g
}

// hold closes the gate: what the watch brings from now on waits for release.
func (g *watchGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
		g.open = make(chan struct{})
	default:
	}
}

// release opens the gate: what was held is delivered, in order.
func (g *watchGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.open:
	default:
		close(g.open)
	}
}

func (g *watchGate) wait(closed <-chan struct{}) {
	g.mu.Lock()
	open := g.open
	g.mu.Unlock()
	select {
	case <-open:
	case <-closed:
	}
}

// wrap is a rest.Config WrapTransport: the watch requests of resource go through the gate.
func (g *watchGate) wrap(resource string) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return roundTripper(func(req *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(req)
			if err != nil || req.URL.Query().Get("watch") != "true" || !strings.HasSuffix(req.URL.Path, "/"+resource) {
				return resp, err
			}
			resp.Body = &gatedBody{ReadCloser: resp.Body, gate: g, closed: make(chan struct{})}
			return resp, nil
		})
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

type gatedBody struct {
	io.ReadCloser
	gate   *watchGate
	closed chan struct{}
	once   sync.Once
}

func (b *gatedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.gate.wait(b.closed)
	return n, err
}

func (b *gatedBody) Close() error {
	b.once.Do(func() { close(b.closed) })
	return b.ReadCloser.Close()
}

// raceRig is a Controller whose informers run and whose queue the test works off itself.
type raceRig struct {
	t    *testing.T
	env  *kubeenv.Env
	ctx  context.Context
	c    *Controller
	gate *watchGate
	kube kubernetes.Interface
	ovn  *kubeovn.Client
}

// newRaceRig starts a Controller's informers (not its workers), its VpcNatGateway watch through
// gate, and waits for its caches.
func newRaceRig(t *testing.T, env *kubeenv.Env) *raceRig {
	t.Helper()
	kube, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	ovn, err := kubeovn.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	gate := newWatchGate()
	gated := rest.CopyConfig(env.Config)
	gated.WrapTransport = gate.wrap("vpcnatgateways")
	ctrlOVN, err := kubeovn.NewForConfig(gated)
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(kube, ctrlOVN, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	// What Run does before it starts the workers.
	c.ovnInformers.Start(ctx)
	for _, f := range c.factories {
		f.Start(ctx.Done())
	}
	t.Cleanup(func() {
		gate.release()
		cancel()
		for _, f := range c.factories {
			f.Shutdown()
		}
		c.queue.ShutDown()
		c.broadcaster.Shutdown()
	})
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		t.Fatal("caches did not sync")
	}
	return &raceRig{t: t, env: env, ctx: ctx, c: c, gate: gate, kube: kube, ovn: ovn}
}

const raceWait = 60 * time.Second

// syncUntil does a worker's job in the test's goroutine until done returns nil: it syncs each
// key the handlers queued. A failed sync is queued again at once, not with backoff, so that no
// retry is left to fire at a moment the test did not choose.
func (r *raceRig) syncUntil(what string, done func() error) {
	r.t.Helper()
	waitFor(r.t, what, func() error {
		err := done()
		if err == nil || r.c.queue.Len() == 0 {
			return err
		}
		k, _ := r.c.queue.Get()
		_, serr := r.c.sync(r.ctx, k)
		r.c.queue.Done(k)
		if serr != nil {
			r.t.Logf("sync %s %s: %v (again)", k.kind, k.name, serr)
			r.c.queue.Add(k)
		}
		return err
	})
}

// waitFor polls done, syncing nothing, until it returns nil.
func waitFor(t *testing.T, what string, done func() error) {
	t.Helper()
	deadline := time.Now().Add(raceWait)
	for {
		err := done()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v: %v", what, raceWait, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// syncThrough takes the queued keys in order until marker, which it does not sync, and syncs
// the others (any failure fails the test). The handlers of one informer run in the order of its
// events, so once marker is out of the queue every key queued by an event before the marker
// object's own has been synced. It returns the keys synced.
func (r *raceRig) syncThrough(marker key) []key {
	r.t.Helper()
	var synced []key
	deadline := time.Now().Add(raceWait)
	for {
		if r.c.queue.Len() == 0 {
			if time.Now().After(deadline) {
				r.t.Fatalf("the marker %s %s was not queued after %v", marker.kind, marker.name, raceWait)
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		k, _ := r.c.queue.Get()
		if k == marker {
			r.c.queue.Done(k)
			return synced
		}
		if strings.HasPrefix(k.name, markerName) {
			r.c.queue.Done(k)
			continue
		}
		_, err := r.c.sync(r.ctx, k)
		r.c.queue.Done(k)
		if err != nil {
			r.t.Fatalf("sync %s %s: %v", k.kind, k.name, err)
		}
		synced = append(synced, k)
	}
}

// markerName starts the names of the objects whose events tell the test that the events before
// them have been handled; the controller is never asked to sync them. Each marker has a key of
// its own: the pod runner's later updates of the marker pod must not pass for the gateway's.
const (
	markerName    = "statusrace-marker"
	markerPod     = markerName + "-pod"
	markerGateway = markerName + "-gw"
)

// TestResyncWhenOwnStatusReachesCache: after a Vpc static-route edit (same gateway generation,
// new desired state) the gateway ends Ready once the daemon applied it, even when the sync on the
// daemon's report ran while the informer cache did not yet hold the controller's own Pending
// write. That sync compares with the stale cached status (Ready, as it computes), writes
// nothing, and leaves Pending in force; only a sync once the Pending write reaches the cache can
// set it right. Before 930d6cb nothing queued the gateway then and it stayed
// "Ready=False: the daemon reports generation 1; waiting for it to apply generation 1".
func TestResyncWhenOwnStatusReachesCache(t *testing.T) {
	if testing.Short() {
		t.Skip("needs a kube-apiserver (-short)")
	}
	r := newRaceRig(t, cluster(t))
	r.cleanUp()
	t.Cleanup(r.cleanUp)
	ctx := context.Background()

	in := seedInputs(t)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: plan.ConfigMapName, Namespace: plan.ConfigMapNamespace},
		Data:       map[string]string{plan.KeyImage: "kubeovn/vpc-nat-gateway:v1.7.0", plan.KeyEnable: "true", plan.KeyNIC: "eth1"},
	}
	if _, err := r.kube.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.ovn.Vpcs.Create(ctx, in.Vpc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, s := range in.Subnets {
		if _, err := r.ovn.Subnets.Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.ovn.VpcNatGateways.Create(ctx, in.Gateway, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	gw := in.Gateway.Name
	r.runPods()

	// 1. The gateway Ready, and every cache of the controller as the server has it.
	r.syncUntil("the gateway pod running with its desired state", func() error {
		p, err := r.gatewayPod(gw)
		if err != nil {
			return err
		}
		if p.Annotations[annotations.DesiredKey] == "" || !podReady(p) {
			return fmt.Errorf("pod %s: phase %s, desired annotation %t", p.Name, p.Status.Phase, p.Annotations[annotations.DesiredKey] != "")
		}
		return nil
	})
	r.daemonReports(gw)
	r.syncUntil("Ready, in the server and in the controller's caches", func() error {
		if err := r.ready(gw); err != nil {
			return err
		}
		return r.cachesCurrent(gw)
	})
	before := r.status(gw)
	t.Logf("ready at resourceVersion %s: %s", before.ResourceVersion, conditionText(before, CondReady))

	// 2. A static route: the same generation, a new desired state. The controller writes it on
	// the pod and its status goes Pending; that write does not reach the cache (the gate).
	r.gate.hold()
	r.updateVpc(in.Vpc.Name, func(vpc *v1.Vpc) {
		vpc.Spec.StaticRoutes = append(vpc.Spec.StaticRoutes, v1.StaticRoute{CIDR: "198.51.100.0/24", NextHopIP: "10.0.1.100"})
	})
	r.syncUntil("the controller's Pending write", func() error {
		gw := r.status(gw)
		if c := meta.FindStatusCondition(gw.Status.Conditions, CondApplied); c == nil || c.Reason != ReasonPending {
			return fmt.Errorf("Applied: %s", conditionText(gw, CondApplied))
		}
		return nil
	})
	pending := r.status(gw)
	t.Logf("pending at resourceVersion %s: %s", pending.ResourceVersion, conditionText(pending, CondReady))
	if cached, err := r.c.gateways.Get(gw); err != nil || cached.ResourceVersion != before.ResourceVersion {
		t.Fatalf("the gate did not hold the gateway's events: cached %v (%v), want resourceVersion %s", cached, err, before.ResourceVersion)
	}

	// 3. The daemon applies the new state and says so. The pod informer (not held) brings the
	// report; the sync it causes computes Ready, the stale cached status says Ready, nothing is
	// written. The marker pod's event comes after the report's: once its key is out of the queue,
	// every sync the report caused is done.
	r.daemonReports(gw)
	r.createMarkerPod()
	waitFor(t, "the marker pod in the controller's cache", func() error {
		_, err := r.c.pods.Get(markerPod)
		return err
	})
	synced := r.syncThrough(key{kindGateway, markerPod})
	if !containsKey(synced, key{kindGateway, gw}) {
		t.Fatalf("the daemon's report caused no sync of %s (synced %v)", gw, synced)
	}
	if now := r.status(gw); now.ResourceVersion != pending.ResourceVersion {
		t.Fatalf("the sync on the daemon's report wrote the status (resourceVersion %s -> %s): the cache was not stale, the race did not happen",
			pending.ResourceVersion, now.ResourceVersion)
	}
	for r.c.queue.Len() > 0 {
		k, _ := r.c.queue.Get()
		r.c.queue.Done(k)
		if !strings.HasPrefix(k.name, markerName) {
			t.Fatalf("%s %s queued by something the test did not do", k.kind, k.name)
		}
	}
	t.Logf("after the daemon's report, synced %v; status still: %s", synced, conditionText(r.status(gw), CondReady))

	// 4. The Pending write reaches the cache. A marker gateway created after it tells when its
	// event has been handled; the controller must have looked at the gateway again by then.
	r.gate.release()
	marker := &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: markerGateway},
		Spec: v1.VpcNatGatewaySpec{Vpc: markerGateway, Subnet: markerGateway, LanIP: "203.0.113.254"}}
	if _, err := r.ovn.VpcNatGateways.Create(ctx, marker, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	synced = r.syncThrough(key{kindGateway, markerGateway})
	t.Logf("after the Pending write reached the cache, synced %v", synced)
	if err := r.ready(gw); err != nil {
		t.Fatalf("the daemon applied the new state, but the status says otherwise: %v; "+
			"the gateway was not synced again when the controller's own status write reached its cache", err)
	}
	t.Logf("final: %s", conditionText(r.status(gw), CondReady))
}

func containsKey(keys []key, k key) bool {
	for _, x := range keys {
		if x == k {
			return true
		}
	}
	return false
}

func (r *raceRig) status(name string) *v1.VpcNatGateway {
	r.t.Helper()
	gw, err := r.ovn.VpcNatGateways.Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	return gw
}

func conditionText(gw *v1.VpcNatGateway, typ string) string {
	c := meta.FindStatusCondition(gw.Status.Conditions, typ)
	if c == nil {
		return typ + " missing"
	}
	return fmt.Sprintf("%s=%s (%s): %s", c.Type, c.Status, c.Reason, c.Message)
}

// ready says whether the server's status is Ready and Applied for the gateway's generation.
func (r *raceRig) ready(name string) error {
	gw := r.status(name)
	for _, typ := range []string{CondReady, CondApplied} {
		if c := meta.FindStatusCondition(gw.Status.Conditions, typ); c == nil || c.Status != metav1.ConditionTrue {
			return errors.New(conditionText(gw, typ))
		}
	}
	if gw.Status.ObservedGeneration != gw.Generation {
		return fmt.Errorf("observedGeneration %d, generation %d", gw.Status.ObservedGeneration, gw.Generation)
	}
	return nil
}

// cachesCurrent says whether the controller's caches hold the server's gateway, its pod and its
// Deployment, the latter done rolling out (kube-controller-manager writes it no more).
func (r *raceRig) cachesCurrent(name string) error {
	ctx := context.Background()
	if gw, err := r.c.gateways.Get(name); err != nil || gw.ResourceVersion != r.status(name).ResourceVersion {
		return fmt.Errorf("gateway cache behind (%v)", err)
	}
	p, err := r.gatewayPod(name)
	if err != nil {
		return err
	}
	if cp, err := r.c.pods.Get(p.Name); err != nil || cp.ResourceVersion != p.ResourceVersion {
		return fmt.Errorf("pod cache behind (%v)", err)
	}
	d, err := r.kube.AppsV1().Deployments(plan.GatewayNamespace).Get(ctx, plan.DeploymentName(name), metav1.GetOptions{})
	if err != nil {
		return err
	}
	if d.Status.ObservedGeneration != d.Generation || d.Status.UpdatedReplicas != 1 || d.Status.AvailableReplicas != 1 || !rolledOut(d) {
		return fmt.Errorf("Deployment rolling out: %+v", d.Status)
	}
	if cd, err := r.c.deployments.Get(d.Name); err != nil || cd.ResourceVersion != d.ResourceVersion {
		return fmt.Errorf("Deployment cache behind (%v)", err)
	}
	return nil
}

func rolledOut(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing {
			return c.Reason == "NewReplicaSetAvailable"
		}
	}
	return false
}

// gatewayPod is the gateway's one pod that is not being deleted, from the server.
func (r *raceRig) gatewayPod(name string) (*corev1.Pod, error) {
	return kubeenv.LiveGatewayPod(context.Background(), r.kube, plan.GatewayNamespace, name)
}

// daemonReports does what the daemon does once it applied the pod's desired state: it patches
// the applied annotation, hash and generation of that state, as its field manager.
func (r *raceRig) daemonReports(name string) {
	r.t.Helper()
	p, err := r.gatewayPod(name)
	if err != nil {
		r.t.Fatal(err)
	}
	d, err := annotations.ParseDesired(p.Annotations[annotations.DesiredKey])
	if err != nil {
		r.t.Fatal(err)
	}
	if err := kubeenv.ReportApplied(context.Background(), r.kube, p, d, "", nil, "vpcnat-daemon"); err != nil {
		r.t.Fatal(err)
	}
}

func (r *raceRig) updateVpc(name string, change func(*v1.Vpc)) {
	r.t.Helper()
	ctx := context.Background()
	for i := 0; ; i++ {
		vpc, err := r.ovn.Vpcs.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			r.t.Fatal(err)
		}
		change(vpc)
		if _, err = r.ovn.Vpcs.Update(ctx, vpc, metav1.UpdateOptions{}); err == nil {
			return
		} else if i == 10 {
			r.t.Fatal(err)
		}
	}
}

// createMarkerPod makes a pod the controller's pod informer sees (gateway label) of no gateway.
func (r *raceRig) createMarkerPod() {
	r.t.Helper()
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: markerPod, Namespace: plan.GatewayNamespace, Labels: map[string]string{plan.LabelGateway: markerPod}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "marker", Image: "vpcnat.local/pause:3.10"}}},
	}
	if _, err := r.kube.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{}); err != nil {
		r.t.Fatal(err)
	}
}

// runPods plays scheduler and kubelet for the gateway pods until the test ends.
func (r *raceRig) runPods() {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r.t.Cleanup(cancel)
	if _, err := r.env.RunPods(ctx, plan.GatewayNamespace, plan.LabelGateway, "node-1"); err != nil {
		r.t.Fatal(err)
	}
}

// cleanUp deletes what the test makes and waits until the gateway Deployments and pods are gone
// (the shared API server keeps objects from one run, -count, to the next).
func (r *raceRig) cleanUp() {
	r.t.Helper()
	ctx := context.Background()
	r.gate.release()
	gws, _ := r.ovn.VpcNatGateways.List(ctx, metav1.ListOptions{})
	for _, g := range gws.Items {
		_ = r.ovn.VpcNatGateways.Delete(ctx, g.Name, metav1.DeleteOptions{})
	}
	vpcs, _ := r.ovn.Vpcs.List(ctx, metav1.ListOptions{})
	for _, v := range vpcs.Items {
		_ = r.ovn.Vpcs.Delete(ctx, v.Name, metav1.DeleteOptions{})
	}
	subnets, _ := r.ovn.Subnets.List(ctx, metav1.ListOptions{})
	for _, s := range subnets.Items {
		_ = r.ovn.Subnets.Delete(ctx, s.Name, metav1.DeleteOptions{})
	}
	_ = r.kube.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Delete(ctx, plan.ConfigMapName, metav1.DeleteOptions{})
	_ = r.kube.CoreV1().Pods(plan.GatewayNamespace).Delete(ctx, markerPod, metav1.DeleteOptions{})
	kill, cancel := context.WithCancel(ctx)
	defer cancel()
	if _, err := r.env.RunPods(kill, plan.GatewayNamespace, plan.LabelGateway, "node-1"); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(raceWait)
	for {
		ds, err1 := r.kube.AppsV1().Deployments(plan.GatewayNamespace).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway})
		ps, err2 := r.kube.CoreV1().Pods(plan.GatewayNamespace).List(ctx, metav1.ListOptions{LabelSelector: plan.LabelGateway})
		if err1 == nil && err2 == nil && len(ds.Items) == 0 && len(ps.Items) == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("clean up: gateway Deployments or pods left after %v (%v %v)", raceWait, err1, err2)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
