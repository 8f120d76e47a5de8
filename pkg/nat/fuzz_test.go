package nat_test

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/pkg/annotations"

	"github.com/vpcnat/vpcnat/pkg/nat"
	"github.com/vpcnat/vpcnat/pkg/nat/nattest"
)

// Fuzz targets of the renderer. Their input is a desired-state annotation: whatever
// annotations.ParseDesired accepts (validated input) must render to rules that are canonical,
// consistent and, in FuzzRenderKernel, accepted by the real iptables-restore (nf_tables) in a
// throwaway network namespace and read back unchanged. Seeds are in testdata/fuzz/<FuzzName>/.

// checkRender checks what nat.Render makes of a validated document without a kernel, and returns it.
func checkRender(t *testing.T, d *annotations.Desired) *nat.Ruleset {
	t.Helper()
	rs := nat.Render(d)
	if again := nat.Render(d); !reflect.DeepEqual(rs, again) {
		t.Fatal("Render is not deterministic")
	}
	// Input order does not matter.
	rev := *d
	rev.Subnets, rev.FloatingIPs = slices.Clone(d.Subnets), slices.Clone(d.FloatingIPs)
	rev.DNATs, rev.SNATs = slices.Clone(d.DNATs), slices.Clone(d.SNATs)
	slices.Reverse(rev.Subnets)
	slices.Reverse(rev.FloatingIPs)
	slices.Reverse(rev.DNATs)
	slices.Reverse(rev.SNATs)
	if got := nat.Render(&rev); !reflect.DeepEqual(rs, got) {
		t.Fatal("Render depends on the order of the rule lists")
	}
	seen := map[string]bool{}
	for _, c := range rs.Chains {
		if seen[c.Name] {
			t.Fatalf("chain %s rendered twice", c.Name)
		}
		seen[c.Name] = true
		if !nat.Owned(c.Name) || len(c.Name) > nat.MaxChainName {
			t.Fatalf("chain name %q is not one of ours or longer than %d", c.Name, nat.MaxChainName)
		}
	}
	for _, c := range rs.Chains {
		for _, text := range c.Rules {
			r, err := nat.ParseRule(text)
			if err != nil {
				t.Fatalf("%s: rule %q is not in canonical iptables-save form: %v", c.Name, text, err)
			}
			if r.String() != text {
				t.Fatalf("%s: rule %q reads back as %q", c.Name, text, r.String())
			}
			if target := nat.JumpTarget(text); !nattest.IsTarget(target) && !seen[target] {
				t.Fatalf("%s: rule %q jumps to a chain that is not rendered", c.Name, text)
			}
		}
	}
	// nat.Render -> Save -> nat.ParseSave gives back the same rule set, and the plan applied to a fresh
	// table (this package's fake of the kernel) gives that table, after which nothing is left
	// to do.
	want := nattest.Applied(rs)
	back, err := nat.ParseSave(nattest.Save(want))
	if err != nil {
		t.Fatalf("ParseSave of the rendered rules: %v", err)
	}
	if diff := tableDiff(want, back); diff != "" {
		t.Fatalf("Save/nat.ParseSave changed the rules: %s", diff)
	}
	tb := nat.NewTable()
	if err := nattest.Restore(tb, nat.FullPlan(rs, nil).RestoreInput()); err != nil {
		t.Fatalf("the plan for a fresh table does not restore: %v", err)
	}
	if diff := tableDiff(want, tb); diff != "" {
		t.Fatalf("the restored table differs from the rendered rules: %s", diff)
	}
	if p := nat.FullPlan(rs, tb); !p.Empty() {
		t.Fatalf("a second sync is not empty: %v", p.Summary())
	}
	return rs
}

// tableDiff describes the first difference between two tables' chains, "" if none (a nil and an
// empty rule list are the same).
func tableDiff(a, b *nat.Table) string {
	names := map[string]bool{}
	for n := range a.Chains {
		names[n] = true
	}
	for n := range b.Chains {
		names[n] = true
	}
	sorted := make([]string, 0, len(names))
	for n := range names {
		sorted = append(sorted, n)
	}
	slices.Sort(sorted)
	for _, n := range sorted {
		ra, oka := a.Chains[n]
		rb, okb := b.Chains[n]
		if oka != okb {
			return fmt.Sprintf("chain %s present %v / %v", n, oka, okb)
		}
		if !slices.Equal(ra, rb) {
			return fmt.Sprintf("chain %s:\n%q\n%q", n, ra, rb)
		}
	}
	return ""
}

