package ctsync

// Kernel tests: each runs in a network namespace of its own (test/topo), never the host's.
// Addresses: 203.0.113.0/24 inside, 198.51.100.0/24 outside (docs/design.md's test plan).

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/vpcnat/vpcnat/test/topo"
)

// inNetns runs fn in a new network namespace (with the NAT module in use there).
func inNetns(tb testing.TB, fn func() error) {
	tb.Helper()
	topo.NeedRoot(tb)
	tp := &topo.Topology{Prefix: topo.NewPrefix()}
	defer func() {
		if err := tp.Close(); err != nil {
			tb.Error(err)
		}
	}()
	if err := tp.AddNS("ct"); err != nil {
		tb.Fatal(err)
	}
	if _, err := tp.Exec("ct", "iptables", "-t", "nat", "-A", "POSTROUTING", "-o", "lo", "-j", "RETURN"); err != nil {
		tb.Fatal(err)
	}
	if err := tp.Do("ct", fn); err != nil {
		tb.Fatal(err)
	}
}

// TestCommitInKernel: committed entries are in the kernel with both tuples, the NAT and
// NAT-done bits the kernel sets for its own mappings, the TCP state and the liberal flag; a
// second commit of the same entries replaces them.
func TestCommitInKernel(t *testing.T) {
	inNetns(t, func() error {
		res, err := commit([]Entry{snatEntry, dnatEntry}, true)
		if err != nil || res.created != 2 || len(res.errs) != 0 {
			return fmt.Errorf("commit: %+v, %v", res, err)
		}
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		flows, err := c.Dump(nil)
		if err != nil {
			return err
		}
		got := map[Key]conntrack.Flow{}
		for _, f := range flows {
			if e, ok := FromFlow(f); ok {
				got[e.Key()] = f
			}
		}
		for _, c := range []struct {
			e    Entry
			bits conntrack.Status
		}{
			{snatEntry, conntrack.StatusSrcNAT | conntrack.StatusSrcNATDone | conntrack.StatusSeenReply | conntrack.StatusAssured},
			{dnatEntry, conntrack.StatusDstNAT | conntrack.StatusDstNATDone | conntrack.StatusSeenReply},
		} {
			f, ok := got[c.e.Key()]
			if !ok {
				t.Errorf("%v: not in the kernel (%d entries there)", c.e.Key(), len(flows))
				continue
			}
			back, _ := FromFlow(f)
			if back.Reply != c.e.Reply {
				t.Errorf("%v: reply tuple %+v, want %+v", c.e.Key(), back.Reply, c.e.Reply)
			}
			if f.Status&c.bits != c.bits {
				t.Errorf("%v: status %v, want the bits %v", c.e.Key(), f.Status, c.bits)
			}
			if f.Mark != c.e.Mark || f.Timeout == 0 || f.Timeout > c.e.Timeout {
				t.Errorf("%v: mark %#x, timeout %d; want %#x, 1-%d", c.e.Key(), f.Mark, f.Timeout, c.e.Mark, c.e.Timeout)
			}
			if c.e.Proto == unix.IPPROTO_TCP {
				if back.TCP.State != c.e.TCP.State || back.TCP.WScaleOrig != 7 || back.TCP.FlagsOrig&tcpFlagBeLiberal == 0 {
					t.Errorf("%v: TCP %+v, want state %d, window scale 7, liberal", c.e.Key(), back.TCP, c.e.TCP.State)
				}
			}
		}
		res, err = commit([]Entry{snatEntry, dnatEntry}, true)
		if err != nil || res.replaced != 2 || res.created != 0 || len(res.errs) != 0 {
			return fmt.Errorf("second commit: %+v, %v (%v); want both replaced", res, err, first(res.errs))
		}
		return nil
	})
}

// TestCommitTakesTheMapping: a committed SNAT entry's external port is taken: the kernel's own
// NAT (here a new entry asking for that very port) cannot have it.
func TestCommitTakesTheMapping(t *testing.T) {
	inNetns(t, func() error {
		if res, err := commit([]Entry{snatEntry}, true); err != nil || res.created != 1 {
			return fmt.Errorf("commit: %+v, %v", res, err)
		}
		other := snatEntry
		other.Orig.Src = netip.MustParseAddr("203.0.113.13")
		res, err := commit([]Entry{other}, true)
		if err != nil {
			return err
		}
		// The second entry wants the same reply tuple: ctnetlink refuses it (EEXIST), commit
		// replaces the holder, so exactly one entry holds the mapping afterwards.
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		flows, err := c.Dump(nil)
		if err != nil {
			return err
		}
		holders := 0
		for _, f := range flows {
			if e, ok := FromFlow(f); ok && e.Reply == snatEntry.Reply {
				holders++
			}
		}
		if holders != 1 || res.replaced != 1 {
			t.Errorf("%d entries hold the mapping %+v (commit %+v), want 1", holders, snatEntry.Reply, res)
		}
		return nil
	})
}

// synthetic returns n distinct SNAT entries (established TCP, each with its own external port).
func synthetic(n int) []Entry {
	out := make([]Entry, n)
	for i := range out {
		e := snatEntry
		e.Orig.Src = netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%250)})
		e.Orig.SrcPort = uint16(1024 + i/250)
		e.Reply.DstPort = uint16(1024 + i)
		out[i] = e
	}
	return out
}

// BenchmarkCommit: the takeover's commit of n entries into an empty table, and the active
// replica's full dump of them (what a standby's stream starts with).
//
//	sudo go test -run '^$' -bench Commit -benchtime 5x ./pkg/ctsync/
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1000, 10000, 50000} {
		b.Run(fmt.Sprintf("entries=%d", n), func(b *testing.B) {
			entries := synthetic(n)
			var commitTime, dumpTime time.Duration
			for range b.N {
				inNetns(b, func() error {
					start := time.Now()
					res, err := commit(entries, true)
					commitTime += time.Since(start)
					if err != nil || res.created != n {
						return fmt.Errorf("commit: created %d of %d (%d errors, first %v), %v", res.created, n, len(res.errs), first(res.errs), err)
					}
					start = time.Now()
					got, err := dump(ownTraffic(netip.Addr{}))
					dumpTime += time.Since(start)
					if err != nil || len(got) != n {
						return fmt.Errorf("dump: %d entries, %v", len(got), err)
					}
					return nil
				})
			}
			b.ReportMetric(float64(commitTime.Milliseconds())/float64(b.N), "commit-ms")
			b.ReportMetric(float64(dumpTime.Milliseconds())/float64(b.N), "dump-ms")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func first(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}
