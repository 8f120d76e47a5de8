package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vpcnat/vpcnat/test/promscrape"
)

// daemon is one vpcnat-daemon process the benchmark started and stops by its PID.
type daemon struct {
	cmd     *exec.Cmd
	metrics string
	done    chan error
}

// startDaemon runs the daemon in node mode and waits for /healthz.
func startDaemon(bin, logDir string, args ...string) (*daemon, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.Create(filepath.Join(logDir, fmt.Sprintf("daemon-%d.log", time.Now().UnixNano())))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	d := &daemon{metrics: addr, done: make(chan error, 1)}
	d.cmd = exec.Command(bin, append(args, "--metrics-addr="+addr)...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { d.done <- d.cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return d, nil
			}
		}
		select {
		case err := <-d.done:
			return nil, fmt.Errorf("daemon exited: %v (log %s)", err, logf.Name())
		case <-time.After(20 * time.Millisecond):
		}
	}
	d.stop()
	return nil, fmt.Errorf("daemon not healthy within 30s (log %s)", logf.Name())
}

// stop sends SIGTERM and waits (SIGKILL after 10 s).
func (d *daemon) stop() {
	if d.cmd.Process == nil {
		return
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// counter sums a metric's series whose labels include the given pairs.
func (d *daemon) counter(name string, labels ...string) (float64, error) {
	fams, err := promscrape.Families(d.metrics)
	if err != nil {
		return 0, err
	}
	sum, _ := promscrape.Sum(fams, name, labels...)
	return sum, nil
}

// waitCounter waits until counter(name, labels) >= want.
func (d *daemon) waitCounter(want float64, limit time.Duration, name string, labels ...string) error {
	deadline := time.Now().Add(limit)
	for {
		v, err := d.counter(name, labels...)
		if err == nil && v >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s%v = %v, not %v within %v (err %v)", name, labels, v, want, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// memory returns the process's resident set size and its peak (VmRSS, VmHWM), in KiB.
func (d *daemon) memory() (rss, peak int, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", d.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) < 2 {
			continue
		}
		switch fields[0] {
		case "VmRSS:":
			rss, _ = strconv.Atoi(fields[1])
		case "VmHWM:":
			peak, _ = strconv.Atoi(fields[1])
		}
	}
	return rss, peak, s.Err()
}
