package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/pkg/state"
)

// nodeOptions are the node mode's flags.
type nodeOptions struct {
	kubeconfig       string
	nodeName         string
	gatewayNamespace string
	stateDir         string
	resync           time.Duration
	syncTimeout      time.Duration
	metricsAddr      string
	workers          int
	nodeNetns        string
	master           string
	apiQPS           float64
	apiBurst         int
}

// Bounds of the numeric flags. A resync under a second would read 10 000-rule nat tables back
// continuously; over a day, drift would go unrepaired for too long to be useful.
const (
	minResync, maxResync = time.Second, 24 * time.Hour
	maxWorkers           = 64
)

// parseNodeFlags parses and validates the node mode's flags; getenv supplies NODE_NAME. Every
// error names the flag and the value.
func parseNodeFlags(args []string, getenv func(string) string) (*nodeOptions, error) {
	o := &nodeOptions{}
	fs := flag.NewFlagSet("vpcnat-daemon", flag.ContinueOnError)
	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig file; empty for the in-cluster configuration")
	fs.StringVar(&o.nodeName, "node-name", getenv("NODE_NAME"), "this node's name (default $NODE_NAME)")
	fs.StringVar(&o.gatewayNamespace, "gateway-namespace", plan.GatewayNamespace, "the only namespace whose pods can be gateways")
	fs.StringVar(&o.stateDir, "state-dir", state.DefaultDir, "directory of the CNI plugin's attachment records")
	fs.DurationVar(&o.resync, "resync", 5*time.Minute, "period of full converges (nat table read back, drift repaired)")
	fs.DurationVar(&o.syncTimeout, "sync-timeout", 2*time.Minute, "give up one converge after this long")
	fs.StringVar(&o.metricsAddr, "metrics-addr", ":9490", "host:port of /metrics, /healthz and /readyz; empty to serve none")
	fs.IntVar(&o.workers, "workers", 2, "gateways converged in parallel")
	fs.StringVar(&o.nodeNetns, "node-netns", "", "netns of the node side (tests and benchmarks); empty for this process's (hostNetwork)")
	fs.StringVar(&o.master, "master", "", "this node's NIC for net1, overriding the desired state's; must match the CNI plugin's master")
	// client-go's default (5 QPS, burst 10) would space the applied patches of a node's first
	// start with many gateways 200 ms apart; steady state is a patch per rule change.
	fs.Float64Var(&o.apiQPS, "kube-api-qps", 20, "API requests per second (patches, events) sustained")
	fs.IntVar(&o.apiBurst, "kube-api-burst", 50, "API requests in a burst")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (subcommands: apply, install-cni)", fs.Arg(0))
	}
	return o, o.validate()
}

func (o *nodeOptions) validate() error {
	if o.kubeconfig != "" {
		if _, err := os.Stat(o.kubeconfig); err != nil {
			return fmt.Errorf("--kubeconfig: %q: %w", o.kubeconfig, err)
		}
	}
	if o.nodeName == "" {
		return fmt.Errorf("--node-name: required (or set NODE_NAME)")
	}
	if msgs := validation.IsDNS1123Subdomain(o.nodeName); len(msgs) > 0 {
		return fmt.Errorf("--node-name: %q is not a node name: %s", o.nodeName, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(o.gatewayNamespace); len(msgs) > 0 {
		return fmt.Errorf("--gateway-namespace: %q is not a namespace name: %s", o.gatewayNamespace, strings.Join(msgs, "; "))
	}
	if !filepath.IsAbs(o.stateDir) {
		return fmt.Errorf("--state-dir: %q is not an absolute path", o.stateDir)
	}
	if o.resync < minResync || o.resync > maxResync {
		return fmt.Errorf("--resync: %v is not between %v and %v", o.resync, minResync, maxResync)
	}
	if o.syncTimeout <= 0 {
		return fmt.Errorf("--sync-timeout: %v is not positive", o.syncTimeout)
	}
	if o.workers < 1 || o.workers > maxWorkers {
		return fmt.Errorf("--workers: %d is not between 1 and %d", o.workers, maxWorkers)
	}
	if err := checkListenAddr(o.metricsAddr); err != nil {
		return fmt.Errorf("--metrics-addr: %q: %w", o.metricsAddr, err)
	}
	if o.apiQPS <= 0 || o.apiQPS > 1000 {
		return fmt.Errorf("--kube-api-qps: %v is not in (0, 1000]", o.apiQPS)
	}
	if o.apiBurst < 1 || o.apiBurst > 10000 {
		return fmt.Errorf("--kube-api-burst: %d is not between 1 and 10000", o.apiBurst)
	}
	if o.nodeNetns != "" {
		if _, err := os.Stat(o.nodeNetns); err != nil {
			return fmt.Errorf("--node-netns: %q: %w", o.nodeNetns, err)
		}
	}
	if o.master != "" {
		if err := annotations.CheckIfName(o.master, field.NewPath("--master")); err != nil {
			return err
		}
	}
	return nil
}

// checkListenAddr accepts "" (off) and host:port with a numeric port.
func checkListenAddr(addr string) error {
	if addr == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host != "" && net.ParseIP(host) == nil && host != "localhost" {
		return fmt.Errorf("host %q is not an IP address", host)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("port %q is not a number in 0..65535", port)
	}
	return nil
}
