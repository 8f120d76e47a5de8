package badinput

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/topo"
)

// annCluster is the annotation layer's view of the API server: a gateway namespace of its own
// and a node name of its own.
type annCluster struct {
	t      *testing.T
	client kubernetes.Interface
	ns     string
	node   string
}

func newAnnCluster(t *testing.T, prefix string) *annCluster {
	t.Helper()
	client, err := apiServer.Get(t).Clientset()
	if err != nil {
		t.Fatal(err)
	}
	c := &annCluster{t: t, client: client, ns: "bi-" + prefix, node: "node-" + prefix}
	ctx := context.Background()
	if _, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: c.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// No controller-manager makes it, and pod admission requires it.
	if _, err := client.CoreV1().ServiceAccounts(c.ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.CoreV1().Namespaces().Delete(context.Background(), c.ns, metav1.DeleteOptions{}) })
	return c
}

func ownerRef(apiVersion, kind, name string, uid types.UID) []metav1.OwnerReference {
	yes := true
	return []metav1.OwnerReference{{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: &yes, BlockOwnerDeletion: &yes}}
}

// createGateway creates what the controller and the apps controllers would have made for a
// gateway: a Deployment controlled by the VpcNatGateway, its ReplicaSet, and a pod on the node
// with the template annotations.
func (c *annCluster) createGateway(gw string, templ map[string]string) *corev1.Pod {
	c.t.Helper()
	ctx := context.Background()
	no := false
	labels := map[string]string{plan.LabelGateway: gw, plan.LabelApp: plan.DeploymentName(gw)}
	tpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels, Annotations: templ},
		Spec: corev1.PodSpec{AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "gateway", Image: "vpcnat.local/vpcnat-gateway:dev"}}}}
	dep, err := c.client.AppsV1().Deployments(c.ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: plan.DeploymentName(gw), Namespace: c.ns, Labels: labels,
			OwnerReferences: ownerRef("kubeovn.io/v1", "VpcNatGateway", gw, types.UID("gw-uid-"+gw))},
		Spec: appsv1.DeploymentSpec{Selector: &metav1.LabelSelector{MatchLabels: labels},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}, Template: tpl},
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	rs, err := c.client.AppsV1().ReplicaSets(c.ns).Create(ctx, &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: dep.Name + "-7c9d", Namespace: c.ns, Labels: labels,
			OwnerReferences: ownerRef("apps/v1", "Deployment", dep.Name, dep.UID)},
		Spec: appsv1.ReplicaSetSpec{Selector: dep.Spec.Selector, Template: tpl},
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: rs.Name + "-x2k4p", Namespace: c.ns, Labels: labels,
		Annotations: templ, OwnerReferences: ownerRef("apps/v1", "ReplicaSet", rs.Name, rs.UID)}, Spec: tpl.Spec}
	pod.Spec.NodeName = c.node
	if pod, err = c.client.CoreV1().Pods(c.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		c.t.Fatal(err)
	}
	return pod
}

// patchAnnotations merges annotations into the pod's (a nil value removes one).
func (c *annCluster) patchAnnotations(pod *corev1.Pod, annots map[string]any) error {
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": annots}})
	if err != nil {
		return err
	}
	_, err = c.client.CoreV1().Pods(pod.Namespace).Patch(context.Background(), pod.Name, types.MergePatchType, patch, metav1.PatchOptions{})
	return err
}

func rawHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// appliedHash is the hash the daemon reports for a desired value: of the state when it parses
// and is this gateway's, of the raw value otherwise.
func appliedHash(raw, gw string) string {
	if d, err := annotations.ParseDesired(raw); err == nil && d.Gateway == gw {
		if h, err := annotations.DesiredHash(d); err == nil {
			return h
		}
	}
	return rawHash(raw)
}

