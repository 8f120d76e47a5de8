package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// binDir holds the dispatcher built for the tests, next to a stand-in for the full plugin that
// records how it was called (a shell script: these tests need no root and no network namespace;
// plugins/vpcnat-gateway tests the pair with the real full plugin through libcni).
var binDir string

const fakeFull = `#!/bin/sh
# stand-in for vpcnat-gateway: records its arguments, environment and stdin, answers, exits 3
out="$VPCNAT_TEST_RECORD"
printf '%s\n' "$0" "$@" > "$out.args"
env > "$out.env"
cat > "$out.stdin"
printf '{"from":"full plugin"}'
exit 3
`

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vpcnat-dispatcher-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	build := exec.Command("go", "build", "-o", filepath.Join(dir, "vpcnat"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the dispatcher: %v\n%s", err, out)
		os.Exit(1)
	}
	if err := os.WriteFile(filepath.Join(dir, FullPlugin), []byte(fakeFull), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type call struct {
	stdout   string
	exit     int
	handed   bool   // the full plugin ran
	stdin    string // what it read
	env, arg string
}

// invoke runs bin/vpcnat as a runtime does.
func invoke(t *testing.T, bin, command, stdin, cniArgs string, extraEnv ...string) call {
	t.Helper()
	rec := filepath.Join(t.TempDir(), "rec")
	cmd := exec.Command(bin, "extra-arg")
	cmd.Env = append([]string{"CNI_COMMAND=" + command, "CNI_CONTAINERID=c1", "CNI_NETNS=/var/run/netns/none", "CNI_IFNAME=eth0",
		"CNI_PATH=/opt/cni/bin", "CNI_ARGS=" + cniArgs, "VPCNAT_TEST_RECORD=" + rec, "PATH=/usr/bin:/bin"}, extraEnv...)
	cmd.Stdin = strings.NewReader(stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	c := call{stdout: out.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		c.exit = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(rec + ".stdin"); err == nil {
		c.handed, c.stdin = true, string(b)
		e, _ := os.ReadFile(rec + ".env")
		a, _ := os.ReadFile(rec + ".args")
		c.env, c.arg = string(e), string(a)
	}
	return c
}

const prev = `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:00:05","sandbox":"/var/run/netns/x"}],"ips":[{"interface":0,"address":"203.0.113.133/25","gateway":"203.0.113.129"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}`

func config(stateDir, annots string) string {
	return `{"cniVersion":"1.0.0","name":"k8s-pod-network","type":"vpcnat","stateDir":"` + stateDir + `",
	  "runtimeConfig":{"io.kubernetes.cri.pod-annotations":` + annots + `},"prevResult":` + prev + `}`
}

const (
	normalArgs  = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=uid-1"
	gatewayArgs = "IgnoreUnknown=1;K8S_POD_NAMESPACE=kube-system;K8S_POD_NAME=gw;K8S_POD_UID=uid-2"
	gwAnnots    = `{"ovn.kubernetes.io/vpc_nat_gw":"ngw"}`
)

// TestNormalPodAnsweredHere: ADD prints prevResult byte for byte, DEL prints nothing, both exit
// 0, and the full plugin never runs.
func TestNormalPodAnsweredHere(t *testing.T) {
	bin := filepath.Join(binDir, "vpcnat")
	conf := config(t.TempDir(), `{"kubernetes.io/config.seen":"x"}`)
	if c := invoke(t, bin, "ADD", conf, normalArgs); c.handed || c.exit != 0 || c.stdout != prev {
		t.Errorf("ADD: handed %v, exit %d, printed %s; want prevResult as it came", c.handed, c.exit, c.stdout)
	}
	if c := invoke(t, bin, "DEL", conf, normalArgs); c.handed || c.exit != 0 || c.stdout != "" {
		t.Errorf("DEL: handed %v, exit %d, printed %q", c.handed, c.exit, c.stdout)
	}
	// A pod outside the gateway namespaces with the gateway annotation is a normal pod.
	if c := invoke(t, bin, "ADD", config(t.TempDir(), gwAnnots), normalArgs); c.handed || c.stdout != prev {
		t.Errorf("impostor ADD: handed %v, printed %s", c.handed, c.stdout)
	}
}

// TestHandOff: everything else reaches the full plugin exactly as the runtime sent it: the same
// stdin bytes, environment and arguments; its output and exit status are the answer.
func TestHandOff(t *testing.T) {
	bin := filepath.Join(binDir, "vpcnat")
	state := t.TempDir()
	if err := os.WriteFile(filepath.Join(state, "uid-1.json"), []byte(`{"version":"v1"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	big := config(state, `{"ovn.kubernetes.io/vpc_nat_gw":"ngw","pad":"`+strings.Repeat("x", 300<<10)+`"}`) // over a pipe's 64 KiB
	for name, c := range map[string]struct{ command, stdin, args string }{
		"gateway ADD":          {"ADD", config(state, gwAnnots), gatewayArgs},
		"gateway ADD, 300 KiB": {"ADD", big, gatewayArgs},
		"gateway DEL":          {"DEL", config(state, gwAnnots), gatewayArgs},
		"DEL of a pod with a record (annotations gone)": {"DEL", config(state, `{}`), normalArgs},
		"CHECK":      {"CHECK", config(state, `{}`), normalArgs},
		"GC":         {"GC", config(state, `{}`), ""},
		"STATUS":     {"STATUS", config(state, `{}`), ""},
		"VERSION":    {"VERSION", "", ""},
		"bad config": {"ADD", strings.Replace(config(state, `{}`), `"name"`, `"gatewayNamespaces":["BAD"],"name"`, 1), normalArgs},
		"not JSON":   {"ADD", "{", normalArgs},
	} {
		t.Run(name, func(t *testing.T) {
			got := invoke(t, bin, c.command, c.stdin, c.args)
			if !got.handed {
				t.Fatalf("not handed to the full plugin (exit %d, printed %.200s)", got.exit, got.stdout)
			}
			if got.stdin != c.stdin {
				t.Errorf("the full plugin read %d bytes of stdin, want the %d the runtime sent", len(got.stdin), len(c.stdin))
			}
			if got.exit != 3 || got.stdout != `{"from":"full plugin"}` {
				t.Errorf("exit %d, printed %q: want the full plugin's", got.exit, got.stdout)
			}
			if !strings.Contains(got.env, "CNI_COMMAND="+c.command+"\n") || !strings.Contains(got.env, "CNI_ARGS="+c.args+"\n") {
				t.Errorf("environment not passed on:\n%s", got.env)
			}
			if want := filepath.Join(binDir, FullPlugin) + "\nextra-arg\n"; got.arg != want {
				t.Errorf("arguments %q, want %q", got.arg, want)
			}
		})
	}
}

// TestOwnNetns: skel refuses a CNI_NETNS that is the plugin's own namespace; the dispatcher
// leaves that to the full plugin.
func TestOwnNetns(t *testing.T) {
	c := invoke(t, filepath.Join(binDir, "vpcnat"), "ADD", config(t.TempDir(), `{}`), normalArgs)
	if c.handed {
		t.Fatal("precondition: a normal pod with another netns is answered here")
	}
	cmd := invoke(t, filepath.Join(binDir, "vpcnat"), "ADD", config(t.TempDir(), `{}`), normalArgs, "CNI_NETNS=/proc/self/ns/net")
	if !cmd.handed {
		t.Error("CNI_NETNS naming the plugin's own netns was answered by the fast path")
	}
}

// TestFullPluginMissing: a call for the full plugin without it installed is a CNI error naming
// the file; a normal pod does not need it.
func TestFullPluginMissing(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(filepath.Join(binDir, "vpcnat"))
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "vpcnat")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	c := invoke(t, bin, "ADD", config(t.TempDir(), gwAnnots), gatewayArgs)
	if c.exit != 1 || !strings.Contains(c.stdout, `"code": 999`) || !strings.Contains(c.stdout, filepath.Join(dir, FullPlugin)) {
		t.Errorf("exit %d, printed %s; want a CNI error naming %s", c.exit, c.stdout, filepath.Join(dir, FullPlugin))
	}
	if c := invoke(t, bin, "ADD", config(t.TempDir(), `{}`), normalArgs); c.exit != 0 || c.stdout != prev {
		t.Errorf("normal pod without the full plugin: exit %d, printed %s", c.exit, c.stdout)
	}
}
