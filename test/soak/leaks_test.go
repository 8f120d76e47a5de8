package soak

import (
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/test/cnichain"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

// nodeLinks lists the links of the simulated node's namespace by kind: the test's own (lo,
// eth1, the CNI bridge cni0, the subnet bridges br-g<i>), vpcnat's host-side veths (vnat*),
// the bridge plugin's (veth*), and anything else.
func nodeLinks(tp *topo.Topology) (vnat, veth, other []string, err error) {
	out, err := tp.Exec(topo.Node, "ip", "-o", "link", "show")
	if err != nil {
		return nil, nil, nil, err
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		switch {
		case name == "lo" || name == "eth1" || name == "cni0" || strings.HasPrefix(name, "br-g"):
		case strings.HasPrefix(name, "vnat"):
			vnat = append(vnat, name)
		case strings.HasPrefix(name, "veth"):
			veth = append(veth, name)
		default:
			other = append(other, name)
		}
	}
	return vnat, veth, other, nil
}

// checkNode checks the node while n gateways run: one vpcnat host veth (their one subnet each)
// and one primary veth per gateway, nothing else, and one attachment record per gateway pod.
// It returns the number of problems.
func checkNode(t *testing.T, tp *topo.Topology, chain *cnichain.Chain, k *kubelet, n int) int {
	t.Helper()
	problems := 0
	vnat, veth, other, err := nodeLinks(tp)
	if err != nil {
		t.Fatal(err)
	}
	if len(vnat) != n || len(veth) != n || len(other) > 0 {
		problems++
		t.Errorf("node links with %d gateways: vpcnat veths %v, primary veths %v, other %v", n, vnat, veth, other)
	}
	recs := recordFiles(chain)
	if len(recs) != n || k.count() != n {
		problems++
		t.Errorf("node with %d gateways: records %v, sandboxes %d", n, recs, k.count())
	}
	return problems
}

// checkGone checks that nothing of the gateways is left on the node after their deletion:
// links, network namespaces, attachment records, IPAM leases, libcni's cached results, vpcnat
// chains in the node's namespace, and the daemon's memory of them. It returns the number of
// leaks.
func checkGone(t *testing.T, tp *topo.Topology, chain *cnichain.Chain, k *kubelet, daemon *proc) int {
	t.Helper()
	leaks := 0
	leak := func(format string, args ...any) {
		leaks++
		t.Errorf("leak: "+format, args...)
	}
	vnat, veth, other, err := nodeLinks(tp)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range slices.Concat(vnat, veth, other) {
		leak("link %s in the node's namespace", l)
	}
	for _, r := range recordFiles(chain) {
		leak("attachment record %s", r)
	}
	out, err := hostExec("ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if name := f[0]; strings.HasPrefix(name, tp.Prefix+"-") && !slices.Contains([]string{topo.Ext, topo.Node, roleCli}, strings.TrimPrefix(name, tp.Prefix+"-")) {
			leak("network namespace %s", name)
		}
	}
	_ = filepath.WalkDir(filepath.Join(chain.Dir, "ipam"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() != "lock" && !strings.HasPrefix(d.Name(), "last_reserved_ip") {
			leak("IPAM lease %s", p)
		}
		return nil
	})
	_ = filepath.WalkDir(filepath.Join(chain.Dir, "cache"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			leak("libcni cached result %s", p)
		}
		return nil
	})
	save, err := tp.Exec(topo.Node, "iptables-save", "-t", "nat")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range fixedChains {
		if strings.Contains(save, ":"+c+" ") {
			leak("chain %s in the node's namespace", c)
		}
	}
	kl, err := kstate.Leaks(tp.Path(topo.Node), tp.Prefix+"-s", chain.StateDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range kl {
		leak("(test/kstate) %s", l)
	}
	if n := k.count(); n > 0 {
		leak("%d sandboxes", n)
	}
	// The daemon forgets a gateway when its pod's deletion reaches its informer.
	deadline := time.Now().Add(convergeWait)
	for {
		n, err := daemon.sum("vpcnat_daemon_gateways")
		if err == nil && n == 0 {
			break
		}
		if time.Now().After(deadline) {
			leak("the daemon still tracks %v gateways (%v)", n, err)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	return leaks
}

// exec runs a command in the test's own (host) namespace, for reading only.
func hostExec(argv ...string) (string, error) {
	out, err := osexec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return string(out), nil
}
