package conf

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/state"
)

// TestContract: the constants this package repeats (it may not import the packages that own
// them: their imports start slowly) are the owners' values.
func TestContract(t *testing.T) {
	if GatewayKey != annotations.GatewayKey || DefaultStateDir != state.DefaultDir || MaxIfNameLen != annotations.MaxIfNameLen {
		t.Errorf("GatewayKey %q / %q, DefaultStateDir %q / %q, MaxIfNameLen %d / %d",
			GatewayKey, annotations.GatewayKey, DefaultStateDir, state.DefaultDir, MaxIfNameLen, annotations.MaxIfNameLen)
	}
}

// TestNamesAgree: the written-out checks accept exactly what the libraries they stand in for
// accept.
func TestNamesAgree(t *testing.T) {
	names := []string{"", "a", "kube-system", "Kube-System", "-a", "a-", "a_b", "a.b", "0", "9-9", strings.Repeat("a", 63), strings.Repeat("a", 64),
		"eth0", "eth0/../x", "net1", ".", "..", "..a", "a:b", "a b", "$(reboot)", "é", strings.Repeat("e", 15), strings.Repeat("e", 16)}
	for _, n := range names {
		if got, want := CheckNamespace(n) == nil, len(validation.IsDNS1123Label(n)) == 0; got != want {
			t.Errorf("namespace %q: accepted %v, k8s IsDNS1123Label %v", n, got, want)
		}
		if got, want := CheckIfName(n) == nil, annotations.CheckIfName(n, field.NewPath("x")) == nil; got != want {
			t.Errorf("ifname %q: accepted %v, annotations.CheckIfName %v", n, got, want)
		}
	}
}

