package reliability

import (
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/pkg/annotations"
	"github.com/vpcnat/vpcnat/test/kstate"
	"github.com/vpcnat/vpcnat/test/topo"
)

// Forced kill points (iptwrap for the iptables backend, nlstop for nftables) and the random one.
const (
	killDuringSave   = "iptables-save:before"    // reading the nat table back
	killBeforeCommit = "iptables-restore:before" // transaction written, not committed
	killAfterCommit  = "iptables-restore:after"  // committed; links, addresses, routes not yet
	killAfterNote    = "iptables-restore:note"   // uniform delay after the commit, within the measured rest
	killNFTRead      = "nft-get:before"          // the first nf_tables request (generation or read-back)
	killNFTBefore    = "nft-batch:before"        // the batch built, its sendmsg entered, not run
	killNFTAfter     = "nft-batch:after"         // the batch's sendmsg returned: committed, unseen
	killNFTNote      = "nft-batch:note"          // uniform delay after the commit, within the measured rest
	killRandom       = "random"                  // uniform delay within the measured converge

	crashTrialsSoak   = 500
	crashTrialsNormal = 100
	// The nftables backend's trials in make test: fewer, as the iptables ones already cover
	// everything but the NAT commit (links, addresses, routes, conntrack are the same code).
	crashTrialsNormalNFT = 40
)

// killModes are the kill modes of a backend, used in turn; the last but one is the one that
// marks the commit (for calibrating the rest of a converge).
var killModes = map[string][]string{
	annotations.DataplaneIPTables: {killDuringSave, killBeforeCommit, killAfterCommit, killAfterNote, killRandom},
	annotations.DataplaneNFTables: {killNFTRead, killNFTBefore, killNFTAfter, killNFTNote, killRandom},
}

// TestCrashConsistency: a gateway holding a mixed ~2 000-rule spec is given a changed spec (about
// 10% of every rule kind edited in place, some rules removed and added, EIPs moved, lanIp and a
// subnet gateway changed now and then) by `vpcnat-daemon apply`, which is SIGKILLed (with its
// iptables children) at a point inside the converge: at forced points (during the nat read-back,
// with the restore transaction written but not committed, right after the commit: iptwrap stops
// there), after a random delay within the first half of the measured rest after the commit
// (links, addresses, routes, conntrack), or after a random delay within the whole converge's
// measured duration. Where it stopped is read from the kernel
// (which parts already match the new spec). Then the daemon is run again (the restart) and
// test/kstate must find the netns exactly as the new spec: no missing, duplicate or foreign rule,
// chain, address, route or ip rule, forwarding on; and conntrack entries planted before the kill
// for mappings the change removes (FIPs, port forwards, SNATs) must be gone. Each trial starts
// from the previous trial's spec. Conntrack entries of mappings the change leaves alone, planted
// too, must survive the kill and the restart (no flow through an unchanged mapping is lost).
//
// Both backends, a subtest each. The nftables backend commits in-process, one netlink batch in
// one sendmsg that the kernel applies inside the system call, so its forced points are read
// from the daemon's system calls under ptrace (nlstop): the first nf_tables request (the
// generation query or read-back), the batch's sendmsg entered but not run, and that sendmsg
// returned (committed, the daemon not yet told). 100 trials for iptables (the count) and
// 40 for nftables in make test, 500 each with -soak / VPCNAT_SOAK=1.
func TestCrashConsistency(t *testing.T) {
	eachBackend(t, crashConsistency)
}

