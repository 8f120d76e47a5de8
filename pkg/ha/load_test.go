package ha_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// cpuHog is a set of busy-loop processes competing with the agents for the CPUs, at a nice level
// above theirs (a node busy with other work, the gateway pod's cgroup getting a small share).
type cpuHog struct {
	t     testing.TB
	procs []*exec.Cmd
}

// startCPUHog starts n busy loops at nice level nice (negative: ahead of the agents).
func startCPUHog(t testing.TB, n, nice int) *cpuHog {
	t.Helper()
	h := &cpuHog{t: t}
	t.Cleanup(h.stop)
	for range n {
		cmd := exec.Command("nice", "-n", strconv.Itoa(nice), "sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Fatalf("starting a busy loop: %v", err)
		}
		h.procs = append(h.procs, cmd)
	}
	return h
}

// stop kills the busy loops by their PIDs (nice execs sh, so the PID is the loop's) and waits.
func (h *cpuHog) stop() {
	for _, p := range h.procs {
		_ = p.Process.Signal(unix.SIGKILL)
		_ = p.Wait()
	}
	h.procs = nil
}

// roleAndTerm reads a replica's role and term from its NICs' alias ("vpcnat-ha active 3"): the
// term moves whenever any replica took over, so an unchanged term on both replicas means no
// handover in between, however short.
func (rs *replicaSet) roleAndTerm(r string) (string, uint64) {
	rs.t.Helper()
	out, err := rs.tp.Exec(r, "ip", "-o", "link", "show", "dev", "net1")
	if err != nil {
		rs.t.Fatal(err)
	}
	_, rest, ok := strings.Cut(out, "alias vpcnat-ha ")
	if !ok {
		rs.t.Fatalf("replica %s: net1 carries no agent alias: %s", r, out)
	}
	f := strings.Fields(rest)
	if len(f) < 2 {
		rs.t.Fatalf("replica %s: alias %q", r, rest)
	}
	term, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		rs.t.Fatalf("replica %s: alias %q: %v", r, rest, err)
	}
	return f[0], term
}

// cpuTime is the CPU time (user and system) a replica's agent used so far.
func (rs *replicaSet) cpuTime(r string) time.Duration {
	rs.t.Helper()
	rs.mu.Lock()
	cmd := rs.agents[r]
	rs.mu.Unlock()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", cmd.Process.Pid))
	if err != nil {
		rs.t.Fatal(err)
	}
	// After the command name in parentheses: state is field 3, utime and stime fields 14, 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ is 100 on Linux
}