// FuzzRender: for every document ParseDesired accepts, nat.Render is deterministic and
// order-independent, emits only owned chains with canonical rules and no dangling jump, and
// nat.Render -> Save -> nat.ParseSave and nat.Render -> plan -> restore both give back the same rule set.
func FuzzRender(f *testing.F) {
	for _, d := range []*annotations.Desired{nat.SeedDesired(), nat.RichDesired()} {
		s, err := annotations.Marshal(d)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		d, err := annotations.ParseDesired(doc)
		if err != nil {
			return // only validated input is the renderer's
		}
		checkRender(t, d)
	})
}

// FuzzParseSave: nat.ParseSave never panics, and what it reads Save prints back to text it reads
// identically.
func FuzzParseSave(f *testing.F) {
	f.Add([]byte(seedSave))
	f.Add(nattest.Save(nattest.Applied(nat.Render(nat.RichDesired()))))
	f.Fuzz(func(t *testing.T, data []byte) {
		tb, err := nat.ParseSave(data)
		if err != nil {
			return
		}
		again, err := nat.ParseSave(nattest.Save(tb))
		if err != nil {
			t.Fatalf("ParseSave refuses Save's output: %v\n%s", err, nattest.Save(tb))
		}
		if diff := tableDiff(tb, again); diff != "" {
			t.Fatalf("Save/nat.ParseSave changed the table: %s", diff)
		}
		if !bytes.Equal(nattest.Save(again), nattest.Save(tb)) {
			t.Fatalf("Save is not stable:\n%s\n%s", nattest.Save(tb), nattest.Save(again))
		}
	})
}

// rulesBase is the valid gateway the structured targets add rules to: two subnets, a VPC router
// with 172.16.0.0/12 behind it, 16 EIPs.
func rulesBase() *annotations.Desired {
	d := &annotations.Desired{
		Version: annotations.Version, Gateway: "fuzz", Generation: 1,
		External: annotations.ExternalNIC{IfName: "net1", Master: "eth1", Mode: "bridge", MAC: "02:c8:ca:97:ff:41"},
		Subnets: []annotations.SubnetNIC{
			{Subnet: "sn", IfName: "vpc-2010c9e0d4e", CIDR: "10.0.1.0/24", Addresses: []string{"10.0.1.1/24", "10.0.1.254/24"},
				IP: "10.0.1.254", Attachment: annotations.Attachment{Type: annotations.AttachBridge, Bridge: "br-sn", HostIfName: "vnat994b11266d6"}},
			{Subnet: "big", IfName: "vpc-aaaaaaaaaaa", CIDR: "10.1.0.0/16", Addresses: []string{"10.1.0.1/16"},
				IP: "10.1.0.1", Attachment: annotations.Attachment{Type: annotations.AttachMacvlan, Master: "eth2"}},
		},
		Routes: []annotations.Route{
			{Policy: annotations.PolicyDst, CIDR: "0.0.0.0/0", NextHopIP: "10.0.1.254"},
			{Policy: annotations.PolicyDst, CIDR: "172.16.0.0/12", NextHopIP: "10.0.1.100"},
		},
	}
	for i := 1; i <= 16; i++ {
		d.EIPs = append(d.EIPs, annotations.EIP{EipCIDR: fmt.Sprintf("198.51.100.%d/24", i), Gateway: "198.51.100.254"})
	}
	return d
}

