package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kubeenv"
)

type bench struct {
	env        *kubeenv.Env
	kube       kubernetes.Interface
	ovn        *kubeovn.Client
	rules      int
	controller *process
	pods       *podWatcher
	stop       context.CancelFunc
	dir        string
	// metricsAddr serves the controller's /metrics and /debug/pprof (for --heap-profile).
	metricsAddr string
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:0"
	}
	defer l.Close()
	return l.Addr().String()
}

// heapProfile saves the controller's heap profile (go tool pprof reads it).
func (b *bench) heapProfile(path string) error {
	resp, err := http.Get("http://" + b.metricsAddr + "/debug/pprof/heap")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(f, resp.Body)
	return err
}

func newBench(ctx context.Context, env *kubeenv.Env, root string, rules int) (*bench, error) {
	kube, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		return nil, err
	}
	ovn, err := kubeovn.NewForConfig(env.Config)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vpcnat-controller-bench-")
	if err != nil {
		return nil, err
	}
	b := &bench{env: env, kube: kube, ovn: ovn, rules: rules, dir: dir, metricsAddr: freeAddr()}
	ctx, b.stop = context.WithCancel(ctx)
	if _, err := env.RunPods(ctx, plan.GatewayNamespace, plan.LabelGateway, "node-1"); err != nil {
		return nil, err
	}
	b.pods = watchPods(ctx, kube)
	bin := filepath.Join(dir, "vpcnat-controller")
	build := exec.Command("go", "build", "-o", bin, "./controller")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build: %w\n%s", err, out)
	}
	b.controller, err = startProcess(bin, filepath.Join(dir, "controller.log"),
		"--kubeconfig="+env.Kubeconfig, "--leader-elect=false", "--metrics-addr="+b.metricsAddr, "--profiling")
	return b, err
}

func (b *bench) close() {
	b.controller.stop()
	b.stop()
	_ = os.RemoveAll(b.dir)
}

// setUp creates the ConfigMap every gateway uses.
func (b *bench) setUp(ctx context.Context) error {
	_, err := b.kube.CoreV1().ConfigMaps(plan.ConfigMapNamespace).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: plan.ConfigMapName, Namespace: plan.ConfigMapNamespace},
		Data:       map[string]string{plan.KeyImage: "vpcnat.local/vpcnat-gateway:dev", plan.KeyEnable: "true", plan.KeyNIC: "eth1"},
	}, metav1.CreateOptions{})
	return err
}

// maxGateways: gateway i's EIPs are 100.64.i/100.x, so i/100 must stay a valid octet.
const maxGateways = 25600

// tenant creates gateway i's Vpc and its Subnet, on a segment of its own: a Vpc has one
// gateway, and a segment belongs to one Vpc (docs/admission.md), as on a real cluster of
// tenants. Every tenant may use the same CIDR: Vpcs are separate address spaces.
func (b *bench) tenant(ctx context.Context, i int) error {
	vpc, sn := tenantNames(i)
	if _, err := b.ovn.Vpcs.Create(ctx, &v1.Vpc{ObjectMeta: metav1.ObjectMeta{Name: vpc}}, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("create Vpc %s: %w", vpc, err)
	}
	_, err := b.ovn.Subnets.Create(ctx, &v1.Subnet{ObjectMeta: metav1.ObjectMeta{Name: sn}, Spec: v1.SubnetSpec{
		Vpc: vpc, CIDRBlock: "10.0.0.0/16", Gateway: "10.0.0.1",
		NatGatewayAttachment: &v1.SubnetAttachment{Bridge: fmt.Sprintf("br-b%05d", i)}, // ≤ 15 characters
	}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("create Subnet %s: %w", sn, err)
	}
	return nil
}

func tenantNames(i int) (vpc, subnet string) {
	return fmt.Sprintf("bench-%04d", i), fmt.Sprintf("bench-%04d-sn", i)
}

// gateway i: its own Vpc and Subnet (tenant), 2 EIPs of its own, 1 FIP, 1 SNAT and rules-4
// DNATs.
func (b *bench) gateway(i int) *v1.VpcNatGateway {
	eip := func(k int) string { return fmt.Sprintf("100.64.%d.%d", i/100, 2*(i%100)+2+k) }
	vpc, sn := tenantNames(i)
	gw := &v1.VpcNatGateway{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("g-%04d", i)}, Spec: v1.VpcNatGatewaySpec{
		Vpc: vpc, Subnet: sn, LanIP: "10.0.0.254",
		Eips:            []v1.Eip{{EipCIDR: eip(0) + "/16", Gateway: "100.64.0.1"}, {EipCIDR: eip(1) + "/16", Gateway: "100.64.0.1"}},
		FloatingIPRules: []v1.FloatingIPRule{{Eip: eip(0), InternalIP: "10.0.250.5"}},
		SnatRules:       []v1.SnatRule{{Eip: eip(1), InternalCIDR: "10.0.0.0/16"}},
	}}
	for k := range b.rules - 4 {
		gw.Spec.DnatRules = append(gw.Spec.DnatRules, v1.DnatRule{Eip: eip(1), ExternalPort: intstr.FromInt(10000 + k), Protocol: "tcp",
			InternalIP: fmt.Sprintf("10.0.250.%d", 10+k%200), InternalPort: intstr.FromInt32(80)})
	}
	return gw
}

