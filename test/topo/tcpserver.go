package topo

import (
	"fmt"
	"net"
	"sync"
)

// TCPServer accepts TCP connections inside a role's namespace and runs a handler on each in a
// goroutine of its own; Close stops accepting, closes every open connection and waits for the
// handlers. The servers of the tests (StreamServer, the echo servers of the failover tests) are
// handlers on it.
type TCPServer struct {
	l      net.Listener
	handle func(net.Conn)
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
}

// ServeTCP listens on addr ("10.0.1.10:80", IPv4) in role's namespace and serves each
// connection with handle, which owns the connection until it returns (the server closes it then).
func (t *Topology) ServeTCP(role, addr string, handle func(net.Conn)) (*TCPServer, error) {
	s := &TCPServer{handle: handle, conns: map[net.Conn]struct{}{}}
	err := t.Do(role, func() error {
		var err error
		s.l, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s/tcp in %s: %w", addr, role, err)
	}
	s.wg.Add(1)
	go s.accept()
	return s, nil
}

func (s *TCPServer) accept() {
	defer s.wg.Done()
	for {
		c, err := s.l.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
			s.handle(c)
		}()
	}
}

// Close stops the server and closes its open connections; their handlers have returned when it
// does.
func (s *TCPServer) Close() {
	_ = s.l.Close()
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}
