package ctsync

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/ti-mo/conntrack"
	"github.com/ti-mo/netfilter"
	"golang.org/x/sys/unix"
)

// The kernel edge: ctnetlink in the network namespace of the calling process (the agent runs
// in its pod's netns and never enters another). It needs CAP_NET_ADMIN there, which the agent
// already has for the NICs' ARP flag.

// skip says whether an entry is the replica's own traffic rather than the gateway's: traffic
// to or from the pod's own address on eth0 (this stream, the kubelet's probes) or loopback.
// Such entries are no use on another replica, whose eth0 address differs.
type skip func(Entry) bool

func ownTraffic(own netip.Addr) skip {
	return func(e Entry) bool {
		return (own.IsValid() && e.touches(own)) || e.Orig.Src.IsLoopback() || e.Orig.Dst.IsLoopback()
	}
}

// dump reads the whole conntrack table (IPv4 and IPv6).
func dump(sk skip) ([]Entry, error) {
	c, err := conntrack.Dial(nil)
	if err != nil {
		return nil, fmt.Errorf("ctnetlink: %w", err)
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		return nil, fmt.Errorf("dumping the conntrack table: %w", err)
	}
	out := make([]Entry, 0, len(flows))
	for _, f := range flows {
		if e, ok := FromFlow(f); ok && !sk(e) {
			out = append(out, e)
		}
	}
	return out, nil
}

// events subscribes to the kernel's NEW, UPDATE and DESTROY events and returns them as stream
// messages on out until the returned close function is called or the subscription fails (the
// error then arrives on errs: most often ENOBUFS, events were lost, and the standbys need a full
// dump).
func events(out chan<- Message, sk skip) (errs <-chan error, closeFn func(), err error) {
	c, err := conntrack.Dial(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("ctnetlink: %w", err)
	}
	// Room for a burst of events (a SYN flood creates one NEW per packet): 8 MiB, capped by
	// net.core.rmem_max.
	_ = c.SetReadBuffer(8 << 20)
	evs := make(chan conntrack.Event, 1024)
	// One worker: events of one connection stay in the kernel's order.
	errCh, err := c.Listen(evs, 1, []netfilter.NetlinkGroup{netfilter.GroupCTNew, netfilter.GroupCTUpdate, netfilter.GroupCTDestroy})
	if err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("subscribing to conntrack events: %w", err)
	}
	done := make(chan struct{})
	fail := make(chan error, 1)
	go func() {
		for {
			select {
			case <-done:
				return
			case err := <-errCh:
				fail <- err
				return
			case ev := <-evs:
				if ev.Flow == nil {
					continue
				}
				m := Message{Type: MsgUpsert}
				if ev.Type == conntrack.EventDestroy {
					m.Type = MsgDestroy
				}
				e, ok := FromFlow(*ev.Flow)
				if m.Type == MsgDestroy && !ok {
					// A DESTROY event carries both tuples; FromFlow needs no more than that.
					continue
				}
				if !ok || sk(e) {
					continue
				}
				m.Entry = e
				select {
				case out <- m:
				case <-done:
					return
				}
			}
		}
	}()
	return fail, func() {
		close(done)
		// Close waits for the library's worker, which may be blocked handing over an event or
		// an error that nobody reads any more: drain both until it is gone.
		closed := make(chan struct{})
		go func() {
			c.Close()
			close(closed)
		}()
		for {
			select {
			case <-evs:
			case <-errCh:
			case <-closed:
				return
			}
		}
	}, nil
}

// commitResult counts what commit did.
type commitResult struct {
	created, replaced int
	errs              []error
}

// commit writes entries into the kernel. An entry whose original tuple the kernel already holds
// (a stale one of this replica's earlier time as active) is replaced: the cache is the active
// replica's word, and a standby's kernel carries no live traffic.
func commit(entries []Entry, liberal bool) (commitResult, error) {
	var res commitResult
	failed, err := createBatched(entries, liberal)
	if err != nil {
		return res, err
	}
	res.created = len(entries) - len(failed)
	if len(failed) == 0 {
		return res, nil
	}
	nf, err := netfilter.Dial(nil)
	if err != nil {
		return res, fmt.Errorf("ctnetlink: %w", err)
	}
	defer nf.Close()
	ct, err := conntrack.Dial(nil)
	if err != nil {
		return res, fmt.Errorf("ctnetlink: %w", err)
	}
	defer ct.Close()
	for i, ferr := range failed {
		e := entries[i]
		if !errors.Is(ferr, unix.EEXIST) {
			res.errs = append(res.errs, ferr)
			continue
		}
		req, err := createRequest(e, e.Timeout, liberal)
		if err != nil {
			res.errs = append(res.errs, err)
			continue
		}
		// Delete the holder of the original tuple, then of the reply tuple (another entry may
		// hold the mapping), and create again.
		_ = ct.Delete(conntrack.Flow{TupleOrig: e.Orig.flow(e.Proto), Zone: e.Zone})
		if _, err = nf.Query(req); errors.Is(err, unix.EEXIST) {
			_ = ct.Delete(conntrack.Flow{TupleReply: e.Reply.flow(e.Proto), Zone: e.Zone})
			_, err = nf.Query(req)
		}
		if err != nil {
			res.errs = append(res.errs, fmt.Errorf("creating conntrack entry %v: %w", e.Key(), err))
			continue
		}
		res.replaced++
	}
	return res, nil
}
