package reliability

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

// backends are the NAT backends every test here runs with, each in a subtest of its name.
var backends = []string{annotations.DataplaneIPTables, annotations.DataplaneNFTables}

// eachBackend runs fn once per backend, in a subtest named for it.
func eachBackend(t *testing.T, fn func(t *testing.T, plane string)) {
	for _, plane := range backends {
		t.Run(plane, func(t *testing.T) { fn(t, plane) })
	}
}

// bare is the crash and edit tests' topology: a simulated node (eth1, the external NIC's master,
// a veth into "ext"; bridges br-sn and br-sn2) and an empty gateway netns. No traffic flows.
type bare struct {
	*topo.Topology
}

func newBare(t *testing.T) *bare {
	t.Helper()
	topo.NeedRoot(t)
	tp := &topo.Topology{Prefix: topo.NewPrefix()}
	cleanup(t, tp)
	for _, step := range []func() error{
		func() error { return tp.AddNS(topo.Node) },
		func() error { return tp.AddNS(topo.Ext) },
		func() error { return tp.Veth(topo.Node, "eth1", topo.Ext, "p-node") },
		func() error { return tp.Bridge(topo.Node, "br-sn") },
		func() error { return tp.Bridge(topo.Node, "br-sn2") },
		func() error { return tp.AddNS(topo.Gateway) },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	return &bare{tp}
}

// cleanup deletes the topology when the test ends, failed or not, and then checks with
// kstate.Leaks that none of its namespaces is left.
func cleanup(t *testing.T, tp *topo.Topology) {
	t.Cleanup(func() {
		if err := tp.Close(); err != nil {
			t.Error(err)
		}
		if leaks, err := kstate.Leaks("", tp.Prefix+"-", ""); err != nil || len(leaks) > 0 {
			t.Errorf("left on the node: %v %v", leaks, err)
		}
	})
}

// newSeed builds test/topo's seed topology, deleted at the end of the test.
func newSeed(t *testing.T) *topo.Topology {
	t.Helper()
	tp := &topo.Topology{Prefix: topo.NewPrefix()}
	cleanup(t, tp)
	if err := tp.BuildSeed(); err != nil {
		t.Fatal(err)
	}
	return tp
}

// check compares the gateway netns with d through test/kstate.
func check(t *testing.T, tp *topo.Topology, d *annotations.Desired) kstate.Diff {
	t.Helper()
	diff, err := kstate.Check(tp.Path(topo.Gateway), d)
	if err != nil {
		t.Fatal(err)
	}
	return diff
}

// convergeIn converges gw from the simulated node, as the daemon does there.
func convergeIn(tp *topo.Topology, gw *netconf.Gateway, d *annotations.Desired, full bool) (*netconf.Report, error) {
	var rep *netconf.Report
	err := tp.Do(topo.Node, func() error {
		var err error
		rep, err = gw.Converge(context.Background(), d, full)
		return err
	})
	return rep, err
}

// daemonCmd is `vpcnat-daemon apply` of spec into the gateway netns, run from the simulated
// node, in a process group of its own (so a SIGKILL takes its iptables children too, as a
// container's end does), with iptwrap first on PATH; stop is IPTWRAP_STOP ("" for none), or a
// point of nlstop ("nft-batch:before", ...), which then runs the daemon under ptrace.
func daemonCmd(tp *topo.Topology, spec, stop, markDir string) *exec.Cmd {
	argv := []string{"netns", "exec", tp.Name(topo.Node), daemonBin, "apply",
		"--netns", tp.Path(topo.Gateway), "--spec", spec, "--master", "eth1", "--timeout", "60s"}
	if strings.HasPrefix(stop, "nft-") {
		argv = slices.Insert(argv, 3, nlstopBin)
	}
	cmd := exec.Command("ip", argv...)
	cmd.Env = append(os.Environ(), "PATH="+wrapDir+":"+os.Getenv("PATH"), "IPTWRAP_STOP="+stop, "IPTWRAP_DIR="+markDir,
		"NLSTOP="+stop, "NLSTOP_DIR="+markDir)
	cmd.SysProcAttr = newPgid()
	return cmd
}

// apply runs the daemon to completion and returns its output.
func apply(t *testing.T, tp *topo.Topology, spec string) (string, time.Duration) {
	t.Helper()
	cmd := daemonCmd(tp, spec, "", t.TempDir())
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("vpcnat-daemon apply %s: %v\n%s", spec, err, out.String())
	}
	return out.String(), time.Since(start)
}

// sections groups kstate problems by part of the data plane.
func sections(diff kstate.Diff) (nat, addrs, routing, other int) {
	for _, p := range diff {
		switch {
		case p.NAT():
			nat++
		case p.What == "addr":
			addrs++
		case p.What == "route" || p.What == "rule":
			routing++
		default:
			other++
		}
	}
	return
}

func fmtDur(d time.Duration) string { return fmt.Sprint(d.Round(time.Millisecond)) }
