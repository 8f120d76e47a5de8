// Command vpcnat-bench is `make bench`: it measures the data plane on the seed topology of
// test/topo and prints a markdown table for the README. It is a benchmark, not a test: it asserts
// nothing, it reports what it measured on this machine in this run, with ratios against
// baselines measured in the same run.
//
// Address plan: test/topo's seed topology; the benchmark's extra EIPs are 192.168.0.1-.210 (not
// .50 or .254, which the client and router hold), internal IPs in 10.0.1.0/24, SNAT prefixes in
// 10.0.0.0/8.
package main

import (
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vpcnat/vpcnat/test/topo"
)

func main() {
	sizes := flag.String("sizes", "100,1000,10000", "rule counts to measure")
	baselineMax := flag.Int("baseline-max", 1000, "largest N for the per-rule iptables baseline (it is slow)")
	connSeconds := flag.Duration("conn-time", 2*time.Second, "how long each connection-rate run lasts")
	changes := flag.Int("changes", 20, "one-rule changes measured per size (median reported)")
	cniRounds := flag.Int("cni-rounds", 30, "CNI ADD/DEL rounds per case (median reported); 0 skips the CNI part")
	cniOnly := flag.Bool("cni-only", false, "measure the CNI chain only (skip the data-plane table)")
	var compare stringList
	flag.Var(&compare, "compare", "another vpcnat binary to measure in the chain in the same rounds, e.g. an older build (repeatable)")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "vpcnat-bench: needs root (it creates network namespaces)")
		os.Exit(2)
	}
	ns, err := parseSizes(*sizes)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-bench:", err)
		os.Exit(2)
	}
	b := bench{baselineMax: *baselineMax, connTime: *connSeconds, changes: *changes, cniRounds: *cniRounds, cniOnly: *cniOnly, compare: compare}
	if err := b.run(ns); err != nil {
		fmt.Fprintln(os.Stderr, "vpcnat-bench:", err)
		os.Exit(1)
	}
}

type bench struct {
	baselineMax int
	connTime    time.Duration
	changes     int
	cniRounds   int
	cniOnly     bool
	compare     []string
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(s string) error { *l = append(*l, s); return nil }

// result is one row of the table.
type result struct {
	n                   int
	first               time.Duration // first converge, in process, from an empty netns
	dnatChange          time.Duration // median one-DNAT change, fast path
	snatChange          time.Duration // median one-SNAT change, fast path
	resync              time.Duration // full converge with nothing to change (read-back + diff)
	connRate            float64       // new TCP connections/s through a DNAT
	baseline            time.Duration // same rules, one iptables exec per rule (0: not run)
	rules, chains, eips int
}

func (b bench) run(sizes []int) error {
	if !b.cniOnly {
		if err := b.dataPlane(sizes); err != nil {
			return err
		}
	}
	if b.cniRounds > 0 {
		c, err := b.measureCNI(b.cniRounds, b.compare)
		if err != nil {
			return err
		}
		printCNI(c)
	}
	return nil
}

// dataPlane measures and prints the rule table.
func (b bench) dataPlane(sizes []int) error {
	var rows []result
	base, err := b.measure(1, false)
	if err != nil {
		return err
	}
	for _, n := range sizes {
		r, err := b.measure(n, n <= b.baselineMax)
		if err != nil {
			return err
		}
		rows = append(rows, r)
	}
	kovn, err := b.kubeOVNSpec()
	if err != nil {
		return err
	}
	printTable(base, rows, kovn)
	return nil
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func printTable(base result, rows []result, kovn time.Duration) {
	fmt.Println("| rules (FIP/DNAT/SNAT over EIPs) | first converge | one DNAT change | one SNAT change | in-sync resync | new TCP conn/s via DNAT (vs 1 rule) | Kube-OVN-style per-rule baseline | speed-up |")
	fmt.Println("| --- | --- | --- | --- | --- | --- | --- | --- |")
	for _, r := range rows {
		bl, sp := "not run", "—"
		if r.baseline > 0 {
			bl = fmt.Sprintf("%.2f s", r.baseline.Seconds())
			sp = fmt.Sprintf("%.0f×", float64(r.baseline)/float64(r.first))
		}
		fmt.Printf("| %d (%d EIPs, %d chains) | %s | %s | %s | %s | %.0f (%.0f %%) | %s | %s |\n",
			r.rules, r.eips, r.chains, ms(r.first), ms(r.dnatChange), ms(r.snatChange), ms(r.resync),
			r.connRate, 100*r.connRate/base.connRate, bl, sp)
	}
	fmt.Printf("\n1-rule connection rate: %.0f conn/s. Kube-OVN's 6-minute spec (100 EIPs, 50 FIPs, 20 SNATs, 1 000 DNATs) converged from nothing in %s.\n",
		base.connRate, ms(kovn))
}

// newTopology builds a fresh seed topology for one measurement.
func newTopology() (*topo.Topology, error) {
	return topo.NewSeed(topo.NewPrefix())
}

func parseSizes(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--sizes: %q is not a positive rule count", f)
		}
		out = append(out, n)
	}
	return out, nil
}
