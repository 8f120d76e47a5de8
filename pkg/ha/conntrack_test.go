package ha

import (
	"net/netip"
	"slices"
	"testing"
	"time"
)

// syncState is a ConntrackSync that keeps what it was last told, as the replication would act
// on it: the address it follows, or the peers it serves.
type syncState struct {
	following netip.AddrPort
	serving   []netip.Addr
	active    bool
}

func (s *syncState) Addr() netip.AddrPort { return netip.MustParseAddrPort("10.16.0.1:9540") }
func (s *syncState) Follow(a netip.AddrPort) {
	s.following, s.serving, s.active = a, nil, false
}
func (s *syncState) Serve(p []netip.Addr) {
	s.following, s.serving, s.active = netip.AddrPort{}, slices.Clone(p), true
}
func (s *syncState) Commit() (int, error) { return 0, nil }
func (s *syncState) Close()               {}

// TestConntrackFollowsTheActive: a standby streams from the active peer (of two, the later
// term); an active replica serves exactly the live peers that announce an address.
func TestConntrackFollowsTheActive(t *testing.T) {
	now := time.Unix(1000, 0)
	st := &syncState{}
	a := &Agent{cfg: Config{Gateway: "gw1", Replica: "r1", Conntrack: st},
		elector: NewElector(Heartbeat{Gateway: "gw1", Replica: "r1"}, DefaultTiming, now)}
	hear := func(h Heartbeat) { h.Gateway = "gw1"; a.elector.Receive(h, now) }
	hear(Heartbeat{Replica: "r2", Active: true, Term: 3, Sync: netip.MustParseAddrPort("10.16.0.2:9540")})
	hear(Heartbeat{Replica: "r3", Active: true, Term: 5, Sync: netip.MustParseAddrPort("10.16.0.3:9540")})
	hear(Heartbeat{Replica: "r4", Sync: netip.MustParseAddrPort("[2001:db8::4]:9540")})
	hear(Heartbeat{Replica: "r5", Active: true, Term: 9}) // no address: does not replicate

	a.role = Standby
	a.followOrServe(now)
	if st.active || st.following != netip.MustParseAddrPort("10.16.0.3:9540") {
		t.Fatalf("standby follows %v (serving: %v), want r3's 10.16.0.3:9540 (the later term of the two active peers that replicate)", st.following, st.active)
	}
	a.role = Active
	a.followOrServe(now)
	slices.SortFunc(st.serving, netip.Addr.Compare)
	want := []netip.Addr{netip.MustParseAddr("10.16.0.2"), netip.MustParseAddr("10.16.0.3"), netip.MustParseAddr("2001:db8::4")}
	if !st.active || !slices.Equal(st.serving, want) {
		t.Fatalf("active serves %v (active: %v), want %v", st.serving, st.active, want)
	}
	// Peers that went silent are no longer served; with no active peer, a standby follows none.
	later := now.Add(2 * DefaultTiming.DeadAfter)
	a.followOrServe(later)
	if len(st.serving) != 0 {
		t.Fatalf("active serves %v after every peer died", st.serving)
	}
	a.role = Standby
	a.followOrServe(later)
	if st.following.IsValid() {
		t.Fatalf("standby follows %v with no live active peer", st.following)
	}
}
