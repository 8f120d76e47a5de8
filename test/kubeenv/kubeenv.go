// Package kubeenv starts a real etcd and kube-apiserver (built by hack/build-kube.sh from the Go
// module proxy) for tests, on loopback ports of their own, with certificates and tokens made in
// Go, and stops them (only the processes it started, by PID) and removes their data.
package kubeenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Env is one running etcd + kube-apiserver.
type Env struct {
	// Config is an admin (system:masters) client configuration.
	Config *rest.Config
	// Kubeconfig is the path of an admin kubeconfig file, for binaries under test.
	Kubeconfig string
	// Dir holds the certificates, tokens, etcd data and logs.
	Dir string
	// URL of the API server.
	URL string

	bin   string
	procs []*exec.Cmd
}

// BinDir builds (once, cached) and returns the directory of the Kubernetes binaries.
func BinDir(repoRoot string) (string, error) {
	cmd := exec.Command(filepath.Join(repoRoot, "hack", "build-kube.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/build-kube.sh: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// freePort asks the kernel for an unused loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Start runs etcd and kube-apiserver from bin and waits until the API server is ready.
func Start(ctx context.Context, bin string) (e *Env, err error) {
	dir, err := os.MkdirTemp("", "vpcnat-kubeenv-")
	if err != nil {
		return nil, err
	}
	e = &Env{Dir: dir, bin: bin}
	defer func() {
		if err != nil {
			_ = e.Stop()
		}
	}()
	pki, err := writePKI(dir)
	if err != nil {
		return nil, err
	}
	ports := make([]int, 4)
	for i := range ports {
		if ports[i], err = freePort(); err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
	}
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	if err := e.start("etcd",
		"--name=vpcnat-test", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=vpcnat-test="+peerURL,
		fmt.Sprintf("--listen-metrics-urls=http://127.0.0.1:%d", ports[2]),
		// Test data is thrown away: skipping fsync makes every write much cheaper.
		"--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return nil, err
	}
	e.URL = fmt.Sprintf("https://127.0.0.1:%d", ports[3])
	if err := e.start("kube-apiserver",
		"--etcd-servers="+etcdURL,
		fmt.Sprintf("--secure-port=%d", ports[3]), "--bind-address=127.0.0.1",
		"--tls-cert-file="+pki.serverCert, "--tls-private-key-file="+pki.serverKey,
		"--client-ca-file="+pki.caCert,
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file="+pki.saPub, "--service-account-signing-key-file="+pki.saKey,
		"--token-auth-file="+pki.tokens,
		"--authorization-mode=RBAC",
		// As kubeadm and kind set it: the daemon's DaemonSet is privileged (sysctls under a
		// read-only /proc/sys), and the tests apply the manifests as shipped.
		"--allow-privileged=true",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--v=0"); err != nil {
		return nil, err
	}
	e.Config = &rest.Config{Host: e.URL, BearerToken: pki.adminToken,
		TLSClientConfig: rest.TLSClientConfig{CAFile: pki.caCert}, QPS: 200, Burst: 400}
	if e.Kubeconfig, err = writeKubeconfig(dir, e.URL, pki.caCert, pki.adminToken); err != nil {
		return nil, err
	}
	if err := e.waitReady(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// start runs one binary in its own process group, its output in Dir/<name>.log.
func (e *Env) start(name string, args ...string) error {
	log, err := os.Create(filepath.Join(e.Dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(e.bin, name), args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	log.Close()
	e.procs = append(e.procs, cmd)
	return nil
}

// waitReady polls /readyz until it answers ok.
func (e *Env) waitReady(ctx context.Context) error {
	client, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last error
	for {
		body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err == nil && string(body) == "ok" {
			return nil
		}
		last = err
		for _, p := range e.procs {
			if p.ProcessState != nil {
				return fmt.Errorf("%s exited; see %s", p.Path, e.Dir)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kube-apiserver not ready after 90s (last: %v); logs in %s", last, e.Dir)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop stops the processes it started (SIGTERM, then SIGKILL after 10 s) and removes Dir unless
// KUBEENV_KEEP is set.
func (e *Env) Stop() error {
	var errs []error
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- p.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
	e.procs = nil
	if os.Getenv("KUBEENV_KEEP") == "" {
		if err := os.RemoveAll(e.Dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Clientset is an admin clientset.
func (e *Env) Clientset() (*kubernetes.Clientset, error) { return kubernetes.NewForConfig(e.Config) }
