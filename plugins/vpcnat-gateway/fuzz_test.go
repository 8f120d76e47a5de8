package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/types/create"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/cniconf"
	"github.com/vpcnat/vpcnat/plugins/internal/conf"
	"github.com/vpcnat/vpcnat/plugins/internal/fastpath"
)

// k8sArgs is CNI_ARGS as the CNI library reads it (types.LoadArgs), the reference conf.ParseArgs
// must agree with.
type k8sArgs struct {
	types.CommonArgs
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // CNI_ARGS key
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
}

// FuzzConfig fuzzes what the runtime hands the plugin: the configuration (with runtimeConfig's
// pod annotations and prevResult) on stdin, and CNI_ARGS. Properties:
//   - nothing panics;
//   - CNI_ARGS: conf.ParseArgs accepts exactly what the CNI library's types.LoadArgs accepts,
//     with the same values;
//   - an accepted configuration re-marshals and re-parses to the same value, names only valid
//     namespaces (by k8s.io/apimachinery's rule), an absolute state directory and a valid
//     master; a gateway pod's accepted NIC plan names a valid master and valid interfaces;
//   - the dispatcher's fast path (fastpath.Answer, its own strict JSON reader) answers ADD or DEL only where the full plugin
//     succeeds for a normal pod: for ADD the printed prevResult means exactly what the full
//     plugin prints, for DEL the full plugin parses the call too and finds no record.
func FuzzConfig(f *testing.F) {
	f.Add([]byte(`{"cniVersion":"1.1.0","name":"k8s-pod-network","type":"vpcnat","capabilities":{"io.kubernetes.cri.pod-annotations":true},"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"kubernetes.io/config.seen":"x"}},"prevResult":{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:00:05","sandbox":"/var/run/netns/x"}],"ips":[{"interface":0,"address":"203.0.113.133/25","gateway":"203.0.113.129"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}}`),
		"IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=u1")
	f.Fuzz(func(t *testing.T, stdin []byte, cniArgs string) {
		args := checkArgs(t, cniArgs)
		c, err := conf.Parse(stdin)
		pc, fullErr := parseConfig(stdin)
		if fullErr == nil && err != nil {
			t.Fatalf("the full plugin accepts what conf.Parse refuses (%v)", err)
		}
		if err == nil {
			checkAccepted(t, c)
			if args != nil && fullErr == nil {
				if plan, err := pc.gatewayPlan(args); err == nil && plan != nil {
					checkPlan(t, plan)
				}
			}
		}
		for _, cmd := range []string{"ADD", "DEL"} {
			env := fastpath.Env{Command: cmd, ContainerID: "c1", Netns: "/var/run/netns/x", IfName: "eth0", Args: cniArgs, Path: "/opt/cni/bin"}
			out, ok := fastpath.Answer(env, stdin, func(string) (bool, error) { return false, nil })
			if !ok {
				continue
			}
			if fullErr != nil || args == nil {
				t.Fatalf("%s: fast path taken where the full plugin fails: config %v, CNI_ARGS parsed %v", cmd, fullErr, args != nil)
			}
			if plan, err := pc.gatewayPlan(args); err != nil || plan != nil {
				t.Fatalf("%s: fast path taken for a gateway pod (plan %v, err %v)", cmd, plan, err)
			}
			if cmd == "ADD" {
				checkPassThrough(t, pc, out)
			} else if len(out) != 0 {
				t.Fatalf("DEL printed %q", out)
			}
		}
	})
}

// checkArgs compares conf.ParseArgs with the CNI library; it returns the parsed args or nil.
func checkArgs(t *testing.T, s string) *conf.Args {
	t.Helper()
	got, err := conf.ParseArgs(s)
	var ref k8sArgs
	refErr := types.LoadArgs(s, &ref)
	if (err == nil) != (refErr == nil) {
		t.Fatalf("CNI_ARGS %q: conf.ParseArgs error %v, types.LoadArgs error %v", s, err, refErr)
	}
	if err != nil {
		return nil
	}
	want := conf.Args{IgnoreUnknown: bool(ref.IgnoreUnknown), PodNamespace: string(ref.K8S_POD_NAMESPACE), PodName: string(ref.K8S_POD_NAME),
		PodUID: string(ref.K8S_POD_UID), InfraContainerID: string(ref.K8S_POD_INFRA_CONTAINER_ID)}
	if *got != want {
		t.Fatalf("CNI_ARGS %q: conf.ParseArgs %+v, types.LoadArgs %+v", s, *got, want)
	}
	return got
}

