package ctsync

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"

	"github.com/vpcnat/vpcnat/test/topo"
)

// TestReplicatorRoleChanges: role changes in quick succession (follow one address, another,
// serve, commit) while the stream's goroutine is starting or retrying never block the agent's
// loop. The whole test process runs inside a network namespace of its own (re-executed with
// `ip netns exec`), so every dial and ctnetlink request stays there.
func TestReplicatorRoleChanges(t *testing.T) {
	if !inOwnNetns(t, "TestReplicatorRoleChanges") {
		return
	}
	r, err := New(Config{Gateway: "gw1", Replica: "r1", Interface: "lo", Port: 9540, Resync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens on these ports of the namespace's loopback: every stream fails at once
	// and its goroutine retries.
	a, b := netip.MustParseAddrPort("127.0.0.1:1"), netip.MustParseAddrPort("127.0.0.1:2")
	// For three seconds (six of the stream goroutine's retries): the loop holds the replicator
	// most of the time (Follow of the same address), and every few hundred calls changes the
	// address, serves or commits, which waits for the goroutine: if the goroutine needed the
	// replicator's lock to retry, this would hang.
	for i, end := 0, time.Now().Add(3*time.Second); time.Now().Before(end); i++ {
		r.Follow(a)
		switch {
		case i%997 == 0:
			r.Serve(nil)
			if _, err := r.Commit(); err != nil {
				t.Fatal(err)
			}
		case i%331 == 0:
			r.Follow(b)
		}
	}
	r.Close()
}

// inOwnNetns re-executes the test named test inside a new network namespace and returns false;
// in that re-executed process it returns true: the caller runs the test's body there.
func inOwnNetns(t *testing.T, test string) bool {
	t.Helper()
	if os.Getenv("CTSYNC_TEST_IN_NETNS") != "" {
		return true
	}
	topo.NeedRoot(t)
	tp := &topo.Topology{Prefix: topo.NewPrefix()}
	defer tp.Close()
	if err := tp.AddNS("r"); err != nil {
		t.Fatal(err)
	}
	// A NIC with a global address for the replicator to serve on, and the NAT module in use.
	for _, argv := range [][]string{
		{"ip", "link", "add", "d0", "type", "veth", "peer", "name", "d1"},
		{"ip", "addr", "add", "203.0.113.1/24", "dev", "d0"},
		{"ip", "link", "set", "d0", "up"},
		{"ip", "link", "set", "d1", "up"},
		{"iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "RETURN"},
	} {
		if _, err := tp.Exec("r", argv...); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // hang guard
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", tp.Name("r"), os.Args[0], "-test.run", "^"+test+"$", "-test.v")
	cmd.Env = append(os.Environ(), "CTSYNC_TEST_IN_NETNS=1")
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s hung for a minute:\n%s", test, out)
	}
	if err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	return false
}

// TestReplicatorStopsServingDuringEvents: an active replica that steps down while its kernel
// reports a flood of events (20 000 entries created at once) stops serving and returns, five
// times over. (The subscription's close drains the conntrack library's worker, which Close
// waits for; this test did not catch the worker blocked before that drain existed: the
// interleaving is rare. It guards the step-down as a whole.)
func TestReplicatorStopsServingDuringEvents(t *testing.T) {
	if !inOwnNetns(t, "TestReplicatorStopsServingDuringEvents") {
		return
	}
	r, err := New(Config{Gateway: "gw1", Replica: "r1", Interface: "d0", Port: 9540, Resync: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ct, err := conntrack.Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ct.Close()
	entries := synthetic(20000)
	for round := range 5 {
		r.Serve(nil)
		time.Sleep(100 * time.Millisecond) // the event subscription is up
		done := make(chan error, 1)
		go func() {
			_, err := commit(entries, true)
			done <- err
		}()
		time.Sleep(20 * time.Millisecond)
		r.Follow(netip.AddrPort{}) // steps down in the middle of the flood
		if err := <-done; err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if err := ct.Flush(); err != nil {
			t.Fatal(err)
		}
	}
}