// measureCreates creates gateways one after another, each timed to its pod's annotation.
func (b *bench) measureCreates(ctx context.Context, n int) ([]time.Duration, error) {
	var out []time.Duration
	for i := range n {
		if err := b.tenant(ctx, i); err != nil {
			return nil, err
		}
		gw := b.gateway(i)
		w := b.pods.expect(gw.Name, "")
		start := time.Now()
		if _, err := b.ovn.VpcNatGateways.Create(ctx, gw, metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		at, err := w.wait(60 * time.Second)
		if err != nil {
			return nil, fmt.Errorf("create %s: %w; controller log %s", gw.Name, err, b.controller.log)
		}
		out = append(out, at.Sub(start))
	}
	return out, nil
}

// measureEdits changes one DNAT port of a running gateway, timed to the new annotation.
func (b *bench) measureEdits(ctx context.Context, name string, n int) ([]time.Duration, error) {
	var out []time.Duration
	for i := range n {
		w := b.pods.expect(name, b.pods.value(name))
		var start time.Time
		for {
			gw, err := b.ovn.VpcNatGateways.Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return nil, err
			}
			gw.Spec.DnatRules[0].ExternalPort = intstr.FromInt(60000 + i)
			start = time.Now()
			_, err = b.ovn.VpcNatGateways.Update(ctx, gw, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) {
				continue // the controller wrote the status in between
			}
			if err != nil {
				return nil, err
			}
			break
		}
		at, err := w.wait(30 * time.Second)
		if err != nil {
			return nil, fmt.Errorf("edit %s: %w", name, err)
		}
		out = append(out, at.Sub(start))
	}
	return out, nil
}

// fill creates gateways up to n (8 at a time) and waits until every one is projected; it
// returns how long that took and the controller's RSS (MiB) before.
func (b *bench) fill(ctx context.Context, n int) (time.Duration, float64, error) {
	idle, err := b.controller.rss()
	if err != nil {
		return 0, 0, err
	}
	have := len(b.pods.snapshot())
	start := time.Now()
	next := make(chan int)
	errs := make(chan error, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				if err := b.tenant(ctx, i); err != nil {
					errs <- err
					return
				}
				if _, err := b.ovn.VpcNatGateways.Create(ctx, b.gateway(i), metav1.CreateOptions{}); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := have; i < n; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, 0, err
	default:
	}
	deadline := time.Now().Add(10 * time.Minute)
	for len(b.pods.snapshot()) < n {
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("%d of %d gateways projected after 10 minutes; controller log %s", len(b.pods.snapshot()), n, b.controller.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start), idle, nil
}
