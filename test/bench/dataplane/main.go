// Command vpcnat-dataplane-bench measures the two NAT backends side by side in one run, on the
// same rules and the same kind of topology (test/topo's seed): iptables (iptables-restore) and
// nftables (one netlink batch through google/nftables, in-process). For each size it reports the
// first converge, an in-sync resync (read-back, nothing to change), a one-DNAT and a one-SNAT
// change on the fast path (median), new TCP connections/s through a DNAT, and the ratio
// iptables/nftables of each figure. It also times the path sigs.k8s.io/knftables takes for the
// same one-element change and read-back (`nft -f -` and `nft list`, exec'd in the netns), which
// is that library's floor: knftables renders the same text in Go and execs nft.
//
// A benchmark, not a test: it asserts nothing beyond "every converge succeeded and a resync in
// sync changed nothing", and reports what it measured on this machine in this run.
//
// Address plan: test/topo's seed topology; extra EIPs 192.168.0.1-.210 (not .50 or .254, which
// the client and the router hold), internal IPs in 10.0.1.0/24, SNAT prefixes in 10.0.0.0/8.
// Run from the repository root (it reads examples/seed.yaml), as root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/pkg/netconf"
	"github.com/vpcnat/vpcnat/pkg/nft"
	"github.com/vpcnat/vpcnat/pkg/plan"
	"github.com/vpcnat/vpcnat/test/topo"
)

func main() {
	sizes := flag.String("sizes", "1,10000", "rule counts to measure")
	changes := flag.Int("changes", 20, "one-rule changes measured per size and backend (median reported)")
	connTime := flag.Duration("conn-time", time.Second, "how long each connection-rate run lasts")
	entries := flag.Int("conntrack", 0, "conntrack entries planted in the gateway netns after the first converge (flows the converges keep), so resyncs and changes meet a populated table")
	backends := flag.String("backends", "iptables,nftables", "backends to measure, in this order")
	cpuProfile := flag.String("cpuprofile", "", "write CPU profiles of the one-rule changes to files named <this>-<rules>-<backend>-<dnat|snat>.pprof")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "vpcnat-dataplane-bench: needs root (it creates network namespaces)")
		os.Exit(2)
	}
	var ns []int
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "vpcnat-dataplane-bench: --sizes: %q is not a positive rule count\n", f)
			os.Exit(2)
		}
		ns = append(ns, n)
	}
	var planes []string
	for _, p := range strings.Split(*backends, ",") {
		if p != annotations.DataplaneIPTables && p != annotations.DataplaneNFTables {
			fmt.Fprintf(os.Stderr, "vpcnat-dataplane-bench: --backends: %q is neither iptables nor nftables\n", p)
			os.Exit(2)
		}
		planes = append(planes, p)
	}
	if *entries < 0 || *entries > 65000 {
		fmt.Fprintf(os.Stderr, "vpcnat-dataplane-bench: --conntrack: %d is not 0-65000\n", *entries)
		os.Exit(2)
	}
	b := bench{changes: *changes, connTime: *connTime, profile: *cpuProfile, entries: *entries}
	var rows []row
	for _, n := range ns {
		for _, plane := range planes {
			r, err := b.measure(n, plane)
			if err != nil {
				fmt.Fprintf(os.Stderr, "vpcnat-dataplane-bench: %s, %d rules: %v\n", plane, n, err)
				os.Exit(1)
			}
			rows = append(rows, r)
		}
	}
	print(rows, b.entries)
}

type bench struct {
	changes  int
	connTime time.Duration
	// entries is the number of conntrack entries planted before the resync and the changes.
	entries int
	// profile, when set, is the prefix of the files that receive a CPU profile of each series
	// of one-rule changes.
	profile string
}

// row is one backend at one size.
type row struct {
	n, rules      int
	plane         string
	first, resync time.Duration
	dnatChange    time.Duration
	snatChange    time.Duration
	// The NAT step alone (Report.NATTime) of the same converges.
	natFirst, natResync, natDNAT, natSNAT time.Duration
	// slabKB is the growth of the kernel's unreclaimable slab memory over the first converge
	// (machine-wide: other work on the machine shows in it too).
	slabKB int
	// nftables only: a resync after a commit to a foreign table, which forces the read-back
	// the unchanged generation lets an in-sync resync skip.
	readback, natReadback time.Duration
	connRate              float64
	execChange            time.Duration // nftables only: the same element change through `nft -f -`
	execList              time.Duration // nftables only: `nft list table` of the whole table
	nftElements, nftC     int
}

