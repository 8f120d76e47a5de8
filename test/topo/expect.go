package topo

import (
	"testing"
	"time"
)

// Test helpers shared by the packet tests of several packages.

// ExpectTimeout bounds one request of Expect.
const ExpectTimeout = 2 * time.Second

// Expect sends one request and checks what the receiver saw: the source IP after NAT and the
// receiver's own address after DNAT (wantLocal "" = to).
func (t *Topology) Expect(tb testing.TB, from, proto, to, wantSeen, wantLocal string) {
	tb.Helper()
	r, err := t.Request(from, proto, to, ExpectTimeout)
	if err != nil {
		tb.Errorf("%s -> %s/%s: %v", from, to, proto, err)
		return
	}
	if wantLocal == "" {
		wantLocal = to
	}
	if r.SeenIP() != wantSeen || r.Local != wantLocal {
		tb.Errorf("%s -> %s/%s: receiver %s saw %s, want receiver %s seeing %s", from, to, proto, r.Local, r.SeenIP(), wantLocal, wantSeen)
	}
}

// ExpectNoAnswer checks a request gets no answer within half a second.
func (t *Topology) ExpectNoAnswer(tb testing.TB, from, proto, to string) {
	tb.Helper()
	if r, err := t.Request(from, proto, to, 500*time.Millisecond); err == nil {
		tb.Errorf("%s -> %s/%s: answered by %s (saw %s), want no answer", from, to, proto, r.Local, r.SeenIP())
	}
}

// ListenFor starts a receiver that lives as long as the test.
func (t *Topology) ListenFor(tb testing.TB, role, proto, addr string) *Server {
	tb.Helper()
	s, err := t.Listen(role, proto, addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Close)
	return s
}