// envInt reads a test knob from the environment (for trying harder loads by hand).
func envInt(t testing.TB, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// TestCPULoadKeepsRoles: the CPUs are starved by busy processes that run ahead of the agents
// (more of them than cores, at a better nice level: the agents run in bursts with gaps of
// several heartbeat intervals) for several detection times while nothing fails. Both agents are
// late reading heartbeats and ARP answers and late sending them, but every peer and the EIP
// gateway are alive: no replica changes role (the term on both NICs is unchanged, so there was
// no handover and back either), and the router sees the EIP claimed by the active replica's MAC
// only.
//
// One thing excuses a changed role: an agent that did not run at all for longer than the
// detection time (it logs each gap it skips). Its peers cannot tell that from a dead replica, so
// a handover is the right answer; the trial is then run again, and fails if every attempt was
// excused. A changed role without such a gap fails at once.
func TestCPULoadKeepsRoles(t *testing.T) {
	const attempts = 3
	for i := 1; i <= attempts; i++ {
		var problems []string
		var longest time.Duration
		var dead time.Duration
		t.Run(fmt.Sprintf("attempt-%d", i), func(t *testing.T) { problems, longest, dead = cpuLoadTrial(t) })
		if t.Failed() || len(problems) == 0 {
			return
		}
		if longest <= dead {
			t.Fatalf("under CPU load with nothing failed (no agent stalled beyond the detection time %v; longest gap %v): %s",
				dead, longest, strings.Join(problems, "; "))
		}
		t.Logf("attempt %d: an agent did not run for %v, longer than the detection time %v, and its peer took over "+
			"(%s); trying again", i, longest, dead, strings.Join(problems, "; "))
	}
	t.Fatalf("in each of %d attempts an agent stalled beyond the detection time: the load is more than the test is for", attempts)
}

// cpuLoadTrial runs the load once on a fresh pair of replicas and returns what went wrong, the
// longest gap in which an agent did not run (from the agents' logs), and the detection time.
func cpuLoadTrial(t *testing.T) (problems []string, longest, dead time.Duration) {
	rs := newReplicaSet(t, "r1", "r2")
	act := rs.active("r1", "r2")
	sb := other(act)
	stop, counts := rs.probesWithCount()
	flowing(t, counts)
	// The standby listens one detection time after it became healthy; let it settle.
	time.Sleep(3 * rs.timing.DeadAfter)
	terms := map[string]uint64{}
	for r, want := range map[string]string{act: "active", sb: "standby"} {
		role, term := rs.roleAndTerm(r)
		if role != want {
			t.Fatalf("before the load: %s is %s, want %s", r, role, want)
		}
		terms[r] = term
	}
	activeMAC, err := rs.tp.MAC(act, "net1")
	if err != nil {
		t.Fatal(err)
	}
	capt, err := rs.tp.StartCapture("rtr", "eth0", unix.ETH_P_ARP)
	if err != nil {
		t.Fatal(err)
	}
	defer capt.Close()

	cpu0, idle0 := rs.cpuTime(act), time.Now()
	time.Sleep(2 * time.Second)
	t.Logf("the active agent's CPU time when idle: %v per second", (rs.cpuTime(act)-cpu0)*time.Second/time.Since(idle0))

	n := envInt(t, "VPCNAT_HA_HOG", 4*runtime.NumCPU())
	nice := envInt(t, "VPCNAT_HA_HOG_NICE", -15)
	dur := time.Duration(envInt(t, "VPCNAT_HA_HOG_SECONDS", 8)) * time.Second
	hog := startCPUHog(t, n, nice)
	start := time.Now()
	time.Sleep(dur)
	hog.stop()
	t.Logf("%d busy loops at nice %d for %v", n, nice, time.Since(start).Round(time.Millisecond))
	// What the agents decided late (a step that waited for the CPU) is applied by now.
	time.Sleep(2 * rs.timing.DeadAfter)
	stop()
	d, s := counts()
	t.Logf("probes during and after the load: DNAT %v, SNAT %v", d, s)

	var bad []string
	for _, r := range []string{act, sb} {
		role, got := rs.roleAndTerm(r)
		want := map[string]string{act: "active", sb: "standby"}[r]
		if role != want || got != terms[r] {
			bad = append(bad, fmt.Sprintf("%s is %s at term %d (want %s at term %d)", r, role, got, want, terms[r]))
		}
	}
	if len(bad) > 0 {
		problems = append(problems, "the roles changed: "+strings.Join(bad, "; "))
	}
	others := map[string]int{}
	for _, a := range capt.ARPs() {
		if a.SenderIP == netip.MustParseAddr(eip) && a.SenderMAC != activeMAC {
			others[a.SenderMAC]++
		}
	}
	if len(others) > 0 {
		problems = append(problems, fmt.Sprintf("the EIP %s was claimed by %v besides the active replica's %s", eip, others, activeMAC))
	}
	// The agents' logs are read once they are stopped (their output is written while they run).
	for _, r := range []string{act, sb} {
		rs.kill(r)
		rs.mu.Lock()
		log := rs.logs[r].String()
		rs.mu.Unlock()
		for _, m := range gapRE.FindAllStringSubmatch(log, -1) {
			if d, err := time.ParseDuration(m[1]); err == nil && d > longest {
				longest = d
			}
		}
	}
	t.Logf("the longest time an agent did not run: %v (detection time %v)", longest, rs.timing.DeadAfter)
	return problems, longest, rs.timing.DeadAfter
}

// gapRE finds the gaps an agent logged when it ran again after not running for a while.
var gapRE = regexp.MustCompile(`did not run for a while[^\n]*gap="([^"]+)"`)
