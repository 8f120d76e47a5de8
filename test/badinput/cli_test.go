package badinput

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/vpcnat/vpcnat/test/topo"
)

// ngw2Spec is the CLI layer's healthy gateway: its own Vpc and subnet sn2 (10.0.2.0/24 on
// br-sn2, pod4 behind it), SNAT to 192.168.0.113, in netns gw2.
const ngw2Spec = `apiVersion: v1
kind: ConfigMap
metadata: {name: ovn-vpc-nat-gw-config, namespace: kube-system}
data: {image: "x", enable-vpc-nat-gw: "true", nic: eth1}
---
apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: vpc2}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: sn2}
spec: {vpc: vpc2, cidrBlock: 10.0.2.0/24, gateway: 10.0.2.1, natGatewayAttachment: {bridge: br-sn2}}
---
apiVersion: kubeovn.io/v1
kind: VpcNatGateway
metadata: {name: ngw2}
spec:
  vpc: vpc2
  subnet: sn2
  lanIp: 10.0.2.254
  eips: [{eipCIDR: 192.168.0.113/24, gateway: 192.168.0.254}]
  snatRules: [{eip: 192.168.0.113, internalCIDR: 10.0.2.0/24}]
`

// seedDocs are examples/seed.yaml's documents as JSON, in file order.
func seedDocs(t *testing.T) []map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(), "examples", "seed.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var docs []map[string]any
	for {
		doc, err := r.Read()
		if err != nil {
			break
		}
		j, err := yaml.YAMLToJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		v, err := toJSON(j)
		if err != nil {
			t.Fatal(err)
		}
		if m, ok := v.(map[string]any); ok {
			docs = append(docs, m)
		}
	}
	if len(docs) != 4 {
		t.Fatalf("examples/seed.yaml: %d documents, want 4", len(docs))
	}
	return docs
}

// cliSpec is the spec file content of a CLI case, and the apply arguments ({spec}, {netns},
// {missing} are replaced by the runner).
func cliSpec(t *testing.T, c Case) (string, []string, error) {
	args := []string{"apply", "--netns", "{netns}", "--spec", "{spec}"}
	unquote := func() (string, error) {
		s, err := strconv.Unquote(strings.TrimSpace(c.Input))
		if err != nil {
			return "", fmt.Errorf("%s: input must be a Go-quoted string: %w", c, err)
		}
		return s, nil
	}
	docs := seedDocs(t)
	join := func() string {
		var parts []string
		for _, d := range docs {
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			parts = append(parts, string(b))
		}
		return strings.Join(parts, "\n---\n") + "\n"
	}
	switch c.Base {
	case "raw":
		s, err := unquote()
		return s, args, err
	case "append":
		s, err := unquote()
		return join() + "---\n" + s, args, err
	case "drop":
		for i, d := range docs {
			if d["kind"] == strings.TrimSpace(c.Input) {
				docs = append(docs[:i], docs[i+1:]...)
				return join(), args, nil
			}
		}
		return "", nil, fmt.Errorf("%s: no %s in the seed", c, c.Input)
	case "args":
		var a []string
		if err := json.Unmarshal([]byte(c.Input), &a); err != nil {
			return "", nil, fmt.Errorf("%s: args: %w", c, err)
		}
		return join(), a, nil
	case "ConfigMap", "Vpc", "Subnet", "VpcNatGateway":
		for i, d := range docs {
			if d["kind"] != c.Base {
				continue
			}
			v, err := applySets(d, c.Input)
			if err != nil {
				return "", nil, fmt.Errorf("%s: %w", c, err)
			}
			docs[i] = v.(map[string]any)
			return join(), args, nil
		}
	}
	return "", nil, fmt.Errorf("%s: unknown base %q for the cli layer", c, c.Base)
}

// TestCLI: every cli case through `vpcnat-daemon apply` on the simulated node: exit status 1 or
// 2, the fragment on stderr, nothing on stdout (no change reported), and the target gateway's
// netns (converged from the good seed first) byte-identical afterwards. The healthy gateway
// ngw2 in its own netns is unchanged and passes traffic at the end.
func TestCLI(t *testing.T) {
	topo.NeedRoot(t)
	cases := casesOf(t, "cli")
	tp := topo.SeedForTest(t)
	if err := tp.AddNS("gw2"); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	apply := func(args ...string) (string, string, error) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", tp.Name(topo.Node), daemonBin}, args...)...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	good := filepath.Join(repoRoot(), "examples", "seed.yaml")
	if out, errOut, err := apply("apply", "--netns", tp.Path(topo.Gateway), "--spec", good); err != nil {
		t.Fatalf("applying the seed: %v\n%s%s", err, out, errOut)
	}
	healthy := write("ngw2.yaml", ngw2Spec)
	if out, errOut, err := apply("apply", "--netns", tp.Path("gw2"), "--spec", healthy); err != nil {
		t.Fatalf("applying ngw2: %v\n%s%s", err, out, errOut)
	}
	before, before2 := dump(t, tp, topo.Gateway), dump(t, tp, "gw2")

	k := &counter{layer: "cli"}
	defer k.report(t)
	for _, c := range cases {
		t.Run(c.ID, func(t *testing.T) {
			k.ran++
			content, args, err := cliSpec(t, c)
			if err != nil {
				t.Fatal(err)
			}
			spec := write(c.ID+".yaml", content)
			for i, a := range args {
				a = strings.ReplaceAll(a, "{spec}", spec)
				a = strings.ReplaceAll(a, "{netns}", tp.Path(topo.Gateway))
				a = strings.ReplaceAll(a, "{missing}", filepath.Join(dir, "does-not-exist"))
				args[i] = a
			}
			out, errOut, err := apply(args...)
			var ee *exec.ExitError
			if err == nil {
				t.Fatalf("%s: accepted (exit 0), want an error containing %q:\n%s", c, c.Expect, clip(out))
			}
			if !errors.As(err, &ee) || (ee.ExitCode() != 1 && ee.ExitCode() != 2) {
				t.Errorf("%s: %v, want exit status 1 or 2", c, err)
			}
			if verdict := checkError(c, errors.New(errOut)); verdict != nil {
				t.Error(verdict)
			}
			if strings.TrimSpace(out) != "" {
				t.Errorf("%s: refused, but stdout reports changes:\n%s", c, clip(out))
			}
			if after := dump(t, tp, topo.Gateway); after != before {
				t.Errorf("%s: the gateway's netns changed:\n--- before\n%s\n--- after\n%s", c, before, after)
			}
			if !t.Failed() {
				k.rejected++
			}
		})
	}

	if after := dump(t, tp, "gw2"); after != before2 {
		t.Errorf("the healthy gateway ngw2 changed:\n--- before\n%s\n--- after\n%s", before2, after)
	}
	tp.ListenFor(t, topo.Inet, "tcp", topo.InetIP+":8080")
	tp.Expect(t, topo.Pod4, "tcp", topo.InetIP+":8080", "192.168.0.113", "")
	if out, errOut, err := apply("apply", "--netns", tp.Path(topo.Gateway), "--spec", good); err != nil || !strings.Contains(out, "no changes") {
		t.Errorf("re-applying the seed after the bad specs: %v\n%s%s", err, out, errOut)
	}
}
