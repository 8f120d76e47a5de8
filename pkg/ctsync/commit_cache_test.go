package ctsync

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/ti-mo/conntrack"
)

// TestCommitKeepsTheCache: a replica that took over (commit), stepped down and takes over again
// before a new stream has delivered anything commits what its cache still holds, not nothing:
// the entries are in the kernel again after the second commit, although the kernel lost them in
// between.
func TestCommitKeepsTheCache(t *testing.T) {
	inNetns(t, func() error {
		r, err := New(Config{Gateway: "gw1", Replica: "r1", Interface: "lo", Port: 9540, Resync: time.Second})
		if err != nil {
			return err
		}
		defer r.Close()
		now := time.Now()
		for _, e := range []Entry{snatEntry, dnatEntry} {
			r.cache.Apply(Message{Type: MsgUpsert, Entry: e}, now)
		}
		if n, err := r.Commit(); err != nil || n != 2 {
			return fmt.Errorf("first commit: %d entries, %v; want 2", n, err)
		}
		c, err := conntrack.Dial(nil)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Flush(); err != nil {
			return err
		}
		// Stepped down, following again: the new active replica's stream has sent nothing yet.
		r.Follow(netip.AddrPort{})
		if n, err := r.Commit(); err != nil || n != 2 {
			return fmt.Errorf("second commit: %d entries, %v; want the 2 the cache held", n, err)
		}
		flows, err := c.Dump(nil)
		if err != nil {
			return err
		}
		in := 0
		for _, f := range flows {
			if e, ok := FromFlow(f); ok && (e.Key() == snatEntry.Key() || e.Key() == dnatEntry.Key()) {
				in++
			}
		}
		if in != 2 {
			return fmt.Errorf("after the second commit %d of the 2 entries are in the kernel (%d entries there)", in, len(flows))
		}
		return nil
	})
}