// desired is the seed gateway (examples/seed.yaml, the probe DNAT 192.168.0.112:8888/tcp ->
// pod2:80 first) grown to n rules over 200 EIPs: 10 % SNAT, up to 40 FIPs, the rest DNAT.
func desired(n int, plane string) (*annotations.Desired, error) {
	in, err := plan.LoadFile("examples/seed.yaml")
	if err != nil {
		return nil, err
	}
	in.Config.NIC = "eth1"
	in.Config.Dataplane = plane
	_, d, errs := plan.Build(in)
	if len(errs) > 0 {
		return nil, errs.ToAggregate()
	}
	fips, snats := min(n/10, 40), n/10
	dnats := n - fips - snats
	d.FloatingIPs, d.SNATs = d.FloatingIPs[:0], d.SNATs[:0]
	d.DNATs = d.DNATs[:min(1, dnats)]
	have := map[string]bool{}
	for _, e := range d.EIPs {
		have[strings.Split(e.EipCIDR, "/")[0]] = true
	}
	var free []string
	for i := 1; len(d.EIPs) < 200; i++ {
		eip := "192.168.0." + strconv.Itoa(i)
		if i == 50 || have[eip] {
			continue
		}
		d.EIPs = append(d.EIPs, annotations.EIP{EipCIDR: eip + "/24", Gateway: topo.RouterIP})
		if len(d.FloatingIPs) < fips {
			d.FloatingIPs = append(d.FloatingIPs, annotations.FloatingIP{EIP: eip, InternalIP: "10.0.1." + strconv.Itoa(150+len(d.FloatingIPs))})
			continue
		}
		free = append(free, eip)
	}
	free = append(free, "192.168.0.112")
	for k := 1; k < dnats; k++ {
		d.DNATs = append(d.DNATs, annotations.DNAT{EIP: free[k%len(free)], Protocol: "tcp", ExternalPort: 10000 + k/len(free),
			InternalIP: "10.0.1." + strconv.Itoa(2+k%100), InternalPort: 80})
	}
	for i := range snats {
		cidr := "10.0.1.0/24"
		if i > 0 {
			cidr = fmt.Sprintf("10.%d.%d.0/24", 1+i/256, i%256)
		}
		d.SNATs = append(d.SNATs, annotations.SNAT{EIP: free[i%len(free)], InternalCIDR: cidr})
	}
	// Past 10 000 rules the API's own limits (items per list) refuse the document: this
	// measures what the backends do with more than one VpcNatGateway can carry, so only those
	// errors are let through.
	errs = annotations.ValidateDesired(d).Filter(func(err error) bool {
		var fe *field.Error
		return errors.As(err, &fe) && fe.Type == field.ErrorTypeTooMany
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("generated desired state invalid: %w", errs.ToAggregate())
	}
	return d, nil
}

// converge times one converge from the simulated node; the report holds the NAT step's time.
func converge(t *topo.Topology, gw *netconf.Gateway, d *annotations.Desired, full bool) (time.Duration, *netconf.Report, error) {
	var rep *netconf.Report
	var took time.Duration
	err := t.Do(topo.Node, func() error {
		start := time.Now()
		var err error
		rep, err = gw.Converge(context.Background(), d, full)
		took = time.Since(start)
		return err
	})
	return took, rep, err
}

func (b *bench) measure(n int, plane string) (row, error) {
	r := row{n: n, plane: plane}
	d, err := desired(n, plane)
	if err != nil {
		return r, err
	}
	r.rules = len(d.FloatingIPs) + len(d.DNATs) + len(d.SNATs)
	t, err := topo.NewSeed(topo.NewPrefix())
	if err != nil {
		return r, err
	}
	defer t.Close()
	gw := netconf.NewGateway(t.Path(topo.Gateway))
	defer gw.Close()
	var rep *netconf.Report
	slab0, err := slabUnreclaimable()
	if err != nil {
		return r, err
	}
	if r.first, rep, err = converge(t, gw, d, true); err != nil {
		return r, fmt.Errorf("first converge: %w", err)
	}
	slab1, err := slabUnreclaimable()
	if err != nil {
		return r, err
	}
	r.slabKB = slab1 - slab0
	r.natFirst = rep.NATTime
	if err := plantFlows(t, b.entries); err != nil {
		return r, err
	}
	if r.resync, rep, err = converge(t, gw, d, true); err != nil {
		return r, err
	} else if len(rep.Changes) != 0 {
		return r, fmt.Errorf("in-sync resync made changes: %q", rep.Changes)
	}
	r.natResync = rep.NATTime
	if len(d.DNATs) > 1 {
		if r.dnatChange, r.natDNAT, err = b.changesOf(t, gw, d, fmt.Sprintf("%d-%s-dnat", n, plane), func(i int) { d.DNATs[len(d.DNATs)/2].InternalPort = 1000 + i }); err != nil {
			return r, err
		}
	}
	if len(d.SNATs) > 2 {
		m := len(d.SNATs) / 2
		if r.snatChange, r.natSNAT, err = b.changesOf(t, gw, d, fmt.Sprintf("%d-%s-snat", n, plane), func(i int) { d.SNATs[m].EIP = d.SNATs[m+1+i%2].EIP }); err != nil {
			return r, err
		}
	}
	if r.connRate, err = b.connRate(t); err != nil {
		return r, err
	}
	if plane == annotations.DataplaneNFTables {
		if err := nftExec(t, "", "add", "table", "ip", "foreign"); err != nil {
			return r, err
		}
		if r.readback, rep, err = converge(t, gw, d, true); err != nil {
			return r, err
		} else if len(rep.Changes) != 0 {
			return r, fmt.Errorf("resync after a foreign commit made changes: %q", rep.Changes)
		}
		r.natReadback = rep.NATTime
		tb := nft.Build(d)
		r.nftC = len(tb.Chains)
		for _, m := range tb.Maps {
			r.nftElements += len(m.Elements)
		}
		if r.execChange, r.execList, err = b.execPath(t, d); err != nil {
			return r, err
		}
		// The exec'd changes left the kernel where the model says: repair, so the run ends clean.
		if _, _, err := converge(t, gw, d, true); err != nil {
			return r, err
		}
	}
	return r, nil
}

// changesOf applies b.changes successive one-rule edits on the fast path; median times of the
// converge and of its NAT step.
func (b *bench) changesOf(t *topo.Topology, gw *netconf.Gateway, d *annotations.Desired, name string, edit func(i int)) (time.Duration, time.Duration, error) {
	var times, nat []time.Duration
	if b.profile != "" {
		f, err := os.Create(b.profile + "-" + name + ".pprof")
		if err != nil {
			return 0, 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, 0, err
		}
		defer pprof.StopCPUProfile()
	}
	for i := range b.changes {
		edit(i)
		took, rep, err := converge(t, gw, d, false)
		if err != nil {
			return 0, 0, err
		}
		if len(rep.Changes) == 0 {
			return 0, 0, fmt.Errorf("one-rule change %d changed nothing", i)
		}
		times, nat = append(times, took), append(nat, rep.NATTime)
	}
	return median(times), median(nat), nil
}

// execPath times what sigs.k8s.io/knftables does for the same work: exec `nft -f -` with a
// one-element change (delete and re-add one port forward), and `nft list table` for a read-back.
func (b bench) execPath(t *topo.Topology, d *annotations.Desired) (change, list time.Duration, err error) {
	e := d.DNATs[len(d.DNATs)/2]
	var changes, lists []time.Duration
	for i := range b.changes {
		key := fmt.Sprintf("%s . tcp . %d", e.EIP, e.ExternalPort)
		tx := fmt.Sprintf("delete element ip %s %s { %s }\nadd element ip %s %s { %s : %s . %d }\n",
			nft.TableName, nft.MapPortDNAT, key, nft.TableName, nft.MapPortDNAT, key, e.InternalIP, 2000+i)
		start := time.Now()
		if err := nftExec(t, tx, "-f", "-"); err != nil {
			return 0, 0, err
		}
		changes = append(changes, time.Since(start))
		start = time.Now()
		if err := nftExec(t, "", "list", "table", "ip", nft.TableName); err != nil {
			return 0, 0, err
		}
		lists = append(lists, time.Since(start))
	}
	return median(changes), median(lists), nil
}

// nftExec runs nft inside the gateway netns with stdin.
func nftExec(t *topo.Topology, stdin string, args ...string) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", t.Name(topo.Gateway), "nft"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nft %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// connRate opens new TCP connections from the outside client through the probe DNAT to pod2
// for b.connTime and returns connections per second.
func (b bench) connRate(t *topo.Topology) (float64, error) {
	srv, err := t.Listen(topo.Pod2, "tcp", topo.Pod2IP+":80")
	if err != nil {
		return 0, err
	}
	defer srv.Close()
	return t.ConnRate(topo.Client, "192.168.0.112:8888", b.connTime)
}

// plantFlows creates n conntrack entries in the gateway netns: UDP from the outside client to
// an EIP's port 5000, which no rule translates, so every converge keeps them (the sweep never
// judges traffic to the gateway's own addresses on a port without a port forward). They stand
// for the flows of a busy gateway: a converge that must walk the table meets them.
func plantFlows(t *topo.Topology, n int) error {
	if n == 0 {
		return nil
	}
	fd, err := netns.GetFromPath(t.Path(topo.Gateway))
	if err != nil {
		return err
	}
	defer fd.Close()
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_NETFILTER)
	if err != nil {
		return err
	}
	defer h.Close()
	client, eip := net.ParseIP(topo.ClientIP).To4(), net.ParseIP("192.168.0.112").To4()
	for i := range n {
		port := uint16(1024 + i)
		if err := h.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, &netlink.ConntrackFlow{FamilyType: unix.AF_INET, TimeOut: 3600,
			Forward: netlink.IPTuple{SrcIP: client, DstIP: eip, Protocol: unix.IPPROTO_UDP, SrcPort: port, DstPort: 5000},
			Reverse: netlink.IPTuple{SrcIP: eip, DstIP: client, Protocol: unix.IPPROTO_UDP, SrcPort: 5000, DstPort: port}}); err != nil {
			return fmt.Errorf("planting conntrack entry %d: %w", i, err)
		}
	}
	return nil
}