// TestParse: defaults, and each bad field refused with its name and value.
func TestParse(t *testing.T) {
	c, err := Parse([]byte(`{"cniVersion":"1.1.0","name":"n","prevResult":null}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.GatewayNamespaces) != 1 || c.GatewayNamespaces[0] != DefaultGatewayNamespace || c.StateDir != DefaultStateDir || c.PrevResult != nil {
		t.Errorf("defaults: %+v", c)
	}
	for in, want := range map[string]string{
		`{"gatewayNamespaces":["ok","Bad_NS"]}`: `gatewayNamespaces[1]: invalid namespace "Bad_NS"`,
		`{"stateDir":"run/x"}`:                  `stateDir: "run/x"`,
		`{"master":"eth0:1"}`:                   `master: invalid value "eth0:1"`,
		`{"prevResult":[1]}`:                    `prevResult`,
		`{"capabilities":5}`:                    `invalid network configuration JSON`,
		`{"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"a":1}}}`: `invalid network configuration JSON`,
	} {
		if _, err := Parse([]byte(in)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one containing %q", in, err, want)
		}
	}
}

// TestIsGateway: only a pod in a gateway namespace carrying the gateway annotation.
func TestIsGateway(t *testing.T) {
	c, err := Parse([]byte(`{"gatewayNamespaces":["kube-system","gw"],"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"ovn.kubernetes.io/vpc_nat_gw":"g"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	for ns, want := range map[string]bool{"kube-system": true, "gw": true, "default": false, "": false, "Kube-system": false} {
		if got := c.IsGateway(&Args{PodNamespace: ns}); got != want {
			t.Errorf("namespace %q: gateway %v, want %v", ns, got, want)
		}
	}
	c.RuntimeConfig.PodAnnotations = map[string]string{"ovn.kubernetes.io/vpc_nat_gw_other": "g"}
	if c.IsGateway(&Args{PodNamespace: "kube-system"}) {
		t.Error("a pod without the gateway annotation is a gateway")
	}
}

const prev11 = `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mac":"0a:58:0a:f4:00:05","sandbox":"/var/run/netns/x"}],"ips":[{"interface":0,"address":"203.0.113.133/25","gateway":"203.0.113.129"}],"routes":[{"dst":"0.0.0.0/0"}],"dns":{}}`

func stdin(extra, prev string) []byte {
	s := `{"cniVersion":"1.1.0","name":"k8s-pod-network","type":"vpcnat"` + extra
	if prev != "" {
		s += `,"prevResult":` + prev
	}
	return []byte(s + "}")
}

func env(cmd, args string) Env {
	return Env{Command: cmd, ContainerID: "c1", Netns: "/var/run/netns/x", IfName: "eth0", Args: args, Path: "/opt/cni/bin"}
}

func noRecord(string, string) (bool, error) { return false, nil }

// TestFastPath: what the dispatcher answers itself, and what it must hand on.
func TestFastPath(t *testing.T) {
	normal := "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=u1"
	gwAnn := `,"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"ovn.kubernetes.io/vpc_nat_gw":"g"}}`
	out, ok := FastPath(env("ADD", normal), stdin("", prev11), noRecord)
	if !ok || string(out) != prev11 {
		t.Errorf("normal ADD: handled %v, printed %s; want prevResult byte for byte", ok, out)
	}
	if out, ok := FastPath(env("DEL", normal), stdin("", prev11), noRecord); !ok || len(out) != 0 {
		t.Errorf("normal DEL: handled %v, printed %q", ok, out)
	}
	if _, ok := FastPath(env("ADD", "K8S_POD_NAMESPACE=default"), stdin(gwAnn, prev11), noRecord); !ok {
		t.Error("an impostor (gateway annotation outside the gateway namespaces) is not a normal pod")
	}
	withRecord := func(dir, key string) (bool, error) { return dir == DefaultStateDir && key == "u1", nil }
	for name, c := range map[string]struct {
		env    Env
		stdin  []byte
		lookup RecordLookup
	}{
		"gateway ADD":              {env("ADD", "K8S_POD_NAMESPACE=kube-system"), stdin(gwAnn, prev11), noRecord},
		"gateway DEL":              {env("DEL", "K8S_POD_NAMESPACE=kube-system"), stdin(gwAnn, prev11), noRecord},
		"DEL with a record":        {env("DEL", normal), stdin("", prev11), withRecord},
		"DEL, record unreadable":   {env("DEL", normal), stdin("", prev11), func(string, string) (bool, error) { return false, errors.New("permission denied") }},
		"CHECK":                    {env("CHECK", normal), stdin("", prev11), noRecord},
		"GC":                       {env("GC", ""), stdin("", ""), noRecord},
		"STATUS":                   {env("STATUS", ""), stdin("", ""), noRecord},
		"VERSION":                  {env("VERSION", ""), nil, noRecord},
		"no command":               {env("", normal), stdin("", prev11), noRecord},
		"no prevResult":            {env("ADD", normal), stdin("", ""), noRecord},
		"prevResult of 1.0.0":      {env("ADD", normal), stdin("", strings.Replace(prev11, "1.1.0", "1.0.0", 1)), noRecord},
		"prevResult unknown field": {env("ADD", normal), stdin("", strings.Replace(prev11, `"dns"`, `"dnz"`, 1)), noRecord},
		"prevResult bad address":   {env("ADD", normal), stdin("", strings.Replace(prev11, "133/25", "333/25", 1)), noRecord},
		"prevResult twice":         {env("ADD", normal), stdin(`,"PREVRESULT":{}`, prev11), noRecord},
		"bad namespace config":     {env("ADD", normal), stdin(`,"gatewayNamespaces":["A"]`, prev11), noRecord},
		"unsupported version":      {env("ADD", normal), []byte(strings.Replace(string(stdin("", prev11)), `"cniVersion":"1.1.0","name"`, `"cniVersion":"0.3.1","name"`, 1)), noRecord},
		"no name":                  {env("ADD", normal), []byte(strings.Replace(string(stdin("", prev11)), `"name":"k8s-pod-network",`, "", 1)), noRecord},
		"bad container ID":         {Env{Command: "ADD", ContainerID: "-x", Netns: "/n", IfName: "eth0", Path: "/p"}, stdin("", prev11), noRecord},
		"bad ifname":               {Env{Command: "ADD", ContainerID: "c", Netns: "/n", IfName: "a b", Path: "/p"}, stdin("", prev11), noRecord},
		"no netns on ADD":          {Env{Command: "ADD", ContainerID: "c", IfName: "eth0", Path: "/p"}, stdin("", prev11), noRecord},
		"no CNI_PATH":              {Env{Command: "ADD", ContainerID: "c", Netns: "/n", IfName: "eth0"}, stdin("", prev11), noRecord},
		"bad CNI_ARGS":             {env("ADD", "K8S_POD_NAMESPACE"), stdin("", prev11), noRecord},
		"unknown CNI_ARGS":         {env("ADD", "X=1"), stdin("", prev11), noRecord},
	} {
		if _, ok := FastPath(c.env, c.stdin, c.lookup); ok {
			t.Errorf("%s: answered by the fast path, want it handed to the full plugin", name)
		}
	}
}

// TestCheckPrevResult: 0.4.0's fields only in 0.4.0, addresses that parse, indexes in range.
func TestCheckPrevResult(t *testing.T) {
	good := map[string]string{
		"1.1.0": prev11,
		"1.0.0": `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"interface":0,"address":"2001:db8::5/64","gateway":"2001:db8::1"}],"routes":[{"dst":"::/0","gw":""}]}`,
		"0.4.0": `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"203.0.113.5/25"}],"dns":{"nameservers":["203.0.113.1"]}}`,
	}
	for v, r := range good {
		if err := CheckPrevResult([]byte(r), v); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for _, c := range []struct{ v, r string }{
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"interface":1,"address":"203.0.113.5/25"}],"interfaces":[{"name":"eth0"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"version":"4","address":"203.0.113.5/25"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"fe80::1%eth0/64"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"203.0.113.5"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"203.0.113.5/24","gateway":"x"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","routes":[{"gw":"203.0.113.1"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[null]}`},
		{"1.1.0", `{"cniVersion":"1.1.0"} {}`},
		{"0.4.0", `{"cniVersion":"0.4.0","ips":[{"address":"203.0.113.5/25"}]}`},
		{"0.4.0", `{"cniVersion":"0.4.0","routes":[{"dst":"0.0.0.0/0","table":5}]}`},
	} {
		if err := CheckPrevResult([]byte(c.r), c.v); err == nil {
			t.Errorf("%s %s: accepted", c.v, c.r)
		}
	}
}