func checkAccepted(t *testing.T, c *conf.Conf) {
	t.Helper()
	for i, ns := range c.GatewayNamespaces {
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			t.Fatalf("accepted gatewayNamespaces[%d] %q: %v", i, ns, errs)
		}
	}
	if !strings.HasPrefix(c.StateDir, "/") {
		t.Fatalf("accepted stateDir %q", c.StateDir)
	}
	if c.Master != "" {
		if err := annotations.CheckIfName(c.Master, field.NewPath("master")); err != nil {
			t.Fatalf("accepted master: %v", err)
		}
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatalf("re-marshalling an accepted configuration: %v", err)
	}
	again, err := conf.Parse(b)
	if err != nil {
		t.Fatalf("re-parsing %s: %v", b, err)
	}
	// prevResult is raw JSON: json.Marshal compacts it and escapes HTML characters (& as
	// \u0026), so it is compared by meaning; the rest field for field.
	norm := func(c *conf.Conf) (conf.Conf, any) {
		n := *c
		var prev any
		if n.PrevResult != nil {
			d := json.NewDecoder(bytes.NewReader(n.PrevResult))
			d.UseNumber()
			if err := d.Decode(&prev); err != nil {
				t.Fatalf("prevResult: %v", err)
			}
		}
		n.PrevResult = nil
		if len(n.RuntimeConfig.PodAnnotations) == 0 {
			n.RuntimeConfig.PodAnnotations = nil // omitempty
		}
		return n, prev
	}
	a, aPrev := norm(c)
	b2, bPrev := norm(again)
	if !reflect.DeepEqual(a, b2) || !reflect.DeepEqual(aPrev, bPrev) {
		t.Fatalf("re-parsed configuration differs:\n%+v %v\n%+v %v", a, aPrev, b2, bPrev)
	}
}

func checkPlan(t *testing.T, p *annotations.NICPlan) {
	t.Helper()
	for _, n := range []string{p.External.Master, p.External.IfName} {
		if err := cniconf.CheckIfName(n); err != nil {
			t.Fatalf("accepted gateway plan names interface %q: %v", n, err)
		}
	}
	for _, s := range p.Subnets {
		if err := cniconf.CheckIfName(s.IfName); err != nil {
			t.Fatalf("accepted gateway plan names subnet interface %q: %v", s.IfName, err)
		}
	}
}

// checkPassThrough: what the dispatcher prints (prevResult as it came) is, read by the CNI
// library as a runtime reads it, the result the full plugin prints.
func checkPassThrough(t *testing.T, pc *PluginConf, out []byte) {
	t.Helper()
	if pc.CNI.PrevResult == nil {
		t.Fatal("fast path printed a result where the full plugin has no prevResult")
	}
	printed, err := create.CreateFromBytes(out)
	if err != nil {
		t.Fatalf("the dispatcher printed what the CNI library cannot read: %v\n%s", err, out)
	}
	got, err := printed.GetAsVersion(pc.CNIVersion)
	if err != nil {
		t.Fatalf("dispatcher's result as version %s: %v", pc.CNIVersion, err)
	}
	want, err := pc.CNI.PrevResult.GetAsVersion(pc.CNIVersion)
	if err != nil {
		t.Fatalf("full plugin's result as version %s: %v", pc.CNIVersion, err)
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("dispatcher's result differs from the full plugin's:\n%s\n%s", gb, wb)
	}
}

// TestSeedsTakeFastPath: the normal pods of the seed corpus are answered by the fast path (so
// FuzzConfig's comparison is not vacuous), the others are not.
func TestSeedsTakeFastPath(t *testing.T) {
	fast := map[string]bool{"normal-0.4.0": true, "normal-1.0.0": true, "normal-1.1.0-ipv6": true, "normal-no-annotations": true,
		"impostor": true, "kube-system-normal": true, "gateway": false, "gateway-custom-ns-master": false, "bad-namespace": false,
		"no-prevresult": false, "prevresult-older": false, "prevresult-twice": false, "prevresult-case": false, "hostile-strings": false,
		"standard-members": true, "unknown-field-case": false, "unknown-field": false, "statedir-not-clean": false}
	for name, want := range fast {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzConfig", name))
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		if len(lines) != 3 {
			t.Fatalf("%s: not a two-argument corpus file", name)
		}
		stdin, err1 := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "[]byte("), ")"))
		args, err2 := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[2], "string("), ")"))
		if err1 != nil || err2 != nil {
			t.Fatalf("%s: %v %v", name, err1, err2)
		}
		env := fastpath.Env{Command: "ADD", ContainerID: "c1", Netns: "/var/run/netns/x", IfName: "eth0", Args: args, Path: "/opt/cni/bin"}
		if _, got := fastpath.Answer(env, []byte(stdin), func(string) (bool, error) { return false, nil }); got != want {
			t.Errorf("%s: ADD answered by the fast path: %v, want %v", name, got, want)
		}
	}
}
