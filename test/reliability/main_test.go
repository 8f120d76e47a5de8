// Package reliability holds the data-plane reliability tests: crash consistency of
// `vpcnat-daemon apply` under SIGKILL, flows racing a gateway's setup (Kube-OVN 4193), quick
// edits and add/delete at the kernel level (5115, 5799, 6412). Every check of the kernel goes
// through test/kstate, which derives the expected state independently of pkg/netconf.
//
// Address plan: the crash and edit tests use a topology of their own without traffic (see
// bigSpec: external 192.168.0.0/22, VPC subnets 10.0.0.0/16 and 10.1.0.0/24, routes to
// 172.16.0.0/12); the flow test uses test/topo's seed topology. Every namespace is named with a
// per-run prefix (topo.NewPrefix) and deleted at the end, also on failure; nothing is added to
// the host's own namespace.
//
// Long mode: VPCNAT_SOAK=1 (or -soak) runs longer trial counts (500 crash trials instead of the
// 100 of `make test`).
package reliability

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

var (
	soak = flag.Bool("soak", os.Getenv("VPCNAT_SOAK") == "1", "long mode: full trial counts")

	// daemonBin is vpcnat-daemon built for the package; wrapDir holds iptwrap installed as
	// iptables-save and iptables-restore; nlstopBin stops the daemon at points of its nf_tables
	// netlink traffic.
	daemonBin, wrapDir, nlstopBin string
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "vpcnat-test-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := func() int {
		defer os.RemoveAll(dir)
		daemonBin = filepath.Join(dir, "vpcnat-daemon")
		wrapDir = filepath.Join(dir, "wrap")
		wrapBin := filepath.Join(dir, "iptwrap")
		nlstopBin = filepath.Join(dir, "nlstop")
		for _, b := range [][2]string{{daemonBin, "./daemon"}, {wrapBin, "./test/reliability/iptwrap"}, {nlstopBin, "./test/reliability/nlstop"}} {
			cmd := exec.Command("go", "build", "-o", b[0], b[1])
			cmd.Dir = filepath.Join("..", "..")
			if out, err := cmd.CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "building %s: %v\n%s", b[1], err, out)
				return 1
			}
		}
		if err := os.Mkdir(wrapDir, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		for _, name := range []string{"iptables-save", "iptables-restore"} {
			if err := os.Symlink(wrapBin, filepath.Join(wrapDir, name)); err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}
