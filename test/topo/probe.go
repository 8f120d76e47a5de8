package topo

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
)

// Sockets are bound to the network namespace of the thread that creates them and stay there, so
// a listener or connection made inside ns.Do keeps working from any goroutine afterwards.

// Do runs fn with the calling goroutine's OS thread inside a role's namespace.
func (t *Topology) Do(role string, fn func() error) error {
	netns, err := ns.GetNS(t.Path(role))
	if err != nil {
		return fmt.Errorf("opening netns of %s: %w", role, err)
	}
	defer netns.Close()
	return netns.Do(func(ns.NetNS) error { return fn() })
}

// Server answers every TCP connection or UDP datagram with one line that says what it saw:
// "seen=<remote ip:port> local=<local ip:port>". That line is how a test learns the source
// address after NAT, from the receiver's side.
type Server struct {
	Role, Proto, Addr string

	mu   sync.Mutex
	seen []string
	tcp  net.Listener
	udp  net.PacketConn
	wg   sync.WaitGroup
}

// Listen starts a server inside a role's namespace on addr ("10.0.1.10:80"), proto tcp or udp.
func (t *Topology) Listen(role, proto, addr string) (*Server, error) {
	s := &Server{Role: role, Proto: proto, Addr: addr}
	err := t.Do(role, func() error {
		var err error
		switch proto {
		case "tcp":
			s.tcp, err = net.Listen("tcp4", addr)
		case "udp":
			s.udp, err = net.ListenPacket("udp4", addr)
		default:
			err = fmt.Errorf("unknown protocol %q", proto)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listening on %s/%s in %s: %w", addr, proto, role, err)
	}
	s.wg.Add(1)
	if s.tcp != nil {
		go s.serveTCP()
	} else {
		go s.serveUDP()
	}
	return s, nil
}

func (s *Server) record(remote, local net.Addr) string {
	line := fmt.Sprintf("seen=%s local=%s", remote, local)
	s.mu.Lock()
	s.seen = append(s.seen, remote.String())
	s.mu.Unlock()
	return line
}

func (s *Server) serveTCP() {
	defer s.wg.Done()
	for {
		c, err := s.tcp.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				return
			}
			fmt.Fprintln(c, s.record(c.RemoteAddr(), c.LocalAddr()))
		}()
	}
}

func (s *Server) serveUDP() {
	defer s.wg.Done()
	buf := make([]byte, 1500)
	for {
		_, from, err := s.udp.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = s.udp.WriteTo([]byte(s.record(from, s.udp.LocalAddr())+"\n"), from)
	}
}

// Seen returns the remote addresses the server has seen so far.
func (s *Server) Seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

// Close stops the server.
func (s *Server) Close() {
	if s.tcp != nil {
		_ = s.tcp.Close()
	}
	if s.udp != nil {
		_ = s.udp.Close()
	}
	s.wg.Wait()
}

// Reply is what a request learned: the server's line, parsed.
type Reply struct {
	Seen  string // source ip:port as the server saw it
	Local string // the server's own ip:port
}

// SeenIP is the source IP the server saw.
func (r Reply) SeenIP() string { h, _, _ := net.SplitHostPort(r.Seen); return h }

// Request sends one request from a role's namespace to addr and returns the server's reply.
func (t *Topology) Request(role, proto, addr string, timeout time.Duration) (Reply, error) {
	return t.RequestFrom(role, proto, 0, addr, timeout)
}

// RequestFrom is Request from a fixed local port (0 = any), so that successive UDP requests
// belong to one conntrack flow.
func (t *Topology) RequestFrom(role, proto string, port int, addr string, timeout time.Duration) (Reply, error) {
	var conn net.Conn
	err := t.Do(role, func() error {
		d := net.Dialer{Timeout: timeout}
		if port != 0 && proto == "udp" {
			d.LocalAddr = &net.UDPAddr{Port: port}
		} else if port != 0 {
			d.LocalAddr = &net.TCPAddr{Port: port}
		}
		var err error
		conn, err = d.DialContext(context.Background(), proto+"4", addr)
		return err
	})
	if err != nil {
		return Reply{}, fmt.Errorf("%s -> %s/%s: %w", role, addr, proto, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := fmt.Fprintln(conn, "hello"); err != nil {
		return Reply{}, fmt.Errorf("%s -> %s/%s: sending: %w", role, addr, proto, err)
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		return Reply{}, fmt.Errorf("%s -> %s/%s: no answer: %w", role, addr, proto, err)
	}
	return parseReply(line)
}

func parseReply(line string) (Reply, error) {
	var r Reply
	for _, f := range strings.Fields(line) {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "seen":
			r.Seen = v
		case "local":
			r.Local = v
		}
	}
	if r.Seen == "" || r.Local == "" {
		return r, errors.New("malformed server line: " + strings.TrimSpace(line))
	}
	return r, nil
}

// ConnRate opens new TCP connections one after the other from a role's namespace to addr for d
// and returns the connections per second (a benchmark figure).
func (t *Topology) ConnRate(role, addr string, d time.Duration) (float64, error) {
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		if _, err := t.Request(role, "tcp", addr, 2*time.Second); err != nil {
			return 0, fmt.Errorf("connection %d to %s: %w", n, addr, err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
