package controller

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	v1 "github.com/vpcnat/vpcnat/pkg/apis/kubeovn/v1"
)

// process is one vpcnat-controller binary started by a test.
type process struct {
	cmd     *exec.Cmd
	log     string
	metrics string // host:port
	done    chan error
	once    sync.Once
}

// buildController builds the vpcnat-controller binary into dir.
func buildController(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "vpcnat-controller")
	cmd := exec.Command("go", "build", "-o", bin, "./controller")
	cmd.Dir = repoRoot
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// serviceAccountKubeconfig writes a kubeconfig holding a token of the controller's
// ServiceAccount (TokenRequest), so the binary runs with exactly deploy/controller's RBAC.
func serviceAccountKubeconfig(t *testing.T, dir string) string {
	t.Helper()
	tr, err := admin.kube.CoreV1().ServiceAccounts("kube-system").CreateToken(context.Background(), "vpcnat-controller",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: env.URL, CertificateAuthority: env.Config.TLSClientConfig.CAFile}
	cfg.AuthInfos["controller"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "controller"}
	cfg.CurrentContext = "test"
	path := filepath.Join(dir, "controller.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startProcess runs the binary with short leader-election timings; the test's cleanup stops it
// (by its PID) if the test did not.
func startProcess(t *testing.T, bin, kubeconfig, name string) *process {
	t.Helper()
	p := &process{log: filepath.Join(t.TempDir(), name+".log"), metrics: freeAddr(t), done: make(chan error, 1)}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, "--kubeconfig="+kubeconfig, "--metrics-addr="+p.metrics,
		"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=500ms", "-v=2")
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait(); f.Close() }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop sends SIGTERM (once) and waits for a clean exit.
func (p *process) stop(t *testing.T) {
	t.Helper()
	p.once.Do(func() { p.terminate(t) })
}

func (p *process) terminate(t *testing.T) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-p.done:
		if err != nil {
			t.Errorf("%s: %v; log %s", p.cmd.Path, err, tail(p.log))
		}
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Errorf("%s did not stop on SIGTERM", p.cmd.Path)
	}
}

var identityRE = regexp.MustCompile(`identity="([^"]+)"`)

// identity is the process's leader-election identity, from its log.
func (p *process) identity() string {
	b, _ := os.ReadFile(p.log)
	if m := identityRE.FindSubmatch(b); m != nil {
		return string(m[1])
	}
	return ""
}

// syncs scrapes the process's gateway syncs from /metrics.
func (p *process) syncs() (int, error) {
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "vpcnat_controller_syncs_total{") && strings.Contains(line, `kind="gateway"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += int(v)
		}
	}
	return n, sc.Err()
}

func (p *process) healthy() error {
	resp, err := http.Get("http://" + p.metrics + "/healthz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("healthz %d: %s", resp.StatusCode, b)
	}
	return nil
}

func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 3000 {
		b = b[len(b)-3000:]
	}
	return string(b)
}

// TestTwoControllersOneLeader: two vpcnat-controller processes (the real binary, with the
// ServiceAccount's token): only the holder of the Lease syncs; when it stops, the other takes
// the Lease over and carries on.
func TestTwoControllersOneLeader(t *testing.T) {
	fresh(t)
	dir := t.TempDir()
	bin := buildController(t, dir)
	kc := serviceAccountKubeconfig(t, dir)
	procs := []*process{startProcess(t, bin, kc, "a"), startProcess(t, bin, kc, "b")}
	ctx := context.Background()
	holder := func() string {
		l, err := admin.kube.CoordinationV1().Leases("kube-system").Get(ctx, "vpcnat-controller", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	var leader, follower *process
	eventually(t, waitLong, "a leader", func() error {
		h := holder()
		for i, p := range procs {
			if id := p.identity(); id != "" && id == h {
				leader, follower = p, procs[1-i]
				return nil
			}
		}
		return fmt.Errorf("lease holder %q; identities %q %q", h, procs[0].identity(), procs[1].identity())
	})
	for _, p := range procs {
		eventually(t, 10*time.Second, "healthz", p.healthy)
	}

	createSeed(t)
	runPods(t)
	waitDesired(t, "ngw")
	eventually(t, 10*time.Second, "the leader's syncs", func() error {
		if n, err := leader.syncs(); err != nil || n == 0 {
			return fmt.Errorf("%d syncs (%v)", n, err)
		}
		return nil
	})
	if n, err := follower.syncs(); err != nil || n != 0 {
		t.Fatalf("the follower made %d syncs (%v)", n, err)
	}

	start := time.Now()
	leader.stop(t)
	eventually(t, waitLong, "the follower takes over", func() error {
		if h := holder(); h != follower.identity() {
			return fmt.Errorf("lease holder %q", h)
		}
		return nil
	})
	t.Logf("hand-over in %v", time.Since(start).Round(time.Millisecond))
	updateGateway(t, "ngw", func(g *v1.VpcNatGateway) { g.Spec.DnatRules[0].ExternalPort = intstr.FromInt32(9090) })
	waitDesired(t, "ngw")
	// The sync that patched the pod counts itself when it ends, after the status update.
	eventually(t, 10*time.Second, "the new leader's syncs", func() error {
		if n, err := follower.syncs(); err != nil || n == 0 {
			return fmt.Errorf("%d syncs (%v)", n, err)
		}
		return nil
	})
}
