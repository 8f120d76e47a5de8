package netconf

import (
	"net"
	"sync"
	"testing"
	"time"
)

// tcpServer accepts connections in a role's netns and records each client's address.
type tcpServer struct {
	ln   net.Listener
	mu   sync.Mutex
	seen []string
}

// listenTCP listens on addr inside a role's netns: the socket is created on a thread in that
// netns and keeps it, so accepting from any goroutine is fine.
func (tp *topo) listenTCP(role, addr string) *tcpServer {
	tp.t.Helper()
	s := &tcpServer{}
	if err := tp.do(role, func() error {
		var err error
		s.ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		tp.t.Fatalf("listen %s in %s: %v", addr, role, err)
	}
	tp.t.Cleanup(func() { s.ln.Close() })
	go func() {
		for {
			c, err := s.ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.seen = append(s.seen, c.RemoteAddr().(*net.TCPAddr).IP.String())
			s.mu.Unlock()
			// Keep the connection (and its conntrack entry) open until the test ends.
			tp.t.Cleanup(func() { c.Close() })
		}
	}()
	return s
}

// lastClient waits for a connection and returns the latest client address (the deadline is a
// hang guard only).
func (s *tcpServer) lastClient(t *testing.T) string {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		s.mu.Lock()
		n := len(s.seen)
		var last string
		if n > 0 {
			last = s.seen[n-1]
		}
		s.mu.Unlock()
		if n > 0 {
			return last
		}
	}
	t.Fatal("no connection arrived")
	return ""
}

// dialTCP connects from a role's netns; the connection stays open until the test ends.
func (tp *topo) dialTCP(role, addr string) (net.Conn, error) {
	var c net.Conn
	err := tp.do(role, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", addr, 2*time.Second)
		return err
	})
	if err == nil {
		tp.t.Cleanup(func() { c.Close() })
	}
	return c, err
}

// synTo sends one TCP SYN from a role's netns to addr and gives up at once: enough for the
// gateway to create (and confirm) a conntrack entry for a DNAT whose target does not answer.
func (tp *topo) synTo(role, addr string) {
	tp.t.Helper()
	_ = tp.do(role, func() error {
		c, err := net.DialTimeout("tcp4", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return nil
	})
}
