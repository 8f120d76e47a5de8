package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/klog/v2"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/cniinstall"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/pkg/state"
)

// runInstallCNI is the DaemonSet's init container: install the plugin binary and chain it into
// the node's network configuration, then exit. Running it again changes nothing. With --watch
// (the DaemonSet's cni-keeper sidecar) it then keeps the installation in place until SIGTERM or
// SIGINT: a primary CNI that rewrites its configuration drops the vpcnat entry.
func runInstallCNI(args []string) int {
	o, err := parseInstallFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcnat-daemon install-cni: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if o.watch {
		defer klog.Flush()
		klog.InfoS("Starting vpcnat-daemon install-cni --watch", "binDir", o.BinDir, "confDir", o.ConfDir, "recheck", o.recheck)
		if err := cniinstall.Watch(ctx, o.Options, cniinstall.WatchOptions{Recheck: o.recheck}); err != nil {
			fmt.Fprintf(os.Stderr, "vpcnat-daemon install-cni: %v\n", err)
			return 1
		}
		klog.InfoS("Stopped watching the CNI installation")
		return 0
	}
	res, err := cniinstall.Install(ctx, o.Options)
	if err != nil {
		fmt.Fprintf(os.Stderr, "vpcnat-daemon install-cni: %v\n", err)
		return 1
	}
	bin := "unchanged"
	if res.BinaryChanged {
		bin = "installed"
	}
	conf := "already chained"
	if res.ConfChanged {
		conf = "chained"
	}
	if res.Replaced != "" {
		conf += fmt.Sprintf(" (converted from %s, kept as %s.vpcnat-orig)", res.Replaced, res.Replaced)
	}
	if len(res.Dropped) > 0 {
		conf += fmt.Sprintf(" (dropped from the existing vpcnat entry, the plugin would refuse them: %s)", strings.Join(res.Dropped, "; "))
	}
	fmt.Printf("%s: %s; %s: %s\n", filepath.Join(o.BinDir, cniinstall.PluginType), bin, res.ConfFile, conf)
	return 0
}

// installOptions are install-cni's flags.
type installOptions struct {
	cniinstall.Options
	// watch: keep the installation in place after installing; recheck: the period of a full
	// check without any inotify event.
	watch   bool
	recheck time.Duration
}

// Bounds of --recheck: under a second it would exec the plugin (VERSION) continuously; over a
// day, a change inotify missed would go unrepaired for too long to be useful.
const minRecheck, maxRecheck = time.Second, 24 * time.Hour

func parseInstallFlags(args []string) (*installOptions, error) {
	o := &installOptions{}
	var ns string
	fs := flag.NewFlagSet("install-cni", flag.ContinueOnError)
	fs.StringVar(&o.PluginSource, "plugin", "/opt/vpcnat/bin/vpcnat", "the vpcnat plugin binary to install (its place in the daemon image)")
	fs.StringVar(&o.BinDir, "cni-bin-dir", "/host/opt/cni/bin", "the node's CNI bin directory")
	fs.StringVar(&o.ConfDir, "cni-conf-dir", "/host/etc/cni/net.d", "the node's CNI configuration directory")
	fs.StringVar(&ns, "gateway-namespace", plan.GatewayNamespace, "the only namespace whose pods can be gateways")
	fs.StringVar(&o.Entry.StateDir, "state-dir", state.DefaultDir, "where the plugin writes attachment records for the daemon")
	fs.StringVar(&o.Entry.Master, "master", "", "this node's NIC for net1 (empty: leave the entry's as it is)")
	fs.DurationVar(&o.Wait, "wait", 5*time.Minute, "how long to wait for the primary CNI's network configuration")
	fs.BoolVar(&o.watch, "watch", false, "after installing, keep vpcnat installed and chained (inotify on both directories) until SIGTERM")
	fs.DurationVar(&o.recheck, "recheck", time.Minute, "with --watch: period of a full check without any change seen")
	klog.InitFlags(fs)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, d := range []struct{ flag, path string }{
		{"--plugin", o.PluginSource}, {"--cni-bin-dir", o.BinDir}, {"--cni-conf-dir", o.ConfDir}, {"--state-dir", o.Entry.StateDir},
	} {
		if !filepath.IsAbs(d.path) {
			return nil, fmt.Errorf("%s: %q is not an absolute path", d.flag, d.path)
		}
	}
	if msgs := validation.IsDNS1123Label(ns); len(msgs) > 0 {
		return nil, fmt.Errorf("--gateway-namespace: %q is not a namespace name: %s", ns, strings.Join(msgs, "; "))
	}
	o.Entry.GatewayNamespaces = []string{ns}
	if o.Entry.Master != "" {
		if err := annotations.CheckIfName(o.Entry.Master, field.NewPath("--master")); err != nil {
			return nil, err
		}
	}
	if o.Wait < 0 {
		return nil, fmt.Errorf("--wait: %v is negative", o.Wait)
	}
	if o.recheck < minRecheck || o.recheck > maxRecheck {
		return nil, fmt.Errorf("--recheck: %v is not between %v and %v", o.recheck, minRecheck, maxRecheck)
	}
	recheckSet := false
	fs.Visit(func(f *flag.Flag) { recheckSet = recheckSet || f.Name == "recheck" })
	if recheckSet && !o.watch {
		return nil, fmt.Errorf("--recheck: %v given without --watch (a single installation does not re-check)", o.recheck)
	}
	return o, nil
}