// slabUnreclaimable is SUnreclaim of /proc/meminfo in kB: where nf_tables and xtables keep
// rules, sets and their elements.
func slabUnreclaimable() (int, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "SUnreclaim:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("/proc/meminfo: no SUnreclaim")
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func ms(d time.Duration) string {
	if d == 0 {
		return "—"
	}
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 2, 64) + " ms"
}

func ratio(a, b time.Duration) string {
	if a == 0 || b == 0 {
		return "—"
	}
	return strconv.FormatFloat(float64(a)/float64(b), 'f', 1, 64) + "×"
}

func print(rows []row, entries int) {
	host, _ := os.Hostname()
	fmt.Printf("## NAT backends side by side (%s, %s)\n\n", host, time.Now().UTC().Format(time.RFC3339))
	fmt.Printf("Conntrack entries in the gateway netns during the resyncs and changes: %d.\n\n", entries)
	fmt.Println("Whole converge (NAT step alone in brackets):")
	fmt.Println()
	fmt.Println("| rules | backend | first converge | in-sync resync | one DNAT change | one SNAT change | new conn/s via DNAT | kernel slab growth at first converge |")
	fmt.Println("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
	for _, r := range rows {
		fmt.Printf("| %d | %s | %s (%s) | %s (%s) | %s (%s) | %s (%s) | %.0f | %d kB |\n", r.rules, r.plane, ms(r.first), ms(r.natFirst),
			ms(r.resync), ms(r.natResync), ms(r.dnatChange), ms(r.natDNAT), ms(r.snatChange), ms(r.natSNAT), r.connRate, r.slabKB)
	}
	fmt.Println()
	fmt.Println("Ratios iptables ÷ nftables of the NAT step, and the exec path knftables would take:")
	fmt.Println()
	fmt.Println("| rules | first | resync | DNAT change | SNAT change | nftables map elements | nftables resync with read-back | `nft -f` one-element change | `nft list table` |")
	fmt.Println("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
	for i, b := range rows {
		if b.plane != annotations.DataplaneNFTables {
			continue
		}
		a := row{} // the iptables row of the same size, if measured: no ratio without it
		for _, r := range rows[:i] {
			if r.n == b.n && r.plane == annotations.DataplaneIPTables {
				a = r
			}
		}
		fmt.Printf("| %d | %s | %s | %s | %s | %d | %s (%s) | %s | %s |\n", b.rules, ratio(a.natFirst, b.natFirst), ratio(a.natResync, b.natResync),
			ratio(a.natDNAT, b.natDNAT), ratio(a.natSNAT, b.natSNAT), b.nftElements, ms(b.readback), ms(b.natReadback), ms(b.execChange), ms(b.execList))
	}
}
