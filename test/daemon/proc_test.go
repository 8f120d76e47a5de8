package daemon

import (
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

	"github.com/vpcnat/vpcnat/test/promscrape"
	"github.com/vpcnat/vpcnat/test/topo"
)

// daemon is one vpcnat-daemon process the test started (and stops, by its PID).
type daemon struct {
	t       *testing.T
	cmd     *exec.Cmd
	log     string
	metrics string // host:port
	done    chan error
}

// startDaemon runs vpcnat-daemon in node mode for the cluster's node, its node side in the
// topology's node netns, with the records of n's CNI chain; extra flags are appended. It
// returns once /readyz says the caches have synced.
func startDaemon(t *testing.T, c *cluster, n *node, extra ...string) *daemon {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	d := &daemon{t: t, metrics: addr, log: filepath.Join(t.TempDir(), fmt.Sprintf("daemon-%d.log", time.Now().UnixNano())),
		done: make(chan error, 1)}
	logf, err := os.Create(d.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	args := append([]string{
		"--kubeconfig=" + c.kubeconfig, "--node-name=" + c.node, "--gateway-namespace=" + c.ns,
		"--state-dir=" + n.chain.StateDir, "--node-netns=" + n.topo.Path(topo.Node),
		"--metrics-addr=" + addr, "--resync=1m", "-v=2",
	}, extra...)
	d.cmd = exec.Command(daemonBin, args...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	// Dies with the test binary, whatever happens to the test.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() {
		d.stop()
		if t.Failed() {
			b, _ := os.ReadFile(d.log)
			t.Logf("daemon log %s:\n%s", d.log, b)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				// Synced: the livenessProbe's /healthz says so too.
				if resp, err := http.Get("http://" + addr + "/healthz"); err != nil || resp.StatusCode != http.StatusOK {
					t.Fatalf("daemon ready but /healthz answers %v (%v)", resp, err)
				} else {
					resp.Body.Close()
				}
				return d
			}
		}
		select {
		case err := <-d.done:
			b, _ := os.ReadFile(d.log)
			t.Fatalf("daemon exited (%v):\n%s", err, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(d.log)
			t.Fatalf("daemon not healthy within 20s:\n%s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for the exit (SIGKILL after 10 s); safe to call twice.
func (d *daemon) stop() {
	if d.cmd.ProcessState != nil || d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.done:
		if err != nil {
			d.t.Errorf("daemon exited with %v after SIGTERM", err)
		}
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
		d.t.Error("daemon did not stop within 10s of SIGTERM")
	}
}

// metric is the sum of the series of a counter, gauge or histogram (sample count) family whose
// labels include the given name=value pairs; -1 when no series matches.
func (d *daemon) metric(name string, labels ...string) float64 {
	d.t.Helper()
	fams, err := promscrape.Families(d.metrics)
	if err != nil {
		d.t.Fatal(err)
	}
	if v, found := promscrape.Sum(fams, name, labels...); found {
		return v
	}
	return -1
}

// logged counts the daemon log's lines containing s.
func (d *daemon) logged(s string) int {
	b, _ := os.ReadFile(d.log)
	return strings.Count(string(b), s)
}
