package soak

import (
	"context"
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

	authv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/vpcnat/vpcnat/pkg/controller/kubeovn"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/kubeenv"
	"github.com/vpcnat/vpcnat/test/promscrape"
)

// cluster is the API server with vpcnat installed as a user would (CRDs, the controller's and
// the daemon's ServiceAccounts and RBAC from deploy/, the ConfigMap), and admin clients.
type cluster struct {
	env  *kubeenv.Env
	kube kubernetes.Interface
	ovn  *kubeovn.Client
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	bin, err := kubeenv.BinDir(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	env, err := kubeenv.Start(ctx, bin)
	if err != nil {
		t.Fatalf("starting the API server: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	if err := env.Install(ctx, repoRoot, "deploy/crds", "deploy/controller/00-serviceaccount.yaml", "deploy/controller/10-rbac.yaml", "deploy/daemonset/00-rbac.yaml"); err != nil {
		t.Fatal(err)
	}
	// After the CRDs: the garbage collector learns the kinds that can own objects at its start.
	if err := env.StartControllerManager(ctx); err != nil {
		t.Fatal(err)
	}
	c := &cluster{env: env}
	if c.kube, err = env.Clientset(); err != nil {
		t.Fatal(err)
	}
	if c.ovn, err = kubeovn.NewForConfig(env.Config); err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := c.ovn.VpcNatGateways.List(ctx, metav1.ListOptions{}); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("VpcNatGateways not served: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: plan.ConfigMapName, Namespace: plan.ConfigMapNamespace},
		Data:       map[string]string{plan.KeyImage: "vpcnat.local/vpcnat-gateway:dev", plan.KeyEnable: "true", plan.KeyNIC: "eth1"},
	}
	if *soakDataplane != "" {
		cm.Data[plan.KeyDataplane] = *soakDataplane
	}
	if _, err := c.kube.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return c
}

// kubeconfig writes a kubeconfig holding a token of a kube-system ServiceAccount: the binaries
// run with exactly the manifests' permissions.
func (c *cluster) kubeconfig(t *testing.T, sa string) string {
	t.Helper()
	exp := int64(4 * 3600)
	tr, err := c.kube.CoreV1().ServiceAccounts("kube-system").CreateToken(context.Background(), sa,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &exp}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for ServiceAccount kube-system/%s: %v", sa, err)
	}
	path := filepath.Join(t.TempDir(), sa+".kubeconfig")
	kc := fmt.Sprintf("apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {server: %q, certificate-authority: %q}\n"+
		"users:\n- name: sa\n  user: {token: %q}\ncontexts:\n- name: test\n  context: {cluster: test, user: sa}\ncurrent-context: test\n",
		c.env.URL, c.env.Config.TLSClientConfig.CAFile, tr.Status.Token)
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// proc is one binary the test started (and stops, by its PID).
type proc struct {
	name, log, metrics string
	cmd                *exec.Cmd
	done               chan error
}

// startProc runs bin with args plus --metrics-addr on a free loopback port, its output in a log
// file, and waits until /healthz answers 200.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	p := &proc{name: name, metrics: addr, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan error, 1)}
	logf, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	p.cmd = exec.Command(bin, append(args, "--metrics-addr="+addr)...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			if len(b) > 64<<10 {
				b = b[len(b)-64<<10:]
			}
			t.Logf("%s log (tail) %s:\n%s", name, p.log, b)
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s exited (%v):\n%s", name, err, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(p.log)
			t.Fatalf("%s not healthy within 60s:\n%s", name, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// alive says whether the process still runs.
func (p *proc) alive() error {
	select {
	case err := <-p.done:
		p.done <- err
		return fmt.Errorf("%s exited: %v (log %s)", p.name, err, p.log)
	default:
		return nil
	}
}

// stop sends SIGTERM and waits (SIGKILL after 15 s); safe to call twice.
func (p *proc) stop(t *testing.T) {
	if p.cmd.Process == nil || p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s exited with %v after SIGTERM", p.name, err)
		}
	case <-time.After(15 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop within 15s of SIGTERM", p.name)
	}
}

// sum adds up every series of a counter or gauge family whose labels include the given pairs.
func (p *proc) sum(name string, labels ...string) (float64, error) {
	fams, err := promscrape.Families(p.metrics)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", p.name, err)
	}
	total, _ := promscrape.Sum(fams, name, labels...)
	return total, nil
}

// logged counts the lines of the process's log that contain s.
func (p *proc) logged(s string) int {
	b, _ := os.ReadFile(p.log)
	return strings.Count(string(b), s)
}
