package fastpath

import (
	"errors"
	"strings"
	"testing"

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

func noRecord(string) (bool, error) { return false, nil }

// TestFastPath: what the dispatcher answers itself, and what it must hand on.
func TestAnswer(t *testing.T) {
	normal := "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_UID=u1"
	gwAnn := `,"runtimeConfig":{"io.kubernetes.cri.pod-annotations":{"ovn.kubernetes.io/vpc_nat_gw":"g"}}`
	out, ok := Answer(env("ADD", normal), stdin("", prev11), noRecord)
	if !ok || string(out) != prev11 {
		t.Errorf("normal ADD: handled %v, printed %s; want prevResult byte for byte", ok, out)
	}
	if out, ok := Answer(env("DEL", normal), stdin("", prev11), noRecord); !ok || len(out) != 0 {
		t.Errorf("normal DEL: handled %v, printed %q", ok, out)
	}
	if out, ok := Answer(env("DEL", ""), stdin("", ""), func(string) (bool, error) { return true, nil }); !ok || len(out) != 0 {
		t.Errorf("DEL without pod identity (no record can have its name): handled %v, printed %q", ok, out)
	}
	if _, ok := Answer(env("ADD", "K8S_POD_NAMESPACE=default"), stdin(gwAnn, prev11), noRecord); !ok {
		t.Error("an impostor (gateway annotation outside the gateway namespaces) is not a normal pod")
	}
	withRecord := func(path string) (bool, error) { return path == DefaultStateDir+"/u1.json", nil }
	for name, c := range map[string]struct {
		env    Env
		stdin  []byte
		lookup Exists
	}{
		"gateway ADD":              {env("ADD", "K8S_POD_NAMESPACE=kube-system"), stdin(gwAnn, prev11), noRecord},
		"gateway DEL":              {env("DEL", "K8S_POD_NAMESPACE=kube-system"), stdin(gwAnn, prev11), noRecord},
		"DEL with a record":        {env("DEL", normal), stdin("", prev11), withRecord},
		"DEL, record unreadable":   {env("DEL", normal), stdin("", prev11), func(string) (bool, error) { return false, errors.New("permission denied") }},
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
		if _, ok := Answer(c.env, c.stdin, c.lookup); ok {
			t.Errorf("%s: answered by the fast path, want it handed to the full plugin", name)
		}
	}
}

// TestPrevResult: 0.4.0's fields only in 0.4.0, addresses that parse, indexes in range.
func TestPrevResult(t *testing.T) {
	good := map[string]string{
		"1.1.0": prev11,
		"1.0.0": `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0"}],"ips":[{"interface":0,"address":"2001:db8::5/64","gateway":"2001:db8::1"}],"routes":[{"dst":"::/0","gw":""}]}`,
		"0.4.0": `{"cniVersion":"0.4.0","ips":[{"version":"4","address":"203.0.113.5/25"}],"dns":{"nameservers":["203.0.113.1"]}}`,
	}
	check := func(v, r string) bool {
		p, err := parseJSON([]byte(r))
		return err == nil && prevResultOK(p, v)
	}
	for v, r := range good {
		if !check(v, r) {
			t.Errorf("%s %s: refused", v, r)
		}
	}
	for _, c := range []struct{ v, r string }{
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"interface":1,"address":"203.0.113.5/25"}],"interfaces":[{"name":"eth0"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"version":"4","address":"203.0.113.5/25"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"fe80::1%eth0/64"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"203.0.113.5"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"203.0.113.5/24","gateway":"x"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[{"address":"203.0.113.5/24","Gateway":"203.0.113.1"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","routes":[{"gw":"203.0.113.1"}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","routes":[{"dst":"0.0.0.0/0","mtu":1e3}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","interfaces":[{"name":"eth0","mtu":1.5}]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","ips":[null]}`},
		{"1.1.0", `{"cniVersion":"1.1.0","dns":{},"dns":{}}`},
		{"1.1.0", `{"cniVersion":"1.1.0","unknown":1}`},
		{"1.1.0", `{"cniVersion":"1.0.0"}`},
		{"0.4.0", `{"cniVersion":"0.4.0","ips":[{"address":"203.0.113.5/25"}]}`},
		{"0.4.0", `{"cniVersion":"0.4.0","routes":[{"dst":"0.0.0.0/0","table":5}]}`},
		{"0.4.0", `{"cniVersion":"0.4.0","interfaces":[{"name":"eth0","mtu":1400}]}`},
	} {
		if check(c.v, c.r) {
			t.Errorf("%s %s: accepted", c.v, c.r)
		}
	}
}

// TestJSON: the reader accepts JSON, refuses what is not, and keeps each value's bytes.
func TestJSON(t *testing.T) {
	for _, in := range []string{`{}`, ` {"a" : [1, -0.5e+3, "x\"\u00e9", true, false, null, {}] } `, `[]`, `"é"`, `0`} {
		if _, err := parseJSON([]byte(in)); err != nil {
			t.Errorf("%s: %v", in, err)
		}
	}
	for _, in := range []string{``, `{`, `{"a":1,}`, `[1,]`, `{"a" 1}`, `01`, `1.`, `-`, `"\x"`, `"\u12"`, "\"\x01\"", `tru`, `{} {}`, `{"\u0061":1}`, `{"é":1}`,
		strings.Repeat("[", 70) + strings.Repeat("]", 70)} {
		if _, err := parseJSON([]byte(in)); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
	v, err := parseJSON([]byte(`{"x": {"y" : [1, 2]} , "z":"s"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(v.get("x").raw); got != `{"y" : [1, 2]}` {
		t.Errorf("raw bytes of x: %q", got)
	}
	if s, ok := v.get("z").str(); !ok || s != "s" {
		t.Errorf("z: %q %v", s, ok)
	}
}

// TestRecordName: the dispatcher's rule for record names is pkg/state's.
func TestRecordName(t *testing.T) {
	store := state.Store{Dir: t.TempDir()}
	for _, n := range []string{"", "a", "uid-1", "0f1e2d3c-aaaa-bbbb-cccc-000000000001", "_", "default_p", ".x", "-x", "_x", "a/b", "../x", "a b",
		strings.Repeat("a", 128), strings.Repeat("a", 129), "é"} {
		_, err := store.Read(n)
		if got, want := recordName(n), !errors.Is(err, state.ErrInvalidName); got != want {
			t.Errorf("%q: recordName %v, pkg/state accepts it %v (%v)", n, got, want, err)
		}
	}
}
