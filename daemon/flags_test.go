package main

import (
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

func env(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }

// TestNodeFlagsDefaults: with only NODE_NAME set, the defaults are the DaemonSet's.
func TestNodeFlagsDefaults(t *testing.T) {
	o, err := parseNodeFlags(nil, env(map[string]string{"NODE_NAME": "worker-1"}))
	if err != nil {
		t.Fatal(err)
	}
	want := nodeOptions{nodeName: "worker-1", gatewayNamespace: "kube-system", stateDir: "/run/vpcnat",
		resync: 5 * time.Minute, syncTimeout: 2 * time.Minute, metricsAddr: ":9490", workers: 2, apiQPS: 20, apiBurst: 50}
	if *o != want {
		t.Errorf("defaults %+v, want %+v", *o, want)
	}
}

// TestNodeFlagsRefused: every bad value is refused with the flag's name and the value.
func TestNodeFlagsRefused(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--node-name: required"},
		{[]string{"--node-name=Worker_1"}, `--node-name: "Worker_1"`},
		{[]string{"--node-name=n", "--kubeconfig=" + filepath.Join(dir, "none")}, `--kubeconfig: "` + filepath.Join(dir, "none")},
		{[]string{"--node-name=n", "--gateway-namespace=Kube.System"}, `--gateway-namespace: "Kube.System"`},
		{[]string{"--node-name=n", "--state-dir=run/vpcnat"}, `--state-dir: "run/vpcnat" is not an absolute path`},
		{[]string{"--node-name=n", "--resync=100ms"}, "--resync: 100ms is not between 1s and 24h0m0s"},
		{[]string{"--node-name=n", "--resync=48h"}, "--resync: 48h0m0s"},
		{[]string{"--node-name=n", "--sync-timeout=0s"}, "--sync-timeout: 0s is not positive"},
		{[]string{"--node-name=n", "--workers=0"}, "--workers: 0 is not between 1 and 64"},
		{[]string{"--node-name=n", "--workers=65"}, "--workers: 65"},
		{[]string{"--node-name=n", "--metrics-addr=9490"}, `--metrics-addr: "9490"`},
		{[]string{"--node-name=n", "--metrics-addr=:99999"}, `--metrics-addr: ":99999": port "99999"`},
		{[]string{"--node-name=n", "--metrics-addr=example.com:80"}, `host "example.com" is not an IP address`},
		{[]string{"--node-name=n", "--node-netns=" + filepath.Join(dir, "none")}, `--node-netns: "` + filepath.Join(dir, "none")},
		{[]string{"--node-name=n", "--master=eth0;rm"}, `--master: Invalid value: "eth0;rm"`},
		{[]string{"--node-name=n", "--master=averyveryverylongname"}, `--master: Invalid value: "averyveryverylongname"`},
		{[]string{"--node-name=n", "--kube-api-qps=0"}, "--kube-api-qps: 0 is not in (0, 1000]"},
		{[]string{"--node-name=n", "--kube-api-burst=0"}, "--kube-api-burst: 0 is not between 1 and 10000"},
		{[]string{"--node-name=n", "extra"}, `unexpected argument "extra"`},
		{[]string{"--node-name=n", "--workers=two"}, `invalid value "two" for flag -workers`},
	} {
		_, err := parseNodeFlags(c.args, env(nil))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

// TestInstallFlagsRefused: the installer's flags, likewise.
func TestInstallFlagsRefused(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cni-conf-dir=etc/cni"}, `--cni-conf-dir: "etc/cni" is not an absolute path`},
		{[]string{"--plugin=vpcnat"}, `--plugin: "vpcnat"`},
		{[]string{"--gateway-namespace=a_b"}, `--gateway-namespace: "a_b"`},
		{[]string{"--master=a b"}, `--master: Invalid value: "a b"`},
		{[]string{"--wait=-1s"}, "--wait: -1s is negative"},
		{[]string{"--watch", "--recheck=0s"}, "--recheck: 0s is not between 1s and 24h0m0s"},
		{[]string{"--watch", "--recheck=500ms"}, "--recheck: 500ms is not between 1s and 24h0m0s"},
		{[]string{"--watch", "--recheck=48h"}, "--recheck: 48h0m0s is not between"},
		{[]string{"--watch", "--recheck=soon"}, `invalid value "soon" for flag -recheck`},
		{[]string{"--recheck=2m"}, "--recheck: 2m0s given without --watch"},
		{[]string{"--watch=maybe"}, `invalid boolean value "maybe" for -watch`},
	} {
		_, err := parseInstallFlags(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

// TestInstallCNIBadFlagExits2: a bad flag ends install-cni (with --watch too) at once with exit
// status 2 and a message naming the flag and the value, before anything is installed.
func TestInstallCNIBadFlagExits2(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--watch", "--recheck=0s"}, "vpcnat-daemon install-cni: --recheck: 0s is not between"},
		{[]string{"--watch", "--cni-bin-dir=" + t.TempDir(), "--cni-conf-dir=net.d"}, `--cni-conf-dir: "net.d" is not an absolute path`},
	} {
		stderr, err := os.CreateTemp(t.TempDir(), "stderr")
		if err != nil {
			t.Fatal(err)
		}
		saved := os.Stderr
		os.Stderr = stderr
		code := runInstallCNI(c.args)
		os.Stderr = saved
		out, _ := os.ReadFile(stderr.Name())
		stderr.Close()
		if code != 2 || !strings.Contains(string(out), c.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", c.args, code, out, c.want)
		}
	}
}

// TestDaemonSetArgs: the shipped DaemonSet's commands and arguments are accepted by the flag
// parsers of this binary, and its paths agree with each other and with the image (hack/images.sh
// puts the daemon at /usr/local/bin/vpcnat-daemon and the plugin at /opt/vpcnat/bin/vpcnat). The
// cni-keeper sidecar installs exactly what the init container does (same command, arguments but
// --watch and --recheck, mounts and privileges), and watches.
func TestDaemonSetArgs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "daemonset", "30-daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatal(err)
	}
	spec := ds.Spec.Template.Spec
	containers := map[string]corev1.Container{}
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		containers[c.Name] = c
	}
	init, daemon, keeper := containers["install-cni"], containers["vpcnat-daemon"], containers["cni-keeper"]
	if len(spec.InitContainers) != 1 || init.Name == "" || len(spec.Containers) != 2 || daemon.Name == "" || keeper.Name == "" ||
		spec.Containers[0].Name != "vpcnat-daemon" {
		t.Fatalf("init containers %d, containers %d (%v): want install-cni; vpcnat-daemon first, then cni-keeper",
			len(spec.InitContainers), len(spec.Containers), slices.Collect(maps.Keys(containers)))
	}
	if got := strings.Join(init.Command, " "); got != "/usr/local/bin/vpcnat-daemon install-cni" {
		t.Errorf("init command %q", got)
	}
	inst, err := parseInstallFlags(init.Args)
	if err != nil {
		t.Fatalf("init container args: %v", err)
	}
	if got := strings.Join(daemon.Command, " "); got != "/usr/local/bin/vpcnat-daemon" {
		t.Errorf("daemon command %q", got)
	}
	o, err := parseNodeFlags(daemon.Args, env(map[string]string{"NODE_NAME": "worker-1"}))
	if err != nil {
		t.Fatalf("daemon args: %v", err)
	}
	if inst.Entry.StateDir != o.stateDir || inst.Entry.GatewayNamespaces[0] != o.gatewayNamespace {
		t.Errorf("plugin writes records to %s for namespace %v, daemon reads %s for %s",
			inst.Entry.StateDir, inst.Entry.GatewayNamespaces, o.stateDir, o.gatewayNamespace)
	}
	if inst.PluginSource != "/opt/vpcnat/bin/vpcnat" {
		t.Errorf("plugin source %s is not where the image holds it", inst.PluginSource)
	}
	mounts := map[string]bool{}
	for _, m := range daemon.VolumeMounts {
		mounts[m.MountPath] = true
	}
	if !mounts[o.stateDir] {
		t.Errorf("the daemon does not mount its state directory %s", o.stateDir)
	}
	for _, m := range init.VolumeMounts {
		mounts[m.MountPath] = true
	}
	if !mounts[inst.BinDir] || !mounts[inst.ConfDir] {
		t.Errorf("the installer does not mount %s and %s", inst.BinDir, inst.ConfDir)
	}

	keep, err := parseInstallFlags(keeper.Args)
	if err != nil {
		t.Fatalf("cni-keeper args: %v", err)
	}
	if !keep.watch || inst.watch {
		t.Errorf("--watch: cni-keeper %v, init container %v; want only the sidecar to watch", keep.watch, inst.watch)
	}
	if !reflect.DeepEqual(keep.Options, inst.Options) {
		t.Errorf("cni-keeper installs %+v, the init container %+v", keep.Options, inst.Options)
	}
	if !slices.Equal(keeper.Command, init.Command) || !reflect.DeepEqual(keeper.VolumeMounts, init.VolumeMounts) ||
		!reflect.DeepEqual(keeper.SecurityContext, init.SecurityContext) {
		t.Errorf("cni-keeper's command, mounts or securityContext differ from the init container's:\n%+v\n%+v", keeper, init)
	}
}
