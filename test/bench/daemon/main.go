// Command vpcnat-bench-daemon is `make bench-daemon`: it measures vpcnat-daemon's node mode
// against a real kube-apiserver and etcd (test/kubeenv) on the seed topology of test/topo, and
// prints a markdown table for the README. Like vpcnat-bench it asserts nothing but what it needs
// to measure; it reports this machine in this run.
//
//   - latency: a desired annotation patch (moving the probe port forward to a new port) until
//     the first real TCP connection through the new rule succeeds, with 1 and 10 000 rules;
//   - memory: the daemon's resident set with 50 gateway pods on the node, after converging
//     them from scratch and after a restart (which must change nothing).
//
// Address plan: test/topo's seed topology; the probe gateway's EIPs are 192.168.0.1-.210 (not
// .50 or .254), the 49 small gateways hold 192.168.0.151-.199 and each its own subnet
// 10.3.<i>.0/24, all on node bridge br-snb. The API server listens on 127.0.0.1 only.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/kubeenv"
	"github.com/vpcnat/vpcnat/test/topo"
)

type options struct {
	repo      string
	rounds    int
	sizes     []int
	gateways  int
	daemonBin string
	logDir    string
	verbosity int
	dataplane string
	encoding  string
}

func main() {
	var o options
	var sizes string
	flag.StringVar(&o.repo, "repo", ".", "the checkout's top directory")
	flag.IntVar(&o.rounds, "rounds", 15, "annotation patches measured per size (median reported)")
	flag.StringVar(&sizes, "sizes", "1,10000", "rule counts of the latency measurement")
	flag.IntVar(&o.gateways, "gateways", 50, "gateway pods on the node for the memory measurement (0 skips it)")
	flag.StringVar(&o.daemonBin, "daemon", "", "vpcnat-daemon binary (default: built from --repo)")
	flag.StringVar(&o.logDir, "log-dir", "", "keep the daemons' logs here (default: a temporary directory, removed)")
	flag.IntVar(&o.verbosity, "v", 0, "the daemons' log verbosity")
	flag.StringVar(&o.dataplane, "dataplane", "nftables", "the gateways' NAT backend: nftables or iptables")
	flag.StringVar(&o.encoding, "encoding", "auto", "the desired annotation's compressed form: auto (as the controller writes it: "+
		"the parts encoding once the daemon lists it in its applied report), gzip (every daemon reads it) or parts")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "vpcnat-bench-daemon: needs root (it creates network namespaces)")
		os.Exit(2)
	}
	for _, f := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "vpcnat-bench-daemon: --sizes: %q is not a positive rule count\n", f)
			os.Exit(2)
		}
		o.sizes = append(o.sizes, n)
	}
	if o.dataplane != "nftables" && o.dataplane != "iptables" {
		fmt.Fprintf(os.Stderr, "vpcnat-bench-daemon: --dataplane: %q is not nftables or iptables\n", o.dataplane)
		os.Exit(2)
	}
	if o.encoding != "auto" && o.encoding != "gzip" && o.encoding != "parts" {
		fmt.Fprintf(os.Stderr, "vpcnat-bench-daemon: --encoding: %q is not auto, gzip or parts\n", o.encoding)
		os.Exit(2)
	}
	if o.rounds < 1 || o.gateways < 0 || o.gateways == 1 {
		fmt.Fprintln(os.Stderr, "vpcnat-bench-daemon: --rounds must be >= 1 and --gateways 0 or >= 2")
		os.Exit(2)
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-bench-daemon:", err)
		os.Exit(1)
	}
}

// bench is one run's environment.
type bench struct {
	o     options
	dir   string
	env   *kubeenv.Env
	tp    *topo.Topology
	chain *cnichain.Chain
	c     *cluster
	args  []string // the daemon's flags
	probe *corev1.Pod
}

func run(o options) error {
	dir, err := os.MkdirTemp("", "vpcnat-bench-daemon-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if o.daemonBin == "" {
		o.daemonBin = filepath.Join(dir, "vpcnat-daemon")
		build := exec.Command("go", "build", "-o", o.daemonBin, "./daemon")
		build.Dir = o.repo
		if out, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("building vpcnat-daemon: %w: %s", err, out)
		}
	}
	cniPaths, err := cnichain.PluginDirs(o.repo, dir)
	if err != nil {
		return err
	}
	kbin, err := kubeenv.BinDir(o.repo)
	if err != nil {
		return err
	}
	ctx := context.Background()
	env, err := kubeenv.Start(ctx, kbin)
	if err != nil {
		return err
	}
	defer env.Stop()
	tp, err := topo.NewSeed(topo.NewPrefix())
	if err != nil {
		return err
	}
	defer tp.Close()
	if err := tp.Bridge(topo.Node, "br-snb"); err != nil {
		return err
	}
	client, err := env.Clientset()
	if err != nil {
		return err
	}
	if o.logDir == "" {
		o.logDir = dir
	}
	b := &bench{o: o, dir: dir, env: env, tp: tp, chain: cnichain.New(tp, cniPaths, dir),
		c: &cluster{client: client, ns: "bench-" + tp.Prefix, node: "node-" + tp.Prefix,
			dataplane: o.dataplane, encoding: o.encoding, readsParts: map[string]bool{}}}
	if err := b.c.setup(ctx); err != nil {
		return err
	}
	b.args = []string{"--kubeconfig=" + env.Kubeconfig, "--node-name=" + b.c.node, "--gateway-namespace=" + b.c.ns,
		"--state-dir=" + b.chain.StateDir, "--node-netns=" + tp.Path(topo.Node), fmt.Sprintf("-v=%d", o.verbosity)}

	lat, err := b.latency(ctx)
	if err != nil {
		return err
	}
	printLatency(o, lat)
	if o.gateways > 0 {
		m, err := b.memory(ctx)
		if err != nil {
			return err
		}
		printMemory(o, m)
	}
	return nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func printLatency(o options, rows []latencyRow) {
	fmt.Printf("| vpcnat-daemon, annotation patch to rule live (median of %d) | backend | rules | patch -> first packet through the new rule | patch -> applied annotation seen | desired annotation size (encoding) |\n", o.rounds)
	fmt.Println("| --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		fmt.Printf("| one DNAT moved to a new port | %s | %d | %s | %s | %.1f KiB (%s) |\n", o.dataplane, r.rules, ms(r.live), ms(r.reported), float64(r.size)/1024, r.encoding)
	}
	fmt.Println()
}

func printMemory(o options, m memoryResult) {
	fmt.Printf("%d gateway pods on the node: a fresh daemon converged them from scratch in %.2f s, resident %.1f MiB "+
		"(peak %.1f MiB); restarted, it read all %d back in %.2f s with %v kernel changes, resident %.1f MiB.\n",
		o.gateways, m.cold.Seconds(), float64(m.rss)/1024, float64(m.peak)/1024, o.gateways, m.restart.Seconds(),
		m.restartChanges, float64(m.restartRSS)/1024)
}
