package ctsync

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/vpcnat/vpcnat/test/topo"
)

// TestReplicatorRoleChanges: role changes in quick succession (follow one address, another,
// serve, commit) while the stream's goroutine is starting or retrying never block the agent's
// loop. The whole test process runs inside a network namespace of its own (re-executed with
// `ip netns exec`), so every dial and ctnetlink request stays there.
func TestReplicatorRoleChanges(t *testing.T) {
	if os.Getenv("CTSYNC_TEST_IN_NETNS") == "" {
		topo.NeedRoot(t)
		tp := &topo.Topology{Prefix: topo.NewPrefix()}
		defer tp.Close()
		if err := tp.AddNS("r"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // hang guard
		defer cancel()
		cmd := exec.CommandContext(ctx, "ip", "netns", "exec", tp.Name("r"), os.Args[0], "-test.run", "^TestReplicatorRoleChanges$", "-test.v")
		cmd.Env = append(os.Environ(), "CTSYNC_TEST_IN_NETNS=1")
		out, err := cmd.CombinedOutput()
		if ctx.Err() != nil {
			t.Fatalf("role changes blocked for a minute:\n%s", out)
		}
		if err != nil {
			t.Fatalf("%v:\n%s", err, out)
		}
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
