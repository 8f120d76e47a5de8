package netconf

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/vpcnat/vpcnat/pkg/annotations"
)

// Roles of the namespaces a kernel test builds (see the address plan in fixtures_test.go).
const (
	roleNode = "node"
	roleExt  = "ext"
	roleGW   = "gw"
	rolePod  = "pod"
)

var topoSeq atomic.Int32

// topo is one test's namespaces, named vnc<pid>-<n>-<role> so parallel runs and leftovers of a
// killed run never collide with each other or with anything else on the machine.
type topo struct {
	t      testing.TB
	prefix string
	roles  []string
}

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: needs root to create network namespaces")
	}
}

// newTopo builds node (eth1, br-sn), ext (ext0 192.168.0.254/24, peer of eth1) and an empty
// gateway netns, and removes them all when the test ends, failed or not.
func newTopo(t testing.TB) *topo {
	t.Helper()
	requireRoot(t)
	tp := &topo{t: t, prefix: fmt.Sprintf("vnc%d-%d", os.Getpid(), topoSeq.Add(1))}
	t.Cleanup(tp.close)
	tp.addNS(roleNode)
	tp.addNS(roleExt)
	tp.addNS(roleGW)
	tp.ip(roleNode, "link", "add", "eth1", "type", "veth", "peer", "name", "ext0", "netns", tp.name(roleExt))
	tp.ip(roleNode, "link", "set", "eth1", "up")
	tp.ip(roleExt, "link", "set", "ext0", "up")
	tp.ip(roleExt, "addr", "add", "192.168.0.254/24", "dev", "ext0")
	tp.ip(roleNode, "link", "add", "br-sn", "type", "bridge")
	tp.ip(roleNode, "link", "set", "br-sn", "up")
	return tp
}

func (tp *topo) name(role string) string { return tp.prefix + "-" + role }
func (tp *topo) path(role string) string { return "/run/netns/" + tp.name(role) }

// addNS creates a netns with lo up. IPv6 DAD is off so link-local addresses are never
// "tentative" in one dump and final in the next.
func (tp *topo) addNS(role string) {
	tp.t.Helper()
	tp.must("ip", "netns", "add", tp.name(role))
	tp.roles = append(tp.roles, role)
	tp.ip(role, "link", "set", "lo", "up")
	tp.exec(role, "sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0")
}

func (tp *topo) delNS(role string) {
	tp.t.Helper()
	tp.must("ip", "netns", "del", tp.name(role))
	for i, r := range tp.roles {
		if r == role {
			tp.roles = append(tp.roles[:i], tp.roles[i+1:]...)
			break
		}
	}
}

func (tp *topo) close() {
	for i := len(tp.roles) - 1; i >= 0; i-- {
		if out, err := exec.Command("ip", "netns", "del", tp.name(tp.roles[i])).CombinedOutput(); err != nil {
			tp.t.Errorf("cleanup of netns %s: %v: %s", tp.name(tp.roles[i]), err, out)
		}
	}
	tp.roles = nil
}

// addPod puts a pod netns on br-sn with addr (10.0.1.5/24) and a default route via gw.
func (tp *topo) addPod(role, addr, gw string) {
	tp.t.Helper()
	tp.addNS(role)
	tp.ip(roleNode, "link", "add", "vp-"+role, "type", "veth", "peer", "name", "eth0", "netns", tp.name(role))
	tp.ip(roleNode, "link", "set", "vp-"+role, "master", "br-sn", "up")
	tp.ip(role, "addr", "add", addr, "dev", "eth0")
	tp.ip(role, "link", "set", "eth0", "up")
	tp.ip(role, "route", "add", "default", "via", gw)
}

