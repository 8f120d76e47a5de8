package topo

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"time"
)

// StreamServer is a TCP server whose connections stay open: every line a client sends is
// answered with the line a Server sends ("seen=<remote ip:port> local=<local ip:port>"), until
// the client closes. A Request (one line, one answer, close) gets what it expects from it, so a
// stream server also serves one-shot probes; a Stream (Dial) keeps one connection open across
// events (a daemon restart, a rule change) and shows whether that established flow survives.
type StreamServer struct {
	Role, Addr string

	srv  *TCPServer
	mu   sync.Mutex
	seen []string
}

// ListenStream starts a stream server inside a role's namespace on addr ("10.0.1.10:80").
func (t *Topology) ListenStream(role, addr string) (*StreamServer, error) {
	s := &StreamServer{Role: role, Addr: addr}
	srv, err := t.ServeTCP(role, addr, s.serve)
	if err != nil {
		return nil, err
	}
	s.srv = srv
	return s, nil
}

// serve answers every line of one connection until the client closes.
func (s *StreamServer) serve(c net.Conn) {
	r := bufio.NewReader(c)
	for {
		if _, err := r.ReadString('\n'); err != nil {
			return
		}
		s.mu.Lock()
		s.seen = append(s.seen, c.RemoteAddr().String())
		s.mu.Unlock()
		if _, err := fmt.Fprintf(c, "seen=%s local=%s\n", c.RemoteAddr(), c.LocalAddr()); err != nil {
			return
		}
	}
}

// Seen returns the remote addresses of the lines answered so far.
func (s *StreamServer) Seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// Close stops the server and closes its open connections.
func (s *StreamServer) Close() { s.srv.Close() }

// Stream is one TCP connection, opened from a role's namespace, kept open between exchanges.
type Stream struct {
	Role, Addr string
	conn       net.Conn
	r          *bufio.Reader
}

// Dial opens a connection from a role's namespace to addr.
func (t *Topology) Dial(role, addr string, timeout time.Duration) (*Stream, error) {
	var conn net.Conn
	err := t.Do(role, func() error {
		d := net.Dialer{Timeout: timeout}
		var err error
		conn, err = d.DialContext(context.Background(), "tcp4", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s -> %s/tcp: %w", role, addr, err)
	}
	return &Stream{Role: role, Addr: addr, conn: conn, r: bufio.NewReader(conn)}, nil
}

// Exchange sends one line on the open connection and returns the server's answer.
func (s *Stream) Exchange(timeout time.Duration) (Reply, error) {
	_ = s.conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintln(s.conn, "hello again"); err != nil {
		return Reply{}, fmt.Errorf("%s -> %s/tcp (open connection): sending: %w", s.Role, s.Addr, err)
	}
	line, err := s.r.ReadString('\n')
	if err != nil {
		return Reply{}, fmt.Errorf("%s -> %s/tcp (open connection): no answer: %w", s.Role, s.Addr, err)
	}
	return parseReply(line)
}

// LocalAddr is the connection's own address (its source port identifies the flow).
func (s *Stream) LocalAddr() string { return s.conn.LocalAddr().String() }

// Close closes the connection.
func (s *Stream) Close() error { return s.conn.Close() }