func crashConsistency(t *testing.T, plane string) {
	tp := newBare(t)
	trials := crashTrialsNormal
	if plane == annotations.DataplaneNFTables {
		trials = crashTrialsNormalNFT
	}
	if *soak {
		trials = crashTrialsSoak
	}
	modes := killModes[plane]
	noteMode := modes[len(modes)-2]
	dir := t.TempDir()
	seed := uint64(20260726)
	spec := newBigSpec(seed)
	spec.plane = plane
	cur := build(t, spec.inputs())
	path := filepath.Join(dir, "spec.yaml")
	writeSpec(t, path, spec.inputs())
	_, first := apply(t, tp.Topology, path)
	if diff := check(t, tp.Topology, cur); !diff.Empty() {
		t.Fatalf("initial apply of %d rules: %s", spec.rules(), diff)
	}
	r := rand.New(rand.NewPCG(seed, 7))

	// Calibrate with two uninterrupted changes of the same size: the whole change (process start
	// to exit), and the rest of it after the nat commit.
	var conv, tail time.Duration
	for i := 0; i < 2; i++ {
		spec = spec.mutate(r, 0.1)
		cur = build(t, spec.inputs())
		writeSpec(t, path, spec.inputs())
		d, afterCommit := timedApply(t, tp.Topology, path, noteMode)
		conv, tail = max(conv, d), max(tail, afterCommit)
		if diff := check(t, tp.Topology, cur); !diff.Empty() {
			t.Fatalf("calibration change %d: %s", i, diff)
		}
	}
	t.Logf("spec: %d rules; first apply %s, a change %s (process start to exit), of which %s after the nat commit",
		spec.rules(), fmtDur(first), fmtDur(conv), fmtDur(tail))

	points := map[string]int{}    // where the kill landed, as read from the kernel
	byMode := map[string]int{}    // kill modes used
	var restartMax time.Duration  // the restart's apply
	staleTotal, keptTotal := 0, 0 // conntrack entries of removed and of unchanged mappings planted before the kills
	start := time.Now()
	for i := 0; i < trials; i++ {
		prev := cur
		spec = spec.mutate(r, 0.1)
		cur = build(t, spec.inputs())
		writeSpec(t, path, spec.inputs())
		mode := modes[i%len(modes)]
		byMode[mode]++
		delay := time.Duration(r.Int64N(int64(conv)))
		if mode == noteMode {
			// The addresses and routes are the first few milliseconds after the commit.
			delay = time.Duration(r.Int64N(int64(tail/2) + 1))
		}
		// Flows of mappings the change removes: their entries must be gone after the restart.
		gone := mappingKeys(cur)
		stale := plantSome(t, tp.Topology, prev, i, func(m string) bool { return !gone[m] }, 2)
		staleTotal += len(stale)
		// Flows of mappings the change keeps: their entries must survive.
		var kept []planted
		for _, p := range plantSome(t, tp.Topology, prev, i+2000, func(m string) bool { return gone[m] }, 2) {
			if unchanged(p, prev, cur) {
				kept = append(kept, p)
			}
		}
		keptTotal += len(kept)
		point := crashOnce(t, tp.Topology, path, mode, delay, prev, cur)
		points[point]++

		out, d := apply(t, tp.Topology, path)
		restartMax = max(restartMax, d)
		if diff := check(t, tp.Topology, cur); !diff.Empty() {
			t.Fatalf("trial %d (kill %s, landed %s): after the restart the netns is not the spec: %s\nrestart output:\n%s", i, mode, point, diff, out)
		}
		flows, err := kstate.Conntrack(tp.Path(topo.Gateway))
		if err != nil {
			t.Fatal(err)
		}
		if bad := kstate.CheckFlows(flows, cur); len(bad) > 0 {
			t.Errorf("trial %d (kill %s, landed %s): after the restart, conntrack entries of removed mappings are left:\n%s",
				i, mode, point, strings.Join(bad, "\n"))
		}
		for _, p := range kept {
			if !hasFlow(flows, p.flow) {
				t.Errorf("trial %d (kill %s, landed %s): the entry of an unchanged mapping (%s) was lost: %s", i, mode, point, p.mapping, p.flow)
			}
		}
		if _, err := tp.Exec(topo.Gateway, "conntrack", "-F"); err != nil {
			t.Fatal(err)
		}
		if i%10 == 9 { // the restart's result is stable: one more apply changes nothing
			if out, _ := apply(t, tp.Topology, path); !strings.Contains(out, "in sync: no changes") {
				t.Fatalf("trial %d: a second apply after the restart changed something:\n%s", i, out)
			}
		}
	}
	var lines []string
	for _, k := range sortedKeys(points) {
		lines = append(lines, fmt.Sprintf("%s: %d", k, points[k]))
	}
	t.Logf("%s: %d trials in %s (kill modes %v); kill points read from the kernel: %s; slowest restart %s; %d conntrack entries of removed mappings planted, %d of unchanged ones kept",
		plane, trials, fmtDur(time.Since(start)), byMode, strings.Join(lines, ", "), fmtDur(restartMax), staleTotal, keptTotal)
}