// waitApplied waits until the pod's applied annotation reports the hash, and returns it.
func (c *annCluster) waitApplied(pod *corev1.Pod, hash string) (*annotations.Applied, error) {
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		p, err := c.client.CoreV1().Pods(pod.Namespace).Get(context.Background(), pod.Name, metav1.GetOptions{})
		if err != nil {
			return nil, err
		}
		last = p.Annotations[annotations.AppliedKey]
		if last != "" {
			a, err := annotations.ParseApplied(last)
			if err != nil {
				return nil, err
			}
			if a.Hash == hash {
				return a, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("pod %s: applied never reported hash %s (last: %s)", pod.Name, hash, clip(last))
}

// startDaemon runs vpcnat-daemon in node mode (its node side in the topology's node netns) until
// the test ends, and returns once /healthz answers.
func startDaemon(t *testing.T, c *annCluster, tp *topo.Topology, stateDir string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logPath := filepath.Join(t.TempDir(), "daemon.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(daemonBin, "--kubeconfig="+apiServer.Get(t).Kubeconfig, "--node-name="+c.node,
		"--gateway-namespace="+c.ns, "--state-dir="+stateDir, "--node-netns="+tp.Path(topo.Node),
		"--metrics-addr="+addr, "--resync=1m", "-v=2")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("daemon log:\n%s", clip(string(b)))
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("daemon exited (%v):\n%s", err, b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon not healthy within 20s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func gz(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, _ = zw.Write(b)
	_ = zw.Close()
	return buf.Bytes()
}

func envelopeOf(data []byte) map[string]any {
	return map[string]any{"version": "v1", "generation": json.Number("1"), "encoding": "gzip",
		"data": base64.StdEncoding.EncodeToString(data)}
}

// desiredValue is the desired annotation value of a daemon case; annots is set instead for a
// case on the pod's annotations as a whole.
func desiredValue(c Case, good string) (value string, annots map[string]any, err error) {
	marshal := func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	}
	sets := func(doc string) (string, error) {
		v, err := toJSON([]byte(doc))
		if err != nil {
			return "", err
		}
		if v, err = applySets(v, c.Input); err != nil {
			return "", err
		}
		return marshal(v), nil
	}
	switch c.Base {
	case "desired":
		if raw, ok := strings.CutPrefix(c.Input, "raw:"); ok {
			return raw, nil, nil
		}
		value, err = sets(good)
	case "envelope":
		value, err = sets(marshal(envelopeOf(gz([]byte(good)))))
	case "envelope-inner":
		var inner string
		if inner, err = sets(good); err == nil {
			value = marshal(envelopeOf(gz([]byte(inner))))
		}
	case "envelope-data":
		z := gz([]byte(good))
		var data []byte
		switch strings.TrimSpace(c.Input) {
		case "truncated":
			data = z[:len(z)/2]
		case "plain-json":
			data = []byte(good)
		case "bad-crc":
			data = bytes.Clone(z)
			data[len(data)-8] ^= 0xff
		case "trailing-garbage":
			data = append(bytes.Clone(z), []byte("garbage")...)
		case "not-json":
			data = gz([]byte("hello; rm -rf /"))
		case "gzip-of-gzip":
			data = gz(z)
		case "empty":
			data = nil
		case "bomb":
			data = gz(make([]byte, 65<<20))
		default:
			return "", nil, fmt.Errorf("%s: unknown envelope-data %q", c, c.Input)
		}
		value = marshal(envelopeOf(data))
	case "annotations":
		var v any
		if v, err = toJSON([]byte(c.Input)); err == nil {
			m, ok := v.(map[string]any)
			if !ok {
				return "", nil, fmt.Errorf("%s: annotations: want an object", c)
			}
			return "", m, nil
		}
	default:
		err = fmt.Errorf("unknown base %q for the daemon", c.Base)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", c, err)
	}
	return value, nil, err
}

// TestAnnotation: the annotation cases. Those of the desired state go through the daemon in node
// mode on the real API server: the gateway ngw (the seed, converged from a good desired state
// first) gets each bad value; the daemon must report it in the applied annotation, with the
// fragment, and leave the gateway's netns byte-identical (or the API server must refuse the
// patch). Those of the NIC plan and the pod annotations go through the CNI chain, as the runtime
// hands them over in runtimeConfig. The node's other gateway (ngw2) is unchanged and carries
// traffic at the end, and the seed gateway works again once given its good state back.
func TestAnnotation(t *testing.T) {
	topo.NeedRoot(t)
	cases := casesOf(t, "annotation")
	tp := topo.SeedForTest(t)
	c := newAnnCluster(t, tp.Prefix)
	f := newCNIFixture(t, tp, c.ns)

	seed := seedInputs(t)
	pod := c.createGateway("ngw", templateOf(t, seed))
	in2 := ngw2Inputs(t)
	pod2 := c.createGateway("ngw2", templateOf(t, in2))
	if err := tp.AddNS("gw2"); err != nil {
		t.Fatal(err)
	}
	healthy := cnichain.Pod{Role: "gw2", Namespace: pod2.Namespace, Name: pod2.Name, UID: string(pod2.UID), ContainerID: "ctr-ngw2", Annotations: pod2.Annotations}
	f.sandbox(healthy)
	f.setHealthy(&healthy)

	k := &counter{layer: "annotation"}
	defer k.report(t)
	// First the cases of the plugin, before ngw itself is plumbed (its NICs' MACs are the ones
	// the plugin cases would create).
	var viaPlugin, viaDaemon []Case
	for _, cs := range cases {
		if cs.Stage == "plugin" {
			viaPlugin = append(viaPlugin, cs)
		} else {
			viaDaemon = append(viaDaemon, cs)
		}
	}
	f.runCases(t, k, viaPlugin)
	f.t = t

	if err := tp.AddNS("dgw"); err != nil {
		t.Fatal(err)
	}
	f.sandbox(cnichain.Pod{Role: "dgw", Namespace: pod.Namespace, Name: pod.Name, UID: string(pod.UID), ContainerID: "ctr-ngw", Annotations: pod.Annotations})
	startDaemon(t, c, tp, f.chain.StateDir)

	setGood := func(p *corev1.Pod, in plan.Inputs) string {
		t.Helper()
		_, d, errs := plan.Build(in)
		if len(errs) > 0 {
			t.Fatal(errs.ToAggregate())
		}
		v, err := annotations.EncodeDesired(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.patchAnnotations(p, map[string]any{annotations.DesiredKey: v}); err != nil {
			t.Fatal(err)
		}
		a, err := c.waitApplied(p, appliedHash(v, in.Gateway.Name))
		if err != nil || a.Error != "" {
			t.Fatalf("good desired state of %s: %v %+v", p.Name, err, a)
		}
		return v
	}
	good := setGood(pod, seed)
	setGood(pod2, in2)
	before, before2 := dump(t, tp, "dgw"), dump(t, tp, "gw2")

	for _, cs := range viaDaemon {
		t.Run(cs.ID, func(t *testing.T) {
			k.ran++
			value, annots, err := desiredValue(cs, good)
			if err != nil {
				t.Fatal(err)
			}
			if annots == nil {
				annots = map[string]any{annotations.DesiredKey: value}
			}
			err = c.patchAnnotations(pod, annots)
			switch {
			case cs.Stage == "api":
				if verdict := checkError(cs, err); verdict != nil {
					t.Error(verdict)
				}
			case err != nil:
				t.Fatalf("%s: the API server refused the patch: %v", cs, err)
			default:
				a, err := c.waitApplied(pod, appliedHash(value, "ngw"))
				if err != nil {
					t.Fatal(err)
				}
				if verdict := checkError(cs, errorOf(a)); verdict != nil {
					t.Error(verdict)
				}
			}
			if after := dump(t, tp, "dgw"); after != before {
				t.Errorf("%s: the gateway's netns changed:\n--- before\n%s\n--- after\n%s", cs, before, after)
			}
			if !t.Failed() {
				k.rejected++
			}
		})
	}

	if after := dump(t, tp, "gw2"); after != before2 {
		t.Errorf("the healthy gateway ngw2 changed:\n--- before\n%s\n--- after\n%s", before2, after)
	}
	tp.ListenFor(t, topo.Inet, "tcp", topo.InetIP+":8080")
	tp.Expect(t, topo.Pod4, "tcp", topo.InetIP+":8080", "192.168.0.113", "")
	// The seed gateway, given its good state back, works.
	seed.Gateway.Generation = 2
	setGood(pod, seed)
	tp.ListenFor(t, topo.Pod2, "tcp", topo.Pod2IP+":80")
	tp.Expect(t, topo.Client, "tcp", "192.168.0.112:8888", topo.ClientIP, topo.Pod2IP+":80")
}

func errorOf(a *annotations.Applied) error {
	if a.Error == "" {
		return nil
	}
	return errors.New(a.Error)
}