func (tp *topo) must(argv ...string) string {
	tp.t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// ip runs `ip -n <ns> args...`.
func (tp *topo) ip(role string, args ...string) string {
	tp.t.Helper()
	return tp.must(append([]string{"ip", "-n", tp.name(role)}, args...)...)
}

// exec runs argv inside a role's netns.
func (tp *topo) exec(role string, argv ...string) string {
	tp.t.Helper()
	return tp.must(append([]string{"ip", "netns", "exec", tp.name(role)}, argv...)...)
}

// do runs fn on a thread locked into a role's netns.
func (tp *topo) do(role string, fn func() error) error {
	n, err := ns.GetNS(tp.path(role))
	if err != nil {
		return err
	}
	defer n.Close()
	return n.Do(func(ns.NetNS) error { return fn() })
}

// converge runs g.Converge from the node netns, as the daemon runs it from the host's.
func (tp *topo) converge(g *Gateway, d *annotations.Desired, full bool) (*Report, error) {
	var rep *Report
	err := tp.do(roleNode, func() error {
		var err error
		rep, err = g.Converge(context.Background(), d, full)
		return err
	})
	return rep, err
}

// mustConverge is converge that fails the test on error.
func (tp *topo) mustConverge(g *Gateway, d *annotations.Desired, full bool) *Report {
	tp.t.Helper()
	rep, err := tp.converge(g, d, full)
	if err != nil {
		tp.t.Fatalf("converge (full=%v): %v", full, err)
	}
	return rep
}

// gateway returns a Gateway on the test's gateway netns, closed at the end of the test.
func (tp *topo) gateway() *Gateway {
	g := NewGateway(tp.path(roleGW))
	tp.t.Cleanup(g.Close)
	return g
}

var (
	counters = regexp.MustCompile(`\[\d+:\d+\]`)
	// Carrier and operational state follow the kernel's link watch (up to a second late, e.g. a
	// bridge turns UP after its first port joined), not anything a converge does: the admin UP
	// flag stays in the dump, these do not.
	operState = regexp.MustCompile(`,LOWER_UP|,NO-CARRIER| state [A-Z]+`)
)

// natSave is `iptables-save -t nat` of a role without comments and counters.
func (tp *topo) natSave(role string) string {
	tp.t.Helper()
	var b strings.Builder
	for _, l := range strings.Split(tp.exec(role, "iptables-save", "-t", "nat"), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			b.WriteString(counters.ReplaceAllString(l, "[0:0]") + "\n")
		}
	}
	return b.String()
}

// dump is everything a converge may touch in the gateway netns, and the node's links.
func (tp *topo) dump() string {
	tp.t.Helper()
	var b strings.Builder
	for _, args := range [][]string{
		{"-d", "link", "show"}, {"addr", "show"}, {"route", "show", "table", "all"}, {"rule", "show"},
	} {
		b.WriteString("## ip " + strings.Join(args, " ") + "\n" + operState.ReplaceAllString(tp.ip(roleGW, args...), ""))
	}
	b.WriteString("## nat\n" + tp.natSave(roleGW))
	b.WriteString("## sysctl\n" + tp.exec(roleGW, "sysctl", "net.ipv4.ip_forward", "net.ipv4.conf.all.rp_filter"))
	// Not -d on the node: bridge details include running timers.
	b.WriteString("## node links\n" + operState.ReplaceAllString(tp.ip(roleNode, "link", "show"), ""))
	return b.String()
}

// addrs lists the IPv4 addresses of a link, space separated, in kernel order.
func (tp *topo) addrs(role, dev string) string {
	tp.t.Helper()
	var out []string
	for _, l := range strings.Split(tp.ip(role, "-4", "-o", "addr", "show", "dev", dev), "\n") {
		f := strings.Fields(l)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				out = append(out, f[i+1])
			}
		}
	}
	return strings.Join(out, " ")
}

func (tp *topo) sysctl(role, key string) string {
	tp.t.Helper()
	return strings.TrimSpace(tp.exec(role, "sysctl", "-n", key))
}

// lineDiff describes how two dumps differ, line by line.
func lineDiff(before, after string) string {
	count := map[string]int{}
	for _, l := range strings.Split(before, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(after, "\n") {
		count[l]--
	}
	var b strings.Builder
	for l, n := range count {
		switch {
		case n > 0:
			fmt.Fprintf(&b, "- %s\n", l)
		case n < 0:
			fmt.Fprintf(&b, "+ %s\n", l)
		}
	}
	return b.String()
}

// requireLines fails unless every line of want occurs (trimmed) in got.
func requireLines(t *testing.T, what, got string, want ...string) {
	t.Helper()
	have := map[string]bool{}
	for _, l := range strings.Split(got, "\n") {
		have[strings.TrimSpace(l)] = true
	}
	for _, w := range want {
		if !have[w] {
			t.Errorf("%s: missing line %q in:\n%s", what, w, got)
		}
	}
}

// requireNoLine fails if any line of got contains one of the substrings.
func requireNoLine(t *testing.T, what, got string, subs ...string) {
	t.Helper()
	for _, l := range strings.Split(got, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				t.Errorf("%s: unexpected line %q", what, l)
			}
		}
	}
}

// hasChange reports whether a report holds a line containing sub.
func hasChange(rep *Report, sub string) bool {
	for _, c := range rep.Changes {
		if strings.Contains(c, sub) {
			return true
		}
	}
	return false
}