// rulesFrom turns fuzz bytes into a valid desired state: rulesBase plus one rule per 6 bytes (a
// FIP, a port forward or a SNAT, on one of the 16 EIPs, to an address in a subnet or behind the
// router), each kept only if the document stays valid, so every input is validated input.
func rulesFrom(data []byte) *annotations.Desired {
	d := rulesBase()
	addr := func(sel, a, b, c byte) string {
		switch sel % 3 {
		case 0:
			return fmt.Sprintf("10.0.1.%d", a)
		case 1:
			return fmt.Sprintf("10.1.%d.%d", a, b)
		}
		return fmt.Sprintf("172.%d.%d.%d", 16+c%16, a, b)
	}
	for i := 0; i+6 <= len(data) && i < 6*64; i += 6 {
		b := data[i : i+6]
		eip := fmt.Sprintf("198.51.100.%d", 1+b[1]%16)
		next := *d
		switch b[0] % 3 {
		case 0:
			next.FloatingIPs = append(slices.Clone(d.FloatingIPs), annotations.FloatingIP{EIP: eip, InternalIP: addr(b[2], b[3], b[4], b[5])})
		case 1:
			proto := "tcp"
			if b[5]&1 == 1 {
				proto = "udp"
			}
			next.DNATs = append(slices.Clone(d.DNATs), annotations.DNAT{EIP: eip, Protocol: proto, ExternalPort: int(b[3])<<8 | int(b[4]),
				InternalIP: addr(b[2], b[3], b[4], b[5]), InternalPort: 1 + int(b[5])<<4 | int(b[4])})
		case 2:
			ip := netip.MustParseAddr(addr(b[2], b[3], b[4], b[5]))
			p := netip.PrefixFrom(ip, int(b[5]%33)).Masked()
			next.SNATs = append(slices.Clone(d.SNATs), annotations.SNAT{EIP: eip, InternalCIDR: p.String()})
		}
		if len(annotations.ValidateDesired(&next)) == 0 {
			*d = next
		}
	}
	return d
}

// FuzzRenderRules is FuzzRender on structured input: every input is a valid gateway with up to
// 64 rules of every kind (rulesFrom), which reaches the renderer's grouping and ordering code far
// more often than mutated JSON does.
func FuzzRenderRules(f *testing.F) {
	f.Add([]byte{0, 0, 0, 5, 0, 0, 1, 1, 0, 0x22, 0xb8, 0, 2, 1, 0, 0, 0, 24})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := rulesFrom(data)
		if errs := annotations.ValidateDesired(d); len(errs) > 0 {
			t.Fatalf("rulesFrom made an invalid document: %v", errs.ToAggregate())
		}
		checkRender(t, d)
	})
}

// FuzzRenderKernel: for every valid gateway (rulesFrom: up to 64 FIPs, port forwards and SNATs),
// the rendered transaction is accepted by the real `iptables-restore --noflush --test`
// (nf_tables) and then applied for real in a throwaway network namespace; the kernel's
// iptables-save, read with nat.ParseSave, holds exactly the rendered chains (text for text) and both
// hooks once, so a second sync plans nothing. Root only (it creates a network namespace); each
// worker process makes one namespace, reset before every input. Nothing runs in the host's
// namespace: the namespace is checked before first use.
func FuzzRenderKernel(f *testing.F) {
	f.Add([]byte{0, 0, 0, 5, 0, 0, 1, 1, 0, 0x22, 0xb8, 0, 2, 1, 0, 0, 0, 24})
	f.Fuzz(func(t *testing.T, data []byte) {
		d := rulesFrom(data)
		rs := checkRender(t, d)
		ns := throwawayNetns(t)
		if out, err := ns.run([]byte("*nat\nCOMMIT\n"), "iptables-restore"); err != nil {
			t.Fatalf("resetting the nat table: %v: %s", err, out)
		}
		input := nat.FullPlan(rs, nil).RestoreInput()
		if out, err := ns.run(input, "iptables-restore", "--noflush", "--test"); err != nil {
			t.Fatalf("iptables-restore --test refuses the rendered rules: %v: %s\n%s", err, out, input)
		}
		if out, err := ns.run(input, "iptables-restore", "--noflush"); err != nil {
			t.Fatalf("iptables-restore refuses the rendered rules: %v: %s\n%s", err, out, input)
		}
		save, err := ns.run(nil, "iptables-save", "-t", "nat")
		if err != nil {
			t.Fatalf("iptables-save: %v: %s", err, save)
		}
		have, err := nat.ParseSave(save)
		if err != nil {
			t.Fatalf("ParseSave of the kernel's dump: %v\n%s", err, save)
		}
		if diff := tableDiff(nattest.Applied(rs), have); diff != "" {
			t.Fatalf("the kernel holds other rules than rendered: %s\ninput:\n%s", diff, input)
		}
		if p := nat.FullPlan(rs, have); !p.Empty() {
			t.Fatalf("a second sync against the kernel is not empty: %v", p.Summary())
		}
	})
}

