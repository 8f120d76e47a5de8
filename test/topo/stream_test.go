package topo

import (
	"testing"
	"time"
)

// TestStream: a stream server answers every line of one open connection, and the one-shot
// Request too; the answers of one connection all name the same client port (one flow).
func TestStream(t *testing.T) {
	topo := seedForTest(t)
	srv, err := topo.ListenStream(Inet, InetIP+":8080")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	s, err := topo.Dial(Client, InetIP+":8080", 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var first Reply
	for i := range 3 {
		r, err := s.Exchange(2 * time.Second)
		if err != nil {
			t.Fatalf("exchange %d: %v", i, err)
		}
		if i == 0 {
			first = r
		}
		if r.Seen != first.Seen || r.SeenIP() != ClientIP || r.Local != InetIP+":8080" {
			t.Errorf("exchange %d: %+v, want the first's %+v (client %s)", i, r, first, ClientIP)
		}
	}
	if first.Seen != s.LocalAddr() {
		t.Errorf("server saw %s, the client's socket is %s (no NAT on the way)", first.Seen, s.LocalAddr())
	}
	r, err := topo.Request(Client, "tcp", InetIP+":8080", 2*time.Second)
	if err != nil || r.SeenIP() != ClientIP || r.Seen == first.Seen {
		t.Errorf("one-shot request to a stream server: %+v, %v", r, err)
	}
	if n := len(srv.Seen()); n != 4 {
		t.Errorf("server answered %d lines, want 4", n)
	}
	// Close ends the open connection too: the next exchange fails.
	srv.Close()
	if _, err := s.Exchange(time.Second); err == nil {
		t.Error("exchange after the server closed succeeded")
	}
}
