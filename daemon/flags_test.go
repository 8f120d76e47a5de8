package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
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
	} {
		_, err := parseInstallFlags(c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one containing %q", c.args, err, c.want)
		}
	}
}

// TestDaemonSetArgs: the shipped DaemonSet's commands and arguments are accepted by the flag
// parsers of this binary, and its paths agree with each other and with the image (hack/images.sh
// puts the daemon at /usr/local/bin/vpcnat-daemon and the plugin at /opt/vpcnat/bin/vpcnat).
func TestDaemonSetArgs(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "deploy", "daemonset", "daemonset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var ds appsv1.DaemonSet
	if err := yaml.UnmarshalStrict(b, &ds); err != nil {
		t.Fatal(err)
	}
	spec := ds.Spec.Template.Spec
	init, daemon := spec.InitContainers[0], spec.Containers[0]
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
}