// TestRenderKernelCanFail: the kernel check of FuzzRenderKernel refuses what the kernel refuses
// (a jump to a chain that does not exist, a port out of range), so its passes mean something.
func TestRenderKernelCanFail(t *testing.T) {
	ns := throwawayNetns(t)
	for _, bad := range []string{
		"*nat\n:DNAT_FILTER - [0:0]\n-A DNAT_FILTER -j NOPE\nCOMMIT\n",
		"*nat\n:DNAT_FILTER - [0:0]\n-A DNAT_FILTER -p tcp -m tcp --dport 70000 -j DNAT --to-destination 10.0.1.1:80\nCOMMIT\n",
	} {
		if out, err := ns.run([]byte(bad), "iptables-restore", "--noflush"); err == nil {
			t.Errorf("iptables-restore accepted %q: %s", bad, out)
		}
	}
}

// netnsRunner runs commands in a network namespace of its own, from one OS thread that entered
// it and never leaves (the thread dies with the worker process, and the namespace with it).
type netnsRunner struct {
	reqs chan netnsReq
	err  error
}

type netnsReq struct {
	stdin []byte
	argv  []string
	done  chan netnsResp
}

type netnsResp struct {
	out []byte
	err error
}

var (
	netnsOnce sync.Once
	netnsRun  *netnsRunner
)

// throwawayNetns returns this process's throwaway network namespace, creating it on first use;
// it skips the test when not root.
func throwawayNetns(t *testing.T) *netnsRunner {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: not root; iptables-restore needs a network namespace of its own, which only root can create")
	}
	if _, err := exec.LookPath("iptables-restore"); err != nil {
		t.Fatalf("iptables-restore is not installed (hack/install-deps.sh installs it): %v", err)
	}
	netnsOnce.Do(func() { netnsRun = startNetns() })
	if netnsRun.err != nil {
		t.Fatalf("throwaway network namespace: %v", netnsRun.err)
	}
	return netnsRun
}

func startNetns() *netnsRunner {
	r := &netnsRunner{reqs: make(chan netnsReq)}
	ready := make(chan error)
	go func() {
		// Never unlocked: when this goroutine returns the runtime ends the thread, so no other
		// goroutine ever runs in the namespace.
		runtime.LockOSThread()
		host, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			ready <- fmt.Errorf("reading the process's network namespace: %w", err)
			return
		}
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		mine, err := os.Readlink(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
		if err != nil || mine == host {
			ready <- fmt.Errorf("the thread's namespace %q is the process's %q (%v)", mine, host, err)
			return
		}
		// A child started from this thread must be in the new namespace, not the host's.
		out, err := exec.Command("readlink", "/proc/self/ns/net").Output()
		if got := strings.TrimSpace(string(out)); err != nil || got != mine {
			ready <- fmt.Errorf("a child of the namespaced thread runs in %q, not %q (%v)", got, mine, err)
			return
		}
		ready <- nil
		for req := range r.reqs {
			cmd := exec.Command(req.argv[0], req.argv[1:]...)
			cmd.Stdin = bytes.NewReader(req.stdin)
			out, err := cmd.CombinedOutput()
			req.done <- netnsResp{out: out, err: err}
		}
	}()
	r.err = <-ready
	return r
}

// run runs argv (no shell) in the namespace with stdin, returning its combined output.
func (r *netnsRunner) run(stdin []byte, argv ...string) ([]byte, error) {
	done := make(chan netnsResp, 1)
	r.reqs <- netnsReq{stdin: stdin, argv: argv, done: done}
	resp := <-done
	if resp.err != nil {
		return resp.out, fmt.Errorf("%s: %w", strings.Join(argv, " "), resp.err)
	}
	return resp.out, nil
}

// TestFuzzSeedsAreValid: the checked-in seeds of the render targets are mostly documents
// ParseDesired accepts (the renderer only sees those), so a fuzz run starts from real gateways.
func TestFuzzSeedsAreValid(t *testing.T) {
	for _, target := range []string{"FuzzRender"} {
		dir := "testdata/fuzz/" + target
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		valid := 0
		for _, e := range entries {
			b, err := os.ReadFile(dir + "/" + e.Name())
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.SplitN(string(b), "\n", 3)
			if len(lines) < 2 {
				t.Fatalf("%s/%s: not a fuzz seed", dir, e.Name())
			}
			doc, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(lines[1], "string("), ")"))
			if err != nil {
				t.Fatalf("%s/%s: %v", dir, e.Name(), err)
			}
			if _, err := annotations.ParseDesired(doc); err == nil {
				valid++
			}
		}
		if valid < 4 {
			t.Errorf("%s: %d valid seeds, want at least 4", target, valid)
		}
	}
}