// crashOnce runs the daemon on the spec at path, SIGKILLs its process group at the given point
// and says where the converge was, from the kernel: which parts match prev (the old spec) and
// which cur (the new one).
func crashOnce(t *testing.T, tp *topo.Topology, path, mode string, delay time.Duration, prev, cur *annotations.Desired) string {
	t.Helper()
	marks := t.TempDir()
	stop := mode
	if mode == killRandom {
		stop = ""
	}
	cmd := daemonCmd(tp, path, stop, marks)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	exited := false
	note := mode == killAfterNote || mode == killNFTNote
	if note {
		waitMark(t, marks, mode, done, &out)
	}
	if mode == killRandom || note {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("apply failed: %v\n%s", err, out.String())
			}
			exited = true
		case <-time.After(delay):
		}
	} else {
		waitMark(t, marks, mode, done, &out)
	}
	if !exited {
		err := killGroup(cmd.Process.Pid)
		werr := <-done
		switch {
		case errors.Is(err, syscall.ESRCH) && werr == nil:
			exited = true // it finished between the delay and the kill
		case err != nil:
			t.Fatalf("killing the daemon: %v (it ended with %v)\n%s", err, werr, out.String())
		}
	}
	st, err := kstate.Dump(tp.Path(topo.Gateway))
	if err != nil {
		t.Fatal(err)
	}
	oldNAT, oldAddrs, oldRouting, _ := sections(kstate.Compare(st, prev))
	newNAT, newAddrs, newRouting, newOther := sections(kstate.Compare(st, cur))
	switch {
	case exited:
		return "completed before the kill"
	case newNAT > 0 && oldNAT > 0:
		t.Errorf("kill %s: the NAT is neither the old nor the new spec (not atomic): against the new spec %s", mode, kstate.Compare(st, cur))
		return "nat table half-written"
	case oldNAT == 0 && newNAT > 0:
		return "before the nat commit"
	case newAddrs > 0 && oldAddrs == 0:
		return "after the nat commit, before the addresses"
	case newAddrs > 0:
		return "during the addresses"
	case newRouting > 0 && oldRouting == 0:
		return "after the addresses, before routes and rules"
	case newRouting > 0:
		return "during routes and rules"
	case newOther > 0:
		return "after routing (forwarding or links pending)"
	default:
		return "after the kernel state was complete (conntrack clean-up, ARP)"
	}
}

// waitMark waits for iptwrap's or nlstop's mark of a stop point ("iptables-restore:after" makes
// iptables-restore.after in marks).
func waitMark(t *testing.T, marks, point string, done chan error, out *strings.Builder) {
	t.Helper()
	mark := filepath.Join(marks, strings.Replace(point, ":", ".", 1))
	for {
		if _, err := os.Stat(mark); err == nil {
			return
		}
		select {
		case err := <-done:
			t.Fatalf("apply ended (%v) before reaching %s:\n%s", err, point, out.String())
		case <-time.After(time.Millisecond):
		}
	}
}

// timedApply applies a spec to completion and returns how long it took and how much of that
// came after the nat commit (iptables-restore's exit, or the nf_tables batch's sendmsg),
// marked at the note point.
func timedApply(t *testing.T, tp *topo.Topology, path, note string) (total, afterCommit time.Duration) {
	t.Helper()
	marks := t.TempDir()
	cmd := daemonCmd(tp, path, note, marks)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	waitMark(t, marks, note, done, &out)
	committed := time.Now()
	if err := <-done; err != nil {
		t.Fatalf("apply: %v\n%s", err, out.String())
	}
	return time.Since(start), time.Since(committed)
}

func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
